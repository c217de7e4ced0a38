#include "stallscope/agent.hpp"

#include <system_error>

#include <fmt/format.h>
#include <prometheus/exposer.h>

#include "stallscope/log.hpp"
#include "stallscope/prometheus.hpp"

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
  try {
    start(options);
  } catch (const std::exception& e) {
    error_ = e.what();
    exposer_.reset();
    port_ = 0;
    if (options.throw_on_error) throw;
    log(LogLevel::kError, fmt::format("{}; /metrics is not served", error_));
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
  try {
    exposer_ =
        std::make_unique<prometheus::Exposer>(bind, static_cast<std::size_t>(options.http_threads));
  } catch (const std::exception& e) {
    throw std::system_error(
        std::make_error_code(std::errc::address_in_use),
        fmt::format("stallscope: cannot listen on {} ({})", options.listen, e.what()));
  }
  exposer_->RegisterCollectable(collectable_);
  const std::vector<int> ports = exposer_->GetListeningPorts();
  port_ = ports.empty() ? addr.port : ports.front();
}

Agent::~Agent() = default;

std::string Agent::url() const {
  if (!listening()) return {};
  return fmt::format("http://{}:{}/metrics", host_, port_);
}

}  // namespace stallscope
