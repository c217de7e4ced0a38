// The cost of a retry decision: RetryBudget::deposit() (every request) and try_withdraw() (every
// retry), against the cheapest shared counter a hand-written budget could use, one relaxed
// atomic fetch_add, measured side by side in one run. With 1 and 2 threads on one budget: every
// thread deposits into the current second's bucket, one shared cache line, as tower's budget does.
//
//   build/bench/bench/stallscope-bench-retry --benchmark_repetitions=9
//     --benchmark_report_aggregates_only=true --benchmark_enable_random_interleaving=true
//   (one command line)
#include "stallscope/retry.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>

#include <benchmark/benchmark.h>

namespace {

std::atomic<std::int64_t> g_counter{0};

// Baseline: the shared counter a hand-written token bucket starts from.
void atomic_fetch_add(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(g_counter.fetch_add(1, std::memory_order_relaxed));
}
BENCHMARK(atomic_fetch_add)->Threads(1)->Threads(2)->UseRealTime();

stallscope::RetryBudget& shared_budget() {
  static stallscope::RetryBudget b("bench-deposit");
  return b;
}

// A request: one clock read, one compare-and-swap on the current bucket, one counter cell.
void retry_deposit(benchmark::State& state) {
  stallscope::RetryBudget& b = shared_budget();
  for (auto _ : state) b.deposit();
}
BENCHMARK(retry_deposit)->Threads(1)->Threads(2)->UseRealTime();

// A granted retry: deposit then withdraw (retry_share 1, so every withdrawal is granted), i.e.
// a request that failed once and is retried. ttl 10 s: ten buckets summed per decision.
void retry_deposit_and_withdraw(benchmark::State& state) {
  stallscope::RetryBudget b("bench-granted", {.retry_share = 1});
  for (auto _ : state) {
    b.deposit();
    benchmark::DoNotOptimize(b.try_withdraw());
  }
}
BENCHMARK(retry_deposit_and_withdraw);

// A denied retry (retry_share 0, no floor): the budget is exhausted, the decision is "no".
void retry_denied(benchmark::State& state) {
  stallscope::RetryBudget b(
      "bench-denied",
      {.ttl = std::chrono::seconds(state.range(0)), .min_retries_per_second = 0, .retry_share = 0});
  for (auto _ : state) benchmark::DoNotOptimize(b.try_withdraw());
}
BENCHMARK(retry_denied)->Arg(10)->Arg(60);

}  // namespace

BENCHMARK_MAIN();
