// Semaphore and AsyncMutex: the cap holds across threads and coroutines, waits are FIFO,
// cancellation takes no permit, destruction is defined, and every acquisition is counted.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <catch2/catch.hpp>

#include "stallscope/mutex.hpp"
#include "stallscope/semaphore.hpp"
#include "support/metrics.hpp"
#include "support/poll.hpp"
#include "support/tasks.hpp"

namespace asio = boost::asio;
using stallscope::AsyncMutex;
using stallscope::Semaphore;
using namespace stallscope::testing;

namespace {

// A semaphore's metric: the stallscope_semaphore_* families carry {kind, resource}.
double metric(std::string_view family, const std::string& name) {
  return value(family, {{"kind", "semaphore"}, {"resource", name}}).value_or(-1);
}
// The unified wait families carry op="acquire" for a semaphore, op="exclusive" for a lock.
double sem_wait_gauge(std::string_view family, const std::string& name) {
  return value(family, {{"kind", "semaphore"}, {"resource", name}, {"op", "acquire"}}).value_or(-1);
}
std::optional<stallscope::HistogramSnapshot> sem_histogram(std::string_view family,
                                                           const std::string& name) {
  return histogram(family, {{"kind", "semaphore"}, {"resource", name}});
}
// An async mutex's metric, from the lock families with kind="async_lock".
double alock(std::string_view family, const std::string& name) {
  return value(family, {{"kind", "async_lock"}, {"resource", name}}).value_or(-1);
}

// How many are inside a section now, and the most that ever were at once.
struct Occupancy {
  void enter() {
    const int v = ++now;
    int m = most.load();
    while (v > m && !most.compare_exchange_weak(m, v)) {
    }
  }
  void leave() { --now; }
  std::atomic<int> now{0};
  std::atomic<int> most{0};
};

}  // namespace

TEST_CASE("a semaphore rejects a permit count out of range with the value in the message",
          "[semaphore]") {
  CHECK_THROWS_WITH(Semaphore("zero-permits", 0), Catch::Contains("permits 0"));
  CHECK_THROWS_WITH(Semaphore("negative-permits", static_cast<std::size_t>(-1)),
                    Catch::Contains("permits 18446744073709551615"));
  CHECK_THROWS_AS(Semaphore("zero-permits", 0), std::invalid_argument);
  if constexpr (STALLSCOPE_ENABLED) {
    CHECK_THROWS_WITH(Semaphore("bad name", 1), Catch::Contains("\"bad name\""));
    CHECK_THROWS_WITH(AsyncMutex("bad name"), Catch::Contains("\"bad name\""));
  }
}

TEST_CASE("permits cap how many coroutines run at once, and every acquisition is counted",
          "[semaphore][asio][concurrency]") {
  const std::string name = unique_name("cap-coro");
  constexpr int kPermits = 3;
  constexpr int kCoroutines = 12;
  constexpr int kIters = 200;
  Semaphore sem(name, kPermits);
  Occupancy inside;
  asio::io_context io;
  for (int c = 0; c < kCoroutines; ++c) {
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          auto ex = co_await asio::this_coro::executor;
          for (int i = 0; i < kIters; ++i) {
            auto permit = co_await sem.async_acquire();
            inside.enter();
            co_await asio::post(ex, asio::use_awaitable);  // hold the permit across a suspension
            inside.leave();
          }
        },
        asio::detached);
  }
  run_on_threads(io, 2);
  CHECK(inside.most.load() <= kPermits);
  CHECK(inside.most.load() >= 1);
  CHECK(sem.available() == kPermits);
  if constexpr (!STALLSCOPE_ENABLED) return;

  const double n = kCoroutines * kIters;
  CHECK(metric("stallscope_semaphore_acquisitions_total", name) == n);
  // Every async_acquire is one wait observation (zero waits in the first bucket) and one hold.
  check_wait_accounting(histogram("stallscope_wait_seconds",
                                  {{"kind", "semaphore"}, {"resource", name}, {"op", "acquire"}}),
                        sem_histogram("stallscope_semaphore_hold_seconds", name), n,
                        metric("stallscope_semaphore_contended_total", name));
  CHECK(metric("stallscope_semaphore_cancelled_total", name) == 0);
  CHECK(metric("stallscope_semaphore_permits_in_use", name) == 0);
  CHECK(metric("stallscope_semaphore_permits", name) == kPermits);
  CHECK(sem_wait_gauge("stallscope_waiters", name) == 0);
  CHECK(sem_wait_gauge("stallscope_oldest_wait_age_seconds", name) == 0);
}

