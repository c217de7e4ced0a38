#include "stallscope/agent.hpp"

#include <arpa/inet.h>

#include <stdexcept>
#include <system_error>

#include <fmt/format.h>

#include "http_server.hpp"
#include "stallscope/log.hpp"
#include "stallscope/watchdog.hpp"
#include "stallz_endpoint.hpp"
#include "web_config.hpp"

namespace stallscope {

namespace {

// The web configuration named by the options (STALLSCOPE_WEB_CONFIG), none when unset.
detail::WebConfig web_config_of(const AgentOptions& options) {
  if (options.web_config_file.empty()) return {};
  return detail::load_web_config(options.web_config_file);
}

bool is_loopback(const std::string& host) {
  unsigned char buf[16];
  if (host.size() > 2 && host.front() == '[') {
    return host == "[::1]";
  }
  return inet_pton(AF_INET, host.c_str(), buf) == 1 && buf[0] == 127;
}

}  // namespace

Agent::Agent() { init(AgentOptions::from_env()); }  // from_env logs a bad variable, never throws

Agent::Agent(AgentOptions options) { init(options); }

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
    server_.reset();
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
  if (options.max_connections < 1 || options.max_connections > 100'000) {
    throw std::invalid_argument(fmt::format(
        "stallscope: max_connections = {} is out of range (1 to 100000)", options.max_connections));
  }
  if (options.request_timeout < std::chrono::milliseconds(1) ||
      options.request_timeout > std::chrono::hours(1)) {
    throw std::invalid_argument(
        fmt::format("stallscope: request_timeout = {} ms is out of range (1 ms to 1 h)",
                    options.request_timeout.count()));
  }
  detail::WebConfig web = web_config_of(options);  // invalid_argument naming the file
  const bool auth = web.requires_auth();
  tls_ = web.tls.has_value();
  host_ = addr.host;

  detail::HttpServerOptions http;
  http.worker_threads = options.http_threads;
  http.max_connections = options.max_connections;
  http.request_timeout = options.request_timeout;
  stallz_ = std::make_unique<detail::StallzEndpoint>(Registry::global());
  server_ = std::make_unique<detail::HttpServer>(addr, http, std::move(web),
                                                 detail::StallzEndpoint::paths(),
                                                 stallz_->handler());  // system_error
  port_ = server_->port();
  stallz_->set_origin(fmt::format("{}://{}:{}", tls_ ? "https" : "http", host_, port_));
  stallz_->start_sampler();

  if (!is_loopback(addr.host)) {
    if (!auth) {
      log(LogLevel::kWarning,
          fmt::format("stallscope: serving /metrics and /stallz on {} without authentication: "
                      "anyone who can reach it can read them (lock it down with a web "
                      "configuration file: README, \"Endpoint and security\")",
                      options.listen));
    } else if (!tls_) {
      log(LogLevel::kWarning,
          fmt::format("stallscope: basic auth on {} without TLS: passwords cross the network in "
                      "clear text (add tls_server_config to the web configuration)",
                      options.listen));
    }
  }
}

Agent::~Agent() {
  if (stallz_) stallz_->stop_sampler();  // prompt: it waits on a condition variable
  server_.reset();  // closes every connection and joins the server's threads (milliseconds)
  stallz_.reset();
}

std::string Agent::url() const {
  if (!listening()) return {};
  return fmt::format("{}://{}:{}/metrics", tls_ ? "https" : "http", host_, port_);
}

std::string Agent::stallz_url() const {
  if (!listening()) return {};
  return fmt::format("{}://{}:{}/stallz", tls_ ? "https" : "http", host_, port_);
}

}  // namespace stallscope
