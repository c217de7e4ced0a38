// The executor as a resource: wake-ups' scheduling delay, the lag probe, thread time by cause.
#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <catch2/catch.hpp>

#include "stallscope/executor.hpp"
#include "stallscope/mutex.hpp"
#include "stallscope/task.hpp"
#include "support/metrics.hpp"
#include "support/poll.hpp"
#include "support/tasks.hpp"

namespace asio = boost::asio;
using namespace stallscope::testing;

namespace {

// Spawns a task named `name` on `io` that spins for `d` in one slice.
void spawn_spinner(asio::io_context& io, const std::string& name, std::chrono::nanoseconds d) {
  stallscope::spawn(
      io.get_executor(), name,
      [d]() -> asio::awaitable<void> {
        spin_for(d);
        co_return;
      },
      asio::detached);
}

double schedule_sum(const std::string& kind, const std::string& name) {
  auto h = histogram("stallscope_wait_seconds",
                     {{"kind", kind}, {"resource", name}, {"op", "schedule"}});
  return h ? h->sum : -1;
}

// Runs a task woken by a timer on `io`: its executor's probe starts at the first such wake-up.
void warm_up(asio::io_context& io) {
  stallscope::spawn(
      io.get_executor(), "warm-up",
      []() -> asio::awaitable<void> {
        asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(1));
        co_await t.async_wait(asio::use_awaitable);
      },
      asio::detached);
  io.run();
  io.restart();
}

}  // namespace

TEST_CASE("a timer-woken task's scheduling delay includes the time a hog held the executor",
          "[executor][schedule]") {
  if constexpr (!STALLSCOPE_ENABLED) return;
  // The reproduction: one thread; A waits on a 1 ms timer while B spins 50 ms in one
  // slice. A wakes about 49 ms late; the dispatch itself takes microseconds.
  asio::io_context io(1);
  const auto probe_start = std::chrono::steady_clock::now();  // before the probe's first tick
  warm_up(io);
  const std::string a = unique_name("timer-victim");
  double late_seconds = -1;
  double since_probe_seconds = -1;
  std::chrono::steady_clock::time_point expiry{};
  std::chrono::steady_clock::time_point hog_end{};
  stallscope::spawn(
      io.get_executor(), a,
      [&]() -> asio::awaitable<void> {
        asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(1));
        expiry = t.expiry();
        co_await t.async_wait(asio::use_awaitable);
        const auto now = std::chrono::steady_clock::now();
        late_seconds = std::chrono::duration<double>(now - t.expiry()).count();
        since_probe_seconds = std::chrono::duration<double>(now - probe_start).count();
      },
      asio::detached);
  stallscope::spawn(
      io.get_executor(), unique_name("hog"),
      [&]() -> asio::awaitable<void> {
        spin_for(std::chrono::milliseconds(50));
        hog_end = std::chrono::steady_clock::now();
        co_return;
      },
      asio::detached);
  io.run();
  REQUIRE(late_seconds > 0.040);
  // Two measurements of the same run: what A saw, and what stallscope recorded for it. A was
  // ready at its expiry and could not run before the hog's slice ended. Run in the probe's late
  // batch, right behind a tick that expired before it, A is given that tick's lateness: at least
  // the hog's time (to the 1 ms grid). A thread descheduled within the batch, more than half a
  // period between that tick and A, makes the estimate half the time the tick was overdue
  // (ExecutorSite::estimate): so at least half of it, on any machine. No estimate exceeds the
  // time since the probe started.
  const double recorded = schedule_sum("task", a);
  const double hog_seconds = std::chrono::duration<double>(hog_end - expiry).count();
  CHECK(recorded >= (hog_seconds - 0.001) / 2);
  CHECK(recorded <= since_probe_seconds);
  CHECK(schedule_sum("executor", "io_context") >= recorded);
}

TEST_CASE("an application that only posts never starts the probe", "[executor]") {
  if constexpr (!STALLSCOPE_ENABLED) return;
  // Its timers would make the io_context run its reactor once per turn of the queue.
  const std::string name = unique_name("posting-only");
  asio::io_context io;
  stallscope::spawn(
      io.get_executor(), name,
      []() -> asio::awaitable<void> {
        for (int i = 0; i < 100; ++i) {
          co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
        }
      },
      asio::detached);
  io.run();
  REQUIRE(asio::has_service<stallscope::detail::ExecutorProbe>(io));  // the executor's series
  CHECK_FALSE(asio::use_service<stallscope::detail::ExecutorProbe>(io).site().probing());
  CHECK(schedule_sum("executor", "io_context") >= schedule_sum("task", name));
}

TEST_CASE("the executor's probe does not keep io.run() from returning", "[executor]") {
  asio::io_context io;
  stallscope::monitor_executor(io, unique_name("probe-only"));
  int ran = 0;
  stallscope::spawn(
      io.get_executor(), unique_name("short"),
      [&]() -> asio::awaitable<void> {
        asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(5));
        co_await t.async_wait(asio::use_awaitable);
        ++ran;
      },
      asio::detached);
  io.run();  // returns once the task is done, although the probe's ticks are pending
  CHECK(ran == 1);
  io.restart();
  stallscope::spawn(
      io.get_executor(), unique_name("again"),
      [&]() -> asio::awaitable<void> {
        ++ran;
        co_return;
      },
      asio::detached);
  CHECK(stallscope::run(io) > 0);  // and so does stallscope::run
  CHECK(ran == 2);
}

