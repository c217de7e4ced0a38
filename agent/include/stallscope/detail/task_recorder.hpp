#pragma once
// Recording for tasks: one TaskSeries per task name, one TaskState per spawned task.
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "stallscope/clock.hpp"
#include "stallscope/detail/cells.hpp"
#include "stallscope/detail/histogram.hpp"
#include "stallscope/detail/series.hpp"
#include "stallscope/detail/slice.hpp"

namespace stallscope::detail {

class TaskState;

class TaskSeries final : public Series {
 public:
  TaskSeries(ResourceKind kind, std::string name, std::uint32_t id, const Config& config);
  void collect(Collector& out) override;

  static constexpr std::uint32_t kSpawned = 0;
  static constexpr std::uint32_t kCompleted = 1;
  static constexpr std::uint32_t kFailed = 2;
  static constexpr std::uint32_t kCancelled = 3;
  static constexpr std::uint32_t kSlowSlices = 4;
  static constexpr std::uint32_t kDestroyed = 5;  // TaskStates gone: active = spawned - this
  static constexpr std::uint32_t kCounters = 6;

  std::uint32_t base = kNoCell;
  HistogramCells sched;        // ready -> running (the unified wait, op="schedule")
  HistogramCells slice;        // one resumption
  HistogramCells lifetime;     // spawn -> exit
  HistogramCells cancel_exit;  // cancel requested -> exit
  std::int64_t slow_slice_ns;

  std::int64_t grace_ns() const noexcept { return grace_ns_; }
  // The tasks whose cancellation was requested and that are still alive (only those are
  // linked: spawn and exit take no lock). Caller holds Registry::live_mutex().
  template <class Fn>
  void for_each_cancelled_task(Fn&& fn) const {
    cancelled_.for_each(fn);
  }

 private:
  friend class TaskState;
  const BucketLayout& layout_;  // shared_layout()
  std::int64_t grace_ns_;
  LiveList<TaskState> cancelled_;
};

// The series for a task name (created on first use). Throws std::invalid_argument on a bad name.
TaskSeries* task_series(std::string_view name);

// One spawned task, from spawn to exit.
class TaskState {
 public:
  explicit TaskState(TaskSeries* series);
  ~TaskState();
  TaskState(const TaskState&) = delete;
  TaskState& operator=(const TaskState&) = delete;

  // First call stamps the time and links the task into its series' cancelled list (for the
  // lingering gauge); later calls do nothing. Returns true on the first call. The caller keeps
  // the task alive during the call.
  bool cancel_requested() noexcept;
  bool cancelling() const noexcept { return cancel_ns() != 0; }
  std::int64_t cancel_ns() const noexcept { return cancel_ns_.load(std::memory_order_relaxed); }
  // Records the exit: `failed` true when the task ended with an exception that is not a
  // cancellation (`aborted`: operation_aborted).
  void finished(bool failed, bool aborted) noexcept;

  TaskSeries* series() const noexcept { return series_; }

 private:
  friend class TaskSeries;
  friend class LiveList<TaskState>;
  TaskSeries* series_;
  std::int64_t spawned_ns_;
  std::atomic<std::int64_t> cancel_ns_{0};
  LiveLink<TaskState> link_;
};

// Detector hooks (slow paths).
void on_suspended_holding(SliceContext& ctx, std::int64_t now) noexcept;
void on_held_across_released(LockSite* site, std::uint64_t event_seq) noexcept;
void on_long_slice(std::uint32_t task_series_id, std::int64_t ran_ns) noexcept;

// Slice bracketing for the instrumented executor, inline: it runs twice per resumption. A
// slice already running on this thread makes begin() a no-op (a nested execution belongs to the
// outer slice). Publishing to the thread's slice slot is what the watchdog and the scrape-time
// "running slice" gauge read: two relaxed stores and a release store.
struct SliceScope {
  SliceContext ctx;
  bool active = false;

  // `enqueued_ns`: when the handler was submitted (scheduling delay = start - enqueued); 0 when
  // not measured.
  void begin(TaskSeries* series, std::int64_t enqueued_ns) noexcept {
    if (tls_slice != nullptr) return;
    active = true;
    ctx.series = series;
    ctx.start_ns = now_ns();
    if (enqueued_ns != 0) series->sched.record(ctx.start_ns - enqueued_ns);
    tls_slice = &ctx;
    if (ThreadShard* s = own_shard()) [[likely]] {
      s->slice.start_ns.store(ctx.start_ns, std::memory_order_relaxed);
      s->slice.series.store(series->id(), std::memory_order_release);
    }
  }
  void end() noexcept {
    if (!active) return;
    active = false;
    const std::int64_t now = now_ns();
    if (ThreadShard* s = tls_shard) [[likely]] {
      s->slice.series.store(0, std::memory_order_relaxed);
    }
    tls_slice = nullptr;
    const std::int64_t ran = now - ctx.start_ns;
    ctx.series->slice.record(ran);
    if (ran > ctx.series->slow_slice_ns) [[unlikely]] {
      add(ctx.series->base + TaskSeries::kSlowSlices);
    }
    if (ctx.held_n != 0) [[unlikely]]
      on_suspended_holding(ctx, now);
  }
};

}  // namespace stallscope::detail
