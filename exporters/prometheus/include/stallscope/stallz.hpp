#pragma once
/// /stallz: a live status page that names the resource stalling the service, without Grafana.
///
/// The Agent serves it next to /metrics: `GET /stallz` is one self-contained HTML page (it
/// refreshes itself every 2 s), `GET /stallz.json` is the same data. This header
/// is that data and its two renderings, with no HTTP in it: the window of wait totals that stall
/// scores are rated over, the report, and the JSON and HTML writers.

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "stallscope/detectors.hpp"
#include "stallscope/registry.hpp"
#include "stallscope/snapshot.hpp"

namespace stallscope {

/// The windows stall scores are rated over, in seconds, shortest first.
inline constexpr std::array<int, 2> kStallzWindows = {10, 60};
inline constexpr std::size_t kStallzWindowCount = kStallzWindows.size();
/// Rows the HTML page shows per table (the JSON carries every resource).
inline constexpr std::size_t kStallzPageRows = 50;

/// One resource (kind, name), all its ops summed.
struct StallzResource {
  std::string kind;
  std::string resource;
  /// Stall score over each of kStallzWindows: rate of the stallscope_wait_seconds sum, which by
  /// Little's law is the average number of waiters. nullopt until there is history to rate on.
  std::array<std::optional<double>, kStallzWindowCount> score;
  /// Waits per second over each window (rate of stallscope_wait_seconds_count; zero-wait
  /// operations such as uncontended acquisitions count too).
  std::array<std::optional<double>, kStallzWindowCount> waits_per_second;
  double wait_seconds_total = 0;
  std::uint64_t waits_total = 0;
  double waiters = 0;                  // stallscope_waiters now
  double oldest_wait_age_seconds = 0;  // the longest current wait, 0: none
};

/// Someone waiting now: stallscope_waiters and stallscope_oldest_wait_age_seconds, per op.
struct StallzWaiting {
  std::string kind;
  std::string resource;
  std::string op;
  double waiters = 0;
  double oldest_wait_age_seconds = 0;
};

/// Something held or running now: a lock holder, a task slice, a pool job, semaphore permits.
struct StallzHolding {
  std::string kind;
  std::string resource;
  std::string what;             // "lock held", "slice running", "job running", "permits in use"
  std::optional<double> count;  // busy pool threads, permits in use; nullopt: not counted
  std::optional<double> age_seconds;  // the oldest; nullopt: not measured
};

/// Tasks of one name still alive longer than Config::cancel_grace after cancellation.
struct StallzLingering {
  std::string task;
  std::size_t count = 0;
  double oldest_cancelled_seconds_ago = 0;
};

/// One part of an executor's thread time (see StallzCause).
struct StallzCausePart {
  std::string what;    // "task" (running its slices), "lock" (blocked on it), "other", "idle"
  std::string kind;    // the resource kind of a task or lock part ("task", "lock", "rwlock")
  std::string name;    // the task or lock name; "" for other and idle
  double threads = 0;  // average threads in this part over the window
  double share = 0;    // of the busy threads (idle excluded), 0..1
};

/// The cause of an executor's delay: what its threads spent their time on over the shortest
/// window (rates of stallscope_executor_thread_seconds_total, split by task name with
/// stallscope_task_slice_seconds_sum less stallscope_task_blocked_seconds_total, and by lock
/// with stallscope_lock_executor_blocked_seconds_total). Task and lock names are process-wide:
/// with several executors, each one's split is in proportion to all of them.
struct StallzCause {
  std::string executor;
  double threads = 0;       // stallscope_executor_threads now; 0: unknown (no stallscope::run)
  double busy_threads = 0;  // task + lock + other
  double score = 0;         // the executor's stall score over the same window
  /// Lock waits first when they take a tenth of the busy time or more (a blocked thread runs
  /// nothing; the lock is what to fix first), then the busiest part; idle last.
  std::vector<StallzCausePart> parts;
  /// One line: "executor `io`: 1.80 of 2 threads busy: task `cruncher` 71%, blocked on lock
  /// `shelf` 22%, other handlers 5%".
  std::string text;
};

/// Everything /stallz shows, as of one instant.
struct StallzReport {
  double unix_time = 0;                // when the report was made
  double sample_interval_seconds = 0;  // how often the window is sampled, 0: not sampled
  std::size_t samples = 0;             // samples in the window
  /// The span each window's rates were taken over: the window itself once the history is long
  /// enough, less before; nullopt when there is nothing to rate against yet.
  std::array<std::optional<double>, kStallzWindowCount> covered_seconds;
  std::vector<StallzResource> resources;  // most stalling first
  /// What held each executor's threads, busiest executor first (executors with thread time in
  /// the window only). When the top resource is an executor or a task's schedule wait, causes[0]
  /// names what to fix.
  std::vector<StallzCause> causes;
  std::vector<StallzWaiting> waiting;  // oldest wait first
  std::vector<StallzHolding> holding;  // oldest first
  std::vector<StallzLingering> lingering;
  std::vector<DetectorEvent> detector_events;  // newest first
  std::vector<DeadlockReport> deadlocks;       // current cycles, oldest first
};

/// A ring of (time, per-resource wait totals) samples: the history that stall scores are rated
/// over. The Agent adds one sample a second from a sampler thread.
/// Thread-safe: add() and report() take an internal mutex that user code never holds. Memory:
/// 16 bytes per resource per sample. With 1,000 resources (-O2): add() 0.4 ms, and a whole
/// page (collect, report, render) 3-4 ms.
class StallWindow final {
 public:
  /// Keeps the newest `capacity` samples (at least 2; std::invalid_argument otherwise). One a
  /// second, the default covers the longest window.
  explicit StallWindow(std::size_t capacity = 64);

