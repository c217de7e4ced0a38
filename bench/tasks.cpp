// Task benchmarks: what the instrumented executor adds to the operations a coroutine does most.
//
//  post_round_trip_*   `co_await post(executor)` in a loop on one io_context thread: plain
//                      co_spawn (baseline) vs stallscope::spawn (a TaskExecutor), and the same
//                      with a stallscope::Watchdog thread polling every 1 ms
//  spawn_*             spawning a coroutine that returns at once and running it to completion:
//                      co_spawn vs stallscope::spawn; on one thread, and on two at once
//  post_n_*/N          N threads run one io_context on which 4N coroutines each loop on
//                      `co_await post`: the executor's throughput (items/s) as threads grow.
//                      Only with STALLSCOPE_BENCH_THREADS (the scaling run), N from it
//  async_lock_handoff  two tasks taking one AsyncMutex in turn, each holding it across a post, so
//                      every lock waits: the contended async wait path (per lock)
//  task_dump/N         stallscope::dump_tasks() of N live tasks (half waiting on an AsyncMutex, a
//                      quarter suspended on a timer, a quarter queued)
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include <benchmark/benchmark.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <stallscope/semaphore.hpp>
#include <stallscope/task.hpp>
#include <stallscope/watchdog.hpp>
#if __has_include(<stallscope/task_dump.hpp>)  // absent before the task dump (for comparisons)
#include <boost/asio/steady_timer.hpp>
#include <stallscope/task_dump.hpp>
#define STALLSCOPE_BENCH_TASK_DUMP 1
#endif

#include "threads.hpp"

namespace asio = boost::asio;

