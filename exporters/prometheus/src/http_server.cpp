#include "http_server.hpp"

#include <malloc.h>
#include <pthread.h>
#include <sys/socket.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <list>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <fmt/format.h>
#include <openssl/ssl.h>

#include "stallscope/log.hpp"

namespace stallscope::detail {

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;

// Credentials that passed a bcrypt check, remembered on the I/O thread.
constexpr std::size_t kKnownGoodCredentials = 64;

void name_thread(const char* name) {
#if defined(__linux__)
  pthread_setname_np(pthread_self(), name);  // as `top -H` and gdb show it
#else
  (void)name;
#endif
}

bool iequals(std::string_view a, std::string_view b) noexcept {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) {
    return std::tolower(static_cast<unsigned char>(x)) ==
           std::tolower(static_cast<unsigned char>(y));
  });
}

std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

bool accepts_gzip(std::string_view value) noexcept {
  while (!value.empty()) {
    const auto comma = value.find(',');
    std::string_view item = value.substr(0, comma);
    value = comma == std::string_view::npos ? std::string_view() : value.substr(comma + 1);
    const auto semi = item.find(';');
    const std::string_view coding = trim(item.substr(0, semi));
    if (!iequals(coding, "gzip") && !iequals(coding, "x-gzip")) continue;
    if (semi == std::string_view::npos) return true;
    std::string_view params = item.substr(semi + 1);
    bool zero = false;
    while (!params.empty()) {
      const auto next = params.find(';');
      const std::string_view p = trim(params.substr(0, next));
      params = next == std::string_view::npos ? std::string_view() : params.substr(next + 1);
      if (p.size() >= 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=') {
        const std::string_view q = trim(p.substr(2));
        // q=0, q=0., q=0.0, q=0.00, q=0.000: refused.
        zero = !q.empty() && q[0] == '0' &&
               std::all_of(q.begin() + 1, q.end(), [](char c) { return c == '.' || c == '0'; });
      }
    }
    if (!zero) return true;
  }
  return false;
}

std::string gzip_compress(std::string_view data) {
  z_stream zs{};
  if (deflateInit2(&zs, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    throw std::runtime_error("gzip: deflateInit2 failed");
  }
  std::string out;
  try {
    out.resize(deflateBound(&zs, static_cast<uLong>(data.size())));
  } catch (...) {
    deflateEnd(&zs);
    throw;
  }
  // zlib counts in uInt: feed and drain at most 1 GiB per call.
  constexpr std::size_t kStep = std::size_t{1} << 30;
  std::size_t in_done = 0;
  std::size_t out_done = 0;
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    const std::size_t in_now = std::min(kStep, data.size() - in_done);
    if (out_done == out.size()) out.resize(out.size() + 4096);
    const std::size_t out_now = std::min(kStep, out.size() - out_done);
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data() + in_done));
    zs.avail_in = static_cast<uInt>(in_now);
    zs.next_out = reinterpret_cast<Bytef*>(out.data() + out_done);
    zs.avail_out = static_cast<uInt>(out_now);
    const bool last = in_done + in_now == data.size();
    rc = deflate(&zs, last ? Z_FINISH : Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
      deflateEnd(&zs);
      throw std::runtime_error("gzip: deflate failed");
    }
    in_done += in_now - zs.avail_in;
    out_done += out_now - zs.avail_out;
  }
  deflateEnd(&zs);
  out.resize(out_done);
  out.shrink_to_fit();
  return out;
}

// ---------------------------------------------------------------------------------------------

// bcrypt checks, one at a time, on a detached thread of their own: a check takes 0.05 to 0.3 s
// (cost 10), and destroying the server must not wait for one. The thread owns what it uses (this
// state, shared); results go back to the server's io_context only while the server has not
// stopped (checked under the mutex, which the server's destructor also takes).
struct CheckQueue {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::pair<std::uint64_t, std::string>> jobs;  // (connection id, credentials)
  bool stopped = false;
  std::function<void(std::uint64_t, bool)> deliver;  // called under mu, while !stopped

