// The cost of stallscope's Asio handler tracking (stallscope/asio_tracking.hpp): the same three
// task paths counted under callgrind in two programs built from this file, one without and one
// with BOOST_ASIO_CUSTOM_HANDLER_TRACKING (one program cannot hold both: the definition changes
// Asio's classes). scripts/icount-asio-tracking.sh builds both and prints the table in
// bench/README.md ("Asio operation tracking"). Counting as in icount.cpp: N operations between
// two CALLGRIND_TOGGLE_COLLECT requests.
//
//   post    one `co_await post(ex)` resumption of a stallscope task (an executor hand-off:
//           tracking skips it after one test)
//   timer   one `co_await timer.async_wait()` on an expired timer in a stallscope task (an
//           operation the task awaits: noted at its creation, cleared at its completion)
//   spawn   stallscope::spawn of a coroutine that returns, run to its end
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <valgrind/callgrind.h>

#include "stallscope/task.hpp"

namespace asio = boost::asio;

namespace {

// `n` awaits of `step` inside one task, the first one (it allocates) left out of the count.
template <class Step>
void in_task(std::uint64_t n, Step step) {
  asio::io_context io(1);
  stallscope::spawn(
      io.get_executor(), "icount-asio",
      [n, step]() -> asio::awaitable<void> {
        co_await step();
        CALLGRIND_TOGGLE_COLLECT;
        for (std::uint64_t i = 0; i < n; ++i) co_await step();
        CALLGRIND_TOGGLE_COLLECT;
      },
      asio::detached);
  io.run();
}

asio::awaitable<void> one_post() {
  co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
}

asio::awaitable<void> one_expired_wait() {
  asio::steady_timer t(co_await asio::this_coro::executor, asio::steady_timer::time_point::min());
  co_await t.async_wait(asio::use_awaitable);
}

asio::awaitable<void> nothing() { co_return; }

void spawns(std::uint64_t n) {
  asio::io_context io(1);
  auto one = [&] {
    stallscope::spawn(io.get_executor(), "icount-asio-spawn", nothing(), asio::detached);
    io.run();
    io.restart();
  };
  one();  // the name registers, the allocators' caches fill
  CALLGRIND_TOGGLE_COLLECT;
  for (std::uint64_t i = 0; i < n; ++i) one();
  CALLGRIND_TOGGLE_COLLECT;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string_view path = argc == 3 ? argv[1] : "";
  char* end = nullptr;
  const std::uint64_t n = argc == 3 ? std::strtoull(argv[2], &end, 10) : 0;
  if (n == 0 || *end != '\0' || (path != "post" && path != "timer" && path != "spawn")) {
    std::fputs("usage: stallscope-icount-asio{,-tracked} post|timer|spawn N (N > 0)\n", stderr);
    return 2;
  }
  if (path == "post") in_task(n, one_post);
  if (path == "timer") in_task(n, one_expired_wait);
  if (path == "spawn") spawns(n);
  return 0;
}
