// The task dump: 10,000 tasks in every state at once (each counted exactly and described right),
// a TaskGroup whose children ignore cancellation, token paths, and the dump's filter.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <catch2/catch.hpp>
#include <fmt/format.h>

#include "stallscope/cancellation.hpp"
#include "stallscope/channel.hpp"
#include "stallscope/mutex.hpp"
#include "stallscope/semaphore.hpp"
#include "stallscope/task.hpp"
#include "stallscope/task_dump.hpp"
#include "support/poll.hpp"

namespace {

namespace asio = boost::asio;
using stallscope::TaskInfo;
using stallscope::TaskRunState;

// A completion token that hears no cancellation: what a task that ignores it awaits with.
auto deaf() { return asio::bind_cancellation_slot(asio::cancellation_slot(), asio::use_awaitable); }

// An io_context run by `n` threads until stop().
class Runner {
 public:
  explicit Runner(int n) : work_(asio::make_work_guard(io)) {
    for (int i = 0; i < n; ++i) threads_.emplace_back([this] { io.run(); });
  }
  ~Runner() { stop(); }
  void stop() {
    work_.reset();
    io.stop();
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  asio::io_context io;

 private:
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::vector<std::thread> threads_;
};

// The tasks of the dump whose names start with "dump-", by name.
std::map<std::string, std::vector<TaskInfo>> ours(const stallscope::TaskDump& d) {
  std::map<std::string, std::vector<TaskInfo>> by_name;
  for (const TaskInfo& t : d.tasks) {
    if (t.name.rfind("dump-", 0) == 0) by_name[std::string(t.name)].push_back(t);
  }
  return by_name;
}

// Dumps until `done(dump)` holds or 60 s pass; returns the last dump.
template <class Pred>
stallscope::TaskDump dump_until(Pred done) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  stallscope::TaskDump d = stallscope::dump_tasks();
  while (!done(d) && std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    d = stallscope::dump_tasks();
  }
  return d;
}

std::size_t count(const std::vector<TaskInfo>& ts, TaskRunState s) {
  return static_cast<std::size_t>(
      std::count_if(ts.begin(), ts.end(), [s](const TaskInfo& t) { return t.state == s; }));
}

std::string target(const TaskInfo& t) {
  return fmt::format("{}/{}/{}", t.wait_kind, t.wait_resource, t.wait_op);
}

}  // namespace

