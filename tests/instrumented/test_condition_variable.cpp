// stallscope::ConditionVariable with std::unique_lock<stallscope::Mutex>: every operation of
// std::condition_variable, and what a wait records (idle until the notify, a ranked lock wait for
// a contended re-acquisition).
#include <pthread.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <catch2/catch.hpp>

#include "stallscope/clock.hpp"
#include "stallscope/condition_variable.hpp"
#include "stallscope/mutex.hpp"
#include "support/metrics.hpp"
#include "support/poll.hpp"

using namespace stallscope::testing;

namespace {

using namespace std::chrono_literals;

double counter(std::string_view family, const std::string& name) {
  return value(family, lock_labels(name)).value_or(-1);
}

static_assert(std::is_nothrow_default_constructible_v<stallscope::ConditionVariable>);
static_assert(!std::is_copy_constructible_v<stallscope::ConditionVariable>);
static_assert(std::is_same_v<stallscope::ConditionVariable::native_handle_type,
                             std::condition_variable::native_handle_type>);
#if !STALLSCOPE_ENABLED
// Compiled out, it is the std::condition_variable and nothing else.
static_assert(sizeof(stallscope::ConditionVariable) == sizeof(std::condition_variable));
#endif

// Sets `flag` under `mu` and wakes one waiter of `cv`.
void set_and_notify(stallscope::Mutex& mu, stallscope::ConditionVariable& cv, bool& flag) {
  std::lock_guard g(mu);
  flag = true;
  cv.notify_one();
}

// Runs `produce` on a thread of its own while this thread, holding a std::unique_lock of `mu`,
// calls `wait(lock)`, which must return holding the lock again.
template <class Produce, class Wait>
void wait_on_producer(stallscope::Mutex& mu, Produce produce, Wait wait) {
  std::thread producer(produce);
  std::unique_lock lock(mu);
  wait(lock);
  CHECK(lock.owns_lock());
  lock.unlock();
  producer.join();
}

}  // namespace

TEST_CASE("a predicate wait returns once a notify makes the predicate true",
          "[condvar][concurrency]") {
  stallscope::Mutex mu(unique_name("cv-pred"));
  stallscope::ConditionVariable cv;
  bool ready = false;
  SECTION("wait") {
    wait_on_producer(
        mu,
        [&] {
          std::this_thread::sleep_for(5ms);
          set_and_notify(mu, cv, ready);
        },
        [&](std::unique_lock<stallscope::Mutex>& lock) { cv.wait(lock, [&] { return ready; }); });
    CHECK(ready);
  }
  SECTION("wait_for returns true when notified in time") {
    wait_on_producer(
        mu, [&] { set_and_notify(mu, cv, ready); },
        [&](std::unique_lock<stallscope::Mutex>& lock) {
          CHECK(cv.wait_for(lock, 30s, [&] { return ready; }));
        });
  }
}

TEST_CASE("a plain wait returns holding the lock after a notify", "[condvar][concurrency]") {
  stallscope::Mutex mu(unique_name("cv-plain"));
  stallscope::ConditionVariable cv;
  int stage = 0;
  wait_on_producer(
      mu,
      [&] {
        for (int i = 1; i <= 3; ++i) {
          std::lock_guard g(mu);
          stage = i;
          cv.notify_all();
        }
      },
      [&](std::unique_lock<stallscope::Mutex>& lock) {
        while (stage < 3) cv.wait(lock);
      });
  CHECK(stage == 3);
}

TEST_CASE("wait_for times out holding the lock when nobody notifies", "[condvar]") {
  stallscope::Mutex mu(unique_name("cv-for"));
  stallscope::ConditionVariable cv;
  std::unique_lock lock(mu);
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(cv.wait_for(lock, 10ms) == std::cv_status::timeout);
  CHECK(std::chrono::steady_clock::now() - t0 >= 10ms);
  CHECK(lock.owns_lock());
  CHECK_FALSE(cv.wait_for(lock, 1ms, [] { return false; }));
  CHECK(cv.wait_for(lock, 1ms, [] { return true; }));
  CHECK(lock.owns_lock());
}

TEST_CASE("wait_until honours deadlines on the steady and the system clock", "[condvar]") {
  stallscope::Mutex mu(unique_name("cv-until"));
  stallscope::ConditionVariable cv;
  std::unique_lock lock(mu);
  CHECK(cv.wait_until(lock, std::chrono::steady_clock::now() + 2ms) == std::cv_status::timeout);
  CHECK(cv.wait_until(lock, std::chrono::system_clock::now() + 2ms) == std::cv_status::timeout);
  CHECK_FALSE(cv.wait_until(lock, std::chrono::steady_clock::now() + 1ms, [] { return false; }));
  CHECK(cv.wait_until(lock, std::chrono::steady_clock::now() + 1ms, [] { return true; }));
  CHECK(lock.owns_lock());
}

