#pragma once
// Recording for tasks: one TaskSeries per task name, one TaskState per spawned task.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "stallscope/clock.hpp"
#include "stallscope/config.hpp"
#include "stallscope/detail/cells.hpp"
#include "stallscope/detail/executor_recorder.hpp"
#include "stallscope/detail/histogram.hpp"
#include "stallscope/detail/profile_hooks.hpp"
#include "stallscope/detail/series.hpp"
#include "stallscope/detail/slice.hpp"
#include "stallscope/detail/suspend_detector.hpp"
#include "stallscope/detail/task_state.hpp"

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
  static constexpr std::uint32_t kBlockedNs = 6;  // slice time blocked in stallscope lock waits
  static constexpr std::uint32_t kCounters = 7;

  std::uint32_t base = kNoCell;
  HistogramCells sched;        // ready -> running (the unified wait, op="schedule")
  HistogramCells slice;        // one resumption
  HistogramCells lifetime;     // spawn -> exit
  HistogramCells cancel_exit;  // cancel requested -> exit

  // The tasks whose cancellation was requested and that are still alive (only those are
  // linked: spawn and exit take no lock). Caller holds Registry::live_mutex().
  template <class Fn>
  void for_each_cancelled_task(Fn&& fn) const {
    cancelled_.for_each(fn);
  }

 private:
  friend class TaskState;
  const BucketLayout& layout_;  // shared_layout()
  LiveList<TaskState> cancelled_;
};

// Config::slow_slice and Config::cancel_grace in nanoseconds, one value for every task name,
// those that exist included: Registry::configure() (and the registry's creation, from the
// environment) sets them. Read with relaxed loads; a slice that ends while they change is judged
// by either value.
extern constinit std::atomic<std::int64_t> g_slow_slice_ns;
extern constinit std::atomic<std::int64_t> g_cancel_grace_ns;
void apply_task_config(const Config& config) noexcept;

// The series for a task name (created on first use). Throws std::invalid_argument on a bad name.
TaskSeries* task_series(std::string_view name);

// What a task is bound to, for the task dump: its cancellation scope and its TaskGroup (each
// null when none).
struct TaskBinding {
  std::shared_ptr<const ScopeName> scope;
  std::shared_ptr<const TaskGroupInfo> group;
};

// A node of the live-task registry's lists: a TaskState, or a dump's cursor (task_recorder.cpp).
struct TaskListNode {
  TaskListNode* prev = nullptr;
  TaskListNode* next = nullptr;
  bool cursor = false;
};

// One spawned task, from spawn to exit. It is linked into the live-task registry (one of a few
// shards, each a list under its own mutex, chosen by the spawning thread) for the task dump, and
// owns a TaskSlot that the executor and wait points write its state into. Spawn and exit each
// take their shard's mutex for a few pointer writes; a dump takes it for at most 16 tasks at a
// time (task_dump.hpp).
class TaskState : private TaskListNode {
 public:
  explicit TaskState(TaskSeries* series, TaskBinding binding = {});
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
  // What the executor carries to find the task's slot (0: none, the slot table is full).
  std::uint64_t handle() const noexcept { return handle_; }

 private:
  friend class TaskSeries;
  friend class LiveList<TaskState>;
  friend struct TaskRegistry;
  TaskSeries* series_;
  std::int64_t spawned_ns_;
  std::atomic<std::int64_t> cancel_ns_{0};
  LiveLink<TaskState> link_;
  std::uint64_t handle_ = 0;
  std::uint64_t id_ = 0;
  std::uint32_t shard_ = 0;
  TaskBinding binding_;
};

// One live task as a dump copied it (under its shard's lock): plain data, no reference count
// taken per task. Its scope and group are named by index + 1 (0: none) into the TaskSnapshot's
// keep lists, which hold them alive.
struct RawTask {
  const TaskSeries* series = nullptr;
  std::uint64_t id = 0;
  std::int64_t spawned_ns = 0;
  std::int64_t cancel_ns = 0;  // 0: not requested
  std::uint64_t status = 0;    // TaskSlot::status; 0 when the task has no slot
  const char* wait_name = nullptr;
  const void* running_on = nullptr;  // a ThreadShard
  std::uint32_t scope = 0;
  std::uint32_t group = 0;
  std::uint32_t wait_len = 0;
  TaskWaitOp wait_op = TaskWaitOp::kNone;
  const AsioOpName* asio = nullptr;  // the Asio operation it awaits (asio_tracking.hpp)
};

