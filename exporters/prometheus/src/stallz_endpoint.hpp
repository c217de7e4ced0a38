#pragma once
// What the Agent's endpoint serves, without the HTTP: /metrics (stallscope's Collectable written
// by detail::write_text), /stallz and /stallz.json (stallz.hpp's report), and the sampler thread
// that feeds the stall-score window once a second. HttpServer (http_server.hpp) routes to it.
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "http_server.hpp"
#include "stallscope/registry.hpp"

namespace stallscope::detail {

struct StallzSource;

class StallzEndpoint final {
 public:
  static constexpr std::chrono::seconds kSampleInterval{1};

  explicit StallzEndpoint(const Registry& registry);
  // Stops the sampler. Destroy the server that calls handler() first.
  ~StallzEndpoint();
  StallzEndpoint(const StallzEndpoint&) = delete;
  StallzEndpoint& operator=(const StallzEndpoint&) = delete;

  // The paths served: /metrics, /stallz, /stallz.json, /stallz/map, /stallz/map.json,
  // /stallz/tasks, /stallz/tasks.json, /stallz/sites, /stallz/sites.json,
  // /debug/pprof/{mutex,block}.
  static std::vector<std::string> paths();
  // Renders the response for one of paths() (with its query string, if any); /metrics in the
  // format that `accept` (an Accept header) negotiates (metrics_format.hpp). Thread-safe; takes no
  // lock that user code can hold.
  HttpReply render(std::string_view path, std::string_view accept = {}) const;
  // A handler for HttpServer that calls render(); it shares the data it renders, so it may
  // outlive this object.
  HttpHandler handler() const;

  // Where the endpoint is reached ("http://127.0.0.1:9464"), for the command lines that
  // /stallz/sites shows. Thread-safe.
  void set_origin(std::string origin);

  // Samples the window now and then every kSampleInterval, from a thread of its own.
  void start_sampler();
  // Stops and joins the sampler promptly (it waits on a condition variable, not a sleep).
  void stop_sampler() noexcept;

 private:
  void run(const std::stop_token& stop);

  std::shared_ptr<StallzSource> source_;
  std::mutex mu_;
  std::condition_variable_any cv_;
  std::jthread sampler_;  // last: stopped and joined before the members it uses go
};

}  // namespace stallscope::detail
