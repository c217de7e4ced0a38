#pragma once
// The Agent's HTTP(S) server: Boost.Beast on one I/O thread, with the rendering on a small pool.
//
// Threads: one I/O thread runs every connection (accept, TLS handshake, reading and parsing
// requests, timers, writing responses); an idle or slow connection costs it a socket, a timer
// and a few hundred bytes, never a thread. Rendering a response (the handler) and gzip run on
// `worker_threads` pool threads, so a 30 ms scrape never delays another client's bytes. A
// bcrypt check (basic auth, milliseconds by design) runs on one more thread of its own, so a
// client guessing passwords delays only other first-time logins, never a scrape: a credential
// that passed once is remembered on the I/O thread (bounded) and costs no check after.
//
// Limits: the whole request head must arrive within request_timeout of the connection (or of
// the previous response, for keep-alive), and be at most max_header_bytes; at most
// max_connections are open: at the cap, the connection that has waited longest for its request
// is closed to make room, so a flood of idle connections cannot lock a scraper out. At most
// max_pending_jobs renders (and as many checks) are queued; beyond that the answer is 503.
//
// Deferred replies: a handler may answer "later" (HttpReply::then, after HttpReply::defer), as
// /debug/pprof/mutex?seconds=30 does. The wait is a timer on the I/O thread, not a pool thread,
// so waiting requests never delay a scrape; at most max_deferred wait at once (beyond: 503
// naming the limit), each for at most max_defer. A client that closes its connection while it
// waits is noticed at once (its socket becomes readable at EOF): its slot is freed and nothing is
// rendered for it.
//
// Every path answers 405 to methods other than GET and HEAD, 404 to paths not in `paths`
// (exact match, the query string ignored), and 401 with `WWW-Authenticate: Basic` to any
// request without valid credentials when the web configuration requires them.
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "stallscope/agent_options.hpp"
#include "web_config.hpp"

namespace stallscope::detail {

struct HttpReply {
  unsigned status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
  std::size_t rendered_bytes = 0;  // set by the server: the body's size before gzip
  // A deferred reply: when `then` is set, nothing of this reply is sent; after `defer` the server
  // calls then() on a pool thread and sends what it returns (which may not defer again).
  std::chrono::milliseconds defer{0};
  std::function<HttpReply()> then;
};

// Renders the response to a GET of `path` (one of the server's paths, followed by the request's
// query string when it has one: "/stallz/tasks?state=waiting") for a request whose Accept header
// is `accept` ("" when it has none). Runs on a pool thread, possibly on several at once; may
// throw (the client gets a 500 naming the error). A reply that depends on `accept` says so with a
// `Vary: Accept` header (the server adds Accept-Encoding to it).
using HttpHandler = std::function<HttpReply(std::string_view path, std::string_view accept)>;

struct HttpServerOptions {
  int worker_threads = 2;
  std::size_t max_connections = 1024;
  std::chrono::milliseconds request_timeout{10000};
  std::chrono::milliseconds write_timeout{60000};
  std::size_t max_header_bytes = 8192;
  std::size_t max_body_bytes = 8192;  // a request body (none is expected) is read and dropped
  std::size_t max_pending_jobs = 256;
  std::size_t max_deferred = 4;                // deferred replies waiting at once
  std::chrono::milliseconds max_defer{60000};  // the longest a reply may be deferred
  // After sending a body at least this large, malloc_trim(0) hands glibc's free pages back to
  // the system (0: never). Without it RSS stays at its peak after a large scrape
  // (bench/README.md, "Endpoint").
  std::size_t trim_after_bytes = std::size_t{4} << 20;
};

class HttpServer final {
 public:
  // Binds and listens, then serves until destroyed. Throws std::system_error naming the address
  // and the real reason (the errno text) when it cannot bind, std::invalid_argument naming the
  // file when the TLS certificate or key cannot be used.
  HttpServer(const ListenAddress& address, const HttpServerOptions& options, WebConfig web,
             std::vector<std::string> paths, HttpHandler handler);
  // Stops accepting, closes every connection and joins the threads: a response being rendered
  // finishes first (milliseconds), nothing else is waited for.
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  int port() const noexcept;
  bool tls() const noexcept;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// gzip (RFC 1952) of `data` at zlib's fastest level; used for `Accept-Encoding: gzip`.
std::string gzip_compress(std::string_view data);

// True when an Accept-Encoding value accepts gzip (the token, any case, with no q=0).
bool accepts_gzip(std::string_view accept_encoding) noexcept;

}  // namespace stallscope::detail