  /// Records the stallscope_wait_seconds totals in `families` (as from Registry::collect()) as of
  /// `t_ns` (stallscope::now_ns()). A sample not newer than the newest one is ignored.
  void add(std::int64_t t_ns, const std::vector<FamilySnapshot>& families);
  std::size_t size() const;

  /// Ranks every resource in `now`, taken at `now_ns`, by stall score over each window: each
  /// rate is taken against the newest sample at least the window old, or when the history is
  /// shorter, the oldest sample at least half a second old. Fills resources, waiting, holding,
  /// samples and covered_seconds; leaves the rest to the caller.
  StallzReport report(std::int64_t now_ns, const std::vector<FamilySnapshot>& now) const;

 private:
  struct Totals {
    double sum = 0;
    std::uint64_t count = 0;
  };
  struct Sample {
    std::int64_t t_ns = 0;
    std::vector<Totals> totals;    // by key index; absent (newer keys): zero
    std::vector<double> counters;  // by counter key index; absent: zero
  };
  // A counter the causes are rated from: (what, kind, resource, state).
  using CounterKey = std::tuple<std::string, std::string, std::string, std::string>;

  mutable std::mutex mu_;
  std::size_t capacity_;
  std::map<std::pair<std::string, std::string>, std::uint32_t> keys_;  // (kind, resource)
  std::map<CounterKey, std::uint32_t> counter_keys_;
  std::deque<Sample> samples_;
};

/// The full report: Registry::collect() rated over `window`, plus lingering_tasks() and
/// recent_detector_events(). Takes no lock that user code can hold, so it answers while the
/// application is deadlocked on its own locks.
StallzReport make_stallz_report(const Registry& registry, const StallWindow& window,
                                double sample_interval_seconds);

/// The report as one JSON object, the fields of StallzReport (null: not known, such as a score
/// before there is history, or an age that is not measured):
///
///   {"version": "0.1.0", "unix_time": 1764134137.5, "sample_interval_seconds": 1,
///    "samples": 12, "windows": [{"seconds": 10, "covered_seconds": 10.2},
///                               {"seconds": 60, "covered_seconds": 11.9}],
///    "resources": [{"kind": "lock", "resource": "ledger",            // most stalling first
///                   "score": {"10s": 2.99, "60s": 2.9},
///                   "waits_per_second": {"10s": 408, "60s": 401},
///                   "wait_seconds_total": 35.2, "waits_total": 4810,
///                   "waiters": 3, "oldest_wait_age_seconds": 0.018}],
///    "causes": [{"executor": "io", "threads": 2, "busy_threads": 1.8, "score": 6.1,
///                "text": "executor `io`: 1.80 of 2 threads busy: task `cruncher` 71%, ...",
///                "parts": [{"what": "task", "kind": "task", "name": "cruncher",
///                           "threads": 1.28, "share": 0.71}, ...]}],
///    "waiting": [{"kind", "resource", "op", "waiters", "oldest_wait_age_seconds"}],
///    "holding": [{"kind", "resource", "what", "count", "age_seconds"}],
///    "lingering_tasks": [{"task", "count", "oldest_cancelled_seconds_ago"}],
///    "detector_events": [{"seq", "type", "lock", "task", "age_seconds", "duration_seconds"}],
///    "deadlocks": [{"seq", "age_seconds", "participants": [{"name", "task", "holds":
///    [{"resource"}],
///                   "waits_for", "op", "waited_seconds"}]}]}
///
/// Every string is escaped, `<`, `>`, `&` and `'` included; non-finite numbers are written as null.
std::string stallz_json(const StallzReport& report);

/// The report as one self-contained HTML page: inline CSS, no external resources, rendered in
/// full on the server; a small inline script fetches the page again every 2 s and swaps in its
/// tables (the script renders nothing itself). Every string is HTML-escaped.
std::string stallz_html(const StallzReport& report);

}  // namespace stallscope
