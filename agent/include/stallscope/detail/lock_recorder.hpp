#pragma once
// Recording for the lock family: one LockSeries per (kind, name), one LockSite per lock object.
//
// Hot-path cost with hold timing off (the default):
//   uncontended lock():  one cell add + one relaxed load/store on the object's own state word
//   unlock():            one relaxed load/store on the state word
// No clock is read unless the acquisition had to wait. Hold timing (LockOptions::hold_time or
// Config::hold_time) adds two clock reads and one histogram record per acquisition.
//
// With STALLSCOPE_ENABLED=0 the wrappers get LockSite and CvRecorder from the end of this file
// instead: empty classes with the same interface whose members do nothing.
#include <cstdint>
#include <string_view>

#include "stallscope/config.hpp"
#include "stallscope/detail/lock_name.hpp"
#include "stallscope/options.hpp"
#include "stallscope/registry.hpp"
#if STALLSCOPE_ENABLED
#include <atomic>
#include <mutex>
#include <optional>
#include <string>
#include <type_traits>

#include "stallscope/clock.hpp"
#include "stallscope/detail/cells.hpp"
#include "stallscope/detail/histogram.hpp"
#include "stallscope/detail/profile_hooks.hpp"
#include "stallscope/detail/series.hpp"
#include "stallscope/detail/service_map.hpp"
#include "stallscope/detail/slice.hpp"
#endif

namespace stallscope::detail {

enum class LockOp : std::uint8_t { kExclusive = 0, kShared = 1 };

#if STALLSCOPE_ENABLED

// Cells of one op (exclusive or shared) of one lock series.
struct LockOpCells {
  static constexpr std::uint32_t kFast = 0;               // lock() acquired without waiting
  static constexpr std::uint32_t kTryOk = 1;              // try_lock() succeeded
  static constexpr std::uint32_t kTryFail = 2;            // try_lock() failed
  static constexpr std::uint32_t kTimeout = 3;            // timed lock gave up after waiting
  static constexpr std::uint32_t kExecutorBlockedNs = 4;  // contended waits inside a task slice
  static constexpr std::uint32_t kCounters = 5;
  std::uint32_t base = kNoCell;
  WaitHistogramCells wait;  // contended waits only; exported with the fast count in bucket 0
  // Allocated by the first object of the series that times its holds (LockSeries::
  // ensure_hold_cells); kNoCell until then, so locks without hold timing (the default) carry
  // no hold cells in any thread's shard.
  HistogramCells hold;
  // Condition-variable waits for a notification on this lock (idle, not ranked); kNoCell until
  // the first ConditionVariable wait on the series (LockSeries::ensure_idle_cells).
  HistogramCells idle;
};

class LockSite;

class LockSeries final : public Series {
 public:
  LockSeries(ResourceKind kind, std::string name, std::uint32_t id, const Config& config);
  void collect(Collector& out) override;

  const LockOpCells& op(LockOp o) const noexcept { return ops_[static_cast<int>(o)]; }
  bool hold_time_default() const noexcept { return hold_time_default_; }
  // Gives the series its hold cells (once); called by every object that times its holds before
  // it can record one.
  void ensure_hold_cells() noexcept;
  // Gives the series its condition-variable idle cells (once); called before the first record.
  void ensure_idle_cells() noexcept;
  UserSet users;  // task names and threads that take it (the live map)

 private:
  friend class LockSite;
  const BucketLayout& wait_layout_;  // shared_layout()
  const BucketLayout& hold_layout_;  // shared_layout()
  LockOpCells ops_[2];
  std::mutex hold_mu_;
  std::atomic<bool> hold_cells_{false};    // ops_[*].hold.base set (release), for scrapes
  std::atomic<bool> idle_cells_{false};    // ops_[0].idle.base set (release), for scrapes
  std::atomic<bool> merge_warned_{false};  // logged that unnamed objects share this name
  bool hold_time_default_;
  bool has_shared_;
  LiveList<LockSite> sites_;
};

// The per-object part of a lock wrapper.
//
// Registration is deferred: the constexpr constructors only store the name (a literal, or the
// declaring file and line), so a lock is constant-initialized like std::mutex. The first record
// (or name()) resolves the series, once, in resolve(). Only a lock named at run time registers in
// its constructor, because its name may not outlive it.
class LockSite {
 public:
  // A literal name (static storage, checked at compile time); registers on first use.
  constexpr LockSite(ResourceKind kind, std::string_view name, const LockOptions& options) noexcept
      : pending_(name.data()),
        pending_n_(static_cast<std::uint32_t>(name.size())),
        kind_(kind),
        hold_option_(options.hold_time) {}
  // Unnamed: named after the declaring site ("file.cpp:42") on first use.
  constexpr LockSite(ResourceKind kind, SourceSite where) noexcept
      : pending_(where.file), pending_n_(where.line), kind_(kind), unnamed_(true) {}
  // A name known only at run time: registers now; throws std::invalid_argument on a bad name.
  struct RegisterNow {};
  LockSite(RegisterNow, ResourceKind kind, std::string_view name, const LockOptions& options);
  ~LockSite();
  LockSite(const LockSite&) = delete;
  LockSite& operator=(const LockSite&) = delete;

