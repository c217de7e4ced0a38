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
//  task_dump/N         stallscope::dump_tasks() of N live tasks (half waiting on an AsyncMutex,
//                      half of those in a TaskGroup; a quarter suspended on a timer, a quarter
//                      queued); task_dump_first200 the same cut at the 200 the page shows
//  task_render_*/N     /stallz/tasks.json and /stallz/tasks rendered from one such dump
//  task_dump_spawn_stall/N  a task's spawn + exit on another thread while N tasks are dumped,
//                      and without dumps (what the dump's lock holds cost a task)
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
#include <algorithm>

#include <boost/asio/steady_timer.hpp>
#include <stallscope/cancellation.hpp>
#include <stallscope/stallz_tasks.hpp>
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
// N live tasks: half wait on an AsyncMutex (half of those children of a TaskGroup, so they have
// a group and a token path), a quarter sleep on a timer, a quarter are queued on an io_context
// that never runs. Torn down (the waits aborted) when it goes.
class DumpPopulation {
 public:
  explicit DumpPopulation(std::size_t n)
      : lock_("bench-dump-lock"),
        token_("bench-dump"),
        group_(io_.get_executor(), "bench-dump-group", token_) {
    ok_ = lock_.try_lock();
    for (std::size_t i = 0; i < n; ++i) {
      if (i % 4 == 0) {
        stallscope::spawn(
            io_.get_executor(), "bench-dump-waiter",
            [this]() -> asio::awaitable<void> { co_await lock_.async_lock(asio::use_awaitable); },
            asio::detached);
      } else if (i % 4 == 2) {
        group_.spawn("bench-dump-group-waiter", [this]() -> asio::awaitable<void> {
          co_await lock_.async_lock(asio::use_awaitable);
        });
      } else if (i % 4 == 1) {
        stallscope::spawn(
            io_.get_executor(), "bench-dump-sleeper",
            []() -> asio::awaitable<void> {
              asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::hours(1));
              co_await t.async_wait(asio::use_awaitable);
            },
            asio::detached);
      } else {
        stallscope::spawn(
            never_run_.get_executor(), "bench-dump-queued",
            []() -> asio::awaitable<void> { co_return; }, asio::detached);
      }
    }
    while (io_.poll() != 0) {
    }
  }
  ~DumpPopulation() {
    token_.cancel();
    io_.stop();
  }
  DumpPopulation(const DumpPopulation&) = delete;
  DumpPopulation& operator=(const DumpPopulation&) = delete;
  bool ok() const { return ok_; }

 private:
  asio::io_context never_run_;
  asio::io_context io_{1};
  stallscope::AsyncMutex lock_;
  stallscope::CancellationToken token_;
  stallscope::TaskGroup<asio::io_context::executor_type> group_;
  bool ok_ = false;
};

// The longest a dump held one registry shard's lock, where the tree reports it.
template <class Dump>
double lock_hold_seconds(const Dump& d) {
  if constexpr (requires { d.max_lock_hold_seconds; }) {
    return d.max_lock_hold_seconds;
  } else {
    return -1;
  }
}

// A filter asking for the first `n` tasks only, where the tree has limits; else every task.
template <class Filter = stallscope::TaskFilter>  // a template: `limit` may not exist
Filter first(std::size_t n) {
  Filter f;
  if constexpr (requires { f.limit; }) f.limit = n;
  return f;
}

// dump_tasks() alone. lock_hold_us: the longest a dump held one shard's lock, the median over
// the run's dumps (a typical dump's longest hold) and the longest of all (on a loaded machine,
// a dump preempted while it holds a lock).
void BM_task_dump(benchmark::State& state, std::size_t limit) {
  const DumpPopulation tasks(static_cast<std::size_t>(state.range(0)));
  if (!tasks.ok()) state.SkipWithError("the lock is taken");
  std::size_t seen = 0;
  std::vector<double> holds;
  const stallscope::TaskFilter f = first(limit);
  for (auto _ : state) {
    const stallscope::TaskDump d = stallscope::dump_tasks(f);
    seen = d.live;
    holds.push_back(lock_hold_seconds(d));
    benchmark::DoNotOptimize(d.tasks.data());
  }
  state.counters["tasks"] = static_cast<double>(seen);
  if (!holds.empty() && holds[0] >= 0) {
    std::sort(holds.begin(), holds.end());
    state.counters["lock_hold_p50_us"] = holds[holds.size() / 2] * 1e6;
    state.counters["lock_hold_max_us"] = holds.back() * 1e6;
  }
}
BENCHMARK_CAPTURE(BM_task_dump, all, 0)
    ->Name("task_dump")
    ->Arg(1000)
    ->Arg(10000)
    ->Unit(benchmark::kMicrosecond);
