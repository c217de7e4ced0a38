// The executor's delay ranked and its cause named, on stall shapes unlike the demo's: CPU
// starvation of a multi-threaded io_context (timer- and socket-woken victims behind spinning
// tasks), and more tasks than threads blocking on one stallscope::Mutex.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <catch2/catch.hpp>

#include "stallscope/clock.hpp"
#include "stallscope/executor.hpp"
#include "stallscope/mutex.hpp"
#include "stallscope/registry.hpp"
#include "stallscope/stallz.hpp"
#include "stallscope/task.hpp"
#include "support/metrics.hpp"
#include "support/poll.hpp"
#include "support/tasks.hpp"

namespace {

namespace asio = boost::asio;
using namespace stallscope::testing;

std::int64_t steady_now() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

double schedule_sum(const std::vector<stallscope::FamilySnapshot>& families,
                    const std::string& task) {
  for (const auto& f : families) {
    if (f.name != "stallscope_wait_seconds") continue;
    for (const auto& s : f.samples) {
      bool kind = false;
      bool name = false;
      for (const auto& [k, v] : s.labels) {
        kind = kind || (k == "kind" && v == "task");
        name = name || (k == "resource" && v == task);
      }
      if (kind && name) return s.histogram.sum;
    }
  }
  return 0;
}

// An io_context for two threads, monitored under a fresh name made of `stem`; the window its
// causes are rated over; and the flag that ends the test's tasks.
struct Monitored {
  explicit Monitored(std::string_view stem) : exec(unique_name(stem)) {
    stallscope::monitor_executor(io, exec);
  }
  const std::string exec;
  asio::io_context io{2};
  stallscope::StallWindow window;
  std::atomic<bool> stop{false};
};

// Runs `io` on two stallscope::run threads until destroyed; then sets `stop` (also after a
// failed REQUIRE) so that the test's tasks end and the threads can be joined.
struct TwoThreads {
  TwoThreads(asio::io_context& io, std::atomic<bool>& stop)
      : io_(io), stop_(stop), work_(asio::make_work_guard(io)) {
    for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { stallscope::run(io_); });
  }
  ~TwoThreads() {
    stop_ = true;
    work_.reset();
    for (auto& t : threads_) t.join();
  }
  asio::io_context& io_;
  std::atomic<bool>& stop_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::vector<std::thread> threads_;
};

}  // namespace

