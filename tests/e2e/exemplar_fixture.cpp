// A traced service for exemplars_e2e.mjs: two tasks ("checkout" and "refund") on two executor
// threads take one stallscope::Mutex ("inventory") and hold it 2 ms, each under a trace id of its
// own that the application's provider (stallscope::set_trace_id_provider) reads from a
// thread-local, as an OpenTelemetry context would give it. Their waits on the lock are the
// exemplars a real Prometheus must store.
//
//   STALLSCOPE_LISTEN=127.0.0.1:0 stallscope-exemplar-fixture PORT_FILE
//
// Writes the bound port to PORT_FILE, then serves until SIGTERM or SIGINT; exits 1 (the Agent's
// error on stderr) when the Agent does not listen.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <span>
#include <string>
#include <thread>

#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>
#include <stallscope/stallscope.hpp>

#include "fixture_support.hpp"

namespace asio = boost::asio;

namespace {

// The request being served on this thread: what a tracer's context holds.
thread_local char tls_trace[stallscope::kMaxTraceIdLength];
thread_local std::size_t tls_trace_n = 0;

std::size_t current_trace(std::span<char, stallscope::kMaxTraceIdLength> out) {
  std::memcpy(out.data(), tls_trace, tls_trace_n);
  return tls_trace_n;
}

std::atomic<bool> g_stop{false};
std::atomic<std::uint64_t> g_requests{0};

asio::awaitable<void> serve(stallscope::Mutex& inventory, std::uint64_t task_id) {
  while (!g_stop.load()) {
    const std::uint64_t request = g_requests.fetch_add(1) + 1;
    const std::string id = fmt::format("{:016x}{:016x}", task_id, request);  // 32 hex digits
    std::memcpy(tls_trace, id.data(), id.size());
    tls_trace_n = id.size();
    {
      std::lock_guard lock(inventory);  // the executor thread blocks: the wait we want
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    tls_trace_n = 0;
    asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::microseconds(200));
    co_await t.async_wait(asio::use_awaitable);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s PORT_FILE\n", argv[0]);
    return 2;
  }
  const sigset_t stop = stallscope::e2e::block_stop_signals();  // before any thread starts

  stallscope::set_trace_id_provider(current_trace);
  const stallscope::Agent agent;
  if (!agent.listening()) {
    std::fprintf(stderr, "stallscope-exemplar-fixture: not listening: %s\n", agent.error().c_str());
    return 1;
  }
  stallscope::Mutex inventory("inventory");
  asio::io_context io;
  stallscope::spawn(io.get_executor(), "checkout", serve(inventory, 1), asio::detached);
  stallscope::spawn(io.get_executor(), "refund", serve(inventory, 2), asio::detached);
  std::thread a([&] { stallscope::run(io); });
  std::thread b([&] { stallscope::run(io); });
  stallscope::e2e::serve_until_stopped(agent, argv[1], stop);
  g_stop = true;
  a.join();
  b.join();
  return 0;
}
