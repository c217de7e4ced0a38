// Channel benchmarks: stallscope::Channel (this binary is built twice: recording on, and with
// STALLSCOPE_ENABLED=0 as stallscope-bench-channel-off) against
// boost::asio::experimental::concurrent_channel, the channel an Asio user would otherwise pick.
//
//  ping_pong_*   one io_context thread; a round trip over two channels of capacity 1
//  spsc_*        1 producer coroutine + 1 consumer coroutine, each on its own io_context and
//                thread, capacity 64
//  mpmc_*        2 producers + 2 consumers on a 2-thread io_context, capacity 64
//  mpmc_n_*/N    N producers + N consumers on an N-thread io_context, capacity 64: only with
//                STALLSCOPE_BENCH_THREADS (the scaling run), N from it
// Throughput benchmarks move a batch of kBatch items per iteration and report items/s.
#include <atomic>
#include <cstdint>
#include <thread>

#include <benchmark/benchmark.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <stallscope/channel.hpp>

#include "threads.hpp"

namespace asio = boost::asio;

namespace {

constexpr int kBatch = 100'000;
constexpr std::size_t kCapacity = 64;

using AsioChannel = asio::experimental::concurrent_channel<void(boost::system::error_code, int)>;

// The two channel types behind one small interface, so every benchmark runs the same code.
struct Stall {
  using Channel = stallscope::Channel<int>;
  static std::unique_ptr<Channel> make(asio::io_context&, const char* name, std::size_t cap) {
    return std::make_unique<Channel>(name, cap);
  }
  static asio::awaitable<void> send(Channel& c, int v) { (void)co_await c.async_send(v); }
  static asio::awaitable<bool> receive(Channel& c, int& v) {
    boost::system::error_code ec;
    v = co_await c.async_receive(asio::redirect_error(asio::use_awaitable, ec));
    co_return !ec;
  }
  static void close(Channel& c) { c.close(); }
};

struct Asio {
  using Channel = AsioChannel;
  static std::unique_ptr<Channel> make(asio::io_context& io, const char*, std::size_t cap) {
    return std::make_unique<Channel>(io, cap);
  }
  static asio::awaitable<void> send(Channel& c, int v) {
    boost::system::error_code ec;
    co_await c.async_send(boost::system::error_code{}, v,
                          asio::redirect_error(asio::use_awaitable, ec));
  }
  static asio::awaitable<bool> receive(Channel& c, int& v) {
    boost::system::error_code ec;
    v = co_await c.async_receive(asio::redirect_error(asio::use_awaitable, ec));
    co_return !ec;
  }
  static void close(Channel& c) { c.close(); }
};

template <class Impl>
void ping_pong(benchmark::State& state) {
  asio::io_context io(1);
  auto there = Impl::make(io, "bench-ping", 1);
  auto back = Impl::make(io, "bench-pong", 1);
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        int v = 0;
        while (co_await Impl::receive(*there, v)) co_await Impl::send(*back, v);
      },
      asio::detached);
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        int v = 0;
        for (auto _ : state) {
          co_await Impl::send(*there, v);
          co_await Impl::receive(*back, v);
        }
        Impl::close(*there);
      },
      asio::detached);
  io.run();
}

// Moves kBatch items from `producers` coroutines to `consumers` coroutines. Split: producers run
// on one io_context and consumers on another, one thread each (the usual pipeline stage shape);
// otherwise all of them share one io_context run by `threads` threads.
template <class Impl>
void throughput(benchmark::State& state, int producers, int consumers, int threads, bool split) {
  for (auto _ : state) {
    asio::io_context io(split ? 1 : threads);
    asio::io_context consumer_io(1);
    asio::io_context& cio = split ? consumer_io : io;
    auto ch = Impl::make(io, "bench-throughput", kCapacity);
    std::atomic<int> producers_left{producers};
    std::atomic<std::int64_t> received{0};
    for (int p = 0; p < producers; ++p) {
      asio::co_spawn(
          io,
          [&]() -> asio::awaitable<void> {
            for (int i = 0; i < kBatch / producers; ++i) co_await Impl::send(*ch, i);
            if (--producers_left == 0) Impl::close(*ch);
          },
          asio::detached);
    }
    for (int c = 0; c < consumers; ++c) {
      asio::co_spawn(
          cio,
          [&]() -> asio::awaitable<void> {
            int v = 0;
            std::int64_t n = 0;
            while (co_await Impl::receive(*ch, v)) ++n;
            received += n;
          },
          asio::detached);
    }
    std::vector<std::thread> pool;
    if (split) pool.emplace_back([&] { consumer_io.run(); });
    for (int t = 1; t < (split ? 1 : threads); ++t) pool.emplace_back([&] { io.run(); });
    io.run();
    for (auto& t : pool) t.join();
    benchmark::DoNotOptimize(received.load());
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}

#if STALLSCOPE_ENABLED
#define STALL_VARIANT "stallscope"
#else
#define STALL_VARIANT "stallscope_off"
#endif

void BM_ping_pong_stallscope(benchmark::State& s) { ping_pong<Stall>(s); }
void BM_spsc_stallscope(benchmark::State& s) { throughput<Stall>(s, 1, 1, 2, true); }
void BM_mpmc_stallscope(benchmark::State& s) { throughput<Stall>(s, 2, 2, 2, false); }
BENCHMARK(BM_ping_pong_stallscope)->Name("ping_pong_" STALL_VARIANT);
BENCHMARK(BM_spsc_stallscope)
    ->Name("spsc_" STALL_VARIANT)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_mpmc_stallscope)
    ->Name("mpmc_" STALL_VARIANT)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

#if STALLSCOPE_ENABLED
void BM_ping_pong_asio(benchmark::State& s) { ping_pong<Asio>(s); }
void BM_spsc_asio(benchmark::State& s) { throughput<Asio>(s, 1, 1, 2, true); }
void BM_mpmc_asio(benchmark::State& s) { throughput<Asio>(s, 2, 2, 2, false); }
BENCHMARK(BM_ping_pong_asio)->Name("ping_pong_asio_concurrent_channel");
BENCHMARK(BM_spsc_asio)
    ->Name("spsc_asio_concurrent_channel")
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_mpmc_asio)
    ->Name("mpmc_asio_concurrent_channel")
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
#endif

// The scaling run's shape: as mpmc, with the thread count from STALLSCOPE_BENCH_THREADS.
template <class Impl>
void mpmc_n(benchmark::State& s) {
  const int n = static_cast<int>(s.range(0));
  throughput<Impl>(s, n, n, n, false);
}
const bool kScalingRegistered = [] {
  if (stallscope_bench::scaling_threads().empty()) return false;
  benchmark::RegisterBenchmark("mpmc_n_" STALL_VARIANT, mpmc_n<Stall>)
      ->Apply(stallscope_bench::thread_args)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
#if STALLSCOPE_ENABLED
  benchmark::RegisterBenchmark("mpmc_n_asio_concurrent_channel", mpmc_n<Asio>)
      ->Apply(stallscope_bench::thread_args)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
#endif
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