  static void run(const std::shared_ptr<CheckQueue>& q,
                  const std::shared_ptr<const WebConfig>& web) {
    name_thread("stallscope-auth");
    std::unique_lock lock(q->mu);
    for (;;) {
      q->cv.wait(lock, [&] { return q->stopped || !q->jobs.empty(); });
      if (q->stopped) return;
      auto [id, credentials] = std::move(q->jobs.front());
      q->jobs.pop_front();
      lock.unlock();
      bool ok = false;
      try {
        ok = web->authorized(credentials);
      } catch (const std::exception&) {
        ok = false;  // out of memory: refused, the client may retry
      }
      lock.lock();
      if (q->stopped) return;
      q->deliver(id, ok);
    }
  }
};

class HttpConnectionBase {
 public:
  virtual ~HttpConnectionBase() = default;
  virtual bool waiting_for_request() const noexcept = 0;
  virtual void evict() noexcept = 0;
  virtual void checked(bool ok) = 0;               // a bcrypt check's answer (I/O thread)
  std::list<HttpConnectionBase*>::iterator place;  // in HttpServer::Impl::live_
};

class HttpServer::Impl {
 public:
  Impl(const ListenAddress& address, const HttpServerOptions& options, WebConfig web,
       std::vector<std::string> paths, HttpHandler handler);
  ~Impl();

  const HttpServerOptions options_;
  const std::shared_ptr<const WebConfig> web_;
  const std::vector<std::string> paths_;
  const HttpHandler handler_;
  std::optional<ssl::context> tls_;

  // I/O thread only.
  std::list<HttpConnectionBase*> live_;  // oldest waiting first (see Connection::read)
  std::unordered_set<std::string> known_good_;
  std::size_t pending_jobs_ = 0;
  std::size_t deferred_ = 0;  // connections waiting for a deferred reply
  std::uint64_t next_check_ = 0;
  std::unordered_map<std::uint64_t, std::shared_ptr<HttpConnectionBase>> checking_;
  std::shared_ptr<CheckQueue> checks_;
  std::chrono::steady_clock::time_point last_accept_error_log_{};

  net::io_context ioc_{1};
  tcp::acceptor acceptor_{ioc_};
  net::steady_timer accept_retry_{ioc_};
  int port_ = 0;
  net::thread_pool workers_;
  std::thread io_thread_;

  void accept();
  void on_accept(const beast::error_code& ec, tcp::socket socket);
  // Posts f() to the pool; its result comes back to the I/O thread via done(result).
  template <class F, class Done>
  void run_job(net::thread_pool& pool, F f, Done done);
  void trim_memory();
  // Queues a bcrypt check of `credentials` for `c`, which gets checked(ok) later on the I/O
  // thread; false when too many are queued.
  bool check(std::shared_ptr<HttpConnectionBase> c, const std::string& credentials);
};

namespace {

template <class Stream>
tcp::socket& socket_of(Stream& s) {
  return beast::get_lowest_layer(s).socket();
}

}  // namespace