  // lock()/lock_shared() got the lock on the first try_lock: no wait to time.
  //
  // A lock whose registration failed records nothing, but still keeps its exclusive state like
  // any other (enter_exclusive here, the decrement in releasing): so releasing() needs no check
  // of its own (measured: the check cost 3 of the fast path's instructions, bench/icount.cpp).
  void acquired_fast(LockOp op) noexcept {
    if (LockSeries* s = series()) [[likely]] {
      if (add_first(s->op(op).base + LockOpCells::kFast)) [[unlikely]]
        note_user_cold();  // this thread's first acquisition of the name: see service_map.hpp
    }
    if (op == LockOp::kExclusive) {
      enter_exclusive();
    } else {
      shared_hold(true);
    }
    if (time_holds_) hold_begin(op, now_ns());
  }
  void tried(LockOp op, bool ok) noexcept {
    if (LockSeries* s = series()) [[likely]]
      add(s->op(op).base + (ok ? LockOpCells::kTryOk : LockOpCells::kTryFail));
    if (!ok) return;
    if (op == LockOp::kExclusive) {
      enter_exclusive();
    } else {
      shared_hold(true);
    }
    if (time_holds_) hold_begin(op, now_ns());
  }
  // Call before releasing the inner lock. This thread acquired the lock through one of the calls
  // above (or wait_end), which resolved the series first: time_holds_ is published to it.
  void releasing(LockOp op) noexcept {
    if (blame_.pending()) [[unlikely]] {  // others wait: the holder's stack for the profile
      profile_released(blame_, series_.load(std::memory_order_relaxed), static_cast<unsigned>(op));
    }
    if (op == LockOp::kExclusive) {
      const std::uint64_t s = state_.load(std::memory_order_relaxed) - 1;
      state_.store(s, std::memory_order_relaxed);
      if (SliceContext* sc = tls_slice) [[unlikely]]
        sc->released(this);
      if (held_across_seq_.load(std::memory_order_relaxed) != 0) [[unlikely]] {
        held_across_released();
      }
      if (time_holds_ && (s & kDepthMask) == 0) hold_end(op);
    } else {
      shared_hold(false);
      if (time_holds_) hold_end(op);
    }
  }

  // Contended path: returns the start time; marks this thread as waiting on the series.
  std::int64_t wait_begin(LockOp op) noexcept;
  // After the wait: records it; `acquired` false for a timed lock that gave up.
  void wait_end(LockOp op, std::int64_t started_ns, bool acquired) noexcept;

  // A condition-variable wait, with the lock held on entry and on return. cv_wait_begin ends the
  // hold (the wait unlocks the mutex) and returns the start time. cv_wait_end, called holding the
  // mutex again: `notified_ns` is the last notify seen during the wait (0: none) and `contended`
  // whether another thread held the mutex between that notify and now. Then the time until the
  // notify is idle and the rest (the re-acquisition) a lock wait; otherwise the whole wait is idle
  // and the re-acquisition counts as an uncontended acquisition.
  std::int64_t cv_wait_begin() noexcept;
  void cv_wait_end(std::int64_t started_ns, std::int64_t notified_ns, bool contended) noexcept;
  // (acquisition sequence << 16) | exclusive depth, for ConditionVariable's notify snapshot.
  std::uint64_t state_word() const noexcept { return state_.load(std::memory_order_relaxed); }
  // Whether another thread acquired the mutex since `then` (a state_word()), or held it then.
  static bool held_or_taken_since(std::uint64_t then, std::uint64_t now) noexcept {
    return (then & kDepthMask) != 0 || (then >> 16) != (now >> 16);
  }

