// The contract every lock wrapper keeps, run against each of them, plus exact accounting.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <latch>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "stallscope/mutex.hpp"
#include "support/metrics.hpp"
#include "support/poll.hpp"

using stallscope::testing::histogram;
using stallscope::testing::lock_labels;
using stallscope::testing::value;

using stallscope::testing::eventually;
using stallscope::testing::unique_name;

namespace {

// Unique resource names: every test shares the process registry.

template <class Lock>
constexpr bool kRecursive = std::is_same_v<typename Lock::inner_type, std::recursive_mutex> ||
                            std::is_same_v<typename Lock::inner_type, std::recursive_timed_mutex>;

double counter(std::string_view family, const std::string& name,
               std::string_view op = "exclusive") {
  return value(family, lock_labels(name, op)).value_or(-1);
}

}  // namespace

#define ALL_LOCKS                                                                                 \
  stallscope::Mutex, stallscope::SharedMutex, stallscope::RecursiveMutex, stallscope::TimedMutex, \
      stallscope::RecursiveTimedMutex, stallscope::SharedTimedMutex

TEMPLATE_TEST_CASE("locks work with the standard lock guards", "[locks][contract]", ALL_LOCKS) {
  TestType mu(unique_name("guards"));
  { std::lock_guard g(mu); }
  {
    std::unique_lock u(mu);
    CHECK(u.owns_lock());
    u.unlock();
    CHECK(u.try_lock());
  }
  {
    TestType other(unique_name("guards-other"));
    std::scoped_lock both(mu, other);  // deadlock-avoiding multi-lock via try_lock
  }
  CHECK(mu.try_lock());
  mu.unlock();
  if constexpr (stallscope::SharedLockable<typename TestType::inner_type>) {
    std::shared_lock s1(mu);
    std::shared_lock s2(mu);  // two shared holders at once
    CHECK(s2.owns_lock());
  }
}

TEMPLATE_TEST_CASE("locks guard a critical section across threads",
                   "[locks][contract][concurrency]", ALL_LOCKS) {
  TestType mu(unique_name("exclusion"));
  long long shared_counter = 0;  // guarded by mu; TSan would flag a broken wrapper
  constexpr int kThreads = 4;
  constexpr int kIters = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kIters; ++i) {
        std::lock_guard g(mu);
        ++shared_counter;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(shared_counter == kThreads * kIters);
}

TEMPLATE_TEST_CASE("locks work with condition_variable_any", "[locks][contract][concurrency]",
                   ALL_LOCKS) {
  TestType mu(unique_name("condvar"));
  std::condition_variable_any cv;
  bool ready = false;
  std::thread producer([&] {
    std::lock_guard g(mu);
    ready = true;
    cv.notify_one();
  });
  {
    std::unique_lock u(mu);
    cv.wait(u, [&] { return ready; });
    CHECK(ready);
  }
  producer.join();
}

TEMPLATE_TEST_CASE("N threads x M acquisitions are counted exactly",
                   "[locks][accounting][concurrency]", ALL_LOCKS) {
  const std::string name = unique_name("exact");
  TestType mu(name, {.hold_time = true});
  constexpr int kThreads = 4;
  constexpr int kIters = 10000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kIters; ++i) {
        std::lock_guard g(mu);
      }
    });
  }
  for (auto& th : threads) th.join();
  if constexpr (!STALLSCOPE_ENABLED) return;

  const double n = kThreads * kIters;
  CHECK(counter("stallscope_lock_acquisitions_total", name) == n);
  const auto wait = histogram("stallscope_wait_seconds", lock_labels(name));
  const auto hold = histogram("stallscope_lock_hold_seconds", lock_labels(name));
  REQUIRE(wait.has_value());
  REQUIRE(hold.has_value());
  // Every lock() is one wait observation (zero-wait ones in the first bucket) and one hold.
  CHECK(static_cast<double>(wait->count) == n);
  CHECK(static_cast<double>(hold->count) == n);
  std::uint64_t buckets = 0;
  for (auto c : wait->counts) buckets += c;
  CHECK(buckets == wait->count);
  const double contended = counter("stallscope_lock_contended_total", name);
  CHECK(contended >= 0);
  CHECK(contended <= n);
  // Waits that were not contended are exactly the zero-wait observations in bucket 0.
  CHECK(static_cast<double>(wait->counts[0]) >= n - contended);
  CHECK(counter("stallscope_waiters", name) == 0);
  CHECK(value("stallscope_lock_holder_age_seconds", {{"resource", name}}).value_or(-1) == 0);
}