template <class Stream>
class Connection final : public HttpConnectionBase,
                         public std::enable_shared_from_this<Connection<Stream>> {
 public:
  static constexpr bool kTls = !std::is_same_v<Stream, beast::tcp_stream>;

  template <class... Args>
  Connection(HttpServer::Impl& server, Args&&... args)
      : server_(server), stream_(std::forward<Args>(args)...) {
    server_.live_.push_back(this);
    place = std::prev(server_.live_.end());
  }
  ~Connection() override { server_.live_.erase(place); }

  void start() {
    if constexpr (kTls) {
      waiting_ = true;
      beast::get_lowest_layer(stream_).expires_after(server_.options_.request_timeout);
      stream_.async_handshake(ssl::stream_base::server,
                              [self = this->shared_from_this()](const beast::error_code& ec) {
                                if (ec) return self->close();
                                self->read();
                              });
    } else {
      read();
    }
  }

  bool waiting_for_request() const noexcept override { return waiting_; }
  void evict() noexcept override { close(); }

 private:
  using Request = http::request<http::string_body>;
  using Response = http::response<http::string_body>;

  void read() {
    waiting_ = true;
    // Longest waiting first: the front of the list is what a full server evicts.
    server_.live_.splice(server_.live_.end(), server_.live_, place);
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(server_.options_.max_header_bytes));
    parser_->body_limit(server_.options_.max_body_bytes);
    beast::get_lowest_layer(stream_).expires_after(server_.options_.request_timeout);
    http::async_read(stream_, buffer_, *parser_,
                     [self = this->shared_from_this()](const beast::error_code& ec, std::size_t) {
                       self->on_read(ec);
                     });
  }

  void on_read(const beast::error_code& ec) {
    waiting_ = false;
    if (ec) {
      const bool parse_error =
          ec.category() == http::make_error_code(http::error::bad_target).category();
      if (!parse_error || ec == http::error::end_of_stream || ec == http::error::partial_message) {
        return close();  // the peer left, timed out, or closed mid-request: nothing to answer
      }
      unsigned status = 400;
      if (ec == http::error::header_limit) status = 431;
      if (ec == http::error::body_limit) status = 413;
      return send_error(status, fmt::format("stallscope: bad request: {}\n", ec.message()), false);
    }
    request_ = parser_->release();
    parser_.reset();
    keep_alive_ = request_.keep_alive();
    head_ = request_.method() == http::verb::head;

    if (server_.web_->requires_auth()) {
      const std::string credentials(request_[http::field::authorization]);
      if (server_.known_good_.contains(credentials)) return route();
      if (credentials.empty()) return send_unauthorized();
      if (!server_.check(this->shared_from_this(), credentials)) {
        return send_error(503, "stallscope: too many logins at once; retry\n", keep_alive_);
      }
      credentials_ = credentials;
      return;
    }
    route();
  }

  void checked(bool ok) override {
    if (!ok) return send_unauthorized();
    auto& known = server_.known_good_;
    if (known.size() >= kKnownGoodCredentials) known.clear();
    known.insert(std::move(credentials_));
    credentials_ = {};
    route();
  }

  void route() {
    const auto method = request_.method();
    if (method != http::verb::get && method != http::verb::head) {
      HttpReply r;
      r.status = 405;
      r.body = "stallscope: this endpoint answers GET and HEAD\n";
      r.headers.emplace_back("Allow", "GET, HEAD");
      return send(std::move(r), false);
    }
    const std::string_view full_target = request_.target();
    const std::string_view target = full_target.substr(0, full_target.find('?'));
    const auto& paths = server_.paths_;
    const auto it = std::find(paths.begin(), paths.end(), target);
    if (it == paths.end()) {
      return send_error(404, "stallscope: not found (this endpoint serves /metrics and /stallz)\n",
                        keep_alive_);
    }
    if (server_.pending_jobs_ >= server_.options_.max_pending_jobs) {
      return send_error(503, "stallscope: too many requests at once; retry\n", keep_alive_);
    }
    ++server_.pending_jobs_;
    gzip_ = accepts_gzip(request_[http::field::accept_encoding]);
    std::string accept(request_[http::field::accept]);
    path_ = *it + std::string(full_target.substr(target.size()));  // with the query
    request_ = {};  // its memory is not needed while the response renders
    server_.run_job(
        server_.workers_,
        [&server = server_, path = path_, accept = std::move(accept), gzip = gzip_] {
          return rendered(path, gzip, [&] { return server.handler_(path, accept); });
        },
        [self = this->shared_from_this()](HttpReply r) {
          --self->server_.pending_jobs_;
          if (r.then) return self->defer(std::move(r));
          self->send(std::move(r), self->keep_alive_);
        });
  }

  // What render() returns, or a 500 naming `path` when it throws; gzip-compressed when `gzip`,
  // with Vary: Accept-Encoding. A deferred reply is returned as it is. On a pool thread.
  template <class Render>
  static HttpReply rendered(const std::string& path, bool gzip, Render&& render) {
    HttpReply r;
    try {
      r = render();
    } catch (const std::exception& e) {
      r = HttpReply{};
      r.status = 500;
      r.body = fmt::format("stallscope: {} failed: {}\n", path, e.what());
      return r;
    }
    if (r.then) return r;
    // Whether to trim after sending: the size of what was rendered, compressed or not.
    r.rendered_bytes = r.body.size();
    if (gzip) {
      try {
        std::string z = gzip_compress(r.body);
        r.body = std::move(z);  // frees the text before it is sent
        r.headers.emplace_back("Content-Encoding", "gzip");
      } catch (const std::exception&) {
        // Out of memory for the compressed copy: send the text as it is.
      }
    }
    const auto vary = std::find_if(r.headers.begin(), r.headers.end(),
                                   [](const auto& h) { return h.first == "Vary"; });
    if (vary != r.headers.end()) {
      vary->second += ", Accept-Encoding";
    } else {
      r.headers.emplace_back("Vary", "Accept-Encoding");
    }
    return r;
  }

  // A deferred reply (HttpReply::then): waits on a timer of the I/O thread, watching the socket
  // so that a client who leaves frees the slot at once.
  void defer(HttpReply r) {
    const auto& options = server_.options_;
    if (server_.deferred_ >= options.max_deferred) {
      return send_error(503,
                        fmt::format("stallscope: {} requests already wait for a delayed answer "
                                    "(such as a profile with ?seconds=N), the most this endpoint "
                                    "allows at once; retry when one has ended\n",
                                    options.max_deferred),
                        keep_alive_);
    }
    if (r.defer > options.max_defer) {
      return send_error(500,
                        fmt::format("stallscope: {} asked to wait {} ms, more than the endpoint's "
                                    "limit of {} ms\n",
                                    path_, r.defer.count(), options.max_defer.count()),
                        keep_alive_);
    }
    ++server_.deferred_;
    deferred_ = true;
    then_ = std::move(r.then);
    beast::get_lowest_layer(stream_).expires_never();  // the timer below bounds the wait
    if (!timer_) timer_.emplace(stream_.get_executor());
    timer_->expires_after(r.defer);
    timer_->async_wait(
        [self = this->shared_from_this()](const beast::error_code& ec) { self->on_deferred(ec); });
    watch_peer();
  }

  // Until the deferred reply is due: readable means the peer closed (EOF, reset) or sent more
  // (a pipelined request, left in the socket for the next read).
  void watch_peer() {
    socket_of(stream_).async_wait(
        tcp::socket::wait_read,
        [self = this->shared_from_this()](const beast::error_code& ec) { self->on_peer(ec); });
  }

  void on_peer(const beast::error_code& ec) {
    if (!deferred_ || ec == net::error::operation_aborted) return;
    if (!ec) {
      char c = 0;
      const ssize_t n = ::recv(socket_of(stream_).native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
      if (n > 0) return;  // bytes to read later: the wait goes on, unwatched
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        return watch_peer();
      }
    }
    // The peer has gone: nothing is rendered for it.
    end_deferral();
    timer_->cancel();
    close();
  }

  void on_deferred(const beast::error_code& ec) {
    if (ec || !deferred_) return;
    end_deferral();
    beast::error_code ignored;
    socket_of(stream_).cancel(ignored);  // the watch
    if (server_.pending_jobs_ >= server_.options_.max_pending_jobs) {
      return send_error(503, "stallscope: too many requests at once; retry\n", keep_alive_);
    }
    ++server_.pending_jobs_;
    server_.run_job(
        server_.workers_,
        [then = std::move(then_), path = path_, gzip = gzip_] {
          HttpReply r = rendered(path, gzip, then);
          if (r.then) {
            r = HttpReply{};
            r.status = 500;
            r.body = fmt::format("stallscope: {} deferred its reply twice\n", path);
          }
          return r;
        },
        [self = this->shared_from_this()](HttpReply r) {
          --self->server_.pending_jobs_;
          self->send(std::move(r), self->keep_alive_);
        });
    then_ = nullptr;
  }

  void end_deferral() noexcept {
    deferred_ = false;
    --server_.deferred_;
  }

  void send_unauthorized() {
    HttpReply r;
    r.status = 401;
    r.body = "stallscope: authentication required\n";
    r.headers.emplace_back("WWW-Authenticate", "Basic realm=\"stallscope\", charset=\"UTF-8\"");
    send(std::move(r), keep_alive_);
  }

  void send_error(unsigned status, std::string body, bool keep_alive) {
    HttpReply r;
    r.status = status;
    r.body = std::move(body);
    send(std::move(r), keep_alive);
  }

  void send(HttpReply reply, bool keep_alive) {
    keep_alive_ = keep_alive;
    response_.emplace();
    Response& res = *response_;
    res.version(11);
    res.result(reply.status);
    res.set(http::field::content_type, reply.content_type);
    res.set(http::field::cache_control, "no-store");
    res.set("X-Content-Type-Options", "nosniff");
    for (const auto& [name, value] : reply.headers) res.set(name, value);
    res.keep_alive(keep_alive);
    res.content_length(reply.body.size());
    const std::size_t trim = server_.options_.trim_after_bytes;
    big_ = trim != 0 && std::max(reply.body.size(), reply.rendered_bytes) >= trim;
    if (!head_) res.body() = std::move(reply.body);
    reply.body = {};
    beast::get_lowest_layer(stream_).expires_after(server_.options_.write_timeout);
    http::async_write(stream_, res,
                      [self = this->shared_from_this()](const beast::error_code& ec, std::size_t) {
                        self->on_write(ec);
                      });
  }

  void on_write(const beast::error_code& ec) {
    response_.reset();
    head_ = false;
    if (big_) {
      big_ = false;
      server_.trim_memory();
    }
    if (ec || !keep_alive_) return close();
    read();
  }

  void close() noexcept {
    beast::error_code ignored;
    auto& s = socket_of(stream_);
    if (!s.is_open()) return;
    s.shutdown(tcp::socket::shutdown_both, ignored);
    s.close(ignored);
  }

  HttpServer::Impl& server_;
  Stream stream_;
  beast::flat_buffer buffer_{8192};
  std::optional<http::request_parser<http::string_body>> parser_;
  Request request_;
  std::optional<Response> response_;
  std::string credentials_;                 // while a check of them runs
  std::string path_;                        // of the request being answered, with its query
  std::function<HttpReply()> then_;         // a deferred reply's continuation, while it waits
  std::optional<net::steady_timer> timer_;  // a deferred reply's wait
  bool deferred_ = false;                   // waiting for a deferred reply (counted in the server)
  bool gzip_ = false;
  bool waiting_ = false;
  bool keep_alive_ = false;
  bool head_ = false;
  bool big_ = false;
};

