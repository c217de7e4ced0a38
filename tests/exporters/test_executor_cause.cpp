// The executor's delay ranked and its cause named, on stall shapes unlike the demo's: CPU
// starvation of a multi-threaded io_context (timer- and socket-woken victims behind spinning
// tasks), and more tasks than threads blocking on one stallscope::Mutex.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <mutex>
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

// Runs `io` on two stallscope::run threads until destroyed.
struct TwoThreads {
  explicit TwoThreads(asio::io_context& io) : io_(io), work_(asio::make_work_guard(io)) {
    for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { stallscope::run(io_); });
  }
  ~TwoThreads() {
    work_.reset();
    for (auto& t : threads_) t.join();
  }
  asio::io_context& io_;
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
  double late_seconds = 0;  // what the victims saw: wake-up time less the time they were due
  auto add_late = [&](std::int64_t ns) {
    std::lock_guard g(late_mu);
    late_seconds += static_cast<double>(ns) * 1e-9;
    ++wakes;
  };

  // The socket victim reads 8-byte send times written by a plain thread every 3 ms, each once
  // the previous one was read (so every read is woken by the reactor, never found ready).
  asio::ip::tcp::acceptor acceptor(m.io, {asio::ip::address_v4::loopback(), 0});
  asio::ip::tcp::socket client(m.io);
  client.connect(acceptor.local_endpoint());
  asio::ip::tcp::socket server = acceptor.accept();
  client.set_option(asio::ip::tcp::no_delay(true));
  std::atomic<int> consumed{0};

  TwoThreads threads(m.io);
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
            add_late((std::chrono::steady_clock::now() - due).count());
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
          add_late(steady_now() - sent);
          consumed.fetch_add(1);
        }
      },
      asio::detached);
  std::thread writer([&] {
    auto next = std::chrono::steady_clock::now();
    for (int n = 0; !m.stop; ++n) {
      next += std::chrono::milliseconds(3);
      std::this_thread::sleep_until(next);
      const std::int64_t sent = steady_now();
      asio::write(client, asio::buffer(&sent, sizeof sent));
      while (consumed.load() <= n && !m.stop) std::this_thread::yield();
    }
  });
  REQUIRE(eventually([&] { return wakes.load() >= 10; }));  // the victims are in their loops

  m.window.add(stallscope::now_ns(), stallscope::Registry::global().collect());
  const auto families_before = stallscope::Registry::global().collect();
  const double recorded_before =
      schedule_sum(families_before, ticker) + schedule_sum(families_before, reader);
  double late_before;
  {
    std::lock_guard g(late_mu);
    late_before = late_seconds;
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
  const int wakes_at_start = wakes.load();
  const auto started = std::chrono::steady_clock::now();
  REQUIRE(eventually([&] {
    return wakes.load() >= wakes_at_start + 100 &&
           std::chrono::steady_clock::now() - started >= std::chrono::milliseconds(1500);
  }));

  // Both measurements of the same stretch, taken together (a wake-up in between counts in one
  // and not yet the other: a millisecond or two against seconds).
  const auto families = stallscope::Registry::global().collect();
  double late;
  {
    std::lock_guard g(late_mu);
    late = late_seconds - late_before;
  }
  const double recorded =
      schedule_sum(families, ticker) + schedule_sum(families, reader) - recorded_before;
  const auto report = m.window.report(stallscope::now_ns(), families);
  m.stop = true;
  writer.join();
  client.close();

  INFO("victims were late " << late << " s in all; stallscope recorded " << recorded << " s");
  CHECK(late > 0.5);  // the starvation is real
  CHECK(recorded == Approx(late).epsilon(0.25));

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
    TwoThreads threads(m.io);
    // 8 tasks on 2 threads, each holding the lock 1 ms per round and yielding between rounds.
    for (int i = 0; i < 8; ++i) {
      stallscope::spawn(
          m.io.get_executor(), worker,
          [&]() -> asio::awaitable<void> {
            while (!m.stop) {
              {
                std::lock_guard g(shelf);
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