TEST_CASE("CPU starvation ranks the executor first and names the spinning task",
          "[executor][stallz][concurrency]") {
  if constexpr (!STALLSCOPE_ENABLED) return;
  const std::string cruncher = unique_name("cruncher");
  const std::string ticker = unique_name("tick-victim");
  const std::string reader = unique_name("socket-victim");
  Monitored m("starved-io");
  std::atomic<int> wakes{0};
  std::mutex late_mu;
  // What the victims saw, per victim (timer, socket): wake-up time less the time they were due.
  double late_seconds[2] = {0, 0};
  auto add_late = [&](int victim, std::int64_t ns) {
    std::lock_guard g(late_mu);
    late_seconds[victim] += static_cast<double>(ns) * 1e-9;
    ++wakes;
  };

  // The socket victim reads 8-byte send times written by a plain thread, each a random 0-30 ms
  // after the previous one was read (so every read is woken by the reactor, never found ready).
  // The random delay makes the data's arrival uncorrelated with the executor's slices, the case
  // the probe's estimate for a socket is the mean of: written at once after each read, the data
  // would always arrive early in the next stall, and be underestimated by nearly half.
  asio::ip::tcp::acceptor acceptor(m.io, {asio::ip::address_v4::loopback(), 0});
  asio::ip::tcp::socket client(m.io);
  client.connect(acceptor.local_endpoint());
  asio::ip::tcp::socket server = acceptor.accept();
  client.set_option(asio::ip::tcp::no_delay(true));
  std::atomic<int> consumed{0};

  TwoThreads threads(m.io, m.stop);
  // Victims first, while the executor is idle: their first slices wait for nothing.
  for (int i = 0; i < 2; ++i) {
    stallscope::spawn(
        m.io.get_executor(), ticker,
        [&, i]() -> asio::awaitable<void> {
          // A periodic timer on a fixed schedule (7 ms, not a divisor of the crunch).
          asio::steady_timer t(co_await asio::this_coro::executor);
          auto due = std::chrono::steady_clock::now() + std::chrono::microseconds(3500 * i);
          while (!m.stop) {
            // The next point of the schedule still ahead: a late wake-up skips missed ticks.
            const auto now = std::chrono::steady_clock::now();
            do {
              due += std::chrono::milliseconds(7);
            } while (due <= now);
            t.expires_at(due);
            co_await t.async_wait(asio::use_awaitable);
            add_late(0, (std::chrono::steady_clock::now() - due).count());
          }
        },
        asio::detached);
  }
  stallscope::spawn(
      m.io.get_executor(), reader,
      [&]() -> asio::awaitable<void> {
        std::int64_t sent = 0;
        while (!m.stop) {
          co_await asio::async_read(server, asio::buffer(&sent, sizeof sent), asio::use_awaitable);
          add_late(1, steady_now() - sent);
          consumed.fetch_add(1);
        }
      },
      asio::detached);
  // The writer's time between reading the clock and its write returning: the data was ready at
  // some point in it, so the socket victim's lateness overstates the wait by at most this much
  // (much, when the writer is descheduled in between).
  std::atomic<std::int64_t> write_slack_ns{0};
  std::jthread writer([&] {
    std::minstd_rand rng(20261130);
    for (int n = 0; !m.stop; ++n) {
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % 30000));
      const std::int64_t sent = steady_now();
      asio::write(client, asio::buffer(&sent, sizeof sent));
      write_slack_ns.fetch_add(steady_now() - sent);
      while (consumed.load() <= n && !m.stop) std::this_thread::yield();
    }
  });
  // Ends the writer's loop before it is joined, also after a failed REQUIRE.
  struct StopOnExit {
    std::atomic<bool>& flag;
    ~StopOnExit() { flag = true; }
  } stop_on_exit{m.stop};
  REQUIRE(eventually([&] { return wakes.load() >= 10; }));  // the victims are in their loops

  const auto families_before = stallscope::Registry::global().collect();
  const double recorded_before[2] = {schedule_sum(families_before, ticker),
                                     schedule_sum(families_before, reader)};
  double late_before[2];
  const std::int64_t slack_before = write_slack_ns.load();
  {
    std::lock_guard g(late_mu);
    late_before[0] = late_seconds[0];
    late_before[1] = late_seconds[1];
  }
  // Three tasks that each spin 20 ms per slice: more CPU than two threads have.
  for (int i = 0; i < 3; ++i) {
    stallscope::spawn(
        m.io.get_executor(), cruncher,
        [&]() -> asio::awaitable<void> {
          while (!m.stop) {
            spin_for(std::chrono::milliseconds(20));
            co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
          }
        },
        asio::detached);
  }
  // The causes are rated from here: over the crunch alone, however long this thread was away
  // before it.
  m.window.add(stallscope::now_ns(), stallscope::Registry::global().collect());
  const int wakes_at_start = wakes.load();
  const auto started = std::chrono::steady_clock::now();
  REQUIRE(eventually([&] {
    return wakes.load() >= wakes_at_start + 100 &&
           std::chrono::steady_clock::now() - started >= std::chrono::milliseconds(1500);
  }));

  // Both measurements of the same stretch, taken together (a wake-up in between counts in one
  // and not yet the other: a millisecond or two against seconds).
  // The report's time is read first: counters collected after it can only overstate the
  // threads' busy time a little, never dilute it with a wait of this thread's.
  const std::int64_t report_ns = stallscope::now_ns();
  const auto families = stallscope::Registry::global().collect();
  double late_of[2];
  const double slack = static_cast<double>(write_slack_ns.load() - slack_before) * 1e-9;
  {
    std::lock_guard g(late_mu);
    late_of[0] = late_seconds[0] - late_before[0];
    late_of[1] = late_seconds[1] - late_before[1];
  }
  const double recorded_of[2] = {schedule_sum(families, ticker) - recorded_before[0],
                                 schedule_sum(families, reader) - recorded_before[1]};
  const double late = late_of[0] + late_of[1];
  const double recorded = recorded_of[0] + recorded_of[1];
  const auto report = m.window.report(report_ns, families);
  m.stop = true;
  writer.join();
  client.close();

  INFO("victims were late " << late << " s in all; stallscope recorded " << recorded << " s");
  INFO("timer victims " << late_of[0] << " s, recorded " << recorded_of[0] << " s; socket victim "
                        << late_of[1] << " s, recorded " << recorded_of[1] << " s; " << slack
                        << " s of it the writer's");
  CHECK(late > 0.5);  // the starvation is real
  // Within 25% of what the victims waited: between late less the writer's slack, and late.
  CHECK(recorded >= 0.75 * (late - slack));
  CHECK(recorded <= 1.25 * late);

  REQUIRE_FALSE(report.resources.empty());
  const auto& top = report.resources.front();
  INFO("top: " << top.kind << "/" << top.resource);
  const bool executor_first = top.kind == "executor" && top.resource == m.exec;
  const bool victims_first =
      top.kind == "task" && (top.resource == ticker || top.resource == reader);
  CHECK((executor_first || victims_first));
  REQUIRE_FALSE(report.causes.empty());
  const auto& cause = report.causes.front();
  INFO(cause.text);
  CHECK(cause.executor == m.exec);
  CHECK(cause.threads == 2);
  CHECK(cause.busy_threads > 1.5);
  REQUIRE_FALSE(cause.parts.empty());
  CHECK(cause.parts.front().what == "task");
  CHECK(cause.parts.front().name == cruncher);
  CHECK(cause.parts.front().share > 0.8);
  CHECK_THAT(stallscope::stallz_html(report), Catch::Contains("task `" + cruncher + "`"));
}

