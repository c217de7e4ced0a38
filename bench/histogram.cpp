// Histogram record: stallscope's per-thread sharded histogram (detail::HistogramCells::record)
// against prometheus-cpp's Histogram::Observe, with 1 and 2 threads recording into ONE histogram.
//
// Recorded values cycle through 1024 precomputed durations drawn log-uniformly from 100 ns to
// 100 ms (fixed seed), so the bucket index changes unpredictably from one record to the next
// and the branch predictor cannot learn it; each thread starts at a different offset. Both
// sides get the same values (nanoseconds for stallscope, seconds for prometheus-cpp) and the
// same 24 bucket bounds (Buckets::latency()).
#include "stallscope/detail/histogram.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>

#include <benchmark/benchmark.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "cells_alloc.hpp"
#include "stallscope/buckets.hpp"
#include "stallscope/clock.hpp"
#include "threads.hpp"

namespace {

constexpr std::size_t kValues = 1024;

struct Durations {
  std::array<std::int64_t, kValues> ns{};
  std::array<double, kValues> seconds{};
};

const Durations& durations() {
  static const Durations d = [] {
    Durations out;
    std::mt19937_64 rng(20240601);
    std::uniform_real_distribution<double> log_ns(std::log(100.0), std::log(100e6));
    for (std::size_t i = 0; i < kValues; ++i) {
      out.ns[i] = static_cast<std::int64_t>(std::exp(log_ns(rng)));
      out.seconds[i] = static_cast<double>(out.ns[i]) * 1e-9;
    }
    return out;
  }();
  return d;
}

// Built the way agent/src/lock_recorder.cpp builds a series' histograms.
struct StallscopeHistogram {
  stallscope::detail::BucketLayout layout{stallscope::Buckets::latency()};
  stallscope::detail::HistogramCells cells;

  StallscopeHistogram() {
    cells.layout = &layout;
    cells.base = stallscope::detail::cell_allocator().allocate(layout.cells());
  }
};

StallscopeHistogram& stallscope_histogram() {
  static auto* const h = new StallscopeHistogram;
  return *h;
}

prometheus::Histogram& prometheus_histogram() {
  static auto* const registry = new prometheus::Registry;
  static prometheus::Histogram& h = []() -> prometheus::Histogram& {
    auto& family = prometheus::BuildHistogram()
                       .Name("bench_observe_seconds")
                       .Help("Histogram::Observe benchmark.")
                       .Register(*registry);
    const stallscope::Buckets buckets = stallscope::Buckets::latency();
    const auto bounds = buckets.bounds();
    return family.Add({}, prometheus::Histogram::BucketBoundaries(bounds.begin(), bounds.end()));
  }();
  return h;
}

std::size_t start_offset(const benchmark::State& state) {
  return static_cast<std::size_t>(state.thread_index()) * (kValues / 2 + 7);
}

void record_stallscope(benchmark::State& state) {
  const stallscope::detail::HistogramCells& h = stallscope_histogram().cells;
  const auto& ns = durations().ns;
  std::size_t i = start_offset(state);
  for (auto _ : state) {
    h.record(ns[i++ % kValues]);
  }
  state.SetItemsProcessed(state.iterations());
}

void record_prometheus(benchmark::State& state) {
  prometheus::Histogram& h = prometheus_histogram();
  const auto& seconds = durations().seconds;
  std::size_t i = start_offset(state);
  for (auto _ : state) {
    h.Observe(seconds[i++ % kValues]);
  }
  state.SetItemsProcessed(state.iterations());
}

// The clock every recorder reads (a contended wait reads it twice, a task slice three times),
// against steady_clock; `tsc` 1 when stallscope's clock is the TSC, 0 when it fell back to
// steady_clock (no invariant TSC, as in some VMs).
void read_clock_stallscope(benchmark::State& state) {
  stallscope::detail::calibrate_clock();
  for (auto _ : state) benchmark::DoNotOptimize(stallscope::now_ns());
  state.counters["tsc"] =
      stallscope::detail::g_tsc_scale.load(std::memory_order_acquire) != nullptr ? 1 : 0;
}

void read_clock_steady(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(std::chrono::steady_clock::now());
}

}  // namespace

BENCHMARK(read_clock_stallscope);
BENCHMARK(read_clock_steady);

// Real time: per-thread cost is wall time / iterations of one thread (bench.sh computes it).
BENCHMARK(record_stallscope)->Apply(stallscope_bench::threads<1, 2>)->UseRealTime();
BENCHMARK(record_prometheus)->Apply(stallscope_bench::threads<1, 2>)->UseRealTime();

int main(int argc, char** argv) {
  durations();  // outside the timed region
  stallscope_histogram();
  prometheus_histogram();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