TEST_CASE("permits cap how many threads run at once, with blocking, timed and try acquires",
          "[semaphore][concurrency]") {
  const std::string name = unique_name("cap-threads");
  constexpr int kPermits = 2;
  constexpr int kThreads = 4;
  constexpr int kIters = 2000;
  Semaphore sem(name, kPermits);
  Occupancy inside;
  std::atomic<int> acquired{0};
  std::atomic<int> try_failed{0};
  std::atomic<int> empty_permits{0};  // Catch assertions are not thread-safe: count, check later
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kIters; ++i) {
        Semaphore::Permit p;
        switch ((t + i) % 3) {
          case 0:
            p = sem.acquire();
            break;
          case 1:
            p = sem.acquire_for(std::chrono::seconds(30));
            break;
          default:
            p = sem.try_acquire();
            if (!p) {
              ++try_failed;
              continue;
            }
        }
        if (!p) {
          ++empty_permits;
          continue;
        }
        ++acquired;
        inside.enter();
        std::this_thread::yield();
        inside.leave();
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(empty_permits.load() == 0);
  CHECK(inside.most.load() <= kPermits);
  CHECK(sem.available() == kPermits);
  if constexpr (!STALLSCOPE_ENABLED) return;
  CHECK(metric("stallscope_semaphore_acquisitions_total", name) == acquired.load());
  CHECK(metric("stallscope_semaphore_try_failures_total", name) == try_failed.load());
  CHECK(metric("stallscope_semaphore_timeouts_total", name) == 0);
  CHECK(sem_histogram("stallscope_semaphore_hold_seconds", name)->count ==
        static_cast<std::uint64_t>(acquired.load()));
}

TEST_CASE("a waiting coroutine is visible as a waiter with its age while it waits",
          "[semaphore][asio]") {
  const std::string name = unique_name("visible");
  Semaphore sem(name, 1);
  Semaphore::Permit held = sem.try_acquire();
  REQUIRE(held);
  asio::io_context io;
  bool got = false;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        auto p = co_await sem.async_acquire();
        got = static_cast<bool>(p);
      },
      asio::detached);
  io.poll();  // the coroutine starts and queues
  CHECK_FALSE(got);
  if constexpr (STALLSCOPE_ENABLED) {
    REQUIRE(eventually([&] { return sem_wait_gauge("stallscope_waiters", name) == 1; }));
    REQUIRE(
        eventually([&] { return sem_wait_gauge("stallscope_oldest_wait_age_seconds", name) > 0; }));
    CHECK(metric("stallscope_semaphore_permits_in_use", name) == 1);
  }
  held.release();
  CHECK_FALSE(held);
  io.run();
  CHECK(got);
  CHECK(sem.available() == 1);
  if constexpr (!STALLSCOPE_ENABLED) return;
  CHECK(sem_wait_gauge("stallscope_waiters", name) == 0);
  CHECK(sem_wait_gauge("stallscope_oldest_wait_age_seconds", name) == 0);
  CHECK(metric("stallscope_semaphore_permits_in_use", name) == 0);
  CHECK(metric("stallscope_semaphore_acquisitions_total", name) == 2);
  CHECK(metric("stallscope_semaphore_contended_total", name) == 1);
  const auto wait = histogram("stallscope_wait_seconds",
                              {{"kind", "semaphore"}, {"resource", name}, {"op", "acquire"}});
  REQUIRE(wait.has_value());
  CHECK(wait->count == 1);  // the queued acquire; try_acquire is not a wait
  CHECK(wait->sum > 0);
}

