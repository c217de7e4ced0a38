#pragma once
/// Configuration of the Agent (the embedded endpoint), from code or the environment.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

namespace stallscope {

struct AgentOptions {
  /// "HOST:PORT" with HOST an IPv4 address, "localhost" or "[IPv6]"; PORT 0 picks a free port.
  std::string listen = "127.0.0.1:9464";
  /// false: the Agent serves nothing (wrappers still record).
  bool enabled = true;
  /// Threads that render responses (and compress them); 1 to 64. Connections themselves are all
  /// served by one I/O thread, so idle or slow clients cost no thread.
  int http_threads = 2;
  /// Open connections at most (1 to 100000). At the cap, the connection that has waited longest
  /// for its request is closed to make room.
  std::size_t max_connections = 1024;
  /// A request's head (and the TLS handshake) must arrive within this time of the connection,
  /// or of the previous response on a kept-alive connection; otherwise it is closed.
  std::chrono::milliseconds request_timeout = std::chrono::seconds(10);
  /// What a failure to serve does: false (default) logs it and the Agent runs without an
  /// endpoint; true throws std::system_error naming the address.
  bool throw_on_error = false;
  /// The Agent runs a Watchdog (see watchdog.hpp) reporting task slices that run longer than
  /// this; 0 runs none. STALLSCOPE_WATCHDOG_MS overrides it.
  std::chrono::nanoseconds watchdog_threshold = std::chrono::milliseconds(100);
  /// A web configuration file in the Prometheus exporter-toolkit format (TLS certificate and
  /// key, basic-auth users with bcrypt hashes); empty: plain HTTP, no authentication. A file
  /// that cannot be loaded keeps the endpoint from starting (it never falls back to serving
  /// without the security it asks for).
  std::string web_config_file{};

  /// Defaults overridden by STALLSCOPE_LISTEN=HOST:PORT, STALLSCOPE_AGENT=0|1,
  /// STALLSCOPE_WATCHDOG_MS=<0..3600000> and STALLSCOPE_WEB_CONFIG=<file>. Each variable is
  /// read on its own: a bad value is logged (see set_log_sink) naming the variable and the value,
  /// and that field keeps its default. Never throws.
  static AgentOptions from_env();
};

struct ListenAddress {
  std::string host;  // "127.0.0.1" or "[::1]" (IPv6 in brackets)
  std::uint16_t port = 0;
};

/// Parses "HOST:PORT"; throws std::invalid_argument naming `text` when it is not one.
ListenAddress parse_listen_address(const std::string& text);

}  // namespace stallscope
