#pragma once
// The HTTP side of /stallz: CivetWeb callbacks that serve /stallz and /stallz.json next to
// prometheus-cpp's /metrics, and the sampler thread that feeds the stall-score window.
//
// Routing: CivetWeb callbacks are plain function pointers and the server's user data belongs to
// CivetServer, so a process-wide table maps each server's mg_context to the StallzSource it
// serves. init_context (run by mg_start on the thread constructing the server, before any
// request can arrive) adds the entry for the source being started on that thread; exit_context
// (run by mg_stop after the server's threads have stopped, before the context is freed) and the
// endpoint's destructor remove it. A request copies the source's shared_ptr under the table's
// mutex and renders with no lock held, so the source outlives every request that uses it.
#include <CivetServer.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <stop_token>
#include <thread>
#include <utility>

#include "stallscope/registry.hpp"

namespace stallscope::detail {

struct StallzSource;

class StallzEndpoint final {
 public:
  static constexpr std::chrono::seconds kSampleInterval{1};

  explicit StallzEndpoint(const Registry& registry);
  // Stops the sampler and removes the routes to this endpoint. Destroy the server first.
  ~StallzEndpoint();
  StallzEndpoint(const StallzEndpoint&) = delete;
  StallzEndpoint& operator=(const StallzEndpoint&) = delete;

  // The callbacks to start the CivetWeb server with (prometheus::Exposer passes them through).
  static const CivetCallbacks& callbacks() noexcept;

  // Calls `start`, which starts one CivetWeb server with callbacks() on this thread, so that its
  // requests for /stallz reach this endpoint; returns what `start` returns.
  template <class Start>
  auto serve(Start&& start) {
    const Binding binding(source_);
    return std::forward<Start>(start)();
  }

  // Samples the window now and then every kSampleInterval, from a thread of its own.
  void start_sampler();
  // Stops and joins the sampler promptly (it waits on a condition variable, not a sleep).
  void stop_sampler() noexcept;

 private:
  class Binding {
   public:
    explicit Binding(const std::shared_ptr<const StallzSource>& source) noexcept;
    ~Binding();
    Binding(const Binding&) = delete;
    Binding& operator=(const Binding&) = delete;
  };

  void run(const std::stop_token& stop);

  std::shared_ptr<StallzSource> source_;
  std::mutex mu_;
  std::condition_variable_any cv_;
  std::jthread sampler_;  // last: stopped and joined before the members it uses go
};

}  // namespace stallscope::detail
