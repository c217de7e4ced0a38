#pragma once
// Recording for blocking pools: one PoolSeries per name, one PoolSite per pool object.
//
// Cost per job that runs: three clock reads (submit, start, end), six per-thread cell adds and
// a few relaxed stores into the site's atomics. Pool jobs are CPU-heavy or blocking work, so this
// is noise next to the job; the pool itself takes its mutex and allocates once per job, the
// recorder never does either.
//
// The pool publishes what scrapes need (queued jobs, the oldest one's submit time, which worker
// runs a job since when) in the site's atomics, so a scrape never takes the pool's mutex.
// Ordering: every value is an independent gauge written with relaxed stores (queue state under
// the pool's mutex, a worker's slot only by that worker) and read with relaxed loads; a scrape
// may see a job neither queued nor running for an instant, never a torn value. An age whose
// start time is 0 (not published yet) is skipped. Counts are cells (see cells.hpp): exact.
//
// With STALLSCOPE_ENABLED=0 the pool gets a PoolSite from the end of this file instead: an empty
// class with the same interface whose members do nothing.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "stallscope/config.hpp"
#include "stallscope/detail/profile_hooks.hpp"
#if STALLSCOPE_ENABLED
#include <atomic>
#include <memory>
#include <string>

#include "stallscope/clock.hpp"
#include "stallscope/detail/cells.hpp"
#include "stallscope/detail/histogram.hpp"
#include "stallscope/detail/series.hpp"
#include "stallscope/detail/service_map.hpp"
#endif

namespace stallscope::detail {

// What finally happened to a job given to run(). Every submitted job ends in exactly one of these
// or is still queued or running: submitted == sum(outcomes) + queued + running.
enum class JobOutcome : std::uint8_t {
  kCompleted,  // ran and returned
  kFailed,     // ran and threw; the exception went to the caller
  kCancelled,  // removed from the queue before it ran (cancellation slot, pool destruction)
  kShed,       // refused at submission (queue full, or the pool is being destroyed)
};
inline constexpr std::uint32_t kJobOutcomes = 4;

#if STALLSCOPE_ENABLED

class PoolSite;

class PoolSeries final : public Series {
 public:
  PoolSeries(ResourceKind kind, std::string name, std::uint32_t id, const Config& config);
  void collect(Collector& out) override;

  static constexpr std::uint32_t kSubmitted = 0;
  static constexpr std::uint32_t kOutcomes = 1;  // + outcome
  static constexpr std::uint32_t kCounters = kOutcomes + kJobOutcomes;

  std::uint32_t base = kNoCell;
  HistogramCells queue_wait;  // submit -> a pool thread starts it (or it is cancelled)
  HistogramCells run_time;    // start -> end, jobs that ran
  UserSet users;              // task names and threads that submit to it (the live map)

 private:
  friend class PoolSite;
  LiveList<PoolSite> sites_;
};

// The per-object part of a BlockingPool. Worker indices are 0 .. threads-1; worker i calls
// started(i)/finished(i) only from its own thread.
class PoolSite {
 public:
  // Throws std::invalid_argument on a bad name.
  PoolSite(std::string_view name, std::size_t threads);
  ~PoolSite();
  PoolSite(const PoolSite&) = delete;
  PoolSite& operator=(const PoolSite&) = delete;

  const std::string& name() const noexcept { return series_->name(); }

  void submitted() noexcept {
    add(series_->base + PoolSeries::kSubmitted);
    note_user(series_->users, last_user_);
  }
  // BlockingPool's queue limit (0: unbounded), for the live map.
  void queue_limit(std::size_t max_queue) noexcept;
  void shed() noexcept { outcome(JobOutcome::kShed); }
  // The queue changed; called under the pool's mutex, so the two values stay paired.
  void queue(std::size_t depth, std::int64_t oldest_since_ns) noexcept {
    queued_.store(depth, std::memory_order_relaxed);
    oldest_queued_since_.store(oldest_since_ns, std::memory_order_relaxed);
  }
  // A queued job was removed before it ran, after waiting `waited_ns`.
  void cancelled(std::int64_t waited_ns) noexcept {
    series_->queue_wait.record(waited_ns);
    outcome(JobOutcome::kCancelled);
  }
  // Worker `worker` took a job that waited `waited_ns` and starts it at `now`.
  void started(std::size_t worker, std::int64_t now, std::int64_t waited_ns) noexcept {
    series_->queue_wait.record(waited_ns);
    running_since_[worker].since_ns.store(now, std::memory_order_relaxed);
  }
  // The block profile: workers waiting for a job now (under the pool's mutex); whether a job
  // submitted now would likely queue behind busy workers (relaxed loads, may be stale); the hint
  // its ticket is drawn with; a job that queued behind busy workers started or was cancelled
  // after `waited_ns`.
  void idle(std::size_t n) noexcept { idle_.store(n, std::memory_order_relaxed); }
  bool busy() const noexcept {
    return queued_.load(std::memory_order_relaxed) >= idle_.load(std::memory_order_relaxed);
  }
  const WaitHint& hint() const noexcept { return hint_; }
  void queue_waited(WaitTicket& ticket, std::int64_t waited_ns) noexcept {
    ticket.end(hint_, series_, kOpQueue, waited_ns);
  }
  // Worker `worker` finished its job after `ran_ns`; `ok` false when the job threw.
  void finished(std::size_t worker, std::int64_t ran_ns, bool ok) noexcept {
    series_->run_time.record(ran_ns);
    outcome(ok ? JobOutcome::kCompleted : JobOutcome::kFailed);
    running_since_[worker].since_ns.store(0, std::memory_order_relaxed);
  }

 private:
  friend class PoolSeries;
  friend class LiveList<PoolSite>;
  struct alignas(64) Running {  // one line per worker: workers never share a written line
    std::atomic<std::int64_t> since_ns{0};  // 0: idle
  };

  void outcome(JobOutcome o) noexcept {
    add(series_->base + PoolSeries::kOutcomes + static_cast<std::uint32_t>(o));
  }

  PoolSeries* series_;
  const std::size_t threads_;
  std::unique_ptr<Running[]> running_since_;
  std::atomic<std::size_t> queued_{0};
  std::atomic<std::int64_t> oldest_queued_since_{0};  // 0: nothing queued
  std::atomic<const void*> last_user_{nullptr};
  std::atomic<std::size_t> idle_{0};
  WaitHint hint_;
  LiveLink<PoolSite> link_;
};

#else  // Compiled out: the same calls, doing nothing, reading no clock (see lock_recorder.hpp).
inline namespace off {

class PoolSite {
 public:
  PoolSite(std::string_view, std::size_t) noexcept {}

  void submitted() noexcept {}
  void queue_limit(std::size_t) noexcept {}
  void shed() noexcept {}
  void queue(std::size_t, std::int64_t) noexcept {}
  void cancelled(std::int64_t) noexcept {}
  void started(std::size_t, std::int64_t, std::int64_t) noexcept {}
  void finished(std::size_t, std::int64_t, bool) noexcept {}
  void idle(std::size_t) noexcept {}
  bool busy() const noexcept { return false; }
  int hint() const noexcept { return 0; }
  void queue_waited(WaitTicket&, std::int64_t) noexcept {}
};

}  // namespace off
#endif

}  // namespace stallscope::detail
