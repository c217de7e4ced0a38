#pragma once
/// The task dump: what every live stallscope task is doing now, without stopping anything.
///
///   for (const stallscope::TaskInfo& t : stallscope::dump_tasks().tasks)
///     std::cout << t.name << ' ' << to_string(t.state) << ' ' << t.wait_resource << '\n';
///
/// A task (stallscope::spawn, TaskGroup::spawn) is, at any instant, running a slice on an
/// executor thread, ready and queued for one, waiting at a stallscope wait point (an AsyncMutex,
/// a Semaphore, a Channel send or receive, a BlockingPool job, or a stallscope lock that blocks
/// the thread running its slice), or suspended on something stallscope does not instrument (a
/// timer, a socket, another library's operation: built with STALLSCOPE_ASIO_TRACKING=ON, the
/// dump names the Asio operation). The Agent serves this as /stallz/tasks and
/// /stallz/tasks.json. Thread-safe, and it stops nothing: the dump copies each registry shard 16
/// tasks at a time under that shard's lock into a flat buffer of plain records (no string, no
/// allocation, no reference count per task while the lock is held), so a spawn or an exit waits
/// a few microseconds at most (TaskDump::max_lock_hold_seconds says how long this dump held one);
/// the sorting and the strings come after, outside every lock. 10,000 tasks take a few
/// milliseconds of the calling thread (bench/README.md, "Task dump"). A task beyond the slot
/// table's 16 million shows as suspended since its spawn.

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace stallscope {

/// What a task is doing now.
enum class TaskRunState : std::uint8_t { kRunning, kQueued, kWaiting, kSuspended };
inline constexpr std::size_t kTaskRunStates = 4;

/// "running", "queued", "waiting", "suspended".
std::string_view to_string(TaskRunState state) noexcept;
/// The state named `text`; throws std::invalid_argument naming it otherwise.
TaskRunState parse_task_run_state(std::string_view text);

/// One live task. Its strings are views: task and resource names live as long as the process,
/// group names and token paths as long as the TaskDump that holds this TaskInfo (or a copy of
/// that dump). Copy what must outlive it into std::string.
struct TaskInfo {
  std::uint64_t id = 0;  ///< process-unique while the task lives
  std::string_view name;
  std::uint64_t group_id = 0;   ///< its TaskGroup's id; 0: not spawned by a TaskGroup
  std::string_view group;       ///< its TaskGroup's name; "" when unnamed or none
  std::string_view token_path;  ///< its CancellationToken's path ("server/conn"); "": no token
  double age_seconds = 0;       ///< since it was spawned
  TaskRunState state = TaskRunState::kQueued;
  double state_seconds = 0;  ///< how long it has been in `state`
  /// For kWaiting: the resource ("async_lock", "ledger", "exclusive"), as /metrics labels it.
  std::string_view wait_kind;
  std::string_view wait_resource;
  std::string_view wait_op;
  /// kWaiting on a lock inside a slice: the executor thread itself is blocked.
  bool blocks_thread = false;
  /// kSuspended: the Asio operation it awaits, in Asio's words ("deadline_timer async_wait",
  /// "socket async_receive"); "" when not known. Only built with STALLSCOPE_ASIO_TRACKING=ON
  /// (stallscope/asio_tracking.hpp); TaskDump::asio_tracking says whether it was.
  std::string asio_op;
  bool cancel_requested = false;
  double cancelled_seconds_ago = 0;  ///< when cancel_requested
};

/// Which tasks a dump returns. Empty fields match every task.
struct TaskFilter {
  std::string name;  ///< exact task name
  std::optional<TaskRunState> state;
  std::optional<bool> cancel_requested;
  /// At most this many tasks, the longest in their state (a partial sort); 0: every match.
  std::size_t limit = 0;
};

/// One dump.
struct TaskDump {
  double unix_time = 0;
  std::size_t live = 0;                                ///< every live task seen, before the filter
  std::array<std::size_t, kTaskRunStates> by_state{};  ///< live tasks per TaskRunState
  std::size_t cancel_requested = 0;                    ///< live tasks whose cancel was requested
  std::size_t matched = 0;     ///< tasks that match the filter (`tasks` is cut at its limit)
  double dump_seconds = 0;     ///< how long dump_tasks() took
  bool asio_tracking = false;  ///< built with STALLSCOPE_ASIO_TRACKING=ON: asio_op is known
  /// The longest this dump held one registry shard's lock: what a spawn or an exit could wait.
  double max_lock_hold_seconds = 0;
  /// The tasks that match the filter, longest in their state first (the longest wait on top).
  std::vector<TaskInfo> tasks;
  /// What the tasks' group and token_path views point into (shared by copies of the dump).
  std::shared_ptr<const void> strings;
};

/// Every live task now, filtered. Thread-safe; takes no lock that user code can hold.
TaskDump dump_tasks(const TaskFilter& filter = {});

}  // namespace stallscope
