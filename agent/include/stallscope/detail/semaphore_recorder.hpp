#pragma once
// Recording for the permit primitives: Semaphore (kind "semaphore", stallscope_semaphore_*) and
// AsyncMutex (kind "async_lock", exported under the lock families stallscope_lock_*). One
// SemaphoreSeries per (kind, name), one SemaphoreSite per object.
//
// The primitive calls its site under its own internal mutex, so every site atomic has one writer
// at a time (load + store is enough); scrapes read them relaxed and may see a gauge one
// operation stale, never torn. Waiters are counted from the primitive's own queue, not from the
// threads' wait slots: a waiting coroutine is not a blocked thread.
//
// Holds are always timed: one clock read per acquisition and one per release (~25 ns each),
// small next to the coroutine suspension an async acquisition costs, and it makes the holder age
// of an async_lock exact. A contended acquisition reads the clock once when it queues; its wait
// ends (and its hold begins) at the releaser's clock read.
//
// With STALLSCOPE_ENABLED=0 the primitives get a SemaphoreSite from the end of this file instead:
// an empty class with the same interface whose members do nothing.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "stallscope/config.hpp"
#include "stallscope/detail/profile_hooks.hpp"
#include "stallscope/registry.hpp"
#if STALLSCOPE_ENABLED
#include <atomic>
#include <string>

#include "stallscope/detail/cells.hpp"
#include "stallscope/detail/histogram.hpp"
#include "stallscope/detail/series.hpp"
#include "stallscope/detail/service_map.hpp"
#endif

namespace stallscope::detail {

// Why a waiter left the queue without a permit.
enum class WaitEnd : std::uint8_t {
  kTimedOut,   // acquire_for/acquire_until, try_lock_for/try_lock_until gave up
  kCancelled,  // the async operation was cancelled, or the object was destroyed
};

#if STALLSCOPE_ENABLED

class SemaphoreSite;

class SemaphoreSeries final : public Series {
 public:
  SemaphoreSeries(ResourceKind kind, std::string name, std::uint32_t id, const Config& config);
  void collect(Collector& out) override;

  static constexpr std::uint32_t kFast = 0;       // acquired without waiting (not try_*)
  static constexpr std::uint32_t kTryOk = 1;      // try_acquire/try_lock succeeded
  static constexpr std::uint32_t kTryFail = 2;    // try_acquire/try_lock found nothing free
  static constexpr std::uint32_t kTimedOut = 3;   // a timed wait gave up
  static constexpr std::uint32_t kCancelled = 4;  // an async wait was cancelled or aborted
  static constexpr std::uint32_t kCounters = 5;

  std::uint32_t base = kNoCell;
  HistogramCells wait;  // waits that queued; exported with the kFast count in bucket 0
  HistogramCells hold;
  UserSet users;  // task names and threads that acquire it (the live map)

 private:
  friend class SemaphoreSite;
  LiveList<SemaphoreSite> sites_;
};

// The per-object part of a Semaphore or AsyncMutex. Every call but name() is made under the
// primitive's internal mutex.
class SemaphoreSite {
 public:
  // Throws std::invalid_argument on a bad name.
  SemaphoreSite(ResourceKind kind, std::string_view name, std::size_t permits);
  ~SemaphoreSite();
  SemaphoreSite(const SemaphoreSite&) = delete;
  SemaphoreSite& operator=(const SemaphoreSite&) = delete;

  const std::string& name() const noexcept { return series_->name(); }

