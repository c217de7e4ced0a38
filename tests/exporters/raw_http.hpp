#pragma once
// Raw-socket HTTP for the endpoint tests: connections that send exactly the bytes a test wants
// (idle, byte by byte, malformed), and a reader of one response with a deadline.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include <fmt/format.h>

namespace stallscope::test {

// An owned socket descriptor.
class Socket {
 public:
  Socket() = default;
  explicit Socket(int fd) noexcept : fd_(fd) {}
  Socket(Socket&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Socket& operator=(Socket&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~Socket() { reset(); }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;

  int fd() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  void reset() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

// Connects to HOST:PORT (an IPv4 literal, or an IPv6 literal without brackets). Throws.
inline Socket connect_to(const std::string& host, int port) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family = AF_INET;
  if (host.find(':') != std::string::npos) {
    family = AF_INET6;
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(static_cast<std::uint16_t>(port));
    if (inet_pton(AF_INET6, host.c_str(), &a->sin6_addr) != 1) throw std::invalid_argument(host);
    len = sizeof(sockaddr_in6);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(static_cast<std::uint16_t>(port));
    if (inet_pton(AF_INET, host.c_str(), &a->sin_addr) != 1) throw std::invalid_argument(host);
    len = sizeof(sockaddr_in);
  }
  Socket s(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s) throw std::system_error(errno, std::generic_category(), "socket");
  if (::connect(s.fd(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    throw std::system_error(errno, std::generic_category(),
                            fmt::format("connect {}:{}", host, port));
  }
  return s;
}

inline Socket connect_local(int port) { return connect_to("127.0.0.1", port); }

// Sends all of `data`; false when the peer has gone (EPIPE, ECONNRESET).
inline bool send_all(const Socket& s, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(s.fd(), data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// Waits up to `timeout` for bytes; appends them to `out`. Returns the byte count, 0 at EOF, -1 on
// timeout, -2 on a socket error (a reset counts as the end of the connection).
inline long read_some(const Socket& s, std::string& out, std::chrono::milliseconds timeout) {
  pollfd p{s.fd(), POLLIN, 0};
  const int r = ::poll(&p, 1, static_cast<int>(timeout.count()));
  if (r == 0) return -1;
  if (r < 0) return -2;
  char buf[65536];
  const ssize_t n = ::recv(s.fd(), buf, sizeof buf, 0);
  if (n < 0) return errno == ECONNRESET ? 0 : -2;
  out.append(buf, static_cast<std::size_t>(n));
  return n;
}

struct RawResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  bool closed = false;  // the server closed the connection after it
  std::string header(const std::string& name) const {
    const auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
};

// Reads one response (Content-Length delimited; for HEAD, `head`: no body) within `timeout`.
// nullopt when the connection ended (or the time ran out) before a whole response arrived;
// `rest` keeps bytes after the response (pipelining). The default deadline only guards against a
// hang: a sanitizer build on a loaded machine can take seconds to render and send a page.
inline std::optional<RawResponse> read_response(
    const Socket& s, bool head = false,
    std::chrono::milliseconds timeout = std::chrono::milliseconds(30000),
    std::string* leftover = nullptr) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string in = leftover != nullptr ? std::exchange(*leftover, {}) : std::string();
  auto left = [&] {
    return std::max(std::chrono::milliseconds(0),
                    std::chrono::duration_cast<std::chrono::milliseconds>(
                        deadline - std::chrono::steady_clock::now()));
  };
  std::size_t end = 0;
  while ((end = in.find("\r\n\r\n")) == std::string::npos) {
    if (read_some(s, in, left()) <= 0) return std::nullopt;
  }
  RawResponse r;
  const std::string head_text = in.substr(0, end);
  std::size_t pos = head_text.find("\r\n");
  const std::string status_line = head_text.substr(0, pos);
  if (!status_line.starts_with("HTTP/1.") || status_line.size() < 12) return std::nullopt;
  r.status = std::atoi(status_line.c_str() + 9);
  while (pos != std::string::npos) {
    const std::size_t next = head_text.find("\r\n", pos + 2);
    const std::string line = head_text.substr(pos + 2, next - pos - 2);
    pos = next;
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    std::string value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(' '));
    r.headers[name] = value;
  }
  in.erase(0, end + 4);
  const std::size_t length = head ? 0
                                  : static_cast<std::size_t>(std::strtoull(
                                        r.header("content-length").c_str(), nullptr, 10));
  while (in.size() < length) {
    if (read_some(s, in, left()) <= 0) return std::nullopt;
  }
  r.body = in.substr(0, length);
  in.erase(0, length);
  if (leftover != nullptr) *leftover = std::move(in);
  if (r.header("connection") == "close") {
    std::string tail;
    r.closed = read_some(s, tail, left()) == 0;
  }
  return r;
}

// Reads until the server closes the connection or `timeout` passes; true when it closed.
inline bool wait_closed(const Socket& s, std::chrono::milliseconds timeout,
                        std::string* got = nullptr) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string sink;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    const long n = read_some(s, got != nullptr ? *got : sink, left);
    if (n == 0 || n == -2) return true;
    if (n < 0) return false;
  }
}

// One request on a fresh connection: `raw` is sent as is.
inline std::optional<RawResponse> roundtrip(int port, std::string_view raw, bool head = false,
                                            const std::string& host = "127.0.0.1") {
  const Socket s = connect_to(host, port);
  if (!send_all(s, raw)) return std::nullopt;
  return read_response(s, head);
}

inline std::string get_request(std::string_view path, std::string_view extra_headers = {},
                               std::string_view method = "GET") {
  return fmt::format("{} {} HTTP/1.1\r\nHost: localhost\r\n{}Connection: close\r\n\r\n", method,
                     path, extra_headers);
}

}  // namespace stallscope::test