// ---------------------------------------------------------------------------------------------

HttpServer::Impl::Impl(const ListenAddress& address, const HttpServerOptions& options,
                       WebConfig web, std::vector<std::string> paths, HttpHandler handler)
    : options_(options),
      web_(std::make_shared<const WebConfig>(std::move(web))),
      paths_(std::move(paths)),
      handler_(std::move(handler)),
      workers_(static_cast<std::size_t>(std::max(1, options.worker_threads))) {
  const std::string where = fmt::format("{}:{}", address.host, address.port);
  if (web_->tls) {
    tls_.emplace(ssl::context::tls_server);
    tls_->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                      ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                      ssl::context::single_dh_use);
    // An idle TLS connection keeps no read/write buffers (about 34 KiB each otherwise).
    SSL_CTX_set_mode(tls_->native_handle(), SSL_MODE_RELEASE_BUFFERS);
    beast::error_code ec;
    tls_->use_certificate_chain_file(web_->tls->cert_file, ec);
    if (ec) {
      throw std::invalid_argument(fmt::format("stallscope: TLS certificate file \"{}\": {}",
                                              web_->tls->cert_file, ec.message()));
    }
    tls_->use_private_key_file(web_->tls->key_file, ssl::context::pem, ec);
    if (ec) {
      throw std::invalid_argument(
          fmt::format("stallscope: TLS key file \"{}\": {}", web_->tls->key_file, ec.message()));
    }
  }

  std::string host = address.host;
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  beast::error_code ec;
  const net::ip::address ip = net::ip::make_address(host, ec);
  if (ec) {
    throw std::system_error(ec, fmt::format("stallscope: cannot listen on {}: address", where));
  }
  const tcp::endpoint endpoint(ip, address.port);
  auto fail = [&](const char* step) {
    // what() is "stallscope: cannot listen on HOST:PORT: bind: <the errno text>".
    return std::system_error(ec, fmt::format("stallscope: cannot listen on {}: {}", where, step));
  };
  if (acceptor_.open(endpoint.protocol(), ec)) throw fail("socket");
  if (acceptor_.set_option(net::socket_base::reuse_address(true), ec)) throw fail("setsockopt");
  if (acceptor_.bind(endpoint, ec)) throw fail("bind");
  if (acceptor_.listen(net::socket_base::max_listen_connections, ec)) throw fail("listen");
  port_ = acceptor_.local_endpoint().port();

  if (web_->requires_auth()) {
    checks_ = std::make_shared<CheckQueue>();
    checks_->deliver = [this](std::uint64_t id, bool ok) {
      net::post(ioc_, [this, id, ok] {
        const auto it = checking_.find(id);
        if (it == checking_.end()) return;
        const std::shared_ptr<HttpConnectionBase> c = std::move(it->second);
        checking_.erase(it);
        c->checked(ok);
      });
    };
    std::thread(CheckQueue::run, checks_, web_).detach();
  }

  accept();
  io_thread_ = std::thread([this] {
    name_thread("stallscope-http");
    for (;;) {
      try {
        ioc_.run();
        return;
      } catch (const std::exception& e) {
        // A handler threw (out of memory): that connection is lost, the server runs on.
        log(LogLevel::kError, fmt::format("stallscope: endpoint: {}", e.what()));
      }
    }
  });
}

