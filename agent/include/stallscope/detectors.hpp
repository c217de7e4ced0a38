#pragma once
/// Run-time detectors of the stalls that lock and queue metrics alone do not show.
///
///  - lock held across suspension: a stallscope lock still held when a task's slice ends (the
///    coroutine suspended or finished while holding it). Counted per lock and task in
///    stallscope_lock_held_across_suspend_total and kept as a recent event.
///  - deadlock: a cycle of waits over stallscope locks, semaphores and channels (waitfor.hpp).
///  - long slice: a task handler running longer than the watchdog threshold, reported while it
///    still runs (see Watchdog).

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace stallscope {

struct DetectorEvent {
  enum class Type { kLockHeldAcrossSuspend, kLongSlice };
  Type type = Type::kLockHeldAcrossSuspend;
  std::string lock;  // resource name of the lock (held-across-suspend)
  std::string task;  // task name
  /// How long ago the event happened.
  double age_seconds = 0;
  /// Held across suspend: how long the lock stayed held after the task suspended, or -1 while it
  /// is still held. Long slice: how long the slice had run when reported.
  double duration_seconds = 0;
  std::uint64_t seq = 0;  // increasing event number
};

/// The most recent events (at most 64), newest first. Thread-safe.
std::vector<DetectorEvent> recent_detector_events();

/// A task still alive longer than Config::cancel_grace after its cancellation was requested.
struct LingeringTask {
  std::string task;
  double cancelled_seconds_ago = 0;
};
/// Every lingering task now. Thread-safe.
std::vector<LingeringTask> lingering_tasks();

std::string_view to_string(DetectorEvent::Type type) noexcept;

/// One participant of a deadlock: a thread, or a task when it is known (a task resumed by a
/// stallscope async operation, or suspended in one).
struct DeadlockParticipant {
  std::string name;                // "thread 4242" or "task worker#3f2a"
  std::string task;                // the task's name ("" for a thread)
  std::vector<std::string> holds;  // what it holds that the others wait for, e.g. "lock/a"
  std::string waits_for;           // e.g. "lock/b", "channel/jobs (its receivers)"
  std::string op;                  // how it waits: lock, lock_shared, acquire, send, receive
  double waited_seconds = 0;       // how long it has waited
};
/// A cycle in the wait-for graph over stallscope locks, async locks, semaphores and channels.
struct DeadlockReport {
  std::uint64_t seq = 0;   // increasing number, one per cycle found
  double age_seconds = 0;  // since it was reported
  std::vector<DeadlockParticipant> participants;
};
/// The cycles that exist now (the Watchdog looks every 200 ms and reports a cycle seen twice in a
/// row). Thread-safe.
std::vector<DeadlockReport> current_deadlocks();
/// Cycles reported since the start, each once however long it lasts.
std::uint64_t deadlocks_total() noexcept;

}  // namespace stallscope