  // The resource name ("" if registration failed). Registers the lock if it was not yet.
  std::string_view name() noexcept {
    LockSeries* s = series();
    return s != nullptr ? std::string_view(s->name()) : std::string_view();
  }

  // For the wait-for graph (waitfor.cpp), which reads a site only while a thread waits on it,
  // under Registry::live_mutex(): the exclusive holder (0: not held exclusively; may lag a
  // hand-over by a moment, which the detector's confirmation over two builds absorbs), the
  // shared holds no thread slot recorded, and the registered series.
  std::uintptr_t exclusive_holder() const noexcept {
    if ((state_.load(std::memory_order_relaxed) & kDepthMask) == 0) return 0;
    return owner_.load(std::memory_order_relaxed);
  }
  std::uint32_t untracked_shared() const noexcept {
    return untracked_shared_.load(std::memory_order_relaxed);
  }
  const LockSeries* registered() const noexcept {
    const LockSeries* s = series_.load(std::memory_order_acquire);
    return ready(s) ? s : nullptr;
  }

 private:
  friend class LockSeries;
  friend void on_suspended_holding(SliceContext&, std::int64_t) noexcept;
  friend void adopt_task(SliceContext&, std::uintptr_t) noexcept;
  static constexpr std::uint64_t kDepthMask = 0xffff;
  static constexpr std::uint64_t kSeqOne = std::uint64_t{1} << 16;
  // series_ before registration completes: kUnregistered (nullptr), kBusy while one thread
  // registers, kFailed when registration threw (out of memory): the lock then records nothing.
  static constexpr std::uintptr_t kBusy = 1;
  static constexpr std::uintptr_t kFailed = 2;

  static bool ready(const LockSeries* s) noexcept {
    return reinterpret_cast<std::uintptr_t>(s) > kFailed;
  }
  // The series to record into, registering first if needed; nullptr if registration failed.
  [[gnu::always_inline]] LockSeries* series() noexcept {
    LockSeries* s = series_.load(std::memory_order_acquire);
    if (ready(s)) [[likely]]
      return s;
    return resolve();
  }
  LockSeries* resolve() noexcept;
  // Sets time_holds_ and links the site; returns the series' live objects, this one included.
  std::size_t attach(LockSeries* s);

  void enter_exclusive() noexcept {
    // Only the thread that holds the lock writes state_, so load + store is enough.
    state_.store(state_.load(std::memory_order_relaxed) + kSeqOne + 1, std::memory_order_relaxed);
    // The holder for the wait-for graph: this thread (its shard), or the task of the slice.
    owner_.store(reinterpret_cast<std::uintptr_t>(tls_shard), std::memory_order_relaxed);
    if (SliceContext* sc = tls_slice) [[unlikely]] {
      sc->acquired(this);
      if (sc->task != 0) owner_.store(sc->task, std::memory_order_relaxed);
      if (last_user_.load(std::memory_order_relaxed) != sc->series) [[unlikely]]
        note_user_cold();
    }
  }
  // A shared hold begins (true) or ends: kept in the thread's shard for the wait-for graph.
  void shared_hold(bool begin) noexcept;
  void held_across_released() noexcept;
  // Notes the caller as a user of the series (the live map), unless it was the last one noted.
  [[gnu::cold]] void note_user_cold() noexcept;
  void hold_begin(LockOp op, std::int64_t t) noexcept;
  void hold_end(LockOp op) noexcept;