TEST_CASE("a named executor's probe records its lag", "[executor]") {
  if constexpr (!STALLSCOPE_ENABLED) return;
  const std::string name = unique_name("named-io");
  asio::io_context io;
  stallscope::monitor_executor(io, name);
  CHECK_THROWS_WITH(stallscope::monitor_executor(io, "bad name"), Catch::Contains("bad name"));
  // Armed from a handler posted after monitor_executor()'s start of the probe, so that the
  // probe's ticks are armed before the timer whatever the delay before io.run() starts: the 20
  // ms it waits hold at least 19 ticks.
  asio::steady_timer keep(io);
  asio::post(io, [&] {
    keep.expires_after(std::chrono::milliseconds(20));
    keep.async_wait([](boost::system::error_code) {});
  });
  const auto started = std::chrono::steady_clock::now();
  io.run();
  const double ran_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  auto lag = histogram("stallscope_executor_lag_seconds", {{"resource", name}});
  REQUIRE(lag.has_value());
  // A tick a millisecond while the timer kept the io_context running: the ticks that expired
  // before it run in its batch or earlier, however late the machine ran them.
  CHECK(lag->count >= 5);
  // In seconds: no tick can be later than the whole run (how on time an idle executor is
  // depends on the machine's load, so it is not asserted).
  CHECK(lag->sum >= 0);
  CHECK(lag->sum <= static_cast<double>(lag->count) * ran_seconds);
}

TEST_CASE("stallscope::run counts its thread's idle, task and other-handler time",
          "[executor][concurrency]") {
  if constexpr (!STALLSCOPE_ENABLED) return;
  const std::string name = unique_name("accounted-io");
  asio::io_context io;
  stallscope::monitor_executor(io, name);
  auto work = asio::make_work_guard(io);
  std::thread runner([&] { stallscope::run(io); });
  auto state = [&](const char* s) {
    return value("stallscope_executor_thread_seconds_total", {{"resource", name}, {"state", s}})
        .value_or(-1);
  };
  CHECK(eventually([&] {
    return value("stallscope_executor_threads", {{"resource", name}}) == 1 && state("idle") > 0;
  }));
  // Posted from a handler, so that the thread finds them ready (a handler that a thread runs
  // right after waiting counts as idle time unless it is a task slice).
  asio::post(io, [&] {
    asio::post(io, [] { spin_for(std::chrono::milliseconds(20)); });
    spawn_spinner(io, unique_name("busy-task"), std::chrono::milliseconds(20));
  });
  CHECK(eventually([&] { return state("task") >= 0.020 && state("other") >= 0.020; }));
  work.reset();
  runner.join();
  CHECK(value("stallscope_executor_threads", {{"resource", name}}) == 0);
}

TEST_CASE("lock waits inside task slices count as the executor's lock time",
          "[executor][concurrency]") {
  if constexpr (!STALLSCOPE_ENABLED) return;
  const std::string name = unique_name("lock-io");
  const std::string task = unique_name("locker");
  const std::string lock_name = unique_name("executor-lock");
  stallscope::Mutex mu(lock_name);
  asio::io_context io;
  stallscope::monitor_executor(io, name);
  std::unique_lock held(mu);
  spawn_locker(io, task, mu);
  std::thread runner([&] { io.run(); });
  // The wait's clock starts before the waiter shows, so holding 10 ms past that point makes the
  // wait at least 10 ms long, on any machine.
  REQUIRE(eventually([&] {
    return value("stallscope_waiters", {{"resource", lock_name}}).value_or(0) == 1;
  }));
  const auto seen = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - seen < std::chrono::milliseconds(10)) {
    std::this_thread::yield();
  }
  held.unlock();
  runner.join();
  const double lock =
      value("stallscope_executor_thread_seconds_total", {{"resource", name}, {"state", "lock"}})
          .value_or(-1);
  const double blocked =
      value("stallscope_task_blocked_seconds_total", {{"resource", task}}).value_or(-1);
  CHECK(lock >= 0.010);
  CHECK(blocked == Approx(lock));
}

TEST_CASE("the README's task block runs and its cancel ends the task", "[executor][readme]") {
  bool cancelled = false;
  {
    // The README's block, verbatim:
    // clang-format off
    asio::io_context io;
    stallscope::monitor_executor(io, "io");  // optional: names the executor (else "io_context")
    auto ex = asio::make_strand(io);
    stallscope::CancellationToken root;
    stallscope::spawn(ex, "fetch", root.child(), [&]() -> asio::awaitable<void> {
      asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::hours(1));
      co_await t.async_wait(asio::use_awaitable);  // root.cancel() wakes it: operation_aborted
    }, asio::detached);
    std::jthread thread([&] { stallscope::run(io); });  // io.run(), also counting idle time
    root.cancel();  // the task exits at once, and run() returns
    // clang-format on
    // run() returns once the cancelled task is gone; the bound only guards against a hang.
    cancelled = eventually([&] { return io.stopped(); });
    io.stop();
  }
  CHECK(cancelled);
}
