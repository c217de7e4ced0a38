#pragma once
/// The embedded endpoint that serves stallscope's metrics.

#include <memory>
#include <string>

#include "stallscope/agent_options.hpp"

namespace stallscope {

class Watchdog;
namespace detail {
class HttpServer;
class StallzEndpoint;
}  // namespace detail

/// The embedded endpoint: /metrics, and the /stallz status page (HTML at /stallz, the same data
/// at /stallz.json; see stallscope/stallz.hpp), served by Boost.Beast from one I/O thread (idle
/// and slow connections cost no thread; limits in AgentOptions) with responses rendered on
/// `http_threads` threads; gzip when asked; HTTPS and basic auth from a web configuration file
/// (README, "Endpoint and security"). A sampler thread reads the registry once a second for the
/// stall scores (no lock user code can hold; about 1.2 ms a second with 1,000 resources).
///
/// `Agent agent;` reads AgentOptions::from_env(), which logs a bad variable and keeps that one
/// at its default. A bad option, a web configuration file that cannot be loaded or an address
/// that cannot be bound is logged (see set_log_sink) and the Agent runs without an endpoint,
/// unless options.throw_on_error: then the constructor throws std::invalid_argument (bad address,
/// value or file) or std::system_error (cannot bind: the system's reason and the address). Wrappers
/// record with or without an Agent. Destruction takes milliseconds (a response being rendered
/// finishes). Not thread-safe to destroy while another thread calls its members.
class Agent final {
 public:
  Agent();
  explicit Agent(AgentOptions options);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  /// True when /metrics is being served.
  bool listening() const noexcept { return server_ != nullptr; }
  /// The bound port (the real one when 0 was asked), 0 when not listening.
  int port() const noexcept { return port_; }
  /// "http://HOST:PORT/metrics" ("https://" with TLS), empty when not listening.
  std::string url() const;
  /// "http://HOST:PORT/stallz", the status page, empty when not listening.
  std::string stallz_url() const;
  /// Why the Agent is not listening ("" when it is, or when disabled).
  const std::string& error() const noexcept { return error_; }

 private:
  void init(const AgentOptions& options);
  void start(const AgentOptions& options);

  std::string host_;
  int port_ = 0;
  bool tls_ = false;
  std::string error_;
  std::unique_ptr<detail::StallzEndpoint> stallz_;
  std::unique_ptr<detail::HttpServer> server_;  // destroyed before stallz_ (see ~Agent)
  std::unique_ptr<Watchdog> watchdog_;
};

}  // namespace stallscope
