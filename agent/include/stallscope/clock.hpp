#pragma once
/// The one clock every recorder uses: std::chrono::steady_clock in integer nanoseconds.
///
/// Read only where a value is needed (a contended wait, a timed hold): about 20-25 ns on the
/// project's machines (vDSO clock_gettime), so the uncontended paths never call it.

#include <chrono>
#include <cstdint>

namespace stallscope {

/// Monotonic nanoseconds since an unspecified epoch. Thread-safe, noexcept.
inline std::int64_t now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace stallscope
