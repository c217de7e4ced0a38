#pragma once
// The names of the metric families that code other than their recorder reads by name: /stallz
// finds them in Registry::collect() (exporters/prometheus/src/stallz_report.cpp) and names two
// in the page's notes (stallz_html.cpp). The recorder's FamilyDesc and every reader use the same
// constant, so a rename reaches both.
namespace stallscope::detail::metric_names {

// The unified wait model (registry.cpp).
inline constexpr const char* kWaitSeconds = "stallscope_wait_seconds";
inline constexpr const char* kWaiters = "stallscope_waiters";
inline constexpr const char* kOldestWaitAge = "stallscope_oldest_wait_age_seconds";
// Locks (lock_recorder.cpp).
inline constexpr const char* kLockHolderAge = "stallscope_lock_holder_age_seconds";
inline constexpr const char* kLockExecutorBlocked =
    "stallscope_lock_executor_blocked_seconds_total";
// Semaphores (semaphore_recorder.cpp).
inline constexpr const char* kSemaphorePermitsInUse = "stallscope_semaphore_permits_in_use";
// Pools (pool_recorder.cpp).
inline constexpr const char* kPoolBusyThreads = "stallscope_pool_busy_threads";
inline constexpr const char* kPoolOldestRunAge = "stallscope_pool_oldest_run_age_seconds";
// Tasks (task_recorder.cpp).
inline constexpr const char* kTaskSliceSeconds = "stallscope_task_slice_seconds";
inline constexpr const char* kTaskBlocked = "stallscope_task_blocked_seconds_total";
inline constexpr const char* kTaskRunningSlice = "stallscope_task_running_slice_seconds";
// Executors (executor_recorder.cpp).
inline constexpr const char* kExecutorThreadSeconds = "stallscope_executor_thread_seconds_total";
inline constexpr const char* kExecutorThreads = "stallscope_executor_threads";
// The deadlock detector (waitfor.cpp, exported by registry.cpp).
inline constexpr const char* kDeadlocks = "stallscope_deadlocks_total";

}  // namespace stallscope::detail::metric_names
