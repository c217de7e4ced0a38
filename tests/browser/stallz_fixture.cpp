// stallscope-stallz-fixture: a program for the /stallz browser test. It serves an Agent and keeps
// something in every table of the page busy until SIGTERM, SIGINT or --duration:
//
//   "checkout-ledger"  four threads queue on it, each holding it 2 ms: the top stall score
//   "catalog-cache"    a shared mutex, readers and an occasional writer: a small score
//   "session-store"    one thread, never contended: score 0
//   "audit-log"        held for the whole run while another thread keeps timing out on it
//   "restock"          a task that suspends holding "inventory": detector events
//   "report-export"    a task that ignores its cancellation: a lingering task
//
// and, for /stallz/tasks and /stallz/map:
//
//   "order-matcher"    a task waiting on the AsyncMutex "order-book", which "order-book-keeper"
//                      holds until the end: waiting on async_lock/order-book/exclusive
//   "invoice-sender"   a task whose cancellation was requested and that ignores it, waiting to
//                      send on the bounded Channel "invoices" (capacity 4, full)
//   "ingest-worker"    two children of the TaskGroup "ingest", waiting to receive on the empty
//                      Channel "ingest-queue" (capacity 16)
//
// On stop the keeper lets go of the lock and closes both channels, so every task ends.
//
//   stallscope-stallz-fixture [--listen HOST:PORT] [--duration SECONDS]
//
// Prints "stallz: URL" once the endpoint listens, so a script can pick the port (0: any free).
#include <atomic>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <latch>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string_view>
#include <thread>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <stallscope/stallscope.hpp>

namespace {

namespace asio = boost::asio;
using std::chrono::milliseconds;

std::atomic<bool> g_stop{false};

void on_signal(int) { g_stop.store(true); }

asio::awaitable<void> pause(milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
}

}  // namespace

