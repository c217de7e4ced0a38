#include "stallscope/agent.hpp"

#include <system_error>

#include <fmt/format.h>
#include <prometheus/exposer.h>

#include "stallscope/log.hpp"
#include "stallscope/prometheus.hpp"
#include "stallscope/watchdog.hpp"
#include "stallz_endpoint.hpp"

namespace stallscope {

Agent::Agent() : collectable_(make_collectable()) {
  AgentOptions options;
  try {
    options = AgentOptions::from_env();
  } catch (const std::invalid_argument& e) {
    error_ = e.what();
    log(LogLevel::kError, fmt::format("{}; the endpoint is not started", error_));
    return;
  }
  init(options);
}

Agent::Agent(AgentOptions options) : collectable_(make_collectable()) { init(options); }

void Agent::init(const AgentOptions& options) {
  if (!options.enabled) return;
  if (options.watchdog_threshold.count() > 0) {
    try {
      WatchdogOptions w;
      w.threshold = options.watchdog_threshold;
      watchdog_ = std::make_unique<Watchdog>(w);
    } catch (const std::exception& e) {  // a threshold under 1 ms
      if (options.throw_on_error) throw;
      log(LogLevel::kError, fmt::format("{}; no watchdog", e.what()));
    }
  }
  try {
    start(options);
  } catch (const std::exception& e) {
    error_ = e.what();
    exposer_.reset();
    stallz_.reset();
    port_ = 0;
    if (options.throw_on_error) throw;
    log(LogLevel::kError, fmt::format("{}; /metrics and /stallz are not served", error_));
  }
}

void Agent::start(const AgentOptions& options) {
  const ListenAddress addr = parse_listen_address(options.listen);  // invalid_argument
  if (options.http_threads < 1 || options.http_threads > 64) {
    throw std::invalid_argument(fmt::format(
        "stallscope: http_threads = {} is out of range (1 to 64)", options.http_threads));
  }
  host_ = addr.host;
  const std::string bind = fmt::format("{}:{}", addr.host, addr.port);
  stallz_ = std::make_unique<detail::StallzEndpoint>(Registry::global());
  try {
    // The callbacks serve /stallz next to /metrics (prometheus-cpp has no way to add handlers).
    exposer_ = stallz_->serve([&] {
      return std::make_unique<prometheus::Exposer>(bind,
                                                   static_cast<std::size_t>(options.http_threads),
                                                   &detail::StallzEndpoint::callbacks());
    });
  } catch (const std::exception& e) {
    throw std::system_error(
        std::make_error_code(std::errc::address_in_use),
        fmt::format("stallscope: cannot listen on {} ({})", options.listen, e.what()));
  }
  exposer_->RegisterCollectable(collectable_);
  const std::vector<int> ports = exposer_->GetListeningPorts();
  port_ = ports.empty() ? addr.port : ports.front();
  stallz_->start_sampler();
}

Agent::~Agent() {
  if (stallz_) stallz_->stop_sampler();  // prompt: it waits on a condition variable
  exposer_.reset();                      // joins CivetWeb's threads: no request is in flight after
  stallz_.reset();
}

std::string Agent::url() const {
  if (!listening()) return {};
  return fmt::format("http://{}:{}/metrics", host_, port_);
}

std::string Agent::stallz_url() const {
  if (!listening()) return {};
  return fmt::format("http://{}:{}/stallz", host_, port_);
}

}  // namespace stallscope
