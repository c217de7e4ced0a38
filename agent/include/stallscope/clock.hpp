#pragma once
/// The one clock every recorder uses, in integer nanoseconds.
///
/// On x86-64 with an invariant TSC it is the TSC, scaled to nanoseconds by a calibration against
/// std::chrono::steady_clock when the process registry is created (2 ms, once): about 8 ns a
/// read on the project's machines against 17 ns for steady_clock (vDSO clock_gettime), and the
/// task executor reads it three times per slice. Elsewhere, and until calibrated, it is
/// steady_clock, on the same epoch. Durations may come out a few ns negative across cores;
/// recorders clamp them at 0. Read only where a value is needed: uncontended paths never call it.

#include <atomic>
#include <chrono>
#include <cstdint>

namespace stallscope {

namespace detail {

inline std::int64_t steady_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

#if defined(__x86_64__)
__extension__ typedef unsigned __int128 Uint128;  // __extension__: fine under -Wpedantic
#endif

struct TscScale {
  std::uint64_t tsc0;
  std::int64_t ns0;
  std::uint64_t mult;  // nanoseconds per tick, fixed point with 32 fraction bits
};

// Null until calibrated, and forever where the TSC is not invariant.
extern constinit std::atomic<const TscScale*> g_tsc_scale;

// Calibrates once (idempotent, thread-safe); returns whether the TSC is in use.
bool calibrate_clock() noexcept;

}  // namespace detail

/// Monotonic nanoseconds since an unspecified epoch (steady_clock's). Thread-safe, noexcept.
[[gnu::always_inline]] inline std::int64_t now_ns() noexcept {
#if defined(__x86_64__)
  if (const detail::TscScale* s = detail::g_tsc_scale.load(std::memory_order_acquire)) [[likely]] {
    const detail::Uint128 ticks = static_cast<std::uint64_t>(__builtin_ia32_rdtsc() - s->tsc0);
    return s->ns0 + static_cast<std::int64_t>((ticks * s->mult) >> 32);
  }
#endif
  return detail::steady_ns();
}

}  // namespace stallscope