  std::atomic<LockSeries*> series_{nullptr};
  // What to register under until then: a literal name (pending_n_ its length), or for an unnamed
  // lock the declaring file (pending_n_ its line).
  const char* pending_ = nullptr;
  std::uint32_t pending_n_ = 0;
  ResourceKind kind_ = ResourceKind::kLock;
  // LockOptions::hold_time, copied and read only when registering: reading an optional in a
  // constructor (its constexpr assertion) keeps GCC 12 from constant-initializing the lock.
  std::optional<bool> hold_option_;
  bool unnamed_ = false;
  // Written once by the registering thread before series_ is published (release), read after.
  bool time_holds_ = false;
  // (acquisition sequence << 16) | exclusive depth. Read by scrapes for the holder age.
  std::atomic<std::uint64_t> state_{0};
  // When the current exclusive hold began, valid while held_since_state_ == state_.
  std::atomic<std::int64_t> held_since_ns_{0};
  std::atomic<std::uint64_t> held_since_state_{0};
  // Set when a task suspended holding this lock: the detector event to complete on release.
  std::atomic<std::uint64_t> held_across_seq_{0};
  // The exclusive holder (detail/waitfor.hpp's Participant), valid while the depth is not 0.
  std::atomic<std::uintptr_t> owner_{0};
  // Shared holds that did not fit the holding thread's slots (or whose task is not known).
  std::atomic<std::uint32_t> untracked_shared_{0};
  // Waiters now and the waiting they built up, for the mutex profile's holder blame.
  LockBlame blame_;
  // Scrape-owned (under Registry::live_mutex()): a hold first seen by a scrape.
  std::uint64_t seen_state_ = 0;
  std::int64_t seen_at_ns_ = 0;
  std::atomic<const void*> last_user_{nullptr};  // the live map's last-user cache
  friend class LiveList<LockSite>;
  LiveLink<LockSite> link_;
};

// The notify side of a stallscope::ConditionVariable: when the last notify happened and the
// mutex's state then, read by the waiters it wakes to split their wait into idle time and
// re-acquisition. Only while someone waits: a notify with no waiter reads no clock. All relaxed:
// the values are timestamps for an estimate, and the condition variable's own wake-up orders a
// notify before the wait it ends; a notify that races a waiter's start is seen as none. site_
// points at the LockSite of a Mutex that a thread waits with; a Mutex outlives the waits on it.
class CvRecorder {
 public:
  // A wait with `mutex` held begins (the wait unlocks it): returns the start time.
  std::int64_t wait_begin(LockSite& mutex) noexcept {
    site_.store(&mutex, std::memory_order_relaxed);
    waiters_.fetch_add(1, std::memory_order_relaxed);
    return mutex.cv_wait_begin();
  }
  // The wait that began at `started_ns` returned, `mutex` held again.
  void wait_end(LockSite& mutex, std::int64_t started_ns) noexcept {
    const std::int64_t notified = notified_ns_.load(std::memory_order_relaxed);
    const bool contended = LockSite::held_or_taken_since(
        notified_state_.load(std::memory_order_relaxed), mutex.state_word());
    waiters_.fetch_sub(1, std::memory_order_relaxed);
    mutex.cv_wait_end(started_ns, notified, contended);
  }
  // Before a notify_one()/notify_all().
  void notifying() noexcept {
    if (waiters_.load(std::memory_order_relaxed) == 0) return;
    if (const LockSite* s = site_.load(std::memory_order_relaxed)) {
      notified_state_.store(s->state_word(), std::memory_order_relaxed);
    }
    notified_ns_.store(now_ns(), std::memory_order_relaxed);
  }

 private:
  std::atomic<std::uint32_t> waiters_{0};
  std::atomic<const LockSite*> site_{nullptr};
  std::atomic<std::uint64_t> notified_state_{0};
  std::atomic<std::int64_t> notified_ns_{0};
};

#else  // Compiled out: the same calls, doing nothing, reading no clock.
// An inline namespace of its own, so that a program linking the agent (built with recording on)
// into code compiled with it off holds no two classes of one name.
inline namespace off {

class LockSite {
 public:
  constexpr LockSite(ResourceKind, std::string_view, const LockOptions&) noexcept {}
  constexpr LockSite(ResourceKind, SourceSite) noexcept {}
  struct RegisterNow {};
  LockSite(RegisterNow, ResourceKind, std::string_view, const LockOptions&) noexcept {}

  void acquired_fast(LockOp) noexcept {}
  void tried(LockOp, bool) noexcept {}
  void releasing(LockOp) noexcept {}
  std::int64_t wait_begin(LockOp) noexcept { return 0; }
  void wait_end(LockOp, std::int64_t, bool) noexcept {}
  std::string_view name() noexcept { return {}; }
};

class CvRecorder {
 public:
  std::int64_t wait_begin(LockSite&) noexcept { return 0; }
  void wait_end(LockSite&, std::int64_t) noexcept {}
  void notifying() noexcept {}
};

}  // namespace off
#endif

}  // namespace stallscope::detail
