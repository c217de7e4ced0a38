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
/// /stallz/tasks.json. Thread-safe. The dump reads each registry shard 32 tasks at a time under
/// that shard's lock, so a spawn or exit waits a few microseconds at most; 10,000 tasks take
/// about a millisecond (bench/README.md, "Task dump"). A task beyond the slot table's 16 million
/// shows as suspended since its spawn.

#include <array>
#include <cstddef>
#include <cstdint>
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

/// One live task.
struct TaskInfo {
  std::uint64_t id = 0;  ///< process-unique while the task lives
  std::string name;
  std::uint64_t group_id = 0;  ///< its TaskGroup's id; 0: not spawned by a TaskGroup
  std::string group;           ///< its TaskGroup's name; "" when unnamed or none
  std::string token_path;      ///< its CancellationToken's path ("server/conn"); "": no token
  double age_seconds = 0;      ///< since it was spawned
  TaskRunState state = TaskRunState::kQueued;
  double state_seconds = 0;  ///< how long it has been in `state`
  /// For kWaiting: the resource ("async_lock", "ledger", "exclusive"), as /metrics labels it.
  std::string wait_kind;
  std::string wait_resource;
  std::string wait_op;
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
};

/// One dump.
struct TaskDump {
  double unix_time = 0;
  std::size_t live = 0;                                ///< every live task seen, before the filter
  std::array<std::size_t, kTaskRunStates> by_state{};  ///< live tasks per TaskRunState
  std::size_t cancel_requested = 0;                    ///< live tasks whose cancel was requested
  double dump_seconds = 0;                             ///< how long dump_tasks() took
  bool asio_tracking = false;  ///< built with STALLSCOPE_ASIO_TRACKING=ON: asio_op is known
  /// The tasks that match the filter, longest in their state first (the longest wait on top).
  std::vector<TaskInfo> tasks;
};

/// Every live task now, filtered. Thread-safe; takes no lock that user code can hold.
TaskDump dump_tasks(const TaskFilter& filter = {});

}  // namespace stallscope
