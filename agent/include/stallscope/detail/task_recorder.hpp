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
  static constexpr std::uint32_t kCounters = 5;

  std::uint32_t base = kNoCell;
  HistogramCells sched;        // ready -> running (the unified wait, op="schedule")
  HistogramCells slice;        // one resumption
  HistogramCells lifetime;     // spawn -> exit
  HistogramCells cancel_exit;  // cancel requested -> exit
  std::int64_t slow_slice_ns;

  std::int64_t grace_ns() const noexcept { return grace_ns_; }
  // Caller holds Registry::live_mutex().
  template <class Fn>
  void for_each_task(Fn&& fn) const {
    tasks_.for_each(fn);
  }

 private:
  friend class TaskState;
  BucketLayout layout_;
  std::int64_t grace_ns_;
  LiveList<TaskState> tasks_;
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

  // First call stamps the time; later calls do nothing. Returns true on the first call.
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

// Slice bracketing for the instrumented executor. begin() returns false when a slice is already
// running on this thread (a nested execution: it belongs to the outer slice).
struct SliceScope {
  SliceContext ctx;
  bool active = false;
  // `enqueued_ns`: when the handler was submitted (scheduling delay = start - enqueued).
  void begin(TaskSeries* series, std::int64_t enqueued_ns) noexcept;
  void end() noexcept;
};

// Detector hooks (slow paths).
void on_suspended_holding(SliceContext& ctx, std::int64_t now) noexcept;
void on_held_across_released(LockSite* site, std::uint64_t event_seq) noexcept;
void on_long_slice(std::uint32_t task_series_id, std::int64_t ran_ns) noexcept;

}  // namespace stallscope::detail