TEST_CASE("notify_all wakes every waiter", "[condvar][concurrency]") {
  stallscope::Mutex mu(unique_name("cv-all"));
  stallscope::ConditionVariable cv;
  bool go = false;
  int waiting = 0;
  int woken = 0;
  constexpr int kWaiters = 4;
  std::vector<std::thread> threads;
  for (int i = 0; i < kWaiters; ++i) {
    threads.emplace_back([&] {
      std::unique_lock lock(mu);
      ++waiting;
      cv.wait(lock, [&] { return go; });
      ++woken;
    });
  }
  REQUIRE(eventually([&] {
    std::lock_guard g(mu);
    return waiting == kWaiters;
  }));
  {
    std::lock_guard g(mu);
    go = true;
  }
  cv.notify_all();
  for (auto& t : threads) t.join();
  CHECK(woken == kWaiters);
}

TEST_CASE("notify_all_at_thread_exit unlocks and notifies when the thread exits",
          "[condvar][concurrency]") {
  stallscope::Mutex mu(unique_name("cv-exit"));
  stallscope::ConditionVariable cv;
  bool done = false;
  std::unique_lock lock(mu);
  std::thread exiting([&] {
    std::unique_lock inner(mu);
    done = true;
    stallscope::notify_all_at_thread_exit(cv, std::move(inner));
  });
  cv.wait(lock, [&] { return done; });
  CHECK(done);
  lock.unlock();
  // The mutex was handed back at thread exit: it can be taken again. The join keeps cv alive
  // until the exiting thread's notify has returned, as std::notify_all_at_thread_exit requires.
  { std::lock_guard g(mu); }
  exiting.join();
}

TEST_CASE("the native handle is a pthread condition variable", "[condvar][concurrency]") {
  stallscope::Mutex mu(unique_name("cv-native"));
  stallscope::ConditionVariable cv;
  stallscope::testing::wait_for_producer(mu, cv, [](stallscope::ConditionVariable& c) {
    REQUIRE(pthread_cond_broadcast(c.native_handle()) == 0);
  });
}

TEST_CASE("condition_variable_any still works with stallscope::Mutex", "[condvar][concurrency]") {
  stallscope::Mutex mu(unique_name("cv-any"));
  std::condition_variable_any cv;
  stallscope::testing::wait_for_producer(mu, cv,
                                         [](std::condition_variable_any& c) { c.notify_one(); });
}

TEST_CASE("waits for a notification are idle and a contended re-acquisition is a lock wait",
          "[condvar][accounting][concurrency]") {
  const std::string name = unique_name("cv-split");
  stallscope::Mutex mu(name);
  stallscope::ConditionVariable cv;
  bool ready = false;
  std::atomic<bool> waiting{false};
  std::int64_t returned_ns = 0;  // when the waiter's wait had returned (stallscope's clock)
  std::thread waiter([&] {
    std::unique_lock lock(mu);
    waiting = true;
    cv.wait(lock, [&] { return ready; });
    returned_ns = stallscope::now_ns();
  });
  // The waiter is in its wait once it has said so and let go of the mutex. Polled with try_lock,
  // which never waits: only the waiter's own re-acquisition may count as a lock wait.
  REQUIRE(eventually([&] {
    if (!waiting.load() || !mu.try_lock()) return false;
    mu.unlock();
    return true;
  }));
  std::this_thread::sleep_for(20ms);  // the waiter is idle here
  std::int64_t notify_ns = 0;
  {
    std::lock_guard g(mu);
    ready = true;
    notify_ns = stallscope::now_ns();
    cv.notify_one();
    std::this_thread::sleep_for(20ms);  // and here it waits for the mutex
  }
  waiter.join();
  if constexpr (!STALLSCOPE_ENABLED) return;
  const auto idle = histogram("stallscope_idle_seconds", lock_labels(name));
  REQUIRE(idle.has_value());
  CHECK(idle->count >= 1);
  CHECK(idle->sum >= 0.015);  // at least the 20 ms before the notify
  const auto wait = histogram("stallscope_wait_seconds", lock_labels(name));
  REQUIRE(wait.has_value());
  CHECK(wait->sum >= 0.015);  // the 20 ms the notifier held the mutex after its notify
  // No more than from the notify to the wait's return, however late either thread ran: the
  // idle time before the notify (20 ms and more) is not in it.
  CHECK(wait->sum <= static_cast<double>(returned_ns - notify_ns) * 1e-9 + 1e-6);
  CHECK(counter("stallscope_lock_contended_total", name) >= 1);
}