TEST_CASE("a cancelled acquire takes no permit", "[semaphore][asio][cancel]") {
  const std::string name = unique_name("cancel");
  Semaphore sem(name, 1);
  asio::io_context io;
  Semaphore::Permit held = sem.try_acquire();
  REQUIRE(held);

  SECTION("through a cancellation slot") {
    std::optional<boost::system::error_code> ec;
    Semaphore::Permit got;
    cancel_while_pending(
        io,
        [&](asio::cancellation_slot slot) {
          sem.async_acquire(asio::bind_cancellation_slot(
              slot, asio::bind_executor(io, [&](boost::system::error_code e, Semaphore::Permit p) {
                ec = e;
                got = std::move(p);
              })));
        },
        [&] { return ec.has_value(); });  // queued: no permit is free
    REQUIRE(ec.has_value());
    CHECK(*ec == asio::error::operation_aborted);
    CHECK_FALSE(got);
  }
  SECTION("by losing a race against a timer") {
    CHECK(timer_wins_race(io, [&] { return sem.async_acquire(); }));
  }
  held.release();
  CHECK(sem.available() == 1);  // the cancelled waiter did not take the released permit
  CHECK(sem.try_acquire());
  if constexpr (!STALLSCOPE_ENABLED) return;
  CHECK(metric("stallscope_semaphore_cancelled_total", name) == 1);
  CHECK(metric("stallscope_semaphore_contended_total", name) == 1);
  CHECK(metric("stallscope_semaphore_acquisitions_total", name) == 2);  // the two tries
  CHECK(sem_wait_gauge("stallscope_waiters", name) == 0);
}

TEST_CASE("a cancellation that arrives after the permit was handed over is ignored",
          "[semaphore][asio][cancel]") {
  const std::string name = unique_name("cancel-late");
  Semaphore sem(name, 1);
  asio::io_context io;
  Semaphore::Permit held = sem.try_acquire();
  asio::cancellation_signal signal;
  std::optional<boost::system::error_code> ec;
  bool got = false;
  sem.async_acquire(asio::bind_cancellation_slot(
      signal.slot(), asio::bind_executor(io, [&](boost::system::error_code e, Semaphore::Permit p) {
        ec = e;
        got = static_cast<bool>(p);
      })));
  io.poll();
  held.release();  // hands the permit to the waiter; its completion is posted, not run
  signal.emit(asio::cancellation_type::terminal);
  io.run();
  REQUIRE(ec.has_value());
  CHECK_FALSE(*ec);
  CHECK(got);
  CHECK(sem.available() == 1);  // the handler dropped the permit: released, not lost
  if constexpr (STALLSCOPE_ENABLED)
    CHECK(metric("stallscope_semaphore_cancelled_total", name) == 0);
}

TEST_CASE("callbacks complete on their executor, never inline, also with a free permit",
          "[semaphore][asio]") {
  Semaphore sem(unique_name("callback"), 1);
  asio::io_context io;
  bool done = false;
  sem.async_acquire(asio::bind_executor(io, [&](boost::system::error_code ec, Semaphore::Permit p) {
    CHECK_FALSE(ec);
    CHECK(p);
    done = true;
  }));
  CHECK_FALSE(done);  // posted, not run inside async_acquire
  CHECK(sem.available() == 0);
  io.run();
  CHECK(done);
  CHECK(sem.available() == 1);

  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        auto [ec, p] = co_await sem.async_acquire(asio::as_tuple(asio::use_awaitable));
        CHECK_FALSE(ec);
        CHECK(p);
      },
      asio::detached);
  io.restart();
  io.run();
  CHECK(sem.available() == 1);
}

