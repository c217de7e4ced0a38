#pragma once
/// The embedded endpoint that serves stallscope's metrics.

#include <memory>
#include <string>

#include "stallscope/agent_options.hpp"

namespace prometheus {
class Exposer;
}

namespace stallscope {

class Collectable;
class Watchdog;
namespace detail {
class StallzEndpoint;
}

/// The embedded endpoint: serves /metrics (prometheus-cpp Exposer on CivetWeb), and the /stallz
/// status page (HTML at /stallz, the same data at /stallz.json; see stallscope/stallz.hpp).
/// While listening, a sampler thread reads the registry once a second for the page's stall
/// scores (Registry::collect(): no lock that user code can hold; about 1.2 ms a second with
/// 1,000 named resources at -O2, 0.1% of a core).
///
/// `Agent agent;` reads AgentOptions::from_env(). A bad environment value or an address that
/// cannot be bound is logged (see set_log_sink) and the Agent runs without an endpoint, unless
/// options.throw_on_error: then the constructor throws std::invalid_argument (bad address) or
/// std::system_error (cannot bind), naming the address. Wrappers record with or without an
/// Agent. Destruction stops the sampler at once, then the server (CivetWeb joins its threads:
/// 0.5-2 s). Not thread-safe to destroy while another thread calls its members.
class Agent final {
 public:
  Agent();
  explicit Agent(AgentOptions options);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  /// True when /metrics is being served.
  bool listening() const noexcept { return exposer_ != nullptr; }
  /// The bound port (the real one when 0 was asked), 0 when not listening.
  int port() const noexcept { return port_; }
  /// "http://HOST:PORT/metrics", empty when not listening.
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
  std::string error_;
  std::shared_ptr<Collectable> collectable_;
  std::unique_ptr<detail::StallzEndpoint> stallz_;
  std::unique_ptr<prometheus::Exposer> exposer_;  // destroyed before stallz_ (see ~Agent)
  std::unique_ptr<Watchdog> watchdog_;
};

}  // namespace stallscope