TEST_CASE("a notify while nobody holds the mutex leaves the whole wait idle",
          "[condvar][accounting][concurrency]") {
  const std::string name = unique_name("cv-idle");
  stallscope::Mutex mu(name);
  stallscope::ConditionVariable cv;
  std::atomic<bool> ready{false};
  std::atomic<bool> done{false};
  std::thread waiter([&] {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return ready.load(); });
    lock.unlock();
    done = true;
  });
  // The waiter has begun its wait once the mutex's idle histogram exists (its first wait makes
  // it); a waiter that started after `ready` would not wait at all. Compiled out, nothing is
  // recorded and nothing is checked.
  if constexpr (STALLSCOPE_ENABLED) {
    REQUIRE(eventually(
        [&] { return histogram("stallscope_idle_seconds", lock_labels(name)).has_value(); }));
  }
  ready = true;
  // Notified without the mutex, which nobody else takes: the re-acquisition never waited.
  while (!done.load()) {
    cv.notify_one();
    std::this_thread::sleep_for(1ms);
  }
  waiter.join();
  if constexpr (!STALLSCOPE_ENABLED) return;
  const auto idle = histogram("stallscope_idle_seconds", lock_labels(name));
  REQUIRE(idle.has_value());
  CHECK(idle->count >= 1);
  CHECK(counter("stallscope_lock_contended_total", name) == 0);
  const auto wait = histogram("stallscope_wait_seconds", lock_labels(name));
  REQUIRE(wait.has_value());
  CHECK(wait->sum == 0);
}

TEST_CASE("condition-variable waits are counted exactly under concurrency",
          "[condvar][accounting][concurrency]") {
  const std::string name = unique_name("cv-exact");
  stallscope::Mutex mu(name);
  stallscope::ConditionVariable cv;
  std::vector<int> queue;
  bool closed = false;
  constexpr std::size_t kProducers = 2;
  constexpr std::size_t kConsumers = 3;
  constexpr int kItems = 2000;
  std::atomic<long> waits{0};
  std::atomic<long> locks{0};
  std::atomic<long> consumed{0};
  std::vector<std::thread> threads;
  for (std::size_t c = 0; c < kConsumers; ++c) {
    threads.emplace_back([&] {
      for (;;) {
        std::unique_lock lock(mu);
        locks.fetch_add(1);
        while (queue.empty() && !closed) {
          cv.wait(lock);
          waits.fetch_add(1);
        }
        if (queue.empty()) return;
        queue.pop_back();
        consumed.fetch_add(1);
      }
    });
  }
  for (std::size_t p = 0; p < kProducers; ++p) {
    threads.emplace_back([&] {
      for (int i = 0; i < kItems; ++i) {
        {
          std::lock_guard g(mu);
          locks.fetch_add(1);
          queue.push_back(i);
        }
        cv.notify_one();
      }
    });
  }
  for (std::size_t p = 0; p < kProducers; ++p) threads[kConsumers + p].join();
  {
    std::lock_guard g(mu);
    locks.fetch_add(1);
    closed = true;
  }
  cv.notify_all();
  for (std::size_t c = 0; c < kConsumers; ++c) threads[c].join();
  CHECK(consumed.load() == static_cast<long>(kProducers) * kItems);
  if constexpr (!STALLSCOPE_ENABLED) return;
  // Every wait is one idle observation, and its wake-up one acquisition of the mutex.
  const auto idle = histogram("stallscope_idle_seconds", lock_labels(name));
  REQUIRE(idle.has_value());
  CHECK(static_cast<long>(idle->count) == waits.load());
  CHECK(counter("stallscope_lock_acquisitions_total", name) ==
        static_cast<double>(locks.load() + waits.load()));
  const auto wait = histogram("stallscope_wait_seconds", lock_labels(name));
  REQUIRE(wait.has_value());
  CHECK(static_cast<long>(wait->count) == locks.load() + waits.load());
  CHECK(counter("stallscope_waiters", name) == 0);
  CHECK(value("stallscope_lock_holder_age_seconds", {{"resource", name}}).value_or(-1) == 0);
}