int main(int argc, char** argv) {
  std::string_view listen = "127.0.0.1:0";
  int duration_s = 0;
  if (argc % 2 == 0) {
    std::fprintf(stderr, "usage: %s [--listen HOST:PORT] [--duration SECONDS]\n", argv[0]);
    return 2;
  }
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string_view arg = argv[i];
    const std::string_view value = argv[i + 1];
    const bool ok =
        arg == "--listen" ? (listen = value, true)
        : arg == "--duration"
            ? std::from_chars(value.data(), value.data() + value.size(), duration_s).ec ==
                  std::errc()
            : false;
    if (!ok) {
      std::fprintf(stderr, "usage: %s [--listen HOST:PORT] [--duration SECONDS]\n", argv[0]);
      return 2;
    }
  }
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);

  stallscope::Agent agent(
      stallscope::AgentOptions{.listen = std::string(listen), .throw_on_error = true});
  std::printf("stallz: %s\n", agent.stallz_url().c_str());
  std::fflush(stdout);

  stallscope::Mutex ledger("checkout-ledger");
  stallscope::SharedMutex catalog("catalog-cache");
  stallscope::Mutex sessions("session-store");
  stallscope::TimedMutex audit("audit-log");
  stallscope::Mutex inventory("inventory");

  std::vector<std::jthread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      while (!g_stop.load()) {
        std::lock_guard lock(ledger);
        std::this_thread::sleep_for(milliseconds(2));
      }
    });
  }
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&] {
      while (!g_stop.load()) {
        { std::shared_lock lock(catalog); }
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
    });
  }
  threads.emplace_back([&] {
    while (!g_stop.load()) {
      {
        std::lock_guard lock(catalog);
        std::this_thread::sleep_for(milliseconds(1));
      }
      std::this_thread::sleep_for(milliseconds(10));
    }
  });
  threads.emplace_back([&] {
    while (!g_stop.load()) {
      { std::lock_guard lock(sessions); }
      std::this_thread::sleep_for(milliseconds(1));
    }
  });
  // The holder takes the lock before the waiter starts and lets go only after it has stopped, so
  // no timed attempt ever succeeds. (Besides, GCC 12's ThreadSanitizer does not intercept
  // pthread_mutex_clocklock, which std::timed_mutex::try_lock_for uses: it would take the
  // unlock after a successful one for a bug.)
  std::latch audit_held(1);
  std::atomic<bool> audit_waiter_done{false};
  threads.emplace_back([&] {
    std::lock_guard lock(audit);
    audit_held.count_down();
    while (!audit_waiter_done.load()) std::this_thread::sleep_for(milliseconds(20));
  });
  threads.emplace_back([&] {
    audit_held.wait();
    while (!g_stop.load()) {
      if (audit.try_lock_for(milliseconds(250))) audit.unlock();  // never succeeds, see above
    }
    audit_waiter_done.store(true);
  });

  stallscope::AsyncMutex book("order-book");
  stallscope::Channel<int> invoices("invoices", 4);
  stallscope::Channel<int> ingest("ingest-queue", 16);
  for (int i = 0; i < 4; ++i) {  // full: the next send waits
    if (!invoices.try_send(i).accepted()) {
      std::fprintf(stderr, "the channel invoices refused item %d of its 4\n", i);
      return 1;
    }
  }

  asio::io_context io;
  stallscope::CancellationToken root;
  stallscope::spawn(
      io.get_executor(), "restock",
      [&]() -> asio::awaitable<void> {
        while (!g_stop.load()) {
          {
            std::unique_lock lock(inventory);
            co_await pause(milliseconds(20));  // suspends holding the lock: the bug it detects
          }
          co_await pause(milliseconds(400));
        }
      },
      asio::detached);
  stallscope::spawn(
      io.get_executor(), "report-export", root,
      [&]() -> asio::awaitable<void> {
        co_await asio::this_coro::throw_if_cancelled(false);
        while (!g_stop.load()) {  // ignores its cancellation: lingers
          co_await pause(milliseconds(50));
          co_await asio::this_coro::reset_cancellation_state();
        }
      },
      asio::detached);
  // Spawned in this order on one thread: the keeper takes the lock before the matcher asks.
  stallscope::spawn(
      io.get_executor(), "order-book-keeper",
      [&]() -> asio::awaitable<void> {
        {
          auto held = co_await book.async_lock(asio::use_awaitable);
          while (!g_stop.load()) co_await pause(milliseconds(50));
        }
        invoices.close();  // the waiting send completes (closed), the workers' receives end
        ingest.close();
      },
      asio::detached);
  stallscope::spawn(
      io.get_executor(), "order-matcher",
      [&]() -> asio::awaitable<void> { auto held = co_await book.async_lock(asio::use_awaitable); },
      asio::detached);
  stallscope::spawn(
      io.get_executor(), "invoice-sender", root,
      [&]() -> asio::awaitable<void> {
        // A completion token with no cancellation slot: the cancel is requested but not heard.
        [[maybe_unused]] auto sent = co_await invoices.async_send(
            4, asio::bind_cancellation_slot(asio::cancellation_slot(), asio::use_awaitable));
      },
      asio::detached);
  stallscope::TaskGroup group(io.get_executor(), "ingest", stallscope::CancellationToken("intake"));
  for (int i = 0; i < 2; ++i) {
    group.spawn("ingest-worker", [&]() -> asio::awaitable<void> {
      while (std::optional<int> item = co_await ingest.async_next()) {
      }
    });
  }
  root.cancel();
  threads.emplace_back([&] { io.run(); });

  const auto start = std::chrono::steady_clock::now();
  while (!g_stop.load()) {
    std::this_thread::sleep_for(milliseconds(50));
    if (duration_s > 0 &&
        std::chrono::steady_clock::now() - start >= std::chrono::seconds(duration_s)) {
      g_stop.store(true);
    }
  }
  threads.clear();  // joins
  return 0;
}
