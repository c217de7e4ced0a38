#pragma once
// Recording for executors (kind "executor"): one ExecutorSeries per name, one ExecutorSite per
// io_context (the state of its lag probe), and the thread-local cache that maps the execution
// context a task slice runs on to its site.
//
// What an executor records:
//  - the scheduling delay of every task resumption it runs (the unified wait, op="schedule"):
//    measured from submission for a handler that was posted; estimated from the lag probe for a
//    completion that Asio dispatched from its reactor (a timer, a socket), whose ready time it
//    does not expose (see ExecutorSite::estimate);
//  - its probe's tick lateness (stallscope_executor_lag_seconds);
//  - thread time by cause: task slices, blocked in stallscope lock waits inside slices, other
//    handlers and idle (the last two on threads running stallscope::run()).
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

#include "stallscope/config.hpp"
#include "stallscope/detail/cells.hpp"
#include "stallscope/detail/histogram.hpp"
#include "stallscope/detail/series.hpp"

namespace stallscope::detail {

class ExecutorSeries final : public Series {
 public:
  ExecutorSeries(ResourceKind kind, std::string name, std::uint32_t id, const Config& config);
  void collect(Collector& out) override;

  static constexpr std::uint32_t kTaskNs = 0;     // running task slices, lock waits excluded
  static constexpr std::uint32_t kLockNs = 1;     // blocked in stallscope lock waits in slices
  static constexpr std::uint32_t kHandlerNs = 2;  // running handlers (stallscope::run threads)
  static constexpr std::uint32_t kIdleNs = 3;     // waiting for work (stallscope::run threads)
  static constexpr std::uint32_t kCounters = 4;

  std::uint32_t base = kNoCell;
  HistogramCells sched;  // ready -> running of task resumptions (op="schedule")
  HistogramCells lag;    // probe ticks: expiry -> run
  // Threads inside stallscope::run() for this executor now.
  std::atomic<std::int64_t> threads{0};

 private:
  const BucketLayout& layout_;  // shared_layout()
};

// The series for an executor name (created on first use). Throws std::invalid_argument on a bad
// name.
ExecutorSeries* executor_series(std::string_view name);

// One io_context's lag probe state. The probe keeps ticks in flight on a fixed grid, one every
// `period`, each a timer armed long before it expires, so that a tick expiring during a stall
// is delivered in expiry order among the other completions that became ready then.
//
// Ordering argument: ticks update last_expiry_/last_ran_ under tick_mu_ (several ticks can run
// at once on a multi-threaded io_context); slices read both with relaxed loads and no lock. A
// reader may pair the expiry of one tick with the run time of the next: that moves one estimate
// by at most a period, and nothing else depends on the pair, so no stronger ordering is needed.
class ExecutorSite {
 public:
  ExecutorSite(ExecutorSeries* series, std::int64_t period_ns) noexcept;
  ~ExecutorSite();  // bumps the cache generation: threads drop their cached pointer
  ExecutorSite(const ExecutorSite&) = delete;
  ExecutorSite& operator=(const ExecutorSite&) = delete;

  ExecutorSeries* series() const noexcept { return series_; }
  std::int64_t period_ns() const noexcept { return period_ns_; }
  // Whether the probe was asked to start (by its owner; see ExecutorProbe::start_once).
  bool probing() const noexcept { return probing_.load(std::memory_order_relaxed); }
  // True for the one caller that should start the probe.
  bool begin_probing() noexcept { return !probing_.exchange(true, std::memory_order_relaxed); }

  // Probe side: the tick that expired at `expiry_ns` ran at `ran_ns`. Records its lateness.
  void tick(std::int64_t expiry_ns, std::int64_t ran_ns) noexcept;

  // Slice side: the estimated ready-to-run delay of a completion the reactor dispatched that
  // starts running at `now_ns`:
  //  - in a late batch (the last tick ran late, just now): the completion was delivered in
  //    expiry order right behind that tick, so it is about as late: now - the tick's expiry
  //    (exact within a period for a timer);
  //  - behind (a tick is overdue and none ran just now): the completion became ready at an
  //    unknown time since the overdue tick's expiry: half of that span, the mean for a ready
  //    time uncorrelated with the stall (a socket's data arriving);
  //  - on time: the last tick's lateness (reactor wake-up, tens of microseconds).
  std::int64_t estimate(std::int64_t now_ns) const noexcept {
    const std::int64_t e = last_expiry_.load(std::memory_order_relaxed);
    if (e == 0) return 0;
    const std::int64_t f = last_ran_.load(std::memory_order_relaxed);
    const std::int64_t lag = f - e;
    const std::int64_t since = now_ns - f;
    const std::int64_t overdue = now_ns - (e + period_ns_);
    if (since <= batch_gap_ns_) return lag > late_ns_ ? now_ns - e : lag;
    if (overdue > late_ns_) return overdue / 2;
    return lag < late_ns_ ? lag : 0;
  }

 private:
  ExecutorSeries* series_;
  std::int64_t period_ns_;
  std::int64_t late_ns_;       // a tick later than this is a sign of backlog
  std::int64_t batch_gap_ns_;  // completions this close to a tick ran in its batch
  std::mutex tick_mu_;
  std::atomic<std::int64_t> last_expiry_{0};
  std::atomic<std::int64_t> last_ran_{0};
  std::atomic<bool> probing_{false};
};

// Whether executor.hpp records (STALLSCOPE_ENABLED): with 0, monitor_executor() and run() skip
// the probe and the accounting, so that its code has no #if. The classes here are the same in
// both builds (the agent's own sources use them); internal linkage, one value per translation
// unit.
constexpr bool kRecordsExecutors = STALLSCOPE_ENABLED != 0;

// Thread-local cache: the site of the execution context this thread last ran a slice of.
// `key` is the execution context's address; a generation counter (bumped whenever a site is
// created or destroyed) invalidates every thread's entry, since a new io_context may reuse the
// address of a destroyed one.
extern constinit std::atomic<std::uint64_t> g_executor_generation;
extern constinit thread_local const void* tls_executor_key;
extern constinit thread_local std::uint64_t tls_executor_gen;
extern constinit thread_local ExecutorSite* tls_executor_site;
// Task-slice nanoseconds run on this thread so far (for stallscope::run's idle accounting).
extern constinit thread_local std::int64_t tls_slice_ns;

// True and sets `site` when this thread's cache holds `key`.
[[gnu::always_inline]] inline bool cached_executor(const void* key, ExecutorSite*& site) noexcept {
  if (tls_executor_key == key &&
      tls_executor_gen == g_executor_generation.load(std::memory_order_relaxed)) [[likely]] {
    site = tls_executor_site;
    return true;
  }
  return false;
}
inline void cache_executor(const void* key, ExecutorSite* site) noexcept {
  tls_executor_key = key;
  tls_executor_gen = g_executor_generation.load(std::memory_order_relaxed);
  tls_executor_site = site;
}

}  // namespace stallscope::detail
