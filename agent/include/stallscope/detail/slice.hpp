#pragma once
// The task slice (one resumption of an instrumented task) running on this thread.
//
// Set by the instrumented executor around the outermost execution of a task's handler; read by
// the lock wrappers' detectors. Outside instrumented executors it is null and costs a lock one
// thread-local load and a predicted branch.
#include <cstdint>

namespace stallscope::detail {

class ExecutorSite;
class TaskSeries;

struct SliceContext {
  static constexpr std::uint32_t kMaxHeld = 8;
  TaskSeries* series = nullptr;
  ExecutorSite* executor = nullptr;  // the executor it runs on; null when not an io_context
  std::int64_t start_ns = 0;
  // Time spent blocked in contended stallscope lock waits during this slice (the lock
  // recorder adds to it).
  std::int64_t blocked_ns = 0;
  // Exclusive stallscope locks acquired during this slice and not yet released: the agent's
  // LockSite objects, held as void* because a translation unit compiled with recording off
  // declares an empty LockSite of its own (lock_recorder.hpp) and includes this header too, so
  // naming the class here would be ambiguous there. Only the lock recorder stores them and only
  // the detector (detectors.cpp) reads them back.
  void* held[kMaxHeld];  // [0, min(held_n, kMaxHeld)) are set; not zeroed: a slice is hot
  std::uint32_t held_n = 0;
  // The task running this slice as a wait-for graph participant (detail/waitfor.hpp), when a
  // stallscope async operation's completion resumed it; 0: not known.
  std::uintptr_t task = 0;

  void acquired(void* s) noexcept {
    if (held_n < kMaxHeld) held[held_n] = s;
    ++held_n;
  }
  void released(const void* s) noexcept {
    const std::uint32_t n = held_n < kMaxHeld ? held_n : kMaxHeld;
    for (std::uint32_t i = n; i-- > 0;) {
      if (held[i] == s) {
        held[i] = held[n - 1];
        --held_n;
        return;
      }
    }
    // Acquired before this slice began (or beyond kMaxHeld): nothing to undo here.
    if (held_n > kMaxHeld) --held_n;
  }
};

extern constinit thread_local SliceContext* tls_slice;

}  // namespace stallscope::detail