HttpServer::Impl::~Impl() {
  if (checks_) {
    std::lock_guard lock(checks_->mu);
    checks_->stopped = true;  // a check still running is not waited for, nor delivered
    checks_->jobs.clear();
    checks_->cv.notify_all();
  }
  ioc_.stop();
  if (io_thread_.joinable()) io_thread_.join();
  workers_.stop();
  workers_.join();
  checking_.clear();  // the connections waiting on a check go while live_ is still here
  // Members go in reverse order: the pools (and the connections their queued jobs hold), the
  // acceptor, then the io_context with the connections its queued handlers hold; live_ and the
  // TLS context outlive all of them.
}

void HttpServer::Impl::accept() {
  acceptor_.async_accept(ioc_, [this](const beast::error_code& ec, tcp::socket socket) {
    on_accept(ec, std::move(socket));
  });
}

void HttpServer::Impl::on_accept(const beast::error_code& ec, tcp::socket socket) {
  if (ec == net::error::operation_aborted) return;
  if (ec) {
    // Out of file descriptors (or similar): wait a little rather than spin on the error.
    const auto now = std::chrono::steady_clock::now();
    if (now - last_accept_error_log_ > std::chrono::seconds(10)) {
      last_accept_error_log_ = now;
      log(LogLevel::kWarning,
          fmt::format("stallscope: endpoint: accept failed: {}; retrying", ec.message()));
    }
    accept_retry_.expires_after(std::chrono::milliseconds(50));
    accept_retry_.async_wait([this](const beast::error_code& e) {
      if (!e) accept();
    });
    return;
  }
  if (live_.size() >= options_.max_connections) {
    const auto oldest = std::find_if(live_.begin(), live_.end(), [](const HttpConnectionBase* c) {
      return c->waiting_for_request();
    });
    if (oldest == live_.end()) {
      beast::error_code ignored;
      socket.close(ignored);  // every connection is being served: refuse this one
      return accept();
    }
    (*oldest)->evict();
  }
  beast::error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  try {
    if (tls_) {
      std::make_shared<Connection<beast::ssl_stream<beast::tcp_stream>>>(*this, std::move(socket),
                                                                         *tls_)
          ->start();
    } else {
      std::make_shared<Connection<beast::tcp_stream>>(*this, std::move(socket))->start();
    }
  } catch (const std::exception&) {
    // Out of memory for one connection: it is dropped, the server runs on.
  }
  accept();
}