TEMPLATE_TEST_CASE("a failed try_lock is counted and not acquired", "[locks][accounting]",
                   ALL_LOCKS) {
  const std::string name = unique_name("tryfail");
  TestType mu(name);
  std::unique_lock held(mu);
  bool got = true;
  std::thread([&] { got = mu.try_lock(); }).join();  // another thread: recursive locks too
  CHECK_FALSE(got);
  held.unlock();
  CHECK(mu.try_lock());
  mu.unlock();
  if constexpr (!STALLSCOPE_ENABLED) return;
  CHECK(counter("stallscope_lock_try_failures_total", name) == 1);
  CHECK(counter("stallscope_lock_acquisitions_total", name) == 2);
}

TEMPLATE_TEST_CASE("a contended wait is timed and attributed to its lock",
                   "[locks][accounting][concurrency]", ALL_LOCKS) {
  const std::string name = unique_name("contended");
  TestType mu(name, {.hold_time = true});
  std::unique_lock held(mu);
  std::atomic<bool> acquired{false};
  std::thread waiter([&] {
    std::lock_guard g(mu);
    acquired = true;
  });
  if constexpr (STALLSCOPE_ENABLED) {
    // While the waiter is blocked, the scrape sees it, and the holder, live.
    REQUIRE(eventually([&] { return counter("stallscope_waiters", name) == 1; }));
    REQUIRE(eventually([&] { return counter("stallscope_oldest_wait_age_seconds", name) > 0; }));
    CHECK(value("stallscope_lock_holder_age_seconds", {{"resource", name}}).value_or(0) > 0);
  }
  CHECK_FALSE(acquired.load());
  held.unlock();
  waiter.join();
  CHECK(acquired.load());
  if constexpr (!STALLSCOPE_ENABLED) return;
  CHECK(counter("stallscope_waiters", name) == 0);
  CHECK(counter("stallscope_oldest_wait_age_seconds", name) == 0);
  CHECK(counter("stallscope_lock_contended_total", name) == 1);
  CHECK(counter("stallscope_lock_acquisitions_total", name) == 2);
  const auto wait = histogram("stallscope_wait_seconds", lock_labels(name));
  REQUIRE(wait.has_value());
  CHECK(wait->count == 2);  // one zero wait, one real one
  CHECK(wait->sum > 0);
}

TEMPLATE_TEST_CASE("objects with the same name aggregate into one series", "[locks][registry]",
                   ALL_LOCKS) {
  const std::string name = unique_name("conn");
  {
    std::vector<std::unique_ptr<TestType>> conns;
    for (int i = 0; i < 10; ++i) conns.push_back(std::make_unique<TestType>(name));
    for (auto& c : conns) {
      std::lock_guard g(*c);
    }
    if constexpr (STALLSCOPE_ENABLED) {
      CHECK(value("stallscope_lock_objects", {{"resource", name}}).value_or(-1) == 10);
      CHECK(counter("stallscope_lock_acquisitions_total", name) == 10);
    }
  }
  if constexpr (STALLSCOPE_ENABLED) {
    // The objects are gone; their counts stay.
    CHECK(value("stallscope_lock_objects", {{"resource", name}}).value_or(-1) == 0);
    CHECK(counter("stallscope_lock_acquisitions_total", name) == 10);
  }
}

TEST_CASE("recursive locks count every acquisition and time the outermost hold",
          "[locks][accounting]") {
  const std::string name = unique_name("recursive");
  stallscope::RecursiveMutex mu(name, {.hold_time = true});
  mu.lock();
  mu.lock();
  CHECK(mu.try_lock());
  mu.unlock();
  mu.unlock();
  mu.unlock();
  if constexpr (!STALLSCOPE_ENABLED) return;
  CHECK(counter("stallscope_lock_acquisitions_total", name) == 3);
  const auto hold = histogram("stallscope_lock_hold_seconds", lock_labels(name));
  REQUIRE(hold.has_value());
  CHECK(hold->count == 1);
}

TEST_CASE("shared and exclusive acquisitions are recorded separately", "[locks][accounting]") {
  const std::string name = unique_name("rw");
  stallscope::SharedMutex mu(name, {.hold_time = true});
  for (int i = 0; i < 3; ++i) {
    std::shared_lock s(mu);
  }
  { std::lock_guard g(mu); }
  if constexpr (!STALLSCOPE_ENABLED) return;
  CHECK(counter("stallscope_lock_acquisitions_total", name, "shared") == 3);
  CHECK(counter("stallscope_lock_acquisitions_total", name, "exclusive") == 1);
  CHECK(histogram("stallscope_lock_hold_seconds", lock_labels(name, "shared"))->count == 3);
  CHECK(value("stallscope_wait_seconds", {{"kind", "rwlock"}, {"resource", name}}).has_value());
}

