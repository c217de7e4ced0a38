// The deadlock detector's wait-for graph (agent/src/waitfor.cpp): how long the Watchdog's thread
// spends building and analysing it every 200 ms, with nobody waiting and with 1,000 async-lock
// waiters (tasks) on 1,000 held locks plus 32 threads blocked on 32 held stallscope::Mutexes.
//
//   cmake --build --preset release --target stallscope-bench-deadlock
//   build/release/bench/stallscope-bench-deadlock
//
// The application pays none of this: the build takes no lock a thread of it takes for longer
// than the copy of one queue (each AsyncMutex's own mutex, for its waiters).
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <benchmark/benchmark.h>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "stallscope/cancellation.hpp"
#include "stallscope/detail/waitfor.hpp"
#include "stallscope/mutex.hpp"
#include "stallscope/semaphore.hpp"
#include "stallscope/task.hpp"

namespace asio = boost::asio;

namespace {

void graph_build_idle(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(stallscope::detail::scan_deadlocks());
}

// `waiters` tasks, each queued on its own held AsyncMutex, and `threads` threads each blocked on
// its own held Mutex; then the scan, timed.
void graph_build_waiters(benchmark::State& state) {
  const auto waiters = static_cast<std::size_t>(state.range(0));
  constexpr std::size_t kThreads = 32;
  std::vector<std::unique_ptr<stallscope::AsyncMutex>> async_locks;
  asio::io_context io;
  stallscope::CancellationToken token;
  for (std::size_t i = 0; i < waiters; ++i) {
    async_locks.push_back(std::make_unique<stallscope::AsyncMutex>("bench-dl-async"));
    if (!async_locks.back()->try_lock()) state.SkipWithError("async lock taken");
    stallscope::spawn(
        io.get_executor(), "bench-dl-waiter", token,
        [m = async_locks.back().get()]() -> asio::awaitable<void> {
          auto g = co_await m->async_lock(asio::use_awaitable);
        },
        asio::detached);
  }
  io.poll();  // every task is queued now
  std::vector<std::unique_ptr<stallscope::Mutex>> locks;
  std::vector<std::jthread> blocked;
  std::atomic<std::size_t> started{0};
  for (std::size_t i = 0; i < kThreads; ++i) {
    locks.push_back(std::make_unique<stallscope::Mutex>("bench-dl-lock"));
    locks.back()->lock();
    blocked.emplace_back([m = locks.back().get(), &started] {
      ++started;
      std::lock_guard g(*m);
    });
  }
  while (started.load() < kThreads) std::this_thread::yield();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // all inside lock() by then

  std::size_t nodes = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(stallscope::detail::scan_deadlocks());
  }
  nodes = stallscope::detail::build_waitfor_graph().nodes.size();
  state.counters["participants"] = static_cast<double>(nodes);

  for (auto& m : locks) m->unlock();
  blocked.clear();
  token.cancel();
  io.run();
  for (auto& m : async_locks) m->unlock();
}

}  // namespace

BENCHMARK(graph_build_idle)->Unit(benchmark::kMicrosecond);
BENCHMARK(graph_build_waiters)->Arg(1000)->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