template <class F, class Done>
void HttpServer::Impl::run_job(net::thread_pool& pool, F f, Done done) {
  net::post(pool, [this, f = std::move(f), done = std::move(done)]() mutable {
    auto result = f();
    // The connection (held by `done`) goes back to the I/O thread, and is only ever destroyed
    // there (or after it has stopped).
    net::post(ioc_, [done = std::move(done), result = std::move(result)]() mutable {
      done(std::move(result));
    });
  });
}

bool HttpServer::Impl::check(std::shared_ptr<HttpConnectionBase> c,
                             const std::string& credentials) {
  if (checking_.size() >= options_.max_pending_jobs) return false;
  const std::uint64_t id = next_check_++;
  {
    std::lock_guard lock(checks_->mu);
    checks_->jobs.emplace_back(id, credentials);
  }
  checks_->cv.notify_one();
  checking_.emplace(id, std::move(c));
  return true;
}

void HttpServer::Impl::trim_memory() {
  // On a pool thread: malloc_trim walks every arena (about a millisecond after a 32 MB scrape).
  net::post(workers_, [] { malloc_trim(0); });
}

// ---------------------------------------------------------------------------------------------

HttpServer::HttpServer(const ListenAddress& address, const HttpServerOptions& options,
                       WebConfig web, std::vector<std::string> paths, HttpHandler handler)
    : impl_(std::make_unique<Impl>(address, options, std::move(web), std::move(paths),
                                   std::move(handler))) {}

HttpServer::~HttpServer() = default;

int HttpServer::port() const noexcept { return impl_->port_; }

bool HttpServer::tls() const noexcept { return impl_->tls_.has_value(); }

}  // namespace stallscope::detail