TEST_CASE("a name gets hold timing when its first hold-timing object appears", "[locks][hold]") {
  const std::string name = unique_name("late-hold");
  stallscope::SharedMutex plain(name);
  { std::lock_guard g(plain); }
  { std::shared_lock s(plain); }
  if constexpr (STALLSCOPE_ENABLED) {
    CHECK_FALSE(histogram("stallscope_lock_hold_seconds", lock_labels(name)).has_value());
  }
  stallscope::SharedMutex timed(name, {.hold_time = true});
  { std::lock_guard g(timed); }
  for (int i = 0; i < 2; ++i) {
    std::shared_lock s(timed);
  }
  { std::lock_guard g(plain); }  // still untimed: adds no hold
  if constexpr (!STALLSCOPE_ENABLED) return;
  CHECK(histogram("stallscope_lock_hold_seconds", lock_labels(name))->count == 1);
  CHECK(histogram("stallscope_lock_hold_seconds", lock_labels(name, "shared"))->count == 2);
  CHECK(counter("stallscope_lock_acquisitions_total", name, "exclusive") == 3);
}

TEMPLATE_TEST_CASE("a timed lock that gives up is counted as a timeout, not an acquisition",
                   "[locks][accounting][concurrency]", stallscope::TimedMutex,
                   stallscope::RecursiveTimedMutex, stallscope::SharedTimedMutex) {
  const std::string name = unique_name("timeout");
  TestType mu(name);
  std::unique_lock held(mu);
  bool got_for = true;
  bool got_until = true;
  std::thread([&] {
    got_for = mu.try_lock_for(std::chrono::milliseconds(1));
    got_until = mu.try_lock_until(std::chrono::steady_clock::now() + std::chrono::milliseconds(1));
  }).join();
  CHECK_FALSE(got_for);
  CHECK_FALSE(got_until);
  held.unlock();
  CHECK(mu.try_lock_for(std::chrono::seconds(1)));
  mu.unlock();
  if constexpr (!STALLSCOPE_ENABLED) return;
  CHECK(counter("stallscope_lock_timeouts_total", name) == 2);
  CHECK(counter("stallscope_lock_contended_total", name) == 2);
  CHECK(counter("stallscope_lock_acquisitions_total", name) == 2);
}

TEST_CASE("shared timed locks time out on a writer", "[locks][accounting][concurrency]") {
  const std::string name = unique_name("shared-timeout");
  stallscope::SharedTimedMutex mu(name);
  std::unique_lock held(mu);
  bool got = true;
  std::thread([&] { got = mu.try_lock_shared_for(std::chrono::milliseconds(1)); }).join();
  CHECK_FALSE(got);
  held.unlock();
  CHECK(mu.try_lock_shared_until(std::chrono::steady_clock::now() + std::chrono::seconds(1)));
  mu.unlock_shared();
  if constexpr (!STALLSCOPE_ENABLED) return;
  CHECK(counter("stallscope_lock_timeouts_total", name, "shared") == 1);
  CHECK(counter("stallscope_lock_acquisitions_total", name, "shared") == 1);
}

TEST_CASE("an unnamed lock is named after the line that declares it", "[locks]") {
  stallscope::Mutex mu;
  const int line = __LINE__ - 1;
  if constexpr (STALLSCOPE_ENABLED) {
    CHECK(mu.name() == "test_locks.cpp:" + std::to_string(line));
  } else {
    CHECK(mu.name().empty());
  }
}

TEST_CASE("a bad lock name is rejected with the name in the message", "[locks]") {
  if constexpr (STALLSCOPE_ENABLED) {
    CHECK_THROWS_WITH(stallscope::Mutex("bad name"), Catch::Contains("\"bad name\""));
  } else {
    CHECK_NOTHROW(stallscope::Mutex("bad name"));  // compiled out: names are ignored
  }
}

TEST_CASE("locking from thread-local destructors after the thread's shard is gone is counted",
          "[locks][accounting][concurrency]") {
  const std::string name = unique_name("tls-dtor");
  static stallscope::Mutex* mu = nullptr;
  stallscope::Mutex local(name);
  mu = &local;
  struct LocksAtExit {
    ~LocksAtExit() { std::lock_guard g(*mu); }
  };
  std::thread([] {
    {
      std::lock_guard g(*mu);  // creates this thread's shard first
    }
    static thread_local LocksAtExit at_exit;  // destroyed after the shard is released
    (void)at_exit;
  }).join();
  if constexpr (STALLSCOPE_ENABLED) {
    CHECK(counter("stallscope_lock_acquisitions_total", name) == 2);
  }
  mu = nullptr;
}
