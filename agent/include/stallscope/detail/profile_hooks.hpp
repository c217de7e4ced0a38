#pragma once
// The recorders' side of the contention profiles (stallscope/profile.hpp): one call at the start
// and end of each contended lock wait, and one at a release that finds waiters. None of it is on
// an uncontended path: LockSite::releasing only tests LockBlame::pending(), one relaxed load.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <span>
#include <utility>

#include "stallscope/config.hpp"

namespace stallscope::detail {

class Series;

// Frames kept per captured stack.
inline constexpr int kProfileFrames = 48;
// Op indexes of the profiles' op label (profile.cpp names them).
inline constexpr std::uint32_t kOpExclusive = 0, kOpShared = 1, kOpAcquire = 2, kOpSend = 3,
                               kOpQueue = 4, kOpSchedule = 5;

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

// A thread's wait on an async primitive ended after `waited_ns`: sampled by delay (the lock rule)
// with this thread's stack. Call it outside the primitive's mutex.
void profile_waited(const Series* series, std::uint32_t op, std::int64_t waited_ns) noexcept;

// --- async waits (coroutines and callbacks) ---------------------------------------------------
//
// A coroutine's frames are on the thread's stack only while it runs: from the call of
// async_lock()/async_send()/run() up to its suspension. Asio runs the operation's initiation
// after the coroutine has suspended (awaitable_frame_base::after_suspend), and completes it on
// another stack. So the waiter's stack is captured at the call, before the wait is known to
// queue, and the sampling decision is made there (profile.hpp, "Async waits"): a ticket drawn at
// the call, kept by the wait's node while it queues, settled when the wait ends.

// A captured stack of an async wait, with what its weight needs.
struct AsyncStack {
  const Series* task;  // the task the call ran in (a coroutine's wait ends on another thread)
  double q;            // the probability the draw had
  std::uint8_t mode;   // ProfileRate::Mode at the draw
  std::int64_t rate_ns;
  int n;
  std::uintptr_t pcs[kProfileFrames];
};

// Per resource: the length of the last async wait that ended on it, which sets the draw's
// probability in by-delay mode. Written at every async wait's end (one relaxed store), read by
// draws; a hint, so races only move a probability that is known at the draw.
struct WaitHint {
  std::atomic<std::int64_t> last_ns{0};
};

// Draws for an async wait that may queue on a resource with `hint`: a captured stack (the
// caller's), or not_sampled(). Never throws.
AsyncStack* profile_async_draw(const WaitHint& hint) noexcept;
// The wait drawn as `s` (a captured stack) ended after `waited_ns` (0 or less: it never
// queued): samples it by its weight into the block profile; frees `s`.
void profile_async_end(AsyncStack* s, const Series* series, std::uint32_t op,
                       std::int64_t waited_ns) noexcept;
// Frees a captured stack whose wait never happened.
void profile_async_discard(AsyncStack* s) noexcept;
// The draw's answer for a wait that is not sampled (never dereferenced).
inline AsyncStack* profile_not_sampled() noexcept {
  return reinterpret_cast<AsyncStack*>(std::uintptr_t{1});
}

// A task resumption's scheduling delay (ready -> running), label-only: kind executor (or task
// when there is no executor site), op "schedule", the task's name; no stack (README).
void profile_schedule(const Series* executor, const Series* task, std::int64_t delay_ns) noexcept;

#if STALLSCOPE_ENABLED
// The profile's part of an async wait's node: empty until drawn. Move-only; frees its stack.
class WaitTicket {
 public:
  WaitTicket() noexcept = default;
  WaitTicket(WaitTicket&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  WaitTicket& operator=(WaitTicket&& o) noexcept {
    if (this != &o) {
      reset();
      s_ = std::exchange(o.s_, nullptr);
    }
    return *this;
  }
  ~WaitTicket() { reset(); }

  bool drawn() const noexcept { return s_ != nullptr; }
  // Draws unless already drawn.
  void draw(const WaitHint& hint) noexcept {
    if (s_ == nullptr) s_ = profile_async_draw(hint);
  }
  // The wait ended after `waited_ns`: notes it in `hint` and samples it if drawn so.
  void end(WaitHint& hint, const Series* series, std::uint32_t op,
           std::int64_t waited_ns) noexcept {
    hint.last_ns.store(waited_ns, std::memory_order_relaxed);
    if (s_ != nullptr && s_ != profile_not_sampled()) {
      profile_async_end(std::exchange(s_, nullptr), series, op, waited_ns);
    }
    s_ = nullptr;
  }
  // The captured stack (empty when not sampled), for the waits in progress.
  std::span<const std::uintptr_t> pcs() const noexcept {
    if (s_ == nullptr || s_ == profile_not_sampled()) return {};
    return {s_->pcs, static_cast<std::size_t>(std::max(s_->n, 0))};
  }
  void reset() noexcept {
    if (s_ != nullptr && s_ != profile_not_sampled()) profile_async_discard(s_);
    s_ = nullptr;
  }

 private:
  AsyncStack* s_ = nullptr;
};
// A thread's wait ended (profile_waited), from code compiled with or without recording.
inline void thread_waited(const Series* series, std::uint32_t op, std::int64_t waited) noexcept {
  profile_waited(series, op, waited);
}
#else
inline namespace off {
inline void thread_waited(const Series*, std::uint32_t, std::int64_t) noexcept {}
class WaitTicket {
 public:
  bool drawn() const noexcept { return false; }
  template <class Hint>
  void draw(const Hint&) noexcept {}
  std::span<const std::uintptr_t> pcs() const noexcept { return {}; }
  void reset() noexcept {}
};
}  // namespace off
#endif

}  // namespace stallscope::detail