// What /stallz/tasks asks for: the first 200 (kStallzTaskRows) in order.
BENCHMARK_CAPTURE(BM_task_dump, first200, 200)
    ->Name("task_dump_first200")
    ->Arg(10000)
    ->Unit(benchmark::kMicrosecond);

// Rendering one dump of every task (taken once, outside the timing): the JSON, and the page
// (which lists the first 200 rows).
template <bool kJson>
void BM_task_render(benchmark::State& state) {
  const DumpPopulation tasks(static_cast<std::size_t>(state.range(0)));
  const stallscope::TaskDump d = stallscope::dump_tasks();
  const stallscope::TaskFilter f;
  std::size_t bytes = 0;
  for (auto _ : state) {
    const std::string body =
        kJson ? stallscope::stallz_tasks_json(d, f) : stallscope::stallz_tasks_html(d, f);
    bytes = body.size();
    benchmark::DoNotOptimize(body.data());
  }
  state.counters["bytes"] = static_cast<double>(bytes);
}
BENCHMARK(BM_task_render<true>)
    ->Name("task_render_json")
    ->Arg(10000)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_task_render<false>)
    ->Name("task_render_html")
    ->Arg(10000)
    ->Unit(benchmark::kMicrosecond);

// How long a task's spawn and exit wait while dumps of N tasks run on another thread: a second
// thread spawns tasks that return at once and runs each to its end (the spawn and the exit each
// take the task's registry shard's lock; the thread's tasks land in one shard, the dumps walk all
// 16), timing every round. Reported as the longest and the 99.9th percentile round, with dumps
// running ("dumping_") and, in the same run, for as long again without ("quiet_"); the
// difference is what the dumps' lock holds cost a task (on a loaded machine the longest also
// catches the spawner being preempted).
struct RoundTimes {
  std::vector<std::uint64_t> per_us = std::vector<std::uint64_t>(10'001);  // the last: longer
  std::uint64_t n = 0;
  std::int64_t max_ns = 0;

  void add(std::int64_t ns) {
    ++per_us[std::min<std::size_t>(static_cast<std::size_t>(ns / 1000), per_us.size() - 1)];
    ++n;
    max_ns = std::max(max_ns, ns);
  }
  double quantile_us(double q) const {
    const auto want = static_cast<std::uint64_t>(q * static_cast<double>(n));
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < per_us.size(); ++i) {
      seen += per_us[i];
      if (seen > want) return static_cast<double>(i + 1);  // the bucket's upper bound
    }
    return static_cast<double>(max_ns) * 1e-3;
  }
  void report(benchmark::State& s, const std::string& prefix) const {
    s.counters[prefix + "rounds"] = static_cast<double>(n);
    s.counters[prefix + "round_p999_us"] = quantile_us(0.999);
    s.counters[prefix + "round_max_us"] = static_cast<double>(max_ns) * 1e-3;
  }
};

RoundTimes spawn_rounds(const std::atomic<bool>& stop) {
  RoundTimes out;
  asio::io_context io(1);
  while (!stop.load(std::memory_order_relaxed)) {
    const auto t0 = std::chrono::steady_clock::now();
    stallscope::spawn(
        io.get_executor(), "bench-dump-spawner", []() -> asio::awaitable<void> { co_return; },
        asio::detached);
    io.run();
    io.restart();
    const auto t1 = std::chrono::steady_clock::now();
    out.add(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count());
  }
  return out;
}

void BM_task_dump_spawn_stall(benchmark::State& state) {
  const DumpPopulation tasks(static_cast<std::size_t>(state.range(0)));
  std::atomic<bool> stop{false};
  RoundTimes dumping;
  std::thread spawner([&] { dumping = spawn_rounds(stop); });
  double hold = 0;
  const auto started = std::chrono::steady_clock::now();
  for (auto _ : state) {
    const stallscope::TaskDump d = stallscope::dump_tasks();
    hold = std::max(hold, lock_hold_seconds(d));
    benchmark::DoNotOptimize(d.tasks.data());
  }
  const auto took = std::chrono::steady_clock::now() - started;
  stop = true;
  spawner.join();
  std::atomic<bool> stop_quiet{false};
  std::thread timer([&] {
    std::this_thread::sleep_for(took);
    stop_quiet = true;
  });
  const RoundTimes quiet = spawn_rounds(stop_quiet);
  timer.join();
  dumping.report(state, "dumping_");
  quiet.report(state, "quiet_");
  if (hold >= 0) state.counters["lock_hold_max_us"] = hold * 1e6;
}
BENCHMARK(BM_task_dump_spawn_stall)
    ->Name("task_dump_spawn_stall")
    ->Arg(10000)
    ->Unit(benchmark::kMicrosecond)
    ->Iterations(200)
    ->UseRealTime();
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
