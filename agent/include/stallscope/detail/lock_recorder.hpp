#pragma once
// Recording for the lock family: one LockSeries per (kind, name), one LockSite per lock object.
//
// Hot-path cost with hold timing off (the default):
//   uncontended lock():  one cell add + one relaxed load/store on the object's own state word
//   unlock():            one relaxed load/store on the state word
// No clock is read unless the acquisition had to wait. Hold timing (LockOptions::hold_time or
// Config::hold_time) adds two clock reads and one histogram record per acquisition.
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <source_location>
#include <string>
#include <string_view>

#include "stallscope/clock.hpp"
#include "stallscope/detail/cells.hpp"
#include "stallscope/detail/histogram.hpp"
#include "stallscope/detail/series.hpp"
#include "stallscope/detail/slice.hpp"
#include "stallscope/options.hpp"

namespace stallscope::detail {

enum class LockOp : std::uint8_t { kExclusive = 0, kShared = 1 };

// The lock families, shared with the async lock (kind "async_lock", semaphore_recorder.cpp) so
// that its rows sit in the same families as those of the other locks.
extern const FamilyDesc kLockAcquisitions;
extern const FamilyDesc kLockContended;
extern const FamilyDesc kLockTimeouts;
extern const FamilyDesc kLockTryFailures;
extern const FamilyDesc kLockHold;
extern const FamilyDesc kLockHolderAge;
extern const FamilyDesc kLockObjects;

// Cells of one op (exclusive or shared) of one lock series.
struct LockOpCells {
  static constexpr std::uint32_t kFast = 0;               // lock() acquired without waiting
  static constexpr std::uint32_t kTryOk = 1;              // try_lock() succeeded
  static constexpr std::uint32_t kTryFail = 2;            // try_lock() failed
  static constexpr std::uint32_t kTimeout = 3;            // timed lock gave up after waiting
  static constexpr std::uint32_t kExecutorBlockedNs = 4;  // contended waits inside a task slice
  static constexpr std::uint32_t kCounters = 5;
  std::uint32_t base = kNoCell;
  HistogramCells wait;  // contended waits only; exported with the fast count in bucket 0
  // Allocated by the first object of the series that times its holds (LockSeries::
  // ensure_hold_cells); kNoCell until then, so locks without hold timing (the default) carry
  // no hold cells in any thread's shard.
  HistogramCells hold;
};

class LockSite;

// Guards the detectors' per-lock counts and event ring; never held by user code.
std::mutex& held_across_mu() noexcept;

class LockSeries final : public Series {
 public:
  LockSeries(ResourceKind kind, std::string name, std::uint32_t id, const Config& config);
  void collect(Collector& out) override;

  const LockOpCells& op(LockOp o) const noexcept { return ops_[static_cast<int>(o)]; }
  bool hold_time_default() const noexcept { return hold_time_default_; }
  // Gives the series its hold cells (once); called by every object that times its holds before
  // it can record one.
  void ensure_hold_cells() noexcept;

 private:
  friend class LockSite;
  const BucketLayout& wait_layout_;  // shared_layout()
  const BucketLayout& hold_layout_;  // shared_layout()
  LockOpCells ops_[2];
  std::mutex hold_mu_;
  std::atomic<bool> hold_cells_{false};  // ops_[*].hold.base set (release), for scrapes
  bool hold_time_default_;
  bool has_shared_;
  LiveList<LockSite> sites_;
  // Held-across-suspend detections by task name; guarded by held_across_mu().
  std::map<std::string, std::uint64_t, std::less<>> held_across_;
  friend void on_suspended_holding(SliceContext&, std::int64_t) noexcept;
};

// The per-object part of a lock wrapper.
class LockSite {
 public:
  LockSite(ResourceKind kind, std::string_view name, const LockOptions& options);
  // Names the lock after its declaration site ("file.cpp:42").
  LockSite(ResourceKind kind, const std::source_location& where, const LockOptions& options);
  ~LockSite();
  LockSite(const LockSite&) = delete;
  LockSite& operator=(const LockSite&) = delete;

  // lock()/lock_shared() got the lock on the first try_lock: no wait to time.
  void acquired_fast(LockOp op) noexcept {
    add(series_->op(op).base + LockOpCells::kFast);
    if (op == LockOp::kExclusive) enter_exclusive();
    if (time_holds_) hold_begin(op, now_ns());
  }
  void tried(LockOp op, bool ok) noexcept {
    add(series_->op(op).base + (ok ? LockOpCells::kTryOk : LockOpCells::kTryFail));
    if (!ok) return;
    if (op == LockOp::kExclusive) enter_exclusive();
    if (time_holds_) hold_begin(op, now_ns());
  }
  // Call before releasing the inner lock.
  void releasing(LockOp op) noexcept {
    if (op == LockOp::kExclusive) {
      const std::uint64_t s = state_.load(std::memory_order_relaxed) - 1;
      state_.store(s, std::memory_order_relaxed);
      if (SliceContext* sc = tls_slice) [[unlikely]]
        sc->released(this);
      if (held_across_seq_.load(std::memory_order_relaxed) != 0) [[unlikely]] {
        held_across_released();
      }
      if (time_holds_ && (s & kDepthMask) == 0) hold_end(op);
    } else if (time_holds_) {
      hold_end(op);
    }
  }

  // Contended path: returns the start time; marks this thread as waiting on the series.
  std::int64_t wait_begin(LockOp op) noexcept;
  // After the wait: records it; `acquired` false for a timed lock that gave up.
  void wait_end(LockOp op, std::int64_t started_ns, bool acquired) noexcept;

  const std::string& name() const noexcept { return series_->name(); }

 private:
  friend class LockSeries;
  friend void on_suspended_holding(SliceContext&, std::int64_t) noexcept;
  static constexpr std::uint64_t kDepthMask = 0xffff;
  static constexpr std::uint64_t kSeqOne = std::uint64_t{1} << 16;

  void enter_exclusive() noexcept {
    // Only the thread that holds the lock writes state_, so load + store is enough.
    state_.store(state_.load(std::memory_order_relaxed) + kSeqOne + 1, std::memory_order_relaxed);
    if (SliceContext* sc = tls_slice) [[unlikely]]
      sc->acquired(this);
  }
  void held_across_released() noexcept;
  void hold_begin(LockOp op, std::int64_t t) noexcept;
  void hold_end(LockOp op) noexcept;

  LockSeries* series_;
  bool time_holds_;
  // (acquisition sequence << 16) | exclusive depth. Read by scrapes for the holder age.
  std::atomic<std::uint64_t> state_{0};
  // When the current exclusive hold began, valid while held_since_state_ == state_.
  std::atomic<std::int64_t> held_since_ns_{0};
  std::atomic<std::uint64_t> held_since_state_{0};
  // Set when a task suspended holding this lock: the detector event to complete on release.
  std::atomic<std::uint64_t> held_across_seq_{0};
  // Scrape-owned (under Registry::live_mutex()): a hold first seen by a scrape.
  std::uint64_t seen_state_ = 0;
  std::int64_t seen_at_ns_ = 0;
  friend class LiveList<LockSite>;
  LiveLink<LockSite> link_;
};

}  // namespace stallscope::detail
