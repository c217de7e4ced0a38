// The contract every lock wrapper keeps, run against each of them, plus exact accounting.
#include <pthread.h>

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

#include "stallscope/condition_variable.hpp"
#include "stallscope/log.hpp"
#include "stallscope/mutex.hpp"
#include "support/metrics.hpp"
#include "support/poll.hpp"

using namespace stallscope::testing;

namespace {

// Unique resource names: every test shares the process registry.

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
  on_threads(kThreads, kIters, [&] {
    std::lock_guard g(mu);
    ++shared_counter;
  });
  CHECK(shared_counter == kThreads * kIters);
}

TEMPLATE_TEST_CASE("locks work with condition_variable_any", "[locks][contract][concurrency]",
                   ALL_LOCKS) {
  TestType mu(unique_name("condvar"));
  std::condition_variable_any cv;
  stallscope::testing::wait_for_producer(mu, cv,
                                         [](std::condition_variable_any& c) { c.notify_one(); });
}

TEMPLATE_TEST_CASE("N threads x M acquisitions are counted exactly",
                   "[locks][accounting][concurrency]", ALL_LOCKS) {
  const std::string name = unique_name("exact");
  TestType mu(name, {.hold_time = true});
  constexpr int kThreads = 4;
  constexpr int kIters = 10000;
  on_threads(kThreads, kIters, [&] { std::lock_guard g(mu); });
  if constexpr (!STALLSCOPE_ENABLED) return;

  const double n = kThreads * kIters;
  CHECK(counter("stallscope_lock_acquisitions_total", name) == n);
  // Every lock() is one wait observation (zero-wait ones in the first bucket) and one hold.
  check_wait_accounting(histogram("stallscope_wait_seconds", lock_labels(name)),
                        histogram("stallscope_lock_hold_seconds", lock_labels(name)), n,
                        counter("stallscope_lock_contended_total", name));
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

TEST_CASE("a bad literal lock name is reported at first use and the lock records nothing",
          "[locks]") {
  // constinit stallscope::Mutex m{"bad name"}; does not compile; a lock constructed at run time
  // cannot throw from its noexcept constructor, so the name is checked when it registers.
  std::vector<std::string> errors;
  stallscope::set_log_sink([&](stallscope::LogLevel level, std::string_view message) {
    if (level == stallscope::LogLevel::kError) errors.emplace_back(message);
  });
  stallscope::Mutex mu("bad literal");
  { std::lock_guard g(mu); }
  CHECK(mu.try_lock());
  mu.unlock();
  {  // a condition-variable wait on it unlocks and relocks like any other
    stallscope::ConditionVariable cv;
    std::unique_lock lk(mu);
    CHECK_FALSE(cv.wait_for(lk, std::chrono::milliseconds(1), [] { return false; }));
    CHECK(lk.owns_lock());
  }
  CHECK(mu.try_lock());  // every unlock matched its lock: the mutex is free
  mu.unlock();
  stallscope::set_log_sink({});
  if constexpr (!STALLSCOPE_ENABLED) return;
  REQUIRE(errors.size() == 1);
  CHECK_THAT(errors[0], Catch::Contains("\"bad literal\""));
  CHECK(mu.name().empty());
  CHECK_FALSE(value("stallscope_lock_objects", {{"resource", "bad literal"}}).has_value());
}

TEST_CASE("a bad lock name built at run time is rejected with the name in the message", "[locks]") {
  // A name built at run time is checked at once.
  const std::string bad = "bad name";
  if constexpr (STALLSCOPE_ENABLED) {
    CHECK_THROWS_WITH(stallscope::Mutex(bad), Catch::Contains("\"bad name\""));
  } else {
    CHECK_NOTHROW(stallscope::Mutex(bad));  // compiled out: names are ignored
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

TEMPLATE_TEST_CASE("locks construct like the std types: constexpr, noexcept, not copyable",
                   "[locks][contract]", ALL_LOCKS) {
  using Inner = typename TestType::inner_type;
  STATIC_REQUIRE(std::is_nothrow_default_constructible_v<TestType> ==
                 std::is_nothrow_default_constructible_v<Inner>);
  STATIC_REQUIRE(std::is_nothrow_constructible_v<TestType, const char(&)[5]>);
  STATIC_REQUIRE_FALSE(std::is_copy_constructible_v<TestType>);
  STATIC_REQUIRE_FALSE(std::is_move_constructible_v<TestType>);
  if constexpr (!STALLSCOPE_ENABLED) {
    // Compiled out, a lock is its primitive and nothing else.
    STATIC_REQUIRE(sizeof(TestType) == sizeof(Inner));
    STATIC_REQUIRE(std::is_standard_layout_v<TestType> == std::is_standard_layout_v<Inner>);
  }
  // Constant-initialized: the same objects as constinit globals are in test_static_init.cpp.
  static constinit TestType named{"constexpr-named"};
  static constinit TestType unnamed;
  { std::lock_guard g(named); }
  { std::lock_guard g(unnamed); }
}

TEMPLATE_TEST_CASE("locks have the native handle of the type they wrap", "[locks][contract]",
                   ALL_LOCKS) {
  using Inner = typename TestType::inner_type;
  if constexpr (requires { typename Inner::native_handle_type; }) {
    STATIC_REQUIRE(
        std::is_same_v<typename TestType::native_handle_type, typename Inner::native_handle_type>);
    TestType mu(unique_name("native"));
    STATIC_REQUIRE(
        std::is_same_v<decltype(mu.native_handle()), typename Inner::native_handle_type>);
  } else {
    STATIC_REQUIRE_FALSE(requires { typename TestType::native_handle_type; });
  }
}

TEMPLATE_TEST_CASE("a lock held through the wrapper is held for pthread functions",
                   "[locks][contract][concurrency]", stallscope::Mutex, stallscope::TimedMutex,
                   stallscope::RecursiveMutex, stallscope::RecursiveTimedMutex) {
  TestType mu(unique_name("pthread"));
  pthread_mutex_t* native = mu.native_handle();
  std::unique_lock held(mu);
  int busy = 0;
  std::thread([&] { busy = pthread_mutex_trylock(native); }).join();
  CHECK(busy == EBUSY);
  held.unlock();
  REQUIRE(pthread_mutex_lock(native) == 0);
  bool got = true;
  std::thread([&] { got = mu.try_lock(); }).join();
  CHECK_FALSE(got);
  REQUIRE(pthread_mutex_unlock(native) == 0);
}

TEST_CASE("a shared lock's native handle is a pthread rwlock", "[locks][contract]") {
  if constexpr (requires { typename std::shared_mutex::native_handle_type; }) {
    stallscope::SharedMutex mu(unique_name("pthread-rw"));
    // libstdc++ declares the handle as void*; it is the pthread_rwlock_t.
    auto* native = static_cast<pthread_rwlock_t*>(mu.native_handle());
    std::shared_lock reader(mu);
    CHECK(pthread_rwlock_tryrdlock(native) == 0);
    CHECK(pthread_rwlock_unlock(native) == 0);
    CHECK(pthread_rwlock_trywrlock(native) == EBUSY);
  }
}

namespace {
// Deriving from a lock to add members, as some code (and libstdc++'s own tests) do.
struct CountingMutex : stallscope::Mutex {
  using stallscope::Mutex::Mutex;
  int entries = 0;
};
}  // namespace

TEST_CASE("a lock can be derived from to add members", "[locks][contract]") {
  STATIC_REQUIRE_FALSE(std::is_final_v<stallscope::Mutex>);
  STATIC_REQUIRE_FALSE(std::is_polymorphic_v<stallscope::Mutex>);
  CountingMutex mu{"derived-lock"};
  {
    std::lock_guard g(mu);
    ++mu.entries;
  }
  std::unique_lock u(mu);
  CHECK(mu.entries == 1);
}

namespace {
struct TwoUnnamedMembers {
  TwoUnnamedMembers() = default;
  stallscope::Mutex first;
  stallscope::Mutex second;
};
}  // namespace

TEST_CASE("unnamed locks that share an initializing line are never merged silently", "[locks]") {
  std::vector<std::string> warnings;
  stallscope::set_log_sink([&](stallscope::LogLevel level, std::string_view message) {
    if (level == stallscope::LogLevel::kWarning) warnings.emplace_back(message);
  });
  TwoUnnamedMembers pair;
  { std::lock_guard g(pair.first); }
  { std::lock_guard g(pair.second); }
  stallscope::set_log_sink({});
  if constexpr (!STALLSCOPE_ENABLED) return;
  // Both are named after the constructor that initializes them (the standard gives a member's
  // initializer no line of its own), and the shared name is reported once.
  CHECK(pair.first.name() == pair.second.name());
  CHECK(pair.first.name().starts_with("test_locks.cpp:"));
  REQUIRE(warnings.size() == 1);
  CHECK_THAT(warnings[0], Catch::Contains(std::string(pair.first.name())));
  CHECK_THAT(warnings[0], Catch::Contains("give them names"));
}

TEMPLATE_TEST_CASE("threads racing on a lock's first use register it exactly once",
                   "[locks][accounting][concurrency]", ALL_LOCKS) {
  constexpr int kThreads = 4;
  constexpr int kIters = 1000;
  // Every lock kind of this test shares the name: read this kind's rows.
  const std::string kind = TestType::kind == stallscope::ResourceKind::kRwLock ? "rwlock" : "lock";
  for (int round = 0; round < 20; ++round) {
    TestType mu{"first-use-race", {.hold_time = true}};
    std::latch start(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&] {
        start.arrive_and_wait();
        for (int i = 0; i < kIters; ++i) {
          std::lock_guard g(mu);
        }
      });
    }
    for (auto& th : threads) th.join();
    if constexpr (STALLSCOPE_ENABLED) {
      CHECK(value("stallscope_lock_objects", {{"kind", kind}, {"resource", "first-use-race"}})
                .value_or(-1) == 1);
    }
  }
  if constexpr (!STALLSCOPE_ENABLED) return;
  // The instantiations of one kind share the series: each adds exactly its own acquisitions.
  const auto acquisitions =
      value("stallscope_lock_acquisitions_total",
            {{"kind", kind}, {"resource", "first-use-race"}, {"op", "exclusive"}});
  REQUIRE(acquisitions.has_value());
  CHECK(static_cast<long>(*acquisitions) % (20 * kThreads * kIters) == 0);
}