TEST_CASE("a timed acquire that runs out is counted as a timeout, not an acquisition",
          "[semaphore]") {
  const std::string name = unique_name("timeout");
  Semaphore sem(name, 1);
  Semaphore::Permit held = sem.acquire();
  CHECK_FALSE(sem.acquire_for(std::chrono::milliseconds(1)));
  CHECK_FALSE(sem.acquire_until(std::chrono::system_clock::now() + std::chrono::milliseconds(1)));
  CHECK_FALSE(sem.try_acquire());
  held.release();
  CHECK(sem.acquire_for(std::chrono::seconds(1)));
  if constexpr (!STALLSCOPE_ENABLED) return;
  CHECK(metric("stallscope_semaphore_timeouts_total", name) == 2);
  CHECK(metric("stallscope_semaphore_contended_total", name) == 2);
  CHECK(metric("stallscope_semaphore_try_failures_total", name) == 1);
  CHECK(metric("stallscope_semaphore_acquisitions_total", name) == 2);
}

TEST_CASE("destroying a semaphore aborts its waiters, and a permit that outlives it is safe",
          "[semaphore][asio][concurrency]") {
  const std::string name = unique_name("destroy");
  auto sem = std::make_unique<Semaphore>(name, 1);
  Semaphore::Permit held = sem->try_acquire();
  REQUIRE(held);
  asio::io_context io;
  std::optional<boost::system::error_code> async_ec;
  sem->async_acquire(
      asio::bind_executor(io, [&](boost::system::error_code ec, Semaphore::Permit p) {
        async_ec = ec;
        CHECK_FALSE(p);
      }));
  io.poll();
  std::thread blocked;
  bool thread_aborted = false;
  if constexpr (STALLSCOPE_ENABLED) {
    // Only the metrics can tell that the thread is blocked inside acquire(); without them the
    // thread could reach acquire() after the destructor, so the case is left out.
    blocked = std::thread([&, s = sem.get()] {
      try {
        (void)s->acquire();
      } catch (const boost::system::system_error& e) {
        thread_aborted = e.code() == asio::error::operation_aborted;
      }
    });
    REQUIRE(eventually([&] { return sem_wait_gauge("stallscope_waiters", name) == 2; }));
  }
  sem.reset();  // aborts both waiters, waits for the thread to leave
  if (blocked.joinable()) blocked.join();
  io.run();
  REQUIRE(async_ec.has_value());
  CHECK(*async_ec == asio::error::operation_aborted);
  if constexpr (STALLSCOPE_ENABLED) {
    CHECK(thread_aborted);
    CHECK(metric("stallscope_semaphore_cancelled_total", name) == 2);
    CHECK(metric("stallscope_semaphore_objects", name) == 1);  // the permit keeps the core alive
  }
  held.release();  // the semaphore is gone: released into the shared core
  if constexpr (STALLSCOPE_ENABLED) {
    CHECK(metric("stallscope_semaphore_objects", name) == 0);
    CHECK(metric("stallscope_semaphore_permits_in_use", name) == 0);
    CHECK(sem_histogram("stallscope_semaphore_hold_seconds", name)->count == 1);
  }
}

