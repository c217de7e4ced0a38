// Contention profiles: what one captured sample costs, and whether the profile finds a planted
// slow holder. scripts/bench-pprof.sh runs it and reads its files with bench/pprof-report.mjs.
//
//   stallscope-bench-pprof OUT_DIR [SECONDS]
//
// 1. Sample cost: the recorder's wait-end call with every event sampled (stack captured and
//    aggregated) against the same call with sampling off, side by side, from the same stack;
//    the same for an async wait (the draw at the call, which captures, and the end, which
//    aggregates: profile_hooks.hpp).
// 2. A planted slow site: four threads take the lock "planted" from eleven call sites in turn;
//    ten hold it about 2 us, one (planted_slow_site) about 2 ms. At the default rate for SECONDS
//    (default 3). Writes OUT_DIR/mutex.pb.gz, block.pb.gz (pprof_profile) and metrics.txt.
#include "stallscope/pprof.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "families.hpp"
#include "series_support.hpp"
#include "stallscope/detail/lock_recorder.hpp"
#include "stallscope/detail/profile_hooks.hpp"
#include "stallscope/mutex.hpp"
#include "stallscope/prometheus.hpp"
#include "stallscope/registry.hpp"
#include "text_format.hpp"

namespace {

using Clock = std::chrono::steady_clock;

stallscope::Mutex planted{"planted"};
std::atomic<bool> stop{false};

void busy_for(std::chrono::nanoseconds d) {
  const auto until = Clock::now() + d;
  while (Clock::now() < until) {
  }
}

template <int Site>
[[gnu::noinline]] void fast_site() {
  std::lock_guard lock(planted);
  busy_for(std::chrono::microseconds(2));
}

[[gnu::noinline]] void planted_slow_site() {
  std::lock_guard lock(planted);
  busy_for(std::chrono::milliseconds(2));
}

using SiteFn = void (*)();
constexpr SiteFn kSites[] = {fast_site<0>, fast_site<1>, fast_site<2>,     fast_site<3>,
                             fast_site<4>, fast_site<5>, fast_site<6>,     fast_site<7>,
                             fast_site<8>, fast_site<9>, planted_slow_site};

void worker(int t) {
  for (unsigned i = static_cast<unsigned>(t) * 3; !stop.load(std::memory_order_relaxed); ++i) {
    kSites[i % std::size(kSites)]();
    busy_for(std::chrono::microseconds(20));  // work outside the lock
  }
}

// A few frames between the sample and main, as in a service.
template <int Depth>
[[gnu::noinline]] double time_wait_ends(const stallscope::detail::Series* s, int n) {
  if constexpr (Depth > 0) {
    return time_wait_ends<Depth - 1>(s, n);
  } else {
    const auto t0 = Clock::now();
    for (int i = 0; i < n; ++i) stallscope::detail::profile_wait_end(nullptr, s, 0, 0, 1'000'000);
    return std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / n;
  }
}

template <int Depth>
[[gnu::noinline]] double time_async_waits(const stallscope::detail::Series* s, int n) {
  if constexpr (Depth > 0) {
    return time_async_waits<Depth - 1>(s, n);
  } else {
    stallscope::detail::WaitHint hint;
    const auto t0 = Clock::now();
    for (int i = 0; i < n; ++i) {
      stallscope::detail::WaitTicket ticket;
      ticket.draw(hint);
      ticket.end(hint, s, stallscope::detail::kOpAcquire, 1'000'000);
    }
    return std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / n;
  }
}

// The best of five rounds of `timed` (ns per call) with every event sampled, and with sampling
// off, alternating.
template <class Timed>
std::pair<double, double> sampled_and_not(Timed timed) {
  double on = 1e18, off = 1e18;
  for (int round = 0; round < 5; ++round) {
    stallscope::set_profile_rate(stallscope::ProfileRate::events(1));
    on = std::min(on, timed());
    stallscope::set_profile_rate(stallscope::ProfileRate::off());
    off = std::min(off, timed());
  }
  return {on, off};
}

void write(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: stallscope-bench-pprof OUT_DIR [SECONDS]\n");
    return 2;
  }
  const std::string out = argv[1];
  const int seconds = argc > 2 ? std::atoi(argv[2]) : 3;

  // 1. Sample cost, best of five rounds each, alternating.
  const auto* series = &stallscope::detail::series_of<stallscope::detail::LockSeries>(
      stallscope::ResourceKind::kLock, "bench-sample-cost");
  const stallscope::ProfileRate rate = stallscope::profile_rate();
  const auto [on, off] = sampled_and_not([&] { return time_wait_ends<12>(series, 20'000); });
  std::printf("sample_ns %.0f\nnot_sampled_ns %.1f\n", on - off, off);
  const auto [async_on, async_off] =
      sampled_and_not([&] { return time_async_waits<12>(series, 20'000); });
  std::printf("async_sample_ns %.0f\nasync_not_sampled_ns %.1f\n", async_on - async_off, async_off);
  stallscope::set_profile_rate(rate);

  // 2. The planted slow site, at the rate the environment gives (the default unless set).
  std::printf("rate %s\n", stallscope::profile_rate().to_string().c_str());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) threads.emplace_back(worker, t);
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  stop = true;
  for (auto& t : threads) t.join();
  write(out + "/mutex.pb.gz", stallscope::pprof_profile(stallscope::ProfileType::kMutex));
  write(out + "/block.pb.gz", stallscope::pprof_profile(stallscope::ProfileType::kBlock));
  write(out + "/metrics.txt",
        stallscope::detail::write_text(
            stallscope::Collectable(stallscope::Registry::global()).Collect()));
  return 0;
}
