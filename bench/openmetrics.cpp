// OpenMetrics against the text format, and what an exemplar costs a contended wait.
//
//   build/release/bench/stallscope-bench-openmetrics --benchmark_repetitions=9
//     --benchmark_report_aggregates_only=true --benchmark_enable_random_interleaving=true
//   (one command line)
//
// Setup: 1,000 stallscope::Mutex with distinct names, each locked once (as bench/scrape.cpp), and
// 1,000 more ("traced-0000" ...) that each had one contended wait under a trace id and a task
// name, so that each of those carries one exemplar. Timed, in one run:
//   scrape_text          what GET /metrics costs in the text format: Collectable{}.Collect() +
//                        detail::write_text (stallz_endpoint.cpp's path)
//   scrape_openmetrics   the same in OpenMetrics: collect_families() with exemplars wanted +
//                        detail::write_openmetrics
// Both over the same 2,000 lock series; counters: bytes and exemplars in the output.
//   wait_record          WaitHistogramCells::record(ns): what a contended wait recorded before
//   wait_record_exemplar_none   record_wait(ns, t) with neither a task nor a provider (a thread
//                        outside instrumented executors, no tracing): the check that finds
//                        nothing to keep
//   wait_record_exemplar_task   record_wait inside a task slice, no provider: the slot write
//   wait_record_exemplar_trace  record_wait inside a task slice with a provider that copies a
//                        32-character id (what the README's OpenTelemetry provider does, minus
//                        OpenTelemetry's own lookup of the current span)
#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include "cells_alloc.hpp"
#include "stallscope/buckets.hpp"
#include "stallscope/clock.hpp"
#include "stallscope/detail/cells.hpp"
#include "stallscope/detail/histogram.hpp"
#include "stallscope/detail/slice.hpp"
#include "stallscope/detail/task_recorder.hpp"
#include "stallscope/mutex.hpp"
#include "stallscope/prometheus.hpp"
#include "stallscope/registry.hpp"
#include "stallscope/trace.hpp"
#include "text_format.hpp"

namespace {

constexpr int kLocks = 1000;

std::size_t trace_id(std::span<char, stallscope::kMaxTraceIdLength> out) {
  std::memcpy(out.data(), "4bf92f3577b34da6a3ce929d0e0e4736", 32);
  return 32;
}

// Runs `fn` as if inside a slice of the task `name`.
template <class Fn>
void in_task(const char* name, Fn fn) {
  stallscope::detail::SliceContext ctx;
  ctx.series = stallscope::detail::task_series(name);
  stallscope::detail::tls_slice = &ctx;
  fn();
  stallscope::detail::tls_slice = nullptr;
}

void setup() {
  static std::vector<std::unique_ptr<stallscope::Mutex>> locks;
  for (int i = 0; i < kLocks; ++i) {
    locks.push_back(std::make_unique<stallscope::Mutex>(fmt::format("lock-{:04}", i)));
    std::lock_guard g(*locks.back());
  }
  stallscope::set_trace_id_provider(trace_id);
  for (int i = 0; i < kLocks; ++i) {
    locks.push_back(std::make_unique<stallscope::Mutex>(fmt::format("traced-{:04}", i)));
    stallscope::Mutex& m = *locks.back();
    std::unique_lock held(m);
    std::atomic<bool> ready{false};
    std::thread waiter([&] {
      in_task("bench-task", [&] {
        ready = true;
        std::lock_guard g(m);
      });
    });
    while (!ready) std::this_thread::yield();
    // Set-up, not a measurement: long enough for the waiter to block in most rounds; the
    // "exemplars" counter of scrape_openmetrics says how many did.
    std::this_thread::sleep_for(std::chrono::microseconds(300));
    held.unlock();
    waiter.join();
  }
  stallscope::set_trace_id_provider(nullptr);
}

std::size_t count(const std::string& text, std::string_view what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

void scrape_text(benchmark::State& state) {
  std::string text;
  for (auto _ : state) {
    text = stallscope::detail::write_text(stallscope::Collectable{}.Collect());
    benchmark::DoNotOptimize(text.data());
  }
  state.counters["bytes"] = static_cast<double>(text.size());
  state.counters["exemplars"] = static_cast<double>(count(text, " # {"));
}

void scrape_openmetrics(benchmark::State& state) {
  std::string text;
  for (auto _ : state) {
    const stallscope::detail::ExemplarsWanted wanted;
    text = stallscope::detail::write_openmetrics(
        stallscope::detail::collect_families(stallscope::Registry::global()));
    benchmark::DoNotOptimize(text.data());
  }
  state.counters["bytes"] = static_cast<double>(text.size());
  state.counters["exemplars"] = static_cast<double>(count(text, " # {"));
}

// One histogram of the latency buckets on cells of its own, as a lock series' wait.
const stallscope::detail::WaitHistogramCells& histogram() {
  static const auto* const h = [] {
    auto* out = new stallscope::detail::WaitHistogramCells;
    const auto& layout = stallscope::detail::shared_layout(stallscope::Buckets::latency());
    out->layout = &layout;
    out->base = stallscope::detail::cell_allocator().allocate(layout.cells());
    return out;
  }();
  return *h;
}

// Waits of 2 us to 5 ms, spread over the buckets.
std::int64_t duration(std::uint64_t i) {
  static const auto* const v = [] {
    auto* out = new std::vector<std::int64_t>;
    std::uint64_t x = 88172645463325252ull;
    for (int k = 0; k < 1024; ++k) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      out->push_back(2000 + static_cast<std::int64_t>(x % 5'000'000));
    }
    return out;
  }();
  return (*v)[i & 1023];
}

void wait_record(benchmark::State& state) {
  const auto& h = histogram();
  std::uint64_t i = 0;
  for (auto _ : state) h.record(duration(i++));
}

void wait_record_exemplar_none(benchmark::State& state) {
  const auto& h = histogram();
  std::uint64_t i = 0;
  const std::int64_t t = stallscope::now_ns();
  for (auto _ : state) h.record_wait(duration(i++), t);
}

void wait_record_exemplar_task(benchmark::State& state) {
  const auto& h = histogram();
  std::uint64_t i = 0;
  const std::int64_t t = stallscope::now_ns();
  in_task("bench-task", [&] {
    for (auto _ : state) h.record_wait(duration(i++), t);
  });
}

void wait_record_exemplar_trace(benchmark::State& state) {
  const auto& h = histogram();
  std::uint64_t i = 0;
  const std::int64_t t = stallscope::now_ns();
  stallscope::set_trace_id_provider(trace_id);
  in_task("bench-task", [&] {
    for (auto _ : state) h.record_wait(duration(i++), t);
  });
  stallscope::set_trace_id_provider(nullptr);
}

}  // namespace

BENCHMARK(scrape_text)->Unit(benchmark::kMillisecond);
BENCHMARK(scrape_openmetrics)->Unit(benchmark::kMillisecond);
BENCHMARK(wait_record);
BENCHMARK(wait_record_exemplar_none);
BENCHMARK(wait_record_exemplar_task);
BENCHMARK(wait_record_exemplar_trace);

int main(int argc, char** argv) {
  setup();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
