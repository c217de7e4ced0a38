#include "stallscope/clock.hpp"

#include <mutex>
#if defined(__x86_64__)
#include <cpuid.h>

#include <x86intrin.h>  // __rdtsc
#endif

namespace stallscope::detail {

constinit std::atomic<const TscScale*> g_tsc_scale{nullptr};

namespace {

#if defined(__x86_64__)
bool invariant_tsc() noexcept {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid(0x80000000u, &eax, &ebx, &ecx, &edx) == 0 || eax < 0x80000007u) return false;
  if (__get_cpuid(0x80000007u, &eax, &ebx, &ecx, &edx) == 0) return false;
  return (edx & (1u << 8)) != 0;  // CPUID.80000007H:EDX[8]: invariant TSC
}

struct Pair {
  std::uint64_t tsc;
  std::int64_t ns;
};

// A (tsc, steady) pair read as close together as possible: the tightest of a few tries.
Pair read_pair() noexcept {
  Pair best{0, 0};
  std::uint64_t best_window = ~std::uint64_t{0};
  for (int i = 0; i < 7; ++i) {
    const std::uint64_t t1 = __rdtsc();
    const std::int64_t ns = steady_ns();
    const std::uint64_t t2 = __rdtsc();
    if (t2 - t1 < best_window) {
      best_window = t2 - t1;
      best = {t1 + (t2 - t1) / 2, ns};
    }
  }
  return best;
}
#endif

}  // namespace

bool calibrate_clock() noexcept {
#if defined(__x86_64__)
  static const bool in_use = [] {
    if (!invariant_tsc()) return false;
    const Pair a = read_pair();
    // 2 ms: a read window of ~20 ns then bounds the rate error near 1e-5.
    while (steady_ns() - a.ns < 2'000'000) {
    }
    const Pair b = read_pair();
    if (b.tsc <= a.tsc || b.ns <= a.ns) return false;
    const long double ns_per_tick =
        static_cast<long double>(b.ns - a.ns) / static_cast<long double>(b.tsc - a.tsc);
    // Leaked on purpose: read by any thread until exit.
    auto* s = new TscScale{b.tsc, b.ns, static_cast<std::uint64_t>(ns_per_tick * 4294967296.0L)};
    g_tsc_scale.store(s, std::memory_order_release);
    return true;
  }();
  return in_use;
#else
  return false;
#endif
}

}  // namespace stallscope::detail
