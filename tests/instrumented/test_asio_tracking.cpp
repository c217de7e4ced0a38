// The task dump names the Asio operation a suspended task awaits when the program is built with
// stallscope's Asio handler tracking (stallscope/asio_tracking.hpp), and says plainly that it
// cannot otherwise. This file is compiled twice: into stallscope-asio-tracking-tests, with
// BOOST_ASIO_CUSTOM_HANDLER_TRACKING (a program of its own: the definition changes Asio's
// classes), and into the instrumented tests, without it.
#include <array>
#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/connect_pair.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <catch2/catch.hpp>

#include "stallscope/task.hpp"
#include "stallscope/task_dump.hpp"
#include "support/poll.hpp"

#if defined(BOOST_ASIO_CUSTOM_HANDLER_TRACKING)
#define STALLSCOPE_TEST_TRACKED 1
#define TRACKING_CASE(what) "with Asio tracking: " what
#else
#define STALLSCOPE_TEST_TRACKED 0
#define TRACKING_CASE(what) "without Asio tracking: " what
#endif

namespace {

namespace asio = boost::asio;
using stallscope::TaskInfo;
using stallscope::TaskRunState;
using stallscope::testing::eventually;
using stallscope::testing::unique_name;

constexpr bool kTracked = STALLSCOPE_TEST_TRACKED != 0;

// One io_context thread for the test's task, stopped and joined at the end (each test waits for
// its task to end first; a failed one leaves it to the io_context's destruction).
struct Runner {
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work = asio::make_work_guard(io);
  std::thread thread{[this] { io.run(); }};
  ~Runner() {
    io.stop();
    thread.join();
  }
};

// The live task named `name` in a fresh dump (nullopt when there is none).
std::optional<TaskInfo> task_named(const std::string& name) {
  stallscope::TaskFilter f;
  f.name = name;
  const stallscope::TaskDump d = stallscope::dump_tasks(f);
  if (d.tasks.size() != 1) return std::nullopt;
  return d.tasks.front();
}

// Whether the task named `name` is suspended with `asio_op` ("" : none known).
bool suspended_on(const std::string& name, const std::string& asio_op) {
  const std::optional<TaskInfo> t = task_named(name);
  return t && t->state == TaskRunState::kSuspended && t->asio_op == asio_op;
}

// Suspends the calling task on something that is no Asio operation: its handler is parked in
// `parked` until the test resumes it (resume()).
struct Parking {
  std::optional<asio::any_completion_handler<void()>> parked;
  std::atomic<bool> holds{false};

  asio::awaitable<void> wait() {
    co_await asio::async_initiate<const asio::use_awaitable_t<>, void()>(
        [this](auto handler) {
          parked.emplace(std::move(handler));
          holds.store(true);
        },
        asio::use_awaitable);
  }
  // Called on the io_context's thread.
  void resume() {
    auto h = std::move(*parked);
    parked.reset();
    std::move(h)();
  }
};

// Once the task named `name` parks in `parking`, it shows suspended with no Asio operation (the
// one before it completed); then it is resumed and ends.
// Spawns the task `name` on r's executor: it awaits `op()` (an Asio operation), then parks.
// `op` and `parking` outlive the task (the test waits for it to end).
template <class Op>
void spawn_op_then_park(Runner& r, const std::string& name, Op& op, Parking& parking) {
  stallscope::spawn(
      r.io.get_executor(), name,
      [&op, &parking]() -> asio::awaitable<void> {
        co_await op();
        co_await parking.wait();
      },
      asio::detached);
}

void parks_with_no_operation_then_ends(Runner& r, Parking& parking, const std::string& name) {
  REQUIRE(eventually([&] { return parking.holds.load(); }));
  CHECK(eventually([&] { return suspended_on(name, ""); }));
  asio::post(r.io, [&] { parking.resume(); });
  REQUIRE(eventually([&] { return !task_named(name).has_value(); }));
}

}  // namespace

TEST_CASE(TRACKING_CASE("the dump says whether the Asio operation can be known"), "[asio_op]") {
  CHECK(stallscope::dump_tasks().asio_tracking == kTracked);
}

TEST_CASE(TRACKING_CASE("a task awaiting a 1 h timer shows the timer's wait until it completes"),
          "[asio_op][task_dump]") {
  if constexpr (!STALLSCOPE_ENABLED) return;  // compiled out: no task is recorded
  const std::string name = unique_name("asio-timer");
  Runner r;
  asio::steady_timer timer(r.io, std::chrono::hours(1));
  Parking parking;
  auto wait = [&]() -> asio::awaitable<void> {
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
  };
  spawn_op_then_park(r, name, wait, parking);

  // Exact: the task stays on the timer for the hour, so the dump must show it once it suspends.
  REQUIRE(
      eventually([&] { return suspended_on(name, kTracked ? "deadline_timer async_wait" : ""); }));
  const std::optional<TaskInfo> t = task_named(name);
  REQUIRE(t);
  CHECK(t->state_seconds < 3600.0);

  // The timer completes (cancelled); the task moves on and suspends on something that is no
  // Asio operation: the dump no longer names the timer.
  asio::post(r.io, [&] { timer.cancel(); });
  parks_with_no_operation_then_ends(r, parking, name);
}

TEST_CASE(TRACKING_CASE("a task reading a socket with no data shows the receive until data comes"),
          "[asio_op][task_dump]") {
  if constexpr (!STALLSCOPE_ENABLED) return;  // compiled out: no task is recorded
  const std::string name = unique_name("asio-socket");
  Runner r;
  asio::local::stream_protocol::socket reader(r.io);
  asio::local::stream_protocol::socket writer(r.io);
  asio::local::connect_pair(reader, writer);
  Parking parking;
  std::atomic<std::size_t> got{0};
  std::array<char, 16> buf{};
  auto read = [&]() -> asio::awaitable<void> {
    got = co_await reader.async_read_some(asio::buffer(buf), asio::use_awaitable);
  };
  spawn_op_then_park(r, name, read, parking);

  REQUIRE(eventually([&] { return suspended_on(name, kTracked ? "socket async_receive" : ""); }));
  CHECK(got.load() == 0);

  const std::array<char, 3> data{'a', 'b', 'c'};
  asio::write(writer, asio::buffer(data));
  parks_with_no_operation_then_ends(r, parking, name);
  CHECK(got.load() == data.size());
}

TEST_CASE(TRACKING_CASE("an Asio operation started outside any task names no task"),
          "[asio_op][task_dump]") {
  if constexpr (!STALLSCOPE_ENABLED) return;  // compiled out: no task is recorded
  const std::string name = unique_name("asio-other");
  Runner r;
  // A plain timer wait on the same thread as the task, started outside the task's slices.
  asio::steady_timer outside(r.io, std::chrono::hours(1));
  asio::post(r.io, [&] { outside.async_wait([](boost::system::error_code) {}); });
  Parking parking;
  stallscope::spawn(
      r.io.get_executor(), name, [&]() -> asio::awaitable<void> { co_await parking.wait(); },
      asio::detached);
  parks_with_no_operation_then_ends(r, parking, name);
  std::atomic<bool> cancelled{false};
  asio::post(r.io, [&] {
    outside.cancel();
    cancelled = true;
  });
  REQUIRE(eventually([&] { return cancelled.load(); }));
}
