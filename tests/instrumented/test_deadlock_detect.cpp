// The deadlock detector (agent/src/waitfor.cpp): cycles in the wait-for graph over stallscope
// locks, async locks and channels are reported with every participant, each once; long waits
// that are no cycle are not.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <latch>
#include <mutex>
#include <optional>
#include <semaphore>
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
#include "stallscope/detail/waitfor.hpp"
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

#if STALLSCOPE_ENABLED
// One build of the wait-for graph with the detection, as the Watchdog makes every 200 ms.
void build_and_detect() { stallscope::detail::scan_deadlocks(); }
// Whether a thread waits for the stallscope lock named `name` in a wait-for graph built now.
bool waits_in_graph(const std::string& name) {
  const stallscope::detail::WaitforBuilder g = stallscope::detail::build_waitfor_graph();
  for (const auto& node : g.nodes) {
    for (const auto& w : node.waits) {
      if (g.resources[w.res].name == name) return true;
    }
  }
  return false;
}
#else
void build_and_detect() {}
bool waits_in_graph(const std::string&) { return false; }
#endif

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
  // The detector's builds are made here, not by a Watchdog: the ring's timed waits break the
  // cycle for a moment every 50 ms, and a ring thread descheduled in that moment for two builds
  // would make it a new cycle (that rule has a test of its own below).
  Ring<stallscope::TimedMutex> ring({&a, &b});

  const std::string la = "lock/" + a_name;
  const std::string lb = "lock/" + b_name;
  REQUIRE(eventually([&] {
    build_and_detect();
    return deadlock_over({la, lb}).has_value();
  }));
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
  CHECK(stallscope::deadlocks_total() - before == 1);

  ring.stop();
  CHECK(eventually([&] {
    build_and_detect();
    return !deadlock_over({la, lb}).has_value();
  }));
  CHECK(stallscope::deadlocks_total() - before == 1);
}

namespace {

// What the detector made of a cycle that a timed wait broke and re-formed (see the test below).
struct Reforming {
  bool conclusive = false;  // every build that had to see the cycle saw it
  std::optional<std::uint64_t> first, hidden, after_one_miss, after_two_misses;
  std::uint64_t reported_after_one_miss = 0, reported_after_two_misses = 0;
};

// Thread `a` holds lock A and waits for lock B, each timed wait (`timeout` long) started by the
// test; thread `b` holds B and waits for A, untimed. The test builds the graph itself: with the
// cycle whole (`a` inside a wait it started before the builds and has not left after them: it
// cannot start another unless the test lets it), and with it broken (`a` between waits). A build
// that a wait's timeout may have overtaken makes the run inconclusive, to be run again longer.
Reforming reform_cycle(std::chrono::milliseconds timeout) {
  Reforming r;
  const std::string a_name = unique_name("dl-reform-a");
  const std::string b_name = unique_name("dl-reform-b");
  stallscope::Mutex a(a_name);
  stallscope::TimedMutex b(b_name);
  std::latch both_hold(2);
  std::counting_semaphore<> gate(0);
  std::atomic<int> ended{0};
  std::atomic<bool> stop{false};
  int started = 0;
  std::jthread ta([&] {
    std::lock_guard held(a);
    both_hold.arrive_and_wait();
    for (;;) {
      gate.acquire();
      if (stop.load()) break;
      if (b.try_lock_for(timeout)) {  // never: b holds B until this thread lets go of A
        b.unlock();
        break;
      }
      ended.fetch_add(1);
    }
  });
  std::jthread tb([&] {
    std::lock_guard held(b);
    both_hold.arrive_and_wait();
    std::lock_guard got(a);  // until `a` has stopped
  });
  const std::string la = "lock/" + a_name;
  const std::string lb = "lock/" + b_name;
  const auto seq = [&]() -> std::optional<std::uint64_t> {
    const auto d = deadlock_over({la, lb});
    return d ? std::optional<std::uint64_t>(d->seq) : std::nullopt;
  };
  // Starts a wait of `a` and builds `builds` times while it lasts; false if it may have ended.
  const auto whole = [&](int builds) {
    ++started;
    gate.release();
    if (!eventually([&] { return waits_in_graph(b_name); })) return false;
    for (int i = 0; i < builds; ++i) build_and_detect();
    return waits_in_graph(b_name) && ended.load() == started - 1;
  };
  // Waits until `a`'s wait has given up, then builds `builds` times without the cycle.
  const auto broken = [&](int builds) {
    if (!eventually([&] { return ended.load() == started; })) return false;
    for (int i = 0; i < builds; ++i) build_and_detect();
    return true;
  };
  const std::uint64_t before = stallscope::deadlocks_total();
  const bool ok = [&] {
    if (!eventually([&] { return waits_in_graph(a_name); })) return false;  // b waits for A
    if (!whole(2)) return false;
    r.first = seq();
    if (!broken(1)) return false;
    r.hidden = seq();
    if (!whole(1)) return false;
    r.after_one_miss = seq();
    r.reported_after_one_miss = stallscope::deadlocks_total() - before;
    if (!broken(2) || !whole(2)) return false;
    r.after_two_misses = seq();
    r.reported_after_two_misses = stallscope::deadlocks_total() - before;
    return true;
  }();
  r.conclusive = ok;
  stop = true;
  gate.release();
  ta.join();
  tb.join();
  return r;
}

}  // namespace

TEST_CASE("a cycle broken for one build is the same deadlock; broken for two, a new one",
          "[deadlock]") {
  if constexpr (!STALLSCOPE_ENABLED) return;
  // Each run waits out two timeouts; a run that the machine stalled for a whole timeout is run
  // again with a longer one.
  Reforming r;
  for (auto timeout = std::chrono::milliseconds(200);
       !r.conclusive && timeout <= std::chrono::milliseconds(12800); timeout *= 2) {
    r = reform_cycle(timeout);
  }
  REQUIRE(r.conclusive);
  REQUIRE(r.first.has_value());       // two builds in a row: reported
  CHECK_FALSE(r.hidden.has_value());  // not in the last build: not current
  REQUIRE(r.after_one_miss.has_value());
  CHECK(*r.after_one_miss == *r.first);  // the timed wait re-formed it: still the one cycle
  CHECK(r.reported_after_one_miss == 1);
  REQUIRE(r.after_two_misses.has_value());
  CHECK(*r.after_two_misses != *r.first);  // forgotten, then found again: a new report
  CHECK(r.reported_after_two_misses == 2);
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
  // Kept as found: the next build may come while a timed wait has given up, and hide it.
  std::optional<stallscope::DeadlockReport> found;
  REQUIRE(eventually([&] {
    found = deadlock_over({ls, l1, l2});
    return found.has_value();
  }));
  const auto d = *found;
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