namespace {

asio::awaitable<void> post_loop(benchmark::State& state) {
  auto ex = co_await asio::this_coro::executor;
  for (auto _ : state) co_await asio::post(ex, asio::use_awaitable);
}

void BM_post_round_trip_plain(benchmark::State& state) {
  asio::io_context io(1);
  asio::co_spawn(io, post_loop(state), asio::detached);
  io.run();
}

void BM_post_round_trip_stallscope(benchmark::State& state) {
  asio::io_context io(1);
  stallscope::spawn(io.get_executor(), "bench-post", post_loop(state), asio::detached);
  io.run();
}

void BM_post_round_trip_stallscope_watchdog(benchmark::State& state) {
  stallscope::WatchdogOptions options;
  options.threshold = std::chrono::milliseconds(100);
  options.poll_interval = std::chrono::milliseconds(1);  // the most frequent useful polling
  stallscope::Watchdog dog(options);
  asio::io_context io(1);
  stallscope::spawn(io.get_executor(), "bench-post-watchdog", post_loop(state), asio::detached);
  io.run();
}

void BM_spawn_plain(benchmark::State& state) {
  asio::io_context io(1);
  for (auto _ : state) {
    asio::co_spawn(
        io, []() -> asio::awaitable<void> { co_return; }, asio::detached);
    io.run();
    io.restart();
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_spawn_stallscope(benchmark::State& state) {
  asio::io_context io(1);
  for (auto _ : state) {
    stallscope::spawn(
        io.get_executor(), "bench-spawn", []() -> asio::awaitable<void> { co_return; },
        asio::detached);
    io.run();
    io.restart();
  }
  state.SetItemsProcessed(state.iterations());
}

asio::awaitable<void> handoff_loop(benchmark::State& state, stallscope::AsyncMutex& m, bool& done) {
  auto ex = co_await asio::this_coro::executor;
  while (!done) {
    auto guard = co_await m.async_lock(asio::use_awaitable);
    if (!state.KeepRunning()) done = true;
    co_await asio::post(ex, asio::use_awaitable);  // held across: the other task waits
  }
}

void BM_async_lock_handoff(benchmark::State& state) {
  asio::io_context io(1);
  stallscope::AsyncMutex m("bench-handoff");
  bool done = false;
  // Two tasks, one benchmark State: only the first counts iterations.
  benchmark::State* s = &state;
  stallscope::spawn(io.get_executor(), "bench-handoff-a", handoff_loop(*s, m, done),
                    asio::detached);
  stallscope::spawn(
      io.get_executor(), "bench-handoff-b",
      [&]() -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        while (!done) {
          auto guard = co_await m.async_lock(asio::use_awaitable);
          co_await asio::post(ex, asio::use_awaitable);
        }
      },
      asio::detached);
  io.run();
}

#ifdef STALLSCOPE_BENCH_TASK_DUMP
void BM_task_dump(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  asio::io_context never_run;
  asio::io_context io(1);
  {
    stallscope::AsyncMutex m("bench-dump-lock");
    if (!m.try_lock()) state.SkipWithError("the lock is taken");
    for (std::size_t i = 0; i < n; ++i) {
      if (i % 2 == 0) {
        stallscope::spawn(
            io.get_executor(), "bench-dump-waiter",
            [&]() -> asio::awaitable<void> { co_await m.async_lock(asio::use_awaitable); },
            asio::detached);
      } else if (i % 4 == 1) {
        stallscope::spawn(
            io.get_executor(), "bench-dump-sleeper",
            []() -> asio::awaitable<void> {
              asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::hours(1));
              co_await t.async_wait(asio::use_awaitable);
            },
            asio::detached);
      } else {
        stallscope::spawn(
            never_run.get_executor(), "bench-dump-queued",
            []() -> asio::awaitable<void> { co_return; }, asio::detached);
      }
    }
    while (io.poll() != 0) {
    }
    std::size_t seen = 0;
    for (auto _ : state) {
      const stallscope::TaskDump d = stallscope::dump_tasks();
      seen = d.live;
      benchmark::DoNotOptimize(d.tasks.data());
    }
    state.counters["tasks"] = static_cast<double>(seen);
  }
  io.poll();
}
BENCHMARK(BM_task_dump)->Name("task_dump")->Arg(1000)->Arg(10000)->Unit(benchmark::kMicrosecond);
#endif

BENCHMARK(BM_post_round_trip_plain)->Name("post_round_trip_plain");
BENCHMARK(BM_post_round_trip_stallscope)->Name("post_round_trip_stallscope");
BENCHMARK(BM_post_round_trip_stallscope_watchdog)->Name("post_round_trip_stallscope_watchdog");
BENCHMARK(BM_spawn_plain)->Name("spawn_plain");
BENCHMARK(BM_spawn_stallscope)->Name("spawn_stallscope");
BENCHMARK(BM_async_lock_handoff)->Name("async_lock_handoff");
// Two threads spawning at once, each on its own io_context: what the two share is stallscope's
// (the task name's series), so this shows whether spawning contends.
BENCHMARK(BM_spawn_plain)->Name("spawn_plain")->Apply(stallscope_bench::threads<2>)->UseRealTime();
BENCHMARK(BM_spawn_stallscope)
    ->Name("spawn_stallscope")
    ->Apply(stallscope_bench::threads<2>)
    ->UseRealTime();

constexpr int kPostsPerCoroutine = 20'000;

asio::awaitable<void> posts(std::atomic<std::int64_t>& done) {
  auto ex = co_await asio::this_coro::executor;
  for (int i = 0; i < kPostsPerCoroutine; ++i) co_await asio::post(ex, asio::use_awaitable);
  done += kPostsPerCoroutine;
}

// `instrumented`: the coroutines are stallscope tasks (one name), else plain co_spawn.
void post_n(benchmark::State& state, bool instrumented) {
  const int n = static_cast<int>(state.range(0));
  const int coroutines = 4 * n;
  for (auto _ : state) {
    asio::io_context io(n);
    std::atomic<std::int64_t> done{0};
    for (int c = 0; c < coroutines; ++c) {
      if (instrumented) {
        stallscope::spawn(io.get_executor(), "bench-post-n", posts(done), asio::detached);
      } else {
        asio::co_spawn(io, posts(done), asio::detached);
      }
    }
    std::vector<std::thread> pool;
    for (int t = 1; t < n; ++t) pool.emplace_back([&] { io.run(); });
    io.run();
    for (auto& t : pool) t.join();
    benchmark::DoNotOptimize(done.load());
  }
  state.SetItemsProcessed(state.iterations() * coroutines * kPostsPerCoroutine);
}

const bool kScalingRegistered = [] {
  if (stallscope_bench::scaling_threads().empty()) return false;
  for (const bool instrumented : {false, true}) {
    const std::string name = instrumented ? "post_n_stallscope" : "post_n_plain";
    benchmark::RegisterBenchmark(name.c_str(), post_n, instrumented)
        ->Apply(stallscope_bench::thread_args)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  }
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