  // acquire()/async_acquire()/lock() took a free permit at `now`: a zero wait.
  void acquired(std::int64_t now) noexcept {
    add(series_->base + SemaphoreSeries::kFast);
    take(now);
    user();
  }
  // try_acquire()/try_lock() at `now`.
  void tried(bool ok, std::int64_t now) noexcept {
    add(series_->base + (ok ? SemaphoreSeries::kTryOk : SemaphoreSeries::kTryFail));
    if (ok) take(now);
    user();
  }
  // The caller acquires (or tries to): noted as a user for the live map (service_map.hpp).
  void user() noexcept { note_user(series_->users, last_user_); }
  // A waiter queued since `since` was handed a permit at `now`.
  void granted(std::int64_t since, std::int64_t now) noexcept {
    series_->wait.record(now - since);
    take(now);
    profile_granted(series_, now - since);  // the releasing holder's stack, for the profile
  }
  // The block profile's side of a wait that queued and ended after `waited_ns`: an async wait
  // settles its ticket (under the primitive's mutex or after it); a thread samples its own stack
  // (outside the mutex: series() was read before).
  void wait_ended(WaitTicket& ticket, std::int64_t waited_ns) noexcept {
    ticket.end(hint_, series_, op(), waited_ns);
  }
  const Series* series() const noexcept { return series_; }
  std::uint32_t op() const noexcept {
    return series_->kind() == ResourceKind::kAsyncLock ? kOpExclusive : kOpAcquire;
  }
  // Whether an acquisition now would likely queue (every permit taken: a relaxed load, may be
  // stale), and the hint its ticket is drawn with.
  bool full() const noexcept { return in_use_.load(std::memory_order_relaxed) >= permits_; }
  const WaitHint& hint() const noexcept { return hint_; }
  // A waiter queued since `since` left at `now` without a permit.
  void abandoned(WaitEnd why, std::int64_t since, std::int64_t now) noexcept {
    series_->wait.record(now - since);
    add(series_->base +
        (why == WaitEnd::kTimedOut ? SemaphoreSeries::kTimedOut : SemaphoreSeries::kCancelled));
  }
  // A permit taken at `since` was released at `now`.
  void released(std::int64_t since, std::int64_t now) noexcept {
    series_->hold.record(now - since);
    const std::size_t n = in_use_.load(std::memory_order_relaxed) - 1;
    in_use_.store(n, std::memory_order_relaxed);
    if (n == 0) held_since_.store(0, std::memory_order_relaxed);
  }
  // The queue changed: `n` waiters, the oldest queued since `oldest_since` (0: none).
  void waiters(std::size_t n, std::int64_t oldest_since) noexcept {
    waiters_.store(n, std::memory_order_relaxed);
    oldest_since_.store(oldest_since, std::memory_order_relaxed);
  }

 private:
  friend class SemaphoreSeries;
  void take(std::int64_t now) noexcept {
    in_use_.store(in_use_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    held_since_.store(now, std::memory_order_relaxed);  // the holder's, when there is one permit
  }

  SemaphoreSeries* series_;
  const std::size_t permits_;
  std::atomic<std::size_t> in_use_{0};
  std::atomic<std::int64_t> held_since_{0};  // 0: not held
  std::atomic<std::size_t> waiters_{0};
  std::atomic<std::int64_t> oldest_since_{0};  // 0: nobody waits
  std::atomic<const void*> last_user_{nullptr};
  WaitHint hint_;
  friend class LiveList<SemaphoreSite>;
  LiveLink<SemaphoreSite> link_;
};

#else  // Compiled out: the same calls, doing nothing, reading no clock (see lock_recorder.hpp).
inline namespace off {

class SemaphoreSite {
 public:
  SemaphoreSite(ResourceKind, std::string_view, std::size_t) noexcept {}

  std::string_view name() const noexcept { return {}; }
  void acquired(std::int64_t) noexcept {}
  void tried(bool, std::int64_t) noexcept {}
  void granted(std::int64_t, std::int64_t) noexcept {}
  void abandoned(WaitEnd, std::int64_t, std::int64_t) noexcept {}
  void released(std::int64_t, std::int64_t) noexcept {}
  void waiters(std::size_t, std::int64_t) noexcept {}
  void user() noexcept {}
  void wait_ended(WaitTicket&, std::int64_t) noexcept {}
  const Series* series() const noexcept { return nullptr; }
  std::uint32_t op() const noexcept { return 0; }
  bool full() const noexcept { return false; }
  int hint() const noexcept { return 0; }
};

}  // namespace off
#endif

}  // namespace stallscope::detail