// What one snapshot copied. Reused from dump to dump (clear() keeps the capacity), so a dump
// of a steady population allocates nothing.
struct TaskSnapshot {
  std::vector<RawTask> tasks;
  // One reference to every scope and group the tasks name (a reference is taken only when a
  // task's differs from the previous task's, so tasks of one group share it).
  std::vector<std::shared_ptr<const ScopeName>> keep_scopes;
  std::vector<std::shared_ptr<const TaskGroupInfo>> keep_groups;
  std::int64_t max_hold_ns = 0;  // the longest a shard's lock was held by this snapshot

  void clear() noexcept {
    tasks.clear();
    keep_scopes.clear();
    keep_groups.clear();
    max_hold_ns = 0;
  }
};

// Appends every live task to `out`, a shard at a time and at most 16 tasks per lock hold; the
// shard's lock is released between batches (a cursor node keeps the place), so spawns and exits
// wait a few microseconds at most. Nothing is allocated while a lock is held (room for a batch
// is made before). Tasks spawned during the call may be missed.
void snapshot_live_tasks(TaskSnapshot& out);

// Slice bracketing for the instrumented executor, inline: it runs twice per resumption. A
// slice already running on this thread makes begin() a no-op (a nested execution belongs to the
// outer slice). Publishing to the thread's slice slot is what the watchdog and the scrape-time
// "running slice" gauge read: two relaxed stores and a release store.
struct SliceScope {
  SliceContext ctx;
  bool active = false;

  // How the scheduling delay of the resumption is known.
  enum class Ready : std::uint8_t {
    kNone,     // not measured (a nested execution)
    kPosted,   // submitted at `submitted_ns`: delay = start - submitted
    kReactor,  // dispatched by the executor's reactor at `submitted_ns` (a timer or I/O
               // completion): delay = the executor's estimate + start - submitted
  };

  void begin(TaskSeries* series, ExecutorSite* executor, Ready ready, std::int64_t submitted_ns,
             std::uint64_t task = 0) noexcept {
    active = true;
    ctx.series = series;
    ctx.executor = executor;
    ctx.blocked_ns = 0;
    ctx.start_ns = now_ns();
    ThreadShard* shard = own_shard();  // loaded once for every add below; null at thread exit
    if (ready != Ready::kNone) {
      std::int64_t delay = ctx.start_ns - submitted_ns;
      if (ready == Ready::kReactor && executor != nullptr)
        delay += executor->estimate(ctx.start_ns);
      if (delay < 0) delay = 0;
      const HistogramCells& t = series->sched;
      if (executor == nullptr) [[unlikely]] {
        t.record(delay);
      } else if (const HistogramCells& e = executor->series()->sched;
                 shard != nullptr && e.layout == t.layout) [[likely]] {
        // The task's and its executor's histograms: one bucket lookup, four adds.
        const std::uint32_t i = t.layout->index(delay);
        const std::uint32_t sum = t.layout->bucket_count();
        const auto d = static_cast<std::uint64_t>(delay);
        add_in(shard, t.base + i, 1);
        add_in(shard, t.base + sum, d);
        add_in(shard, e.base + i, 1);
        add_in(shard, e.base + sum, d);
      } else {
        t.record_with(e, delay);
      }
      // The block profile's label-only sample (kind executor, op schedule): sampled by delay.
      if (delay > 0)
        profile_schedule(executor != nullptr ? executor->series() : nullptr, series, delay);
    }
    tls_slice = &ctx;
    if (shard != nullptr) [[likely]] {
      shard->slice.start_ns.store(ctx.start_ns, std::memory_order_relaxed);
      shard->slice.series.store(series->id(), std::memory_order_release);
    }
    if (task != 0) [[likely]]
      begin_task(task, shard);
  }
  void end() noexcept {
    if (!active) return;
    active = false;
    const std::int64_t now = now_ns();
    if (task_slot_ != nullptr) [[likely]]
      end_task(now);
    ThreadShard* shard = tls_shard;  // loaded once for every add below; null at thread exit
    if (shard == nullptr) [[unlikely]] {
      end_without_shard(now);
      return;
    }
    shard->slice.series.store(0, std::memory_order_relaxed);
    finish(now, [shard](std::uint32_t cell, std::uint64_t delta) { add_in(shard, cell, delta); });
  }

