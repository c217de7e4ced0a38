// Reproduces the Boost 1.81 co_spawn defect behind the demo's rare shutdown abort (README.md,
// "Shutdown"): build and run by hand, not part of the build:
//   g++ -std=c++20 examples/demo/boost181_cospawn_repro.cpp -pthread -o /tmp/repro && /tmp/repro
// prints "run() threw: co_await: Operation canceled" with Boost 1.81; the completion handler
// never runs.
#include <cstdio>

#include <boost/asio.hpp>
namespace asio = boost::asio;
asio::cancellation_signal* g_sig;
asio::awaitable<void> body() {
  g_sig->emit(asio::cancellation_type::terminal);  // e.g. the task cancels its own scope
  asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::hours(1));
  co_await t.async_wait(asio::use_awaitable);  // throws at await_transform: already cancelled
}
int main() {
  asio::io_context io;
  asio::cancellation_signal sig;
  g_sig = &sig;
  asio::co_spawn(io, body(), asio::bind_cancellation_slot(sig.slot(), [](std::exception_ptr e) {
                   std::puts(e ? "handler: got the exception" : "handler: ok");
                 }));

  try {
    io.run();
    std::puts("run returned normally");
  } catch (const std::exception& e) {
    std::printf("run() threw: %s\n", e.what());
  }
}
