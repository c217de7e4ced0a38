#pragma once
// Test helpers: the instrumented-task scenarios that several suites build (a task that spins,
// one that blocks its executor thread on a lock, one that ignores cancellation) and small
// io_context drivers.
#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <catch2/catch.hpp>

#include "stallscope/cancellation.hpp"
#include "stallscope/task.hpp"

namespace stallscope::testing {

// Burns CPU on the calling thread for at least `d` (a slice that never yields).
inline void spin_for(std::chrono::nanoseconds d) {
  const auto until = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < until) {
  }
}

// Suspends the calling coroutine on a timer for `d`.
inline boost::asio::awaitable<void> sleep_for(std::chrono::nanoseconds d) {
  boost::asio::steady_timer t(co_await boost::asio::this_coro::executor, d);
  co_await t.async_wait(boost::asio::use_awaitable);
}

// Runs one task named `name`, `body` (a function returning an awaitable), to its end on an
// io_context of its own.
template <class Body>
void run_task(const std::string& name, Body body) {
  boost::asio::io_context io;
  stallscope::spawn(io.get_executor(), name, std::move(body), boost::asio::detached);
  io.run();
}

// Runs `io` on `n` threads until it is out of work.
inline void run_on_threads(boost::asio::io_context& io, int n) {
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) threads.emplace_back([&] { io.run(); });
  for (auto& t : threads) t.join();
}

// Spawns task `name` on `io` whose one slice locks `mu`: while another thread holds `mu`, the
// task blocks its executor thread.
template <class Mutex>
void spawn_locker(boost::asio::io_context& io, const std::string& name, Mutex& mu) {
  stallscope::spawn(
      io.get_executor(), name,
      [&mu]() -> boost::asio::awaitable<void> {
        std::lock_guard g(mu);  // blocks the executor thread
        co_return;
      },
      boost::asio::detached);
}

// Spawns task `name` on `io`, bound to `token`, that ignores cancellation (the bug the
// lingering-task detectors find): it polls 1 ms timers until `release` is set.
inline void spawn_stubborn(boost::asio::io_context& io, const std::string& name,
                           const stallscope::CancellationToken& token,
                           const std::atomic<bool>& release) {
  namespace asio = boost::asio;
  stallscope::spawn(
      io.get_executor(), name, token,
      [&release]() -> asio::awaitable<void> {
        co_await asio::this_coro::throw_if_cancelled(false);  // ignores cancellation: the bug
        while (!release) {
          asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(1));
          co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
          co_await asio::this_coro::reset_cancellation_state();
        }
      },
      asio::detached);
}

// Starts an operation with `start(slot)`, its completion bound to the cancellation slot `slot`;
// runs `io` until the operation waits, which `done()` must not say it has completed; then emits
// a terminal cancellation and runs `io` to its end.
template <class Start, class Done>
void cancel_while_pending(boost::asio::io_context& io, Start start, Done done) {
  boost::asio::cancellation_signal signal;
  start(signal.slot());
  io.poll();
  CHECK_FALSE(done());
  signal.emit(boost::asio::cancellation_type::terminal);
  io.run();
}

// Races `wait()` (a function returning an awaitable that does not complete on its own) against
// a 1 ms timer in a coroutine on `io`, runs `io` to its end and says whether the timer won.
template <class Wait>
bool timer_wins_race(boost::asio::io_context& io, Wait wait) {
  namespace asio = boost::asio;
  using namespace asio::experimental::awaitable_operators;
  bool timer_won = false;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        asio::steady_timer t(io, std::chrono::milliseconds(1));
        auto r = co_await (wait() || t.async_wait(asio::use_awaitable));
        timer_won = r.index() == 1;
      },
      asio::detached);
  io.run();
  return timer_won;
}

}  // namespace stallscope::testing
