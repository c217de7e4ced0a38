// Instruction counts per operation: each hot path next to the peer a user would otherwise pick,
// counted under Valgrind's callgrind, which counts the instructions a program executes and so
// does not move with the load on the machine (timings on a shared VM move by 50%).
//
//   valgrind --tool=callgrind --collect-atstart=no stallscope-icount PATH N
//
// runs PATH's set-up, then N operations between two CALLGRIND_TOGGLE_COLLECT client requests,
// so callgrind's "Collected" total is exactly those N operations: no start-up to subtract.
// Outside valgrind the requests do nothing and the program just runs. scripts/icount.sh runs
// every path, prints the table in bench/README.md and, with --check, compares stallscope's own
// paths with bench/icount-baseline.txt (the regression gate in scripts/test.sh).
//
// Paths (one operation each):
//   lock_std / lock_stallscope                    uncontended lock() + unlock()
//   try_lock_fail_std / try_lock_fail_stallscope  try_lock() on a held lock (the counted
//                                                 failure: the recorder's bookkeeping path)
//   contended_naive / contended_stallscope        the bookkeeping of a contended lock() +
//                                                 unlock(), around an inner lock whose try_lock
//                                                 always fails and whose lock() returns at once
//                                                 (the wait itself is the OS's, not counted):
//                                                 hand timing (steady_clock x2 + prometheus-cpp
//                                                 Observe) against stallscope::Instrumented
//   histogram_prometheus / histogram_stallscope   one observation, spread over the buckets
//   channel_asio / channel_stallscope             try_send + try_receive of one int, capacity 64
//   channel_sized_stallscope                      the same with ChannelOptions::size_of set
//   post_plain / post_stallscope                  one `co_await post(ex)` resumption
//   spawn_plain / spawn_stallscope                spawn a coroutine that returns, run it
//   retry_atomic / retry_stallscope               a request and its retry: two relaxed
//                                                 fetch_adds (the least a hand-written budget
//                                                 does), and RetryBudget::deposit() +
//                                                 try_withdraw() (granted, ttl 10 s)
//   scrape_prometheus / scrape_stallscope         render /metrics for 1,000 named locks:
//                                                 collect + prometheus-cpp's serializer, and
//                                                 collect + stallscope's text writer
#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <valgrind/callgrind.h>

#include "cells_alloc.hpp"
#include "hand_timed.hpp"
#include "stallscope/buckets.hpp"
#include "stallscope/channel.hpp"
#include "stallscope/detail/histogram.hpp"
#include "stallscope/mutex.hpp"
#include "stallscope/prometheus.hpp"
#include "stallscope/retry.hpp"
#include "stallscope/task.hpp"
#include "text_format.hpp"

namespace asio = boost::asio;