 private:
  // The records of a slice that ended at `now`, through add_cell(cell, delta).
  template <class AddCell>
  [[gnu::always_inline]] void finish(std::int64_t now, AddCell add_cell) noexcept {
    tls_slice = nullptr;
    const std::int64_t ran = now - ctx.start_ns;
    tls_slice_ns += ran;
    TaskSeries* series = ctx.series;
    const HistogramCells& h = series->slice;
    const std::int64_t r = ran < 0 ? 0 : ran;
    add_cell(h.base + h.layout->index(r), 1);
    add_cell(h.base + h.layout->bucket_count(), static_cast<std::uint64_t>(r));
    if (ran > g_slow_slice_ns.load(std::memory_order_relaxed)) [[unlikely]] {
      add_cell(series->base + TaskSeries::kSlowSlices, 1);
    }
    const std::int64_t blocked = ctx.blocked_ns;
    if (blocked != 0) [[unlikely]] {
      add_cell(series->base + TaskSeries::kBlockedNs, static_cast<std::uint64_t>(blocked));
    }
    if (ExecutorSite* e = ctx.executor) [[likely]] {
      const std::uint32_t base = e->series()->base;
      add_cell(base + ExecutorSeries::kTaskNs,
               static_cast<std::uint64_t>(ran > blocked ? ran - blocked : 0));
      if (blocked != 0) [[unlikely]] {
        add_cell(base + ExecutorSeries::kLockNs, static_cast<std::uint64_t>(blocked));
      }
    }
    if (ctx.held_n != 0) [[unlikely]]
      on_suspended_holding(ctx, now);
  }
  // add() into `shard`, this thread's own, which the caller loaded once for several adds.
  [[gnu::always_inline]] static void add_in(ThreadShard* shard, std::uint32_t cell,
                                            std::uint64_t delta) noexcept {
    if (Cell* c = shard->chunks[cell >> kChunkBits].load(std::memory_order_relaxed)) [[likely]] {
      Cell& x = c[cell & (kChunkCells - 1)];
      x.store(x.load(std::memory_order_relaxed) + delta, std::memory_order_relaxed);
      return;
    }
    add_slow(cell, delta);
  }
  // end() on a thread whose shard is gone (thread exit): the same records through add().
  void end_without_shard(std::int64_t now) noexcept;

  // The task's slot says it runs here since the slice's start; at the end it is suspended,
  // unless something else was written during the slice (a wait, a resumption queued), which
  // the compare-exchange keeps.
  void begin_task(std::uint64_t task, ThreadShard* shard) noexcept {
    TaskSlot* s = live_task_slot(task);
    if (s == nullptr) return;
    task_slot_ = s;
    running_word_ = phase_word(TaskPhase::kRunning, ctx.start_ns);
    s->running_on.store(shard, std::memory_order_relaxed);
    s->status.store(running_word_, std::memory_order_release);
    tls_task = task;
  }
  void end_task(std::int64_t now) noexcept {
    tls_task = 0;
    std::uint64_t expected = running_word_;
    task_slot_->status.compare_exchange_strong(expected, phase_word(TaskPhase::kSuspended, now),
                                               std::memory_order_release,
                                               std::memory_order_relaxed);
  }

  TaskSlot* task_slot_ = nullptr;
  std::uint64_t running_word_ = 0;
};

// What the task wrappers (task.hpp) use, so that their code has no #if. With
// STALLSCOPE_ENABLED=0 a task records nothing and registers nothing: TaskRecord is an empty
// class whose calls do nothing (held as [[no_unique_address]]: no bytes), task_to_record()
// names no series, and kRecordsTasks tells the executor to hand handlers to the inner executor
// as they are (the slice machinery above is never instantiated). The agent's own sources use the
// classes above in both builds; the no-op class has another name, so one program may mix
// translation units compiled with either value.
constexpr bool kRecordsTasks = STALLSCOPE_ENABLED != 0;  // internal linkage: per translation unit
#if STALLSCOPE_ENABLED
using TaskRecord = TaskState;
inline TaskSeries* task_to_record(std::string_view name) { return task_series(name); }
#else
class TaskRecord {
 public:
  explicit TaskRecord(TaskSeries*, const TaskBinding& = {}) noexcept {}
  bool cancel_requested() noexcept { return false; }
  void finished(bool, bool) noexcept {}
  std::uint64_t handle() const noexcept { return 0; }
};
inline TaskSeries* task_to_record(std::string_view) noexcept { return nullptr; }
#endif

}  // namespace stallscope::detail
