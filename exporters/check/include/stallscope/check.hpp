#pragma once
/// The release check: the article's five checks (and the retry check) as a pass/fail gate over
/// what a running service exports, for `stallscope-check` and for tests that run a service
/// in-process.
///
///   stallscope::check::Inputs in;
///   in.metrics_start = stallscope::check::metrics_text();  // /metrics as the Agent serves it
///   ...                                                    // the load, for window_seconds
///   in.metrics_end = stallscope::check::metrics_text();
///   in.stallz_json = stallscope::check::stallz_json_text();
///   in.window_seconds = 10;
///   if (stallscope::check::evaluate(in).verdict() == stallscope::check::Verdict::kFail) ...
///
/// Counters are compared between the two /metrics texts, so every count and rate is over the
/// window; gauges and /stallz.json are read as of the window end.

#include <string>
#include <string_view>
#include <vector>

namespace stallscope::check {

enum class Verdict { kPass, kWarn, kFail };
std::string_view to_string(Verdict v) noexcept;

/// Thresholds, with their defaults. The YAML keys are the member names.
struct Thresholds {
  /// 1. Thread-lock slices that ended with the lock held, allowed over the window.
  double held_across_suspend = 0;
  /// 1. Average tasks waiting on one AsyncMutex (held across co_await by design) over the
  /// window; at or above it the lock is serializing the service.
  double async_lock_waiters = 0.5;
  /// 1. ...or, when any task had to wait for it, held this long or longer on average: a slow
  /// await (an external call, a parse) inside the critical section.
  double async_lock_hold_seconds = 0.01;
  /// 2. Share of the window a channel sat at capacity.
  double channel_full_share = 0.1;
  /// 2. Average senders waiting on one channel over the window.
  double channel_send_waiters = 0.1;
  /// 3. A cancelled task that took longer than this to exit fails.
  double cancel_exit_seconds = 1.0;
  /// 4. A task slice longer than this is CPU-heavy or blocking work on an executor thread
  /// (rounded up to the next histogram bucket bound).
  double long_slice_seconds = 0.001;
  /// 4. A task fails when at least this share of its slices is long...
  double long_slice_share = 0.05;
  /// 4. ...and at least this many are, over the window.
  double long_slice_min = 5;
  /// 4. Average executor threads blocked in one lock's waits.
  double lock_blocked_threads = 0.01;
  /// 4 (warning). Average jobs waiting per thread of one BlockingPool: uncapped blocking work
  /// (a pool fed through a Semaphore of 2 permits per thread stays at 1 or below).
  double pool_queue_per_thread = 2.0;
  /// Retry check: attempts per request, (requests + retries) / requests, per retry budget.
  double retry_amplification = 1.2;
  /// Warning: task names whose median lifetime is at most this are too small to spawn.
  double tiny_task_seconds = 0.00001;
  /// Warning: ...counted only with at least this many tasks of the name in the window.
  double tiny_task_min = 100;
  /// Warning: bytes queued on one channel at the window end (ChannelOptions::size_of).
  double channel_queued_bytes = 64.0 * 1024 * 1024;
  /// Warning: average bytes per item given to one channel's data-lane sends over the window.
  double channel_item_bytes = 64.0 * 1024;
  /// Warning: distinct task names sending on one channel's data lane (counted up to 16).
  double channel_sender_tasks = 4;
};

/// Reads thresholds from a YAML mapping of the keys above (any subset; the rest keep their
/// defaults). Throws std::invalid_argument naming the file and the bad key or value.
Thresholds load_thresholds(const std::string& path);
/// The same, from YAML text; `origin` names it in errors.
Thresholds parse_thresholds(std::string_view yaml, std::string_view origin = "thresholds");

/// What the checks read: /metrics at the start and the end of the window, and /stallz.json at
/// the end. An empty metrics_start means counters are compared with zero, i.e. totals since the
/// process started, and window_seconds should then be the process's running time.
struct Inputs {
  std::string stallz_json;
  std::string metrics_start;
  std::string metrics_end;
  double window_seconds = 0;
};

struct CheckResult {
  std::string id;     // "lock-across-suspension", ...: the JUnit test case name
  std::string title;  // one line saying what is checked
  Verdict verdict = Verdict::kPass;
  std::vector<std::string> evidence;  // what decided it, one line each
};

struct Report {
  double window_seconds = 0;
  std::vector<CheckResult> checks;   // in the article's order, then retries, then warnings
  Verdict verdict() const noexcept;  // the worst of the checks
};

/// The process registry's /metrics text and /stallz.json now, rendered as the Agent renders
/// them (without an Agent: for tests that run a service in-process). The JSON's stall scores
/// are empty (no sampled history); the checks do not read them.
std::string metrics_text();
std::string stallz_json_text();

/// Evaluates every check. Throws std::invalid_argument when a text cannot be parsed (naming
/// which one and where) or window_seconds is not positive.
Report evaluate(const Inputs& inputs, const Thresholds& thresholds = {});

/// One block per check: "FAIL  1 lock-across-suspension: ...", then its evidence, indented.
std::string to_text(const Report& report);
/// JUnit XML: one <testsuite name="stallscope-check">, one <testcase> per check; a failing check
/// has a <failure> with its evidence, a warning passes with its evidence in <system-out>.
std::string to_junit(const Report& report);
/// 0 when nothing failed (warnings allowed), 1 otherwise.
int exit_code(const Report& report) noexcept;

}  // namespace stallscope::check