TEST_CASE("more tasks than threads blocking on one lock: the cause names the lock",
          "[executor][stallz][concurrency]") {
  if constexpr (!STALLSCOPE_ENABLED) return;
  const std::string worker = unique_name("shelf-worker");
  const std::string lock_name = unique_name("shelf");
  stallscope::Mutex shelf(lock_name);
  Monitored m("locked-io");
  std::atomic<int> rounds{0};
  m.window.add(stallscope::now_ns(), stallscope::Registry::global().collect());
  {
    TwoThreads threads(m.io, m.stop);
    // 8 tasks on 2 threads, each holding the lock 1 ms per round and yielding between rounds.
    // The 1 ms starts once the lock's waiters gauge shows another task blocked on it (the other
    // thread, which always has one of the other 7 to run): threads that the machine runs one
    // after another would otherwise never meet on the lock, and the cause would be tasks.
    for (int i = 0; i < 8; ++i) {
      stallscope::spawn(
          m.io.get_executor(), worker,
          [&]() -> asio::awaitable<void> {
            while (!m.stop) {
              {
                std::lock_guard g(shelf);
                while (!m.stop &&
                       stallscope::testing::value("stallscope_waiters",
                                                  stallscope::testing::lock_labels(lock_name))
                               .value_or(0) < 1) {
                }
                spin_for(std::chrono::milliseconds(1));
              }
              ++rounds;
              co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
            }
          },
          asio::detached);
    }
    const auto started = std::chrono::steady_clock::now();
    REQUIRE(eventually([&] {
      return rounds.load() >= 200 &&
             std::chrono::steady_clock::now() - started >= std::chrono::milliseconds(1000);
    }));
    const auto report =
        m.window.report(stallscope::now_ns(), stallscope::Registry::global().collect());
    m.stop = true;

    REQUIRE_FALSE(report.causes.empty());
    const auto& cause = report.causes.front();
    INFO(cause.text);
    CHECK(cause.executor == m.exec);
    REQUIRE_FALSE(cause.parts.empty());
    CHECK(cause.parts.front().what == "lock");
    CHECK(cause.parts.front().name == lock_name);
    CHECK(cause.parts.front().share >= 0.1);
    // The page leads from the ranking's top (the executor or the tasks' delay) to the lock.
    const std::string html = stallscope::stallz_html(report);
    if (report.resources.front().kind == "executor" || report.resources.front().kind == "task") {
      CHECK_THAT(html, Catch::Contains("Cause: executor `" + m.exec + "`"));
    }
    CHECK_THAT(html, Catch::Contains("blocked on lock `" + lock_name + "`"));
  }
}
