#pragma once
// The recorders' side of the contention profiles (stallscope/profile.hpp): one call at the start
// and end of each contended lock wait, and one at a release that finds waiters. None of it is on
// an uncontended path: LockSite::releasing only tests LockBlame::pending(), one relaxed load.
#include <atomic>
#include <cstdint>

namespace stallscope::detail {

class Series;

// Per lock object: how much waiting its holders have caused since the last release, for the
// mutex profile's holder blame. The waiting is integrated over time (waiters x time) between
// the events that change it; a release charges what built up while it held and starts anew.
// Updated only on contended paths, under a small spin lock of its own (the sections are a few
// instructions and never call out).
struct LockBlame {
  std::atomic<std::uint32_t> waiters{0};  // read by the release's fast test
  std::atomic<bool> busy{false};
  std::int64_t since_ns = 0;  // the last change of `waiters`
  std::int64_t area_ns = 0;   // waiters x time since the last release

  bool pending() const noexcept { return waiters.load(std::memory_order_relaxed) != 0; }
};

// A thread begins a contended wait on `series` (op 0 exclusive, 1 shared) at `t0`. `blame` may
// be null (waits without a holder to blame).
void profile_wait_begin(LockBlame* blame, const Series* series, std::uint32_t op,
                        std::int64_t t0) noexcept;
// The wait ends at `t1`: leaves the in-progress list and may sample the waiter's stack.
void profile_wait_end(LockBlame* blame, const Series* series, std::uint32_t op, std::int64_t t0,
                      std::int64_t t1) noexcept;
// A release of a lock with waiters (blame.pending()): charges this thread's stack with the
// waiting that built up while it held.
void profile_released(LockBlame& blame, const Series* series, std::uint32_t op) noexcept;

// A Semaphore or AsyncMutex permit handed by this thread's release to a waiter that waited
// `waited_ns`: charges this thread's stack (the holder's) with that wait.
void profile_granted(const Series* series, std::int64_t waited_ns) noexcept;

}  // namespace stallscope::detail