TEST_CASE("a dump of 10,000 tasks in mixed states counts every one in its state exactly",
          "[task_dump][concurrency]") {
  if constexpr (!STALLSCOPE_ENABLED) return;  // compiled out: no task is recorded
  constexpr std::size_t kQueued = 2000, kAsyncLock = 1500, kReceive = 1500, kSend = 1000,
                        kSemaphore = 1000, kTimer = 1500, kIgnoring = 1496, kRunning = 2;
  constexpr std::size_t kHolders = 1;  // holds the AsyncMutex and the semaphore, on a timer
  constexpr std::size_t kLockBlocked = 1;
  static_assert(kQueued + kAsyncLock + kReceive + kSend + kSemaphore + kTimer + kIgnoring +
                    kRunning + kHolders + kLockBlocked ==
                10'000);

  // The executors first: the primitives go before them, completing their waiters into them.
  asio::io_context never_run;  // its tasks stay queued
  Runner io(1);                // the tasks that wait or sleep
  Runner busy(2);              // two tasks running a slice each
  Runner locked(1);            // one task whose slice blocks on blocking_lock
  stallscope::AsyncMutex mutex("dump-async-lock");
  stallscope::Semaphore sem("dump-semaphore", 1);
  stallscope::Channel<int> empty("dump-empty", 1);
  stallscope::Channel<int> full("dump-full", 1);
  REQUIRE(full.try_send(0).outcome == stallscope::SendOutcome::kEnqueued);
  stallscope::Mutex blocking_lock("dump-held-lock");
  stallscope::CancellationToken ignored("dump-root");
  std::atomic<bool> release{false};
  std::atomic<int> holder_ready{0};

  for (std::size_t i = 0; i < kQueued; ++i) {
    stallscope::spawn(
        never_run.get_executor(), "dump-queued", []() -> asio::awaitable<void> { co_return; },
        asio::detached);
  }
  auto ex = io.io.get_executor();
  stallscope::spawn(
      ex, "dump-holder",
      [&]() -> asio::awaitable<void> {
        auto guard = co_await mutex.async_lock(asio::use_awaitable);
        auto permit = co_await sem.async_acquire(asio::use_awaitable);
        holder_ready = 1;
        asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::hours(1));
        co_await t.async_wait(deaf());
      },
      asio::detached);
  // The holder holds both before anyone queues behind it.
  while (holder_ready.load() == 0) std::this_thread::yield();
  for (std::size_t i = 0; i < kAsyncLock; ++i) {
    stallscope::spawn(
        ex, "dump-async-lock",
        [&]() -> asio::awaitable<void> {
          [[maybe_unused]] auto g = co_await mutex.async_lock(asio::use_awaitable);
        },
        asio::detached);
  }
  for (std::size_t i = 0; i < kSemaphore; ++i) {
    stallscope::spawn(
        ex, "dump-semaphore",
        [&]() -> asio::awaitable<void> {
          [[maybe_unused]] auto p = co_await sem.async_acquire(asio::use_awaitable);
        },
        asio::detached);
  }
  for (std::size_t i = 0; i < kReceive; ++i) {
    stallscope::spawn(
        ex, "dump-receive",
        [&]() -> asio::awaitable<void> {
          [[maybe_unused]] auto v = co_await empty.async_receive(asio::use_awaitable);
        },
        asio::detached);
  }
  for (std::size_t i = 0; i < kSend; ++i) {
    stallscope::spawn(
        ex, "dump-send",
        [&]() -> asio::awaitable<void> {
          [[maybe_unused]] auto r = co_await full.async_send(1, asio::use_awaitable);
        },
        asio::detached);
  }
  for (std::size_t i = 0; i < kTimer; ++i) {
    stallscope::spawn(
        ex, "dump-timer",
        []() -> asio::awaitable<void> {
          asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::hours(1));
          co_await t.async_wait(asio::use_awaitable);
        },
        asio::detached);
  }
  for (std::size_t i = 0; i < kIgnoring; ++i) {
    stallscope::spawn(
        ex, "dump-ignores-cancel", ignored.child("conn"),
        []() -> asio::awaitable<void> {
          asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::hours(1));
          co_await t.async_wait(deaf());
        },
        asio::detached);
  }
  for (std::size_t i = 0; i < kRunning; ++i) {
    stallscope::spawn(
        busy.io.get_executor(), "dump-running",
        [&]() -> asio::awaitable<void> {
          while (!release.load()) std::this_thread::yield();
          co_return;
        },
        asio::detached);
  }
  blocking_lock.lock();
  stallscope::spawn(
      locked.io.get_executor(), "dump-lock-blocked",
      [&]() -> asio::awaitable<void> {
        std::lock_guard g(blocking_lock);
        co_return;
      },
      asio::detached);

  auto settled = [&](const stallscope::TaskDump& d) {
    auto o = ours(d);
    return count(o["dump-async-lock"], TaskRunState::kWaiting) == kAsyncLock &&
           count(o["dump-semaphore"], TaskRunState::kWaiting) == kSemaphore &&
           count(o["dump-receive"], TaskRunState::kWaiting) == kReceive &&
           count(o["dump-send"], TaskRunState::kWaiting) == kSend &&
           count(o["dump-timer"], TaskRunState::kSuspended) == kTimer &&
           count(o["dump-ignores-cancel"], TaskRunState::kSuspended) == kIgnoring &&
           count(o["dump-running"], TaskRunState::kRunning) == kRunning &&
           count(o["dump-lock-blocked"], TaskRunState::kWaiting) == kLockBlocked &&
           count(o["dump-holder"], TaskRunState::kSuspended) == kHolders;
  };
  dump_until(settled);
  ignored.cancel();  // they ignore it: still suspended, now with cancellation requested
  const stallscope::TaskDump d = dump_until([&](const stallscope::TaskDump& x) {
    const auto o = ours(x);
    const auto it = o.find("dump-ignores-cancel");
    return settled(x) && it != o.end() &&
           std::all_of(it->second.begin(), it->second.end(),
                       [](const TaskInfo& t) { return t.cancel_requested; });
  });

  auto o = ours(d);
  std::size_t total = 0;
  for (const auto& [name, ts] : o) total += ts.size();
  CHECK(total == 10'000);
  CHECK(o["dump-queued"].size() == kQueued);
  CHECK(count(o["dump-queued"], TaskRunState::kQueued) == kQueued);
  CHECK(count(o["dump-async-lock"], TaskRunState::kWaiting) == kAsyncLock);
  CHECK(count(o["dump-semaphore"], TaskRunState::kWaiting) == kSemaphore);
  CHECK(count(o["dump-receive"], TaskRunState::kWaiting) == kReceive);
  CHECK(count(o["dump-send"], TaskRunState::kWaiting) == kSend);
  CHECK(count(o["dump-timer"], TaskRunState::kSuspended) == kTimer);
  CHECK(count(o["dump-ignores-cancel"], TaskRunState::kSuspended) == kIgnoring);
  CHECK(count(o["dump-running"], TaskRunState::kRunning) == kRunning);
  CHECK(count(o["dump-lock-blocked"], TaskRunState::kWaiting) == kLockBlocked);
  CHECK(count(o["dump-holder"], TaskRunState::kSuspended) == kHolders);
  // Every live task is in the totals, in its state (other tests' tasks may be alive too).
  CHECK(d.live >= 10'000);
  CHECK(d.by_state[static_cast<std::size_t>(TaskRunState::kWaiting)] >=
        kAsyncLock + kSemaphore + kReceive + kSend + kLockBlocked);

  // What each waits on, named as /metrics labels it.
  for (const TaskInfo& t : o["dump-async-lock"]) {
    CHECK(target(t) == "async_lock/dump-async-lock/exclusive");
    CHECK_FALSE(t.blocks_thread);
  }
  for (const TaskInfo& t : o["dump-semaphore"])
    CHECK(target(t) == "semaphore/dump-semaphore/acquire");
  for (const TaskInfo& t : o["dump-receive"]) CHECK(target(t) == "channel/dump-empty/receive");
  for (const TaskInfo& t : o["dump-send"]) CHECK(target(t) == "channel/dump-full/send");
  for (const TaskInfo& t : o["dump-lock-blocked"]) {
    CHECK(target(t) == "lock/dump-held-lock/exclusive");
    CHECK(t.blocks_thread);
  }
  for (const TaskInfo& t : o["dump-ignores-cancel"]) {
    CHECK(t.cancel_requested);
    CHECK(t.token_path == "dump-root/conn");
    CHECK(t.wait_kind.empty());
  }
  for (const TaskInfo& t : o["dump-timer"]) {
    CHECK_FALSE(t.cancel_requested);
    CHECK(t.token_path.empty());
  }
  // Longest in its state first.
  for (std::size_t i = 1; i < d.tasks.size(); ++i) {
    REQUIRE(d.tasks[i - 1].state_seconds >= d.tasks[i].state_seconds);
  }

  // The filter: by name, by state, by cancellation.
  stallscope::TaskFilter by_name;
  by_name.name = "dump-send";
  const auto sends = stallscope::dump_tasks(by_name);
  CHECK(sends.tasks.size() == kSend);
  CHECK(sends.live >= 10'000);
  CHECK(sends.matched == kSend);
  // A limit keeps the first tasks of the full order (the sends wait, each since its own time)
  // and still counts every match.
  by_name.limit = 10;
  const auto first = stallscope::dump_tasks(by_name);
  CHECK(first.matched == kSend);
  REQUIRE(first.tasks.size() == 10);
  for (std::size_t i = 0; i < first.tasks.size(); ++i)
    CHECK(first.tasks[i].id == sends.tasks[i].id);
  by_name.limit = 0;
  stallscope::TaskFilter running;
  running.state = TaskRunState::kRunning;
  const auto run = stallscope::dump_tasks(running);
  CHECK(std::count_if(run.tasks.begin(), run.tasks.end(),
                      [](const TaskInfo& t) { return t.name == "dump-running"; }) == kRunning);
  CHECK(std::all_of(run.tasks.begin(), run.tasks.end(),
                    [](const TaskInfo& t) { return t.state == TaskRunState::kRunning; }));
  stallscope::TaskFilter cancelled;
  cancelled.cancel_requested = true;
  by_name.name = "dump-ignores-cancel";
  CHECK(stallscope::dump_tasks(by_name).tasks.size() == kIgnoring);
  const auto c = stallscope::dump_tasks(cancelled);
  CHECK(std::count_if(c.tasks.begin(), c.tasks.end(), [](const TaskInfo& t) {
          return t.name == "dump-ignores-cancel";
        }) == kIgnoring);

  release = true;
  blocking_lock.unlock();
  busy.stop();
  locked.stop();
  io.stop();
}

TEST_CASE("children of a cancelled TaskGroup that ignore it show what each still waits on",
          "[task_dump][task_group][concurrency]") {
  if constexpr (!STALLSCOPE_ENABLED) return;
  Runner io(1);
  stallscope::AsyncMutex mutex("dump-group-lock");
  stallscope::Channel<int> jobs("dump-group-jobs", 4);
  stallscope::CancellationToken server("dump-server");
  REQUIRE(mutex.try_lock());
  {
    stallscope::TaskGroup group(io.io.get_executor(), "workers", server);
    for (int i = 0; i < 3; ++i) {
      REQUIRE(group.spawn("dump-group-locker", [&]() -> asio::awaitable<void> {
        [[maybe_unused]] auto g = co_await mutex.async_lock(deaf());
      }));
      REQUIRE(group.spawn("dump-group-reader", [&]() -> asio::awaitable<void> {
        [[maybe_unused]] auto v = co_await jobs.async_receive(deaf());
      }));
    }
    REQUIRE(group.spawn("dump-group-polite", [&]() -> asio::awaitable<void> {
      [[maybe_unused]] auto v =
          co_await jobs.async_receive(asio::use_awaitable);  // leaves on cancel
    }));
    dump_until([](const stallscope::TaskDump& d) {
      auto o = ours(d);
      return count(o["dump-group-locker"], TaskRunState::kWaiting) == 3 &&
             count(o["dump-group-reader"], TaskRunState::kWaiting) == 3 &&
             count(o["dump-group-polite"], TaskRunState::kWaiting) == 1;
    });
    // The polite child leaves on the cancel, but only once the io thread runs it: cancel first
    // and wait for it (however late that thread runs), so that the short grace below decides
    // nothing but that the six deaf children linger.
    group.cancel();
    REQUIRE(stallscope::testing::eventually([&] {
      return group.active() == 6 && ours(stallscope::dump_tasks())["dump-group-polite"].empty();
    }));
    const stallscope::ShutdownReport report =
        group.shutdown_and_wait(std::chrono::milliseconds(50));
    CHECK_FALSE(report.clean);
    CHECK(report.lingering.size() == 6);

    const stallscope::TaskDump d = stallscope::dump_tasks();
    auto o = ours(d);
    CHECK(o["dump-group-polite"].empty());  // it honoured the cancel and exited
    REQUIRE(o["dump-group-locker"].size() == 3);
    REQUIRE(o["dump-group-reader"].size() == 3);
    std::uint64_t group_id = 0;
    for (const char* name : {"dump-group-locker", "dump-group-reader"}) {
      for (const TaskInfo& t : o[name]) {
        INFO(t.name);
        CHECK(t.state == TaskRunState::kWaiting);
        CHECK(t.cancel_requested);
        CHECK(t.cancelled_seconds_ago >= 0.0);
        CHECK(t.group == "workers");
        CHECK(t.group_id != 0);
        if (group_id == 0) group_id = t.group_id;
        CHECK(t.group_id == group_id);  // one group
        CHECK(t.token_path == "dump-server/workers");
      }
    }
    for (const TaskInfo& t : o["dump-group-locker"]) {
      CHECK(target(t) == "async_lock/dump-group-lock/exclusive");
    }
    // A copy of a dump keeps what its views point at after the dump it came from is gone.
    stallscope::TaskFilter lockers;
    lockers.name = "dump-group-locker";
    const stallscope::TaskDump copy = [&] {
      const stallscope::TaskDump original = stallscope::dump_tasks(lockers);
      return stallscope::TaskDump(original);
    }();
    REQUIRE(copy.tasks.size() == 3);
    for (const TaskInfo& t : copy.tasks) {
      CHECK(t.group == "workers");
      CHECK(t.token_path == "dump-server/workers");
    }
    for (const TaskInfo& t : o["dump-group-reader"]) {
      CHECK(target(t) == "channel/dump-group-jobs/receive");
    }
  }
  io.stop();
}

TEST_CASE("token paths name each scope from the root, ~ for an unnamed one", "[task_dump]") {
  stallscope::CancellationToken root("svc");
  CHECK(root.path() == "svc");
  CHECK(root.child("a").child("b").path() == "svc/a/b");
  CHECK(root.child().child("b").path() == "svc/~/b");
  CHECK(stallscope::CancellationToken().path() == "~");
  CHECK(stallscope::CancellationToken().child().path() == "~");
  CHECK(stallscope::CancellationToken::none().path().empty());
  CHECK_THROWS_WITH(root.child("bad name"), Catch::Contains("bad name"));
  CHECK_THROWS_WITH(stallscope::CancellationToken(""), Catch::Contains("empty"));
}

TEST_CASE("a task state name that is not one of the four is refused, naming it", "[task_dump]") {
  CHECK(stallscope::parse_task_run_state("waiting") == TaskRunState::kWaiting);
  CHECK_THROWS_WITH(stallscope::parse_task_run_state("sleeping"),
                    Catch::Contains("\"sleeping\"") && Catch::Contains("running"));
}
