// The deadlock detector (agent/src/waitfor.cpp): cycles in the wait-for graph over stallscope
// locks, async locks and channels are reported with every participant, each once; long waits
// that are no cycle are not.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <latch>
#include <mutex>
#include <shared_mutex>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <catch2/catch.hpp>

#include "../support/poll.hpp"
#include "stallscope/cancellation.hpp"
#include "stallscope/channel.hpp"
#include "stallscope/detectors.hpp"
#include "stallscope/mutex.hpp"
#include "stallscope/semaphore.hpp"
#include "stallscope/task.hpp"
#include "stallscope/watchdog.hpp"

namespace asio = boost::asio;
using stallscope::testing::eventually;
using stallscope::testing::unique_name;

namespace {

// The current deadlock whose participants wait for exactly `resources` (any order).
std::optional<stallscope::DeadlockReport> deadlock_over(std::vector<std::string> resources) {
  std::sort(resources.begin(), resources.end());
  for (const auto& d : stallscope::current_deadlocks()) {
    std::vector<std::string> waits;
    for (const auto& p : d.participants) waits.push_back(p.waits_for);
    std::sort(waits.begin(), waits.end());
    if (waits == resources) return d;
  }
  return std::nullopt;
}

const stallscope::DeadlockParticipant* waiting_for(const stallscope::DeadlockReport& d,
                                                   const std::string& resource) {
  for (const auto& p : d.participants) {
    if (p.waits_for == resource) return &p;
  }
  return nullptr;
}

bool holds(const stallscope::DeadlockParticipant& p, const std::string& resource) {
  return std::find(p.holds.begin(), p.holds.end(), resource) != p.holds.end();
}

// Each of `n` threads holds lock i and then waits for lock i + 1 (timed, retried until the test
// stops it), closing a ring. No thread lets go of its lock before every thread has stopped
// trying, so no timed attempt ever succeeds. (Besides, GCC 12's ThreadSanitizer does not
// intercept pthread_mutex_clocklock, which std::timed_mutex::try_lock_for uses after its first
// try: it takes the unlock after an attempt that succeeded while waiting for a bug.)
template <class Lock>
class Ring {
 public:
  explicit Ring(std::vector<Lock*> locks)
      : locks_(std::move(locks)),
        all_hold_(static_cast<std::ptrdiff_t>(locks_.size())),
        all_stopped_(static_cast<std::ptrdiff_t>(locks_.size())) {
    for (std::size_t i = 0; i < locks_.size(); ++i) {
      threads_.emplace_back([this, i](std::stop_token stop) {
        Lock& mine = *locks_[i];
        Lock& next = *locks_[(i + 1) % locks_.size()];
        std::lock_guard held(mine);
        all_hold_.arrive_and_wait();
        while (!stop.stop_requested()) {
          if (next.try_lock_for(std::chrono::milliseconds(50))) {
            next.unlock();  // never: the ring holds it until every thread has stopped
            break;
          }
        }
        all_stopped_.arrive_and_wait();
      });
    }
  }
  ~Ring() { stop(); }
  void stop() {
    for (auto& t : threads_) t.request_stop();
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

 private:
  std::vector<Lock*> locks_;
  std::latch all_hold_;
  std::latch all_stopped_;
  std::vector<std::jthread> threads_;
};

}  // namespace

TEST_CASE("a two-lock cycle between two threads is reported once, with both participants",
          "[deadlock]") {
  if constexpr (!STALLSCOPE_ENABLED) return;
  const std::string a_name = unique_name("dl-two-a");
  const std::string b_name = unique_name("dl-two-b");
  stallscope::TimedMutex a(a_name);
  stallscope::TimedMutex b(b_name);
  const std::uint64_t before = stallscope::deadlocks_total();
  stallscope::Watchdog watchdog;
  Ring<stallscope::TimedMutex> ring({&a, &b});

  const std::string la = "lock/" + a_name;
  const std::string lb = "lock/" + b_name;
  REQUIRE(eventually([&] { return deadlock_over({la, lb}).has_value(); }));
  const auto d = *deadlock_over({la, lb});
  REQUIRE(d.participants.size() == 2);
  const auto* waits_b = waiting_for(d, lb);
  const auto* waits_a = waiting_for(d, la);
  REQUIRE(waits_b != nullptr);
  REQUIRE(waits_a != nullptr);
  CHECK(holds(*waits_b, la));
  CHECK(holds(*waits_a, lb));
  CHECK(waits_a->name.starts_with("thread "));
  CHECK(waits_a->name != waits_b->name);
  CHECK(waits_a->op == "lock");
  CHECK(waits_a->waited_seconds >= 0);

  // The timed waits give up and start again every 50 ms: still the one cycle, counted once.
  const auto seq = d.seq;
  REQUIRE(eventually([&] {
    const auto now = deadlock_over({la, lb});
    return now && now->age_seconds > 0.6;
  }));
  CHECK(deadlock_over({la, lb})->seq == seq);
  CHECK(stallscope::deadlocks_total() - before == 1);

  ring.stop();
  CHECK(eventually([&] { return !deadlock_over({la, lb}).has_value(); }));
  CHECK(stallscope::deadlocks_total() - before == 1);
}

TEST_CASE("a three-party cycle through a shared holder is reported", "[deadlock]") {
  if constexpr (!STALLSCOPE_ENABLED) return;
  const std::string s_name = unique_name("dl-three-s");
  const std::string m1_name = unique_name("dl-three-m1");
  const std::string m2_name = unique_name("dl-three-m2");
  stallscope::SharedTimedMutex s(s_name);
  stallscope::TimedMutex m1(m1_name);
  stallscope::TimedMutex m2(m2_name);
  stallscope::Watchdog watchdog;
  std::latch all_hold(3);
  std::latch all_stopped(3);
  std::atomic<bool> stop{false};
  // Retries until the test stops, then waits until all three have stopped before the caller lets
  // go of what it holds, so no timed attempt succeeds (see Ring).
  auto wait_until_stopped = [&](auto& lock) {
    while (!stop.load()) {
      if (lock.try_lock_for(std::chrono::milliseconds(50))) {
        lock.unlock();  // never: the cycle holds it until all have stopped
        break;
      }
    }
    all_stopped.arrive_and_wait();
  };
  // t0 reads s and waits for m1; t1 holds m1 and waits for m2; t2 holds m2 and waits to write s.
  std::jthread t0([&] {
    std::shared_lock held(s);
    all_hold.arrive_and_wait();
    wait_until_stopped(m1);
  });
  std::jthread t1([&] {
    std::lock_guard held(m1);
    all_hold.arrive_and_wait();
    wait_until_stopped(m2);
  });
  std::jthread t2([&] {
    std::lock_guard held(m2);
    all_hold.arrive_and_wait();
    wait_until_stopped(s);
  });

  const std::string ls = "rwlock/" + s_name;
  const std::string l1 = "lock/" + m1_name;
  const std::string l2 = "lock/" + m2_name;
  REQUIRE(eventually([&] { return deadlock_over({ls, l1, l2}).has_value(); }));
  const auto d = *deadlock_over({ls, l1, l2});
  REQUIRE(d.participants.size() == 3);
  CHECK(holds(*waiting_for(d, l1), ls));
  CHECK(holds(*waiting_for(d, l2), l1));
  CHECK(holds(*waiting_for(d, ls), l2));
  stop = true;
}

TEST_CASE("a long wait behind a slow holder is no deadlock", "[deadlock]") {
  if constexpr (!STALLSCOPE_ENABLED) return;
  const std::string name = unique_name("dl-slow");
  stallscope::Mutex m(name);
  const std::uint64_t before = stallscope::deadlocks_total();
  stallscope::Watchdog watchdog;
  std::atomic<bool> waiting_done{false};
  std::unique_lock held(m);
  std::jthread waiter([&] {
    std::lock_guard got(m);
    waiting_done = true;
  });
  // The waiter waits for 1 s, five detector builds; the holder (this thread) waits for nothing.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  bool reported = false;
  while (std::chrono::steady_clock::now() < until) {
    for (const auto& d : stallscope::current_deadlocks()) {
      for (const auto& p : d.participants) reported = reported || p.waits_for == "lock/" + name;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  held.unlock();
  waiter.join();
  CHECK(waiting_done);
  CHECK_FALSE(reported);
  CHECK(stallscope::deadlocks_total() == before);
}

TEST_CASE("two coroutines each holding the async lock the other waits for are reported",
          "[deadlock][task]") {
  if constexpr (!STALLSCOPE_ENABLED) return;
  const std::string a_name = unique_name("dl-async-a");
  const std::string b_name = unique_name("dl-async-b");
  stallscope::AsyncMutex ma(a_name);
  stallscope::AsyncMutex mb(b_name);
  stallscope::Watchdog watchdog;
  asio::io_context io;
  stallscope::CancellationToken token;
  // Each task takes its own lock, then (after the other took its) the other's.
  auto task = [&](stallscope::AsyncMutex& mine, stallscope::AsyncMutex& other) {
    return [&]() -> asio::awaitable<void> {
      auto held = co_await mine.async_lock(asio::use_awaitable);
      auto never = co_await other.async_lock(asio::use_awaitable);
    };
  };
  stallscope::spawn(io.get_executor(), "dl-task-a", token, task(ma, mb), asio::detached);
  stallscope::spawn(io.get_executor(), "dl-task-b", token, task(mb, ma), asio::detached);
  std::jthread runner([&] { io.run(); });

  const std::string la = "async_lock/" + a_name;
  const std::string lb = "async_lock/" + b_name;
  REQUIRE(eventually([&] { return deadlock_over({la, lb}).has_value(); }));
  const auto d = *deadlock_over({la, lb});
  REQUIRE(d.participants.size() == 2);
  const auto* a = waiting_for(d, lb);
  const auto* b = waiting_for(d, la);
  REQUIRE(a != nullptr);
  REQUIRE(b != nullptr);
  CHECK(a->task == "dl-task-a");
  CHECK(b->task == "dl-task-b");
  CHECK(holds(*a, la));
  CHECK(holds(*b, lb));
  CHECK(a->name.starts_with("task dl-task-a#"));

  token.cancel();  // both waits end with operation_aborted; the tasks finish
  runner.join();
  CHECK(eventually([&] { return !deadlock_over({la, lb}).has_value(); }));
}

TEST_CASE(
    "a task holding a lock while blocked on a full channel whose receiver waits for the "
    "lock is reported",
    "[deadlock][task][channel]") {
  if constexpr (!STALLSCOPE_ENABLED) return;
  const std::string lock_name = unique_name("dl-chan-lock");
  const std::string chan_name = unique_name("dl-chan");
  stallscope::Mutex l(lock_name);
  stallscope::Channel<int> ch(chan_name, 1);
  stallscope::Channel<int> go(unique_name("dl-chan-go"), 1);
  stallscope::Watchdog watchdog;
  stallscope::CancellationToken token;
  asio::io_context io_a;
  asio::io_context io_b;
  REQUIRE(ch.try_send(0).outcome == stallscope::SendOutcome::kEnqueued);

  // B receives from the channel once (so it is the channel's receiver), then, told to, takes l.
  stallscope::spawn(
      io_b.get_executor(), "dl-receiver",
      [&]() -> asio::awaitable<void> {
        (void)co_await ch.async_receive(asio::use_awaitable);
        (void)co_await go.async_receive(asio::use_awaitable);
        std::lock_guard got(l);
      },
      asio::detached);
  // A takes l, fills the channel, tells B to go and blocks sending once more, holding l.
  stallscope::spawn(
      io_a.get_executor(), "dl-sender", token,
      [&]() -> asio::awaitable<void> {
        std::lock_guard held(l);
        (void)co_await ch.async_send(1, asio::use_awaitable);
        (void)go.try_send(1);
        (void)co_await ch.async_send(2, asio::use_awaitable);
      },
      asio::detached);
  std::jthread run_b([&] { io_b.run(); });
  std::jthread run_a([&] { io_a.run(); });

  const std::string lc = "channel/" + chan_name + " (its receivers)";
  const std::string ll = "lock/" + lock_name;
  REQUIRE(eventually([&] { return deadlock_over({lc, ll}).has_value(); }));
  const auto d = *deadlock_over({lc, ll});
  const auto* sender = waiting_for(d, lc);
  const auto* receiver = waiting_for(d, ll);
  REQUIRE(sender != nullptr);
  REQUIRE(receiver != nullptr);
  CHECK(sender->task == "dl-sender");
  CHECK(sender->op == "send");
  CHECK(holds(*sender, ll));
  CHECK(receiver->task == "dl-receiver");
  CHECK(holds(*receiver, "receives from channel/" + chan_name));

  token.cancel();  // the send ends cancelled, A releases l, B takes it
  run_a.join();
  run_b.join();
  CHECK(eventually([&] { return !deadlock_over({lc, ll}).has_value(); }));
}