TEST_CASE("an async mutex held across a timer excludes other coroutines and threads",
          "[async_mutex][asio][concurrency]") {
  const std::string name = unique_name("across");
  AsyncMutex mu(name);
  constexpr int kCoroutines = 4;
  constexpr int kCoroIters = 25;
  constexpr int kThreads = 2;
  constexpr int kThreadIters = 500;
  long long counter = 0;  // guarded by mu; TSan flags a broken exclusion
  Occupancy inside;
  asio::io_context io;
  for (int c = 0; c < kCoroutines; ++c) {
    asio::co_spawn(
        io,
        [&, c]() -> asio::awaitable<void> {
          auto ex = co_await asio::this_coro::executor;
          for (int i = 0; i < kCoroIters; ++i) {
            auto guard = co_await mu.async_lock();
            inside.enter();
            const long long before = counter;
            if ((c + i) % 5 == 0) {
              asio::steady_timer t(ex, std::chrono::microseconds(200));
              co_await t.async_wait(asio::use_awaitable);  // suspended, still holding
            } else {
              co_await asio::post(ex, asio::use_awaitable);
            }
            counter = before + 1;  // a lost update if anyone else got in meanwhile
            inside.leave();
          }
        },
        asio::detached);
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kThreadIters; ++i) {
        std::lock_guard g(mu);  // the blocking side of the same queue
        inside.enter();
        ++counter;
        inside.leave();
      }
    });
  }
  run_on_threads(io, 2);
  for (auto& t : threads) t.join();
  CHECK(inside.most.load() == 1);
  CHECK(counter == kCoroutines * kCoroIters + kThreads * kThreadIters);
  if constexpr (!STALLSCOPE_ENABLED) return;
  const double n = kCoroutines * kCoroIters + kThreads * kThreadIters;
  CHECK(alock("stallscope_lock_acquisitions_total", name) == n);
  CHECK(histogram("stallscope_lock_hold_seconds", {{"kind", "async_lock"}, {"resource", name}})
            ->count == static_cast<std::uint64_t>(n));
  CHECK(histogram("stallscope_wait_seconds",
                  {{"kind", "async_lock"}, {"resource", name}, {"op", "exclusive"}})
            ->count == static_cast<std::uint64_t>(n));
  CHECK(alock("stallscope_lock_holder_age_seconds", name) == 0);
}

TEST_CASE("an async mutex times every hold and shows the current holder's age",
          "[async_mutex][asio]") {
  const std::string name = unique_name("hold");
  AsyncMutex mu(name);
  asio::io_context io;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        auto guard = co_await mu.async_lock();
        asio::steady_timer t(io, std::chrono::milliseconds(1));
        co_await t.async_wait(asio::use_awaitable);
      },
      asio::detached);
  io.run();
  mu.lock();
  if constexpr (STALLSCOPE_ENABLED) {
    REQUIRE(eventually([&] { return alock("stallscope_lock_holder_age_seconds", name) > 0; }));
  }
  mu.unlock();
  if constexpr (!STALLSCOPE_ENABLED) return;
  CHECK(alock("stallscope_lock_holder_age_seconds", name) == 0);
  const auto hold =
      histogram("stallscope_lock_hold_seconds", {{"kind", "async_lock"}, {"resource", name}});
  REQUIRE(hold.has_value());
  CHECK(hold->count == 2);
  CHECK(hold->sum >= 0.001);  // the first hold spanned the 1 ms timer, which never fires early
  CHECK(alock("stallscope_lock_objects", name) == 1);
}

TEST_CASE("async mutex waiters get the lock in the order they asked, and nobody barges in",
          "[async_mutex][asio]") {
  const std::string name = unique_name("fifo");
  AsyncMutex mu(name);
  REQUIRE(mu.try_lock());
  asio::io_context io;
  std::vector<int> order;
  constexpr int kWaiters = 6;
  for (int i = 0; i < kWaiters; ++i) {
    asio::co_spawn(
        io,
        [&, i]() -> asio::awaitable<void> {
          auto guard = co_await mu.async_lock();
          order.push_back(i);
          co_await asio::post(io, asio::use_awaitable);  // let the others run while holding
        },
        asio::detached);
    io.poll();  // waiter i queues before waiter i + 1 starts
  }
  if constexpr (STALLSCOPE_ENABLED) {
    CHECK(value("stallscope_waiters",
                {{"kind", "async_lock"}, {"resource", name}, {"op", "exclusive"}}) == kWaiters);
  }
  mu.unlock();                 // hands the lock to waiter 0
  CHECK_FALSE(mu.try_lock());  // the lock went to the queue, not to whoever asks next
  io.run();
  CHECK(order == std::vector<int>{0, 1, 2, 3, 4, 5});
  CHECK(mu.try_lock());
  mu.unlock();
  if constexpr (!STALLSCOPE_ENABLED) return;
  CHECK(alock("stallscope_lock_contended_total", name) == kWaiters);
  CHECK(alock("stallscope_lock_try_failures_total", name) == 1);
  CHECK(alock("stallscope_lock_acquisitions_total", name) == kWaiters + 2);
}