namespace {

// Keeps the compiler from dropping a result.
volatile std::uintptr_t g_sink = 0;

// Runs `op` n times between the callgrind toggles.
template <class Op>
void measured(std::uint64_t n, Op&& op) {
  CALLGRIND_TOGGLE_COLLECT;
  for (std::uint64_t i = 0; i < n; ++i) op(i);
  CALLGRIND_TOGGLE_COLLECT;
}

template <class M>
void lock_path(std::uint64_t n, M& m) {
  m.lock();  // the first lock may register the name: set-up, not the path
  m.unlock();
  measured(n, [&](std::uint64_t) {
    m.lock();
    m.unlock();
  });
}

template <class M>
void try_lock_fail_path(std::uint64_t n, M& m) {
  m.lock();
  measured(n, [&](std::uint64_t) { g_sink = g_sink + static_cast<std::uintptr_t>(m.try_lock()); });
  m.unlock();
}

// An inner lock that is always taken when tried and free when waited for: every lock() of a
// wrapper around it goes the contended way without blocking.
class BusyOnTry {
 public:
  bool try_lock() noexcept { return false; }
  void lock() noexcept { g_sink = g_sink + 1; }
  void unlock() noexcept { g_sink = g_sink + 1; }
};

// What a user who times lock waits by hand writes, around that lock.
using HandTimed = stallscope_bench::HandTimed<BusyOnTry>;

constexpr std::size_t kValues = 1024;

// Durations log-uniform from 100 ns to 100 ms, fixed seed: the bucket changes from one record to
// the next, as in bench/histogram.cpp.
const std::array<std::int64_t, kValues>& durations_ns() {
  static const auto d = [] {
    std::array<std::int64_t, kValues> out{};
    std::mt19937_64 rng(20240601);
    std::uniform_real_distribution<double> log_ns(std::log(100.0), std::log(100e6));
    for (auto& v : out) v = static_cast<std::int64_t>(std::exp(log_ns(rng)));
    return out;
  }();
  return d;
}

void histogram_stallscope(std::uint64_t n) {
  static stallscope::detail::BucketLayout layout{stallscope::Buckets::latency()};
  stallscope::detail::HistogramCells cells;
  cells.layout = &layout;
  cells.base = stallscope::detail::cell_allocator().allocate(layout.cells());
  const auto& ns = durations_ns();
  cells.record(ns[0]);  // the thread's shard is claimed on its first record
  measured(n, [&](std::uint64_t i) { cells.record(ns[i % kValues]); });
}

void histogram_prometheus(std::uint64_t n) {
  prometheus::Registry registry;
  auto& family =
      prometheus::BuildHistogram().Name("icount_seconds").Help("icount").Register(registry);
  const stallscope::Buckets buckets = stallscope::Buckets::latency();
  const auto bounds = buckets.bounds();
  auto& h = family.Add({}, prometheus::Histogram::BucketBoundaries(bounds.begin(), bounds.end()));
  const auto& ns = durations_ns();
  measured(n, [&](std::uint64_t i) { h.Observe(static_cast<double>(ns[i % kValues]) * 1e-9); });
}

void channel_stallscope(std::uint64_t n) {
  stallscope::Channel<int> ch("icount-channel", 64);
  (void)ch.try_send(0);
  (void)ch.try_receive();
  measured(n, [&](std::uint64_t i) {
    (void)ch.try_send(static_cast<int>(i));
    g_sink = g_sink + static_cast<std::uintptr_t>(*ch.try_receive());
  });
}

void channel_sized_stallscope(std::uint64_t n) {
  stallscope::ChannelOptions<int> o{.capacity = 64};
  o.size_of = [](const int&) { return sizeof(int); };
  stallscope::Channel<int> ch("icount-channel-sized", o);
  (void)ch.try_send(0);
  (void)ch.try_receive();
  measured(n, [&](std::uint64_t i) {
    (void)ch.try_send(static_cast<int>(i));
    g_sink = g_sink + static_cast<std::uintptr_t>(*ch.try_receive());
  });
}

void channel_asio(std::uint64_t n) {
  asio::io_context io(1);
  asio::experimental::concurrent_channel<void(boost::system::error_code, int)> ch(io, 64);
  auto receive = [&] {
    (void)ch.try_receive(
        [](boost::system::error_code, int v) { g_sink = g_sink + static_cast<std::uintptr_t>(v); });
  };
  (void)ch.try_send(boost::system::error_code{}, 0);
  receive();
  measured(n, [&](std::uint64_t i) {
    (void)ch.try_send(boost::system::error_code{}, static_cast<int>(i));
    receive();
  });
}

asio::awaitable<void> post_loop(std::uint64_t n) {
  auto ex = co_await asio::this_coro::executor;
  co_await asio::post(ex, asio::use_awaitable);  // warm: the first resumption allocates
  CALLGRIND_TOGGLE_COLLECT;
  for (std::uint64_t i = 0; i < n; ++i) co_await asio::post(ex, asio::use_awaitable);
  CALLGRIND_TOGGLE_COLLECT;
}

void post_plain(std::uint64_t n) {
  asio::io_context io(1);
  asio::co_spawn(io, post_loop(n), asio::detached);
  io.run();
}

void post_stallscope(std::uint64_t n) {
  asio::io_context io(1);
  stallscope::spawn(io.get_executor(), "icount-post", post_loop(n), asio::detached);
  io.run();
}

asio::awaitable<void> nothing() { co_return; }

template <class Spawn>
void spawn_path(std::uint64_t n, Spawn spawn_one) {
  asio::io_context io(1);
  spawn_one(io);  // warm: the name registers, the allocator caches fill
  io.run();
  io.restart();
  measured(n, [&](std::uint64_t) {
    spawn_one(io);
    io.run();
    io.restart();
  });
}

void spawn_plain(std::uint64_t n) {
  spawn_path(n, [](asio::io_context& io) { asio::co_spawn(io, nothing(), asio::detached); });
}

void spawn_stallscope(std::uint64_t n) {
  spawn_path(n, [](asio::io_context& io) {
    stallscope::spawn(io.get_executor(), "icount-spawn", nothing(), asio::detached);
  });
}

void retry_atomic(std::uint64_t n) {
  std::atomic<std::int64_t> requests{0};
  std::atomic<std::int64_t> retries{0};
  measured(n, [&](std::uint64_t) {
    requests.fetch_add(1, std::memory_order_relaxed);
    retries.fetch_add(1, std::memory_order_relaxed);
  });
  g_sink = g_sink + static_cast<std::uintptr_t>(requests.load() + retries.load());
}

void retry_stallscope(std::uint64_t n) {
  stallscope::RetryBudget budget("icount-retry", {.retry_share = 1});
  budget.deposit();  // warm: this thread's counter cells
  measured(n, [&](std::uint64_t) {
    budget.deposit();
    g_sink = g_sink + budget.try_withdraw();
  });
}

template <class Write>
void scrape_path(std::uint64_t n, Write write) {
  std::vector<std::unique_ptr<stallscope::Mutex>> locks;
  for (int i = 0; i < 1000; ++i) {
    locks.push_back(std::make_unique<stallscope::Mutex>(fmt::format("lock-{:04}", i)));
    locks.back()->lock();
    locks.back()->unlock();
  }
  stallscope::Collectable collectable;
  (void)write(collectable.Collect());  // warm: the writer sizes its buffer from the last scrape
  measured(n, [&](std::uint64_t) { g_sink = g_sink + write(collectable.Collect()).size(); });
}

void scrape_stallscope(std::uint64_t n) {
  scrape_path(n, [](const auto& f) { return stallscope::detail::write_text(f); });
}

void scrape_prometheus(std::uint64_t n) {
  scrape_path(n, [](const auto& f) { return prometheus::TextSerializer().Serialize(f); });
}

const std::map<std::string_view, std::function<void(std::uint64_t)>>& paths() {
  static const std::map<std::string_view, std::function<void(std::uint64_t)>> p = {
      {"lock_std",
       [](std::uint64_t n) {
         std::mutex m;
         lock_path(n, m);
       }},
      {"lock_stallscope",
       [](std::uint64_t n) {
         stallscope::Mutex m{"icount-lock"};
         lock_path(n, m);
       }},
      {"try_lock_fail_std",
       [](std::uint64_t n) {
         std::mutex m;
         try_lock_fail_path(n, m);
       }},
      {"try_lock_fail_stallscope",
       [](std::uint64_t n) {
         stallscope::Mutex m{"icount-try"};
         try_lock_fail_path(n, m);
       }},
      {"contended_naive",
       [](std::uint64_t n) {
         prometheus::Registry registry;
         const stallscope::Buckets buckets = stallscope::Buckets::latency();
         const auto bounds = buckets.bounds();
         auto& h =
             prometheus::BuildHistogram()
                 .Name("icount_wait_seconds")
                 .Help("icount")
                 .Register(registry)
                 .Add({}, prometheus::Histogram::BucketBoundaries(bounds.begin(), bounds.end()));
         HandTimed m(h);
         lock_path(n, m);
       }},
      {"contended_stallscope",
       [](std::uint64_t n) {
         stallscope::Instrumented<BusyOnTry> m{"icount-contended"};
         lock_path(n, m);
       }},
      {"histogram_prometheus", histogram_prometheus},
      {"histogram_stallscope", histogram_stallscope},
      {"channel_asio", channel_asio},
      {"channel_stallscope", channel_stallscope},
      {"channel_sized_stallscope", channel_sized_stallscope},
      {"post_plain", post_plain},
      {"post_stallscope", post_stallscope},
      {"spawn_plain", spawn_plain},
      {"spawn_stallscope", spawn_stallscope},
      {"retry_atomic", retry_atomic},
      {"retry_stallscope", retry_stallscope},
      {"scrape_prometheus", scrape_prometheus},
      {"scrape_stallscope", scrape_stallscope},
  };
  return p;
}

int usage() {
  std::fputs("usage: stallscope-icount PATH N   (N operations of PATH; PATH one of:", stderr);
  for (const auto& [name, f] : paths())
    std::fprintf(stderr, " %.*s", int(name.size()), name.data());
  std::fputs(")\n       stallscope-icount --list\n", stderr);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::string_view(argv[1]) == "--list") {
    for (const auto& [name, f] : paths()) std::printf("%.*s\n", int(name.size()), name.data());
    return 0;
  }
  if (argc != 3) return usage();
  const auto it = paths().find(argv[1]);
  if (it == paths().end()) {
    std::fprintf(stderr, "stallscope-icount: unknown path \"%s\"\n", argv[1]);
    return usage();
  }
  const std::string_view count(argv[2]);
  std::uint64_t n = 0;
  auto [end, ec] = std::from_chars(count.data(), count.data() + count.size(), n);
  if (ec != std::errc() || end != count.data() + count.size()) {
    std::fprintf(stderr, "stallscope-icount: N \"%s\" is not a whole number\n", argv[2]);
    return usage();
  }
  it->second(n);
  return 0;
}
