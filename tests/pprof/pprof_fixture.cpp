// A program with known contention for pprof_test.mjs: a scripted two-thread schedule (one slow
// holder, one waiter), busy contention on one lock from four threads, a coroutine that waits on
// an AsyncMutex, then a deadlock of two threads and a task stalled on a Semaphore. It serves the
// Agent on a free loopback port, prints {"port": N} and keeps the deadlock until its standard input
// closes. The sampling rate comes from STALLSCOPE_PROFILE_RATE.
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string_view>
#include <thread>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "stallscope/agent.hpp"
#include "stallscope/mutex.hpp"
#include "stallscope/profile.hpp"
#include "stallscope/registry.hpp"
#include "stallscope/semaphore.hpp"
#include "stallscope/task.hpp"

namespace {

stallscope::Mutex blame_mu{"pprof-blame"};
stallscope::Mutex busy_mu{"pprof-busy"};
stallscope::Mutex dl1{"pprof-dl-1"};
stallscope::Mutex dl2{"pprof-dl-2"};
stallscope::AsyncMutex async_mu{"pprof-async"};
stallscope::AsyncMutex co_mu{"pprof-async-co"};
stallscope::Semaphore stall_sem{"pprof-stall-sem", 1};

// Whether `n` threads or tasks queue on the permit primitive `resource` (its waiters gauge).
bool queued_on(std::string_view resource, double n) {
  for (const auto& f : stallscope::Registry::global().collect()) {
    if (f.name != "stallscope_waiters") continue;
    for (const auto& s : f.samples) {
      for (const auto& [k, v] : s.labels) {
        if (k == "resource" && v == resource && s.value >= n) return true;
      }
    }
  }
  return false;
}

// Whether a wait on `resource` is in progress now (the profile's own view of it).
bool waiting_on(std::string_view resource, std::size_t n) {
  std::size_t found = 0;
  for (const auto& s : stallscope::profile_samples(stallscope::ProfileType::kBlock)) {
    if (s.in_progress && s.resource == resource) ++found;
  }
  return found >= n;
}

void poll_until(std::string_view resource, std::size_t n) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!waiting_on(resource, n)) {
    if (std::chrono::steady_clock::now() > deadline) {
      std::fprintf(stderr, "fixture: no wait on %.*s showed\n", static_cast<int>(resource.size()),
                   resource.data());
      std::exit(1);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

}  // namespace

// Outside any namespace and not inlined: the test looks for these names at the top of stacks.
[[gnu::noinline]] void pprof_blocked_waiter() { std::lock_guard lock(blame_mu); }

[[gnu::noinline]] void pprof_slow_holder() {
  std::thread waiter;
  {
    std::lock_guard lock(blame_mu);
    waiter = std::thread(pprof_blocked_waiter);
    poll_until("pprof-blame", 1);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }  // the release that kept the waiter waiting: blamed on this function
  waiter.join();
}

[[gnu::noinline]] void pprof_async_waiter() {
  async_mu.lock();
  async_mu.unlock();
}

// An AsyncMutex locked from a thread: its release hands the permit to the queued waiter, and the
// profile blames this function with that wait.
// Returns 20 ms after a waiter queued on `resource` (its stallscope_waiters gauge).
void hold_once_queued(std::string_view resource) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!queued_on(resource, 1)) {
    if (std::chrono::steady_clock::now() > deadline) std::exit(1);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
}

[[gnu::noinline]] void pprof_async_holder() {
  async_mu.lock();
  std::thread waiter(pprof_async_waiter);
  hold_once_queued("pprof-async");
  async_mu.unlock();
  waiter.join();
}

// Coroutines: the block profile's stack of their waits is the one at the co_await.
boost::asio::awaitable<void> pprof_async_lock_waiter() { auto guard = co_await co_mu.async_lock(); }

boost::asio::awaitable<void> pprof_stalled_acquirer() {
  auto permit = co_await stall_sem.async_acquire();
}

// A task queues on co_mu, held by this thread for 20 ms.
void pprof_coroutine_wait() {
  boost::asio::io_context io;
  co_mu.lock();
  stallscope::spawn(
      io.get_executor(), "pprof-co", [] { return pprof_async_lock_waiter(); },
      boost::asio::detached);
  std::thread runner([&] { io.run(); });
  hold_once_queued("pprof-async-co");
  co_mu.unlock();
  runner.join();
}

// Four of these contend on busy_mu. The first to take it holds it until another thread queues,
// so that the lock is contended however the threads are scheduled (on a loaded machine under
// ThreadSanitizer, four threads of 6 ms each can run one after another and never meet).
[[gnu::noinline]] void pprof_busy_worker(int iterations) {
  static std::atomic<bool> taken{false};
  for (int i = 0; i < iterations; ++i) {
    std::lock_guard lock(busy_mu);
    if (!taken.exchange(true, std::memory_order_relaxed)) hold_once_queued("pprof-busy");
    const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(20);
    while (std::chrono::steady_clock::now() < until) {
    }
  }
}

[[gnu::noinline]] void pprof_deadlock_a(std::barrier<>& both) {
  std::lock_guard first(dl1);
  both.arrive_and_wait();
  std::lock_guard second(dl2);
}

[[gnu::noinline]] void pprof_deadlock_b(std::barrier<>& both) {
  std::lock_guard first(dl2);
  both.arrive_and_wait();
  std::lock_guard second(dl1);
}

int main() {
  pprof_slow_holder();
  pprof_async_holder();
  std::vector<std::thread> busy;
  for (int t = 0; t < 4; ++t) busy.emplace_back(pprof_busy_worker, 300);
  for (auto& t : busy) t.join();
  pprof_coroutine_wait();

  static std::barrier<> both(2);
  std::thread(pprof_deadlock_a, std::ref(both)).detach();
  std::thread(pprof_deadlock_b, std::ref(both)).detach();
  poll_until("pprof-dl-1", 1);
  poll_until("pprof-dl-2", 1);

  // The scripted stall: a task waits for a permit this thread never gives back.
  static auto held = stall_sem.acquire();
  static boost::asio::io_context stall_io;
  stallscope::spawn(
      stall_io.get_executor(), "pprof-stalled", [] { return pprof_stalled_acquirer(); },
      boost::asio::detached);
  std::thread([] { stall_io.run(); }).detach();
  poll_until("pprof-stall-sem", 1);

  stallscope::AgentOptions options;
  options.listen = "127.0.0.1:0";
  options.throw_on_error = true;
  stallscope::Agent agent(options);
  // ThreadSanitizer defers signals to a thread blocked in a lock until it wakes: the stacks of
  // waits in progress are not read there (README, "Contention profiles").
#if defined(__SANITIZE_THREAD__)
  const bool stacks_in_progress = false;
#elif defined(__has_feature)
  const bool stacks_in_progress = !__has_feature(thread_sanitizer);
#else
  const bool stacks_in_progress = true;
#endif
  std::printf("{\"port\": %d, \"stacks_in_progress\": %s}\n", agent.port(),
              stacks_in_progress ? "true" : "false");
  std::fflush(stdout);
  while (std::getchar() != EOF) {
  }
  std::fflush(nullptr);
  std::_Exit(0);  // the deadlocked threads never return
}