TEST_CASE("an async mutex wait can be cancelled or timed out without taking the lock",
          "[async_mutex][asio][cancel]") {
  const std::string name = unique_name("alock-cancel");
  AsyncMutex mu(name);
  asio::io_context io;
  {
    std::unique_lock held(mu);
    asio::cancellation_signal signal;
    std::optional<boost::system::error_code> ec;
    mu.async_lock(asio::bind_cancellation_slot(
        signal.slot(),
        asio::bind_executor(io, [&](boost::system::error_code e, AsyncMutex::Guard g) {
          ec = e;
          CHECK_FALSE(g.owns_lock());
        })));
    io.poll();
    signal.emit(asio::cancellation_type::total);
    io.run();
    REQUIRE(ec.has_value());
    CHECK(*ec == asio::error::operation_aborted);
    bool got = true;
    std::thread([&] { got = mu.try_lock_for(std::chrono::milliseconds(1)); }).join();
    CHECK_FALSE(got);
  }
  CHECK(mu.try_lock());  // nobody kept it
  mu.unlock();
  if constexpr (!STALLSCOPE_ENABLED) return;
  CHECK(value("stallscope_lock_cancelled_total",
              {{"kind", "async_lock"}, {"resource", name}, {"op", "exclusive"}}) == 1);
  CHECK(alock("stallscope_lock_timeouts_total", name) == 1);
  CHECK(alock("stallscope_lock_contended_total", name) == 2);
  CHECK(alock("stallscope_lock_acquisitions_total", name) == 2);
}

TEST_CASE("a guard unlocks when it goes out of scope and can be moved or unlocked early",
          "[async_mutex][asio]") {
  AsyncMutex mu(unique_name("guard"));
  asio::io_context io;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        {
          auto guard = co_await mu.async_lock();
          CHECK(guard.owns_lock());
          CHECK_FALSE(mu.try_lock());
          AsyncMutex::Guard moved = std::move(guard);
          CHECK_FALSE(guard.owns_lock());  // NOLINT(bugprone-use-after-move): checked on purpose
          CHECK(moved.owns_lock());
          moved.unlock();
          CHECK_FALSE(moved);
          CHECK(mu.try_lock());
          mu.unlock();
          guard = co_await mu.async_lock();
        }
        CHECK(mu.try_lock());
        mu.unlock();
      },
      asio::detached);
  io.run();
}

TEST_CASE("an async mutex shares the lock families with plain locks, each exported once",
          "[async_mutex][registry]") {
  if constexpr (!STALLSCOPE_ENABLED) return;
  const std::string name = unique_name("beside-locks");
  stallscope::Mutex plain(name);
  AsyncMutex async(name);
  {
    std::lock_guard a(plain);
    std::lock_guard b(async);
  }
  const auto families = stallscope::Registry::global().collect();
  std::vector<std::string> names;
  for (const auto& f : families) names.push_back(f.name);
  std::sort(names.begin(), names.end());
  CHECK(std::adjacent_find(names.begin(), names.end()) == names.end());
  CHECK(value("stallscope_lock_acquisitions_total", {{"kind", "lock"}, {"resource", name}}) == 1);
  CHECK(alock("stallscope_lock_acquisitions_total", name) == 1);
}
