#pragma once
// Every metric family the recorders export, with its help text and type: the vocabulary of
// /metrics in one place (the README's metrics reference lists the same names; tests/e2e checks
// that). One namespace a recorder; each recorder's .cpp brings in its own. Names that code other
// than the recorder reads come from metric_names.hpp. The registry's own families (the unified
// wait model, resources, shards) stay in registry.cpp.
#include "stallscope/detail/metric_names.hpp"
#include "stallscope/detail/series.hpp"

namespace stallscope::detail::families {

// Shared with the async lock (kind "async_lock", semaphore_recorder.cpp), so that its rows sit in
// the same families as those of the other locks.
namespace lock {

inline constexpr FamilyDesc kLockAcquisitions{
    "stallscope_lock_acquisitions_total",
    "Successful acquisitions (lock, try_lock and timed locks).", MetricType::kCounter};
inline constexpr FamilyDesc kLockContended{
    "stallscope_lock_contended_total",
    "Acquisition attempts that had to wait (timed ones that gave up "
    "included).",
    MetricType::kCounter};
inline constexpr FamilyDesc kLockTimeouts{
    "stallscope_lock_timeouts_total",
    "Timed acquisitions (try_lock_for/try_lock_until) that gave up.", MetricType::kCounter};
inline constexpr FamilyDesc kLockTryFailures{"stallscope_lock_try_failures_total",
                                             "try_lock() calls that found the lock taken.",
                                             MetricType::kCounter};
inline constexpr FamilyDesc kLockHold{
    "stallscope_lock_hold_seconds",
    "How long the lock was held, for objects with hold timing on "
    "(LockOptions::hold_time or STALLSCOPE_HOLD_TIME=1; always for async_lock).",
    MetricType::kHistogram};
inline constexpr FamilyDesc kLockHolderAge{
    metric_names::kLockHolderAge,
    "How long the longest current exclusive holder has held the lock "
    "(0: not held). Exact for async_lock and for timed or contended "
    "acquisitions; otherwise counted from the first scrape that saw the "
    "hold.",
    MetricType::kGauge};
inline constexpr FamilyDesc kLockObjects{
    "stallscope_lock_objects", "Live lock objects sharing this name.", MetricType::kGauge};
inline constexpr FamilyDesc kExecutorBlocked{
    metric_names::kLockExecutorBlocked,
    "Time executor threads spent blocked in contended waits for this lock inside a task slice "
    "(the whole executor thread stalls, not just the task).",
    MetricType::kCounter};
inline constexpr FamilyDesc kHeldAcross{
    "stallscope_lock_held_across_suspend_total",
    "Task slices that ended (the coroutine suspended) while holding this lock, by task name.",
    MetricType::kCounter};

}  // namespace lock

namespace semaphore {

// --- kind "semaphore" ---
inline constexpr FamilyDesc kSemAcquisitions{
    "stallscope_semaphore_acquisitions_total",
    "Permits acquired (acquire, async_acquire, try_acquire and timed acquires that got one).",
    MetricType::kCounter};
inline constexpr FamilyDesc kSemContended{
    "stallscope_semaphore_contended_total",
    "Acquisitions that had to queue for a permit (waits that timed out "
    "or were cancelled included).",
    MetricType::kCounter};
inline constexpr FamilyDesc kSemTimeouts{
    "stallscope_semaphore_timeouts_total",
    "Timed acquisitions (acquire_for/acquire_until) that gave up.", MetricType::kCounter};
inline constexpr FamilyDesc kSemCancelled{
    "stallscope_semaphore_cancelled_total",
    "Queued acquisitions that ended without a permit: the async operation "
    "was cancelled, or the semaphore was destroyed.",
    MetricType::kCounter};
inline constexpr FamilyDesc kSemTryFailures{"stallscope_semaphore_try_failures_total",
                                            "try_acquire() calls that found no free permit.",
                                            MetricType::kCounter};
inline constexpr FamilyDesc kSemHold{
    "stallscope_semaphore_hold_seconds",
    "How long permits were held, from acquisition to release (always "
    "timed).",
    MetricType::kHistogram};
inline constexpr FamilyDesc kSemInUse{metric_names::kSemaphorePermitsInUse,
                                      "Permits held now, summed over live objects.",
                                      MetricType::kGauge};
inline constexpr FamilyDesc kSemPermits{
    "stallscope_semaphore_permits",
    "Permits in total (the concurrency cap), summed over live objects.", MetricType::kGauge};
inline constexpr FamilyDesc kSemObjects{
    "stallscope_semaphore_objects",
    "Live semaphore objects sharing this name (one destroyed while its permits are still "
    "held counts until they are released).",
    MetricType::kGauge};

// --- kind "async_lock": the lock families (namespace lock), plus cancellations ---
inline constexpr FamilyDesc kLockCancelled{
    "stallscope_lock_cancelled_total",
    "Queued acquisitions that ended without the lock: the async_lock() "
    "was cancelled, or the mutex was destroyed (kind async_lock only).",
    MetricType::kCounter};

}  // namespace semaphore

namespace channel {

inline constexpr FamilyDesc kDepth{
    "stallscope_channel_depth", "Items queued now (data lane), all objects.", MetricType::kGauge};
inline constexpr FamilyDesc kCapacity{"stallscope_channel_capacity",
                                      "Capacity of the data lane, summed over live objects.",
                                      MetricType::kGauge};
inline constexpr FamilyDesc kHighWater{"stallscope_channel_high_water",
                                       "Largest data-lane depth any live object has reached.",
                                       MetricType::kGauge};
inline constexpr FamilyDesc kFullSeconds{
    "stallscope_channel_full_seconds_total",
    "Time the channel spent at capacity (summed over objects).", MetricType::kCounter};
inline constexpr FamilyDesc kQueueTime{"stallscope_channel_queue_seconds",
                                       "Time items sat in the channel, from send to receive.",
                                       MetricType::kHistogram};
inline constexpr FamilyDesc kSentFamily{
    "stallscope_channel_sent_total", "Items given to send calls, by lane.", MetricType::kCounter};
inline constexpr FamilyDesc kItems{"stallscope_channel_items_total",
                                   "What became of sent items, by lane and outcome. sent_total == "
                                   "sum(items_total) + depth.",
                                   MetricType::kCounter};
inline constexpr FamilyDesc kMergeErrorsFamily{
    "stallscope_channel_merge_errors_total",
    "Merge functions that threw; the item was shed and returned.", MetricType::kCounter};
inline constexpr FamilyDesc kIdleReceivers{"stallscope_channel_idle_receivers",
                                           "Receivers waiting on an empty channel now.",
                                           MetricType::kGauge};
inline constexpr FamilyDesc kQueuedBytes{"stallscope_channel_queued_bytes",
                                         "Bytes queued now (data lane, by ChannelOptions::size_of; "
                                         "0 without one), summed over live objects.",
                                         MetricType::kGauge};
inline constexpr FamilyDesc kSentBytesFamily{"stallscope_channel_sent_bytes_total",
                                             "Bytes of the items given to data-lane sends (by "
                                             "ChannelOptions::size_of; 0 without one).",
                                             MetricType::kCounter};
inline constexpr FamilyDesc kSenderTasks{
    "stallscope_channel_sender_tasks",
    "Distinct task names that sent on the data lane of a live object (at most 16).",
    MetricType::kGauge};

}  // namespace channel

namespace pool {

inline constexpr FamilyDesc kQueueDepth{
    "stallscope_pool_queue_depth",
    "Jobs waiting for a pool thread now, all objects (the same number as "
    "stallscope_waiters{kind=\"pool\",op=\"queue\"}).",
    MetricType::kGauge};
inline constexpr FamilyDesc kRunSeconds{
    "stallscope_pool_run_seconds",
    "Time a job ran on a pool thread, from start to return or throw.", MetricType::kHistogram};
inline constexpr FamilyDesc kSubmittedFamily{"stallscope_pool_submitted_total",
                                             "Jobs given to run(), refused ones included.",
                                             MetricType::kCounter};
inline constexpr FamilyDesc kJobs{
    "stallscope_pool_jobs_total",
    "What became of submitted jobs, by outcome (completed, failed: threw, "
    "cancelled: removed from the queue before running, shed: refused at "
    "submission). submitted_total == sum(jobs_total) + queued + running.",
    MetricType::kCounter};
inline constexpr FamilyDesc kThreads{"stallscope_pool_threads",
                                     "Pool threads, summed over live objects.", MetricType::kGauge};
inline constexpr FamilyDesc kBusyThreads{metric_names::kPoolBusyThreads,
                                         "Pool threads running a job now.", MetricType::kGauge};
inline constexpr FamilyDesc kOldestRunAge{metric_names::kPoolOldestRunAge,
                                          "How long the longest-running current job has run so far "
                                          "(0: none running).",
                                          MetricType::kGauge};

}  // namespace pool

namespace task {

inline constexpr FamilyDesc kSlice{
    metric_names::kTaskSliceSeconds,
    "Run time of one task slice: one resumption of the coroutine on an "
    "executor thread (the analogue of a Tokio poll).",
    MetricType::kHistogram};
inline constexpr FamilyDesc kSlow{
    "stallscope_task_slow_slices_total",
    "Slices longer than Config::slow_slice (default 10 ms): the task hogged "
    "an executor thread.",
    MetricType::kCounter};
inline constexpr FamilyDesc kSpawnedFamily{"stallscope_task_spawned_total", "Tasks spawned.",
                                           MetricType::kCounter};
inline constexpr FamilyDesc kFinished{
    "stallscope_task_finished_total",
    "Tasks that ended, by outcome: completed, failed (an exception), "
    "cancelled (cancellation requested, or ended by operation_aborted).",
    MetricType::kCounter};
inline constexpr FamilyDesc kBlocked{
    metric_names::kTaskBlocked,
    "Slice time this task spent blocked in contended stallscope lock waits "
    "(part of its slice time: the executor thread could run nothing else).",
    MetricType::kCounter};
inline constexpr FamilyDesc kActive{"stallscope_task_active", "Tasks alive now.",
                                    MetricType::kGauge};
inline constexpr FamilyDesc kLifetime{"stallscope_task_lifetime_seconds",
                                      "Task lifetime, spawn to exit.", MetricType::kHistogram};
inline constexpr FamilyDesc kCancelExit{"stallscope_task_cancel_exit_seconds",
                                        "Time from a cancellation request to the task's exit.",
                                        MetricType::kHistogram};
inline constexpr FamilyDesc kLingering{
    "stallscope_task_lingering",
    "Tasks still alive longer than Config::cancel_grace after their "
    "cancellation was requested.",
    MetricType::kGauge};
inline constexpr FamilyDesc kRunning{
    metric_names::kTaskRunningSlice,
    "How long the longest slice of this task running right now has run "
    "(0: none running). A stuck handler shows here before it ends.",
    MetricType::kGauge};

}  // namespace task

namespace executor {

inline constexpr FamilyDesc kLag{
    "stallscope_executor_lag_seconds",
    "Lateness of the executor's lag probe: a timer tick every millisecond, "
    "from its expiry to the moment it ran. What any timer or I/O completion "
    "on this executor waits before a thread runs it.",
    MetricType::kHistogram};
inline constexpr FamilyDesc kThreadSeconds{
    metric_names::kExecutorThreadSeconds,
    "Executor thread time by state: task (running task slices), lock (blocked in stallscope "
    "lock waits inside task slices), other (running handlers that are not task slices) and idle "
    "(waiting for work). rate() is the number of threads in each state. other and idle are "
    "measured on threads running stallscope::run().",
    MetricType::kCounter};
inline constexpr FamilyDesc kThreads{metric_names::kExecutorThreads,
                                     "Threads running the executor through stallscope::run() now.",
                                     MetricType::kGauge};

}  // namespace executor

namespace retry {

inline constexpr FamilyDesc kRequestsFamily{
    "stallscope_retry_requests_total",
    "Requests that deposited into the retry budget (first attempts).", MetricType::kCounter};
inline constexpr FamilyDesc kAttemptedFamily{
    "stallscope_retry_attempted_total",
    "Retries the budget granted and that were started (first attempts "
    "not counted).",
    MetricType::kCounter};
inline constexpr FamilyDesc kDeniedFamily{
    "stallscope_retry_denied_total",
    "Retries the budget refused: the request failed instead of retrying.", MetricType::kCounter};
inline constexpr FamilyDesc kAbandonedFamily{
    "stallscope_retry_abandoned_total",
    "Retries dropped because the request's cancellation token (or its "
    "coroutine) was cancelled, before or during the backoff.",
    MetricType::kCounter};
inline constexpr FamilyDesc kBackoffFamily{
    "stallscope_retry_backoff_seconds_total",
    "Time spent sleeping in retry backoff (a sleep cut short by "
    "cancellation counts up to the cancel).",
    MetricType::kCounter};
inline constexpr FamilyDesc kUnlimitedFamily{
    "stallscope_retry_unlimited",
    "Live retry budgets with this name that allow every retry (RetryBudgetOptions::unlimited): "
    "their retries are counted but nothing bounds them.",
    MetricType::kGauge};

}  // namespace retry

// The deadlock detector (waitfor.cpp), exported by the registry.
namespace deadlock {

inline constexpr FamilyDesc kDeadlocks{
    metric_names::kDeadlocks,
    "Cycles found in the wait-for graph of stallscope locks, semaphores and channels, each "
    "counted once however long it lasts (/stallz lists the current ones).",
    MetricType::kCounter};

}  // namespace deadlock

}  // namespace stallscope::detail::families
