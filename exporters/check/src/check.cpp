#include "stallscope/check.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <iterator>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <utility>

#include <boost/json.hpp>
#include <fmt/format.h>
#include <prometheus/text_serializer.h>

#include "stallscope/detail/markup_escape.hpp"
#include "stallscope/prometheus.hpp"
#include "stallscope/registry.hpp"
#include "stallscope/stallz.hpp"
#include "text_parser.hpp"

namespace stallscope::check {

namespace {

using detail::label;
using detail::Series;
using stallscope::detail::markup_escape;

// ---------------------------------------------------------------------------------------------
// The two scrapes: gauges as of the end, counters as their increase over the window.

std::string series_key(const Series& s) {
  std::string key = s.name;
  for (const auto& [k, v] : s.labels) {
    key += '\x1f';
    key += k;
    key += '=';
    key += v;
  }
  return key;
}

class Scrapes {
 public:
  Scrapes(const std::string& start, const std::string& end)
      : end_(detail::parse_text(end, "metrics at the window end")) {
    for (Series& s : detail::parse_text(start, "metrics at the window start")) {
      start_.emplace(series_key(s), s.value);
    }
  }

  const std::vector<Series>& end() const { return end_; }

  // The increase of a counter (or histogram part) over the window; a reset counts from zero.
  double delta(const Series& s) const {
    const auto it = start_.find(series_key(s));
    if (it == start_.end()) return s.value;
    const double d = s.value - it->second;
    return d < 0 ? s.value : d;
  }

  // Calls fn(series) for every end series of family `name` whose labels match `match`.
  template <class Fn>
  void each(std::string_view name,
            std::initializer_list<std::pair<std::string_view, std::string_view>> match,
            Fn&& fn) const {
    for (const Series& s : end_) {
      if (s.name != name) continue;
      bool ok = true;
      for (const auto& [k, v] : match) ok = ok && label(s, k) == v;
      if (ok) fn(s);
    }
  }

 private:
  std::vector<Series> end_;
  std::map<std::string, double> start_;
};

using Resource = std::pair<std::string, std::string>;  // (kind, resource)

// stallscope_channel_sender_tasks stops counting here (ChannelSeries::kMaxSenderTasks).
constexpr double kMaxSenderTasks = 16;

// A histogram's increase over the window, per group: cumulative bucket counts by bound.
struct Histogram {
  std::map<double, double> buckets;  // le -> cumulative count (the +Inf bucket included)
  double count = 0;
  double sum = 0;

  // Observations above the smallest bucket bound >= x, and that bound.
  std::pair<double, double> above(double x) const {
    for (const auto& [le, c] : buckets) {
      if (le >= x) return {count - c, le};
    }
    return {0, std::numeric_limits<double>::infinity()};
  }
  // The smallest bound whose bucket holds at least `share` of the observations.
  double quantile_bound(double share) const {
    for (const auto& [le, c] : buckets) {
      if (c >= share * count) return le;
    }
    return std::numeric_limits<double>::infinity();
  }
  // The smallest bound at or below which everything observed lies: the longest, rounded up.
  double max_bound() const { return quantile_bound(1.0); }
};

std::map<Resource, Histogram> histograms(const Scrapes& m, const std::string& family,
                                         std::string_view kind) {
  std::map<Resource, Histogram> out;
  const auto key = [](const Series& s) {
    return Resource{std::string(label(s, "kind")), std::string(label(s, "resource"))};
  };
  m.each(family + "_bucket", {{"kind", kind}}, [&](const Series& s) {
    const std::string_view le = label(s, "le");
    const double bound = le == "+Inf" ? std::numeric_limits<double>::infinity()
                                      : std::strtod(std::string(le).c_str(), nullptr);
    out[key(s)].buckets[bound] += m.delta(s);
  });
  m.each(family + "_count", {{"kind", kind}},
         [&](const Series& s) { out[key(s)].count += m.delta(s); });
  m.each(family + "_sum", {{"kind", kind}},
         [&](const Series& s) { out[key(s)].sum += m.delta(s); });
  return out;
}

// Counter increases (or gauges) summed by (kind, resource) over matching series.
std::map<Resource, double> by_resource(
    const Scrapes& m, std::string_view family,
    std::initializer_list<std::pair<std::string_view, std::string_view>> match, bool counter) {
  std::map<Resource, double> out;
  m.each(family, match, [&](const Series& s) {
    out[{std::string(label(s, "kind")), std::string(label(s, "resource"))}] +=
        counter ? m.delta(s) : s.value;
  });
  return out;
}

double get(const std::map<Resource, double>& m, const Resource& r) {
  const auto it = m.find(r);
  return it == m.end() ? 0 : it->second;
}

// ---------------------------------------------------------------------------------------------
// Formatting

std::string secs(double x) {
  if (!std::isfinite(x)) return "+Inf";
  if (x == 0) return "0 s";
  if (x < 1e-3) return fmt::format("{:.3g} us", x * 1e6);
  if (x < 1) return fmt::format("{:.3g} ms", x * 1e3);
  return fmt::format("{:.3g} s", x);
}

std::string count(double x) {
  return x == std::floor(x) ? fmt::format("{:.0f}", x) : fmt::format("{:.2f}", x);
}

// ---------------------------------------------------------------------------------------------
// /stallz.json

struct Stallz {
  struct Event {
    std::string type, lock, task;
    double duration = 0;
  };
  struct Lingering {
    std::string task;
    double count = 0, oldest = 0;
  };
  std::vector<Event> events;
  std::vector<Lingering> lingering;
  std::vector<std::string> causes;
};

double number_or(const boost::json::object& o, std::string_view key, double fallback) {
  const boost::json::value* v = o.if_contains(key);
  if (v == nullptr || !v->is_number()) return fallback;
  return v->to_number<double>();
}

std::string string_or(const boost::json::object& o, std::string_view key) {
  const boost::json::value* v = o.if_contains(key);
  if (v == nullptr || !v->is_string()) return {};
  return std::string(v->get_string());
}

const boost::json::array* array_of(const boost::json::object& o, std::string_view key) {
  const boost::json::value* v = o.if_contains(key);
  if (v == nullptr) return nullptr;
  if (!v->is_array()) {
    throw std::invalid_argument(fmt::format("stallz.json: \"{}\" is not an array", key));
  }
  return &v->get_array();
}

Stallz read_stallz(const std::string& text) {
  boost::system::error_code ec;
  const boost::json::value root = boost::json::parse(text, ec);
  if (ec)
    throw std::invalid_argument(fmt::format("stallz.json is not valid JSON: {}", ec.message()));
  if (!root.is_object()) throw std::invalid_argument("stallz.json: the top level is not an object");
  const boost::json::object& o = root.get_object();
  Stallz z;
  if (const auto* a = array_of(o, "detector_events")) {
    for (const boost::json::value& v : *a) {
      if (!v.is_object()) continue;
      const auto& e = v.get_object();
      z.events.push_back({string_or(e, "type"), string_or(e, "lock"), string_or(e, "task"),
                          number_or(e, "duration_seconds", 0)});
    }
  }
  if (const auto* a = array_of(o, "lingering_tasks")) {
    for (const boost::json::value& v : *a) {
      if (!v.is_object()) continue;
      const auto& l = v.get_object();
      z.lingering.push_back({string_or(l, "task"), number_or(l, "count", 0),
                             number_or(l, "oldest_cancelled_seconds_ago", 0)});
    }
  }
  if (const auto* a = array_of(o, "causes")) {
    for (const boost::json::value& v : *a) {
      if (v.is_object()) z.causes.push_back(string_or(v.get_object(), "text"));
    }
  }
  return z;
}

// ---------------------------------------------------------------------------------------------
// The checks

struct Context {
  const Scrapes& m;
  const Stallz& z;
  const Thresholds& t;
  double window;
};

void worsen(CheckResult& r, Verdict v) { r.verdict = std::max(r.verdict, v); }

// A check's result before any evidence: passing.
CheckResult started(std::string id, std::string title) {
  return CheckResult{std::move(id), std::move(title), Verdict::kPass, {}};
}

CheckResult check_locks(const Context& c) {
  CheckResult r = started("lock-across-suspension",
                          "1. no lock held across a suspension while others wait for it");
  std::size_t thread_locks = 0;
  c.m.each("stallscope_lock_held_across_suspend_total", {}, [&](const Series& s) {
    ++thread_locks;
    const double n = c.m.delta(s);
    if (n <= c.t.held_across_suspend) return;
    const std::string lock(label(s, "resource"));
    const std::string task(label(s, "task"));
    std::string line = fmt::format(
        "{} `{}` held across a suspension by task `{}`: {} slice(s) ended with it "
        "held in the window",
        label(s, "kind"), lock, task, count(n));
    double longest = -2;
    for (const Stallz::Event& e : c.z.events) {
      if (e.type == "lock_held_across_suspend" && e.lock == lock && e.task == task) {
        longest = e.duration < 0 ? -1 : std::max(longest, e.duration);
        if (longest == -1) break;
      }
    }
    if (longest == -1) {
      line += "; one is still held";
    } else if (longest >= 0) {
      line += fmt::format("; the longest recent one held it {} after suspending", secs(longest));
    }
    r.evidence.push_back(std::move(line));
    worsen(r, Verdict::kFail);
  });

  const auto waits =
      by_resource(c.m, "stallscope_wait_seconds_sum", {{"kind", "async_lock"}}, true);
  const auto hold = histograms(c.m, "stallscope_lock_hold_seconds", "async_lock");
  const auto holder =
      by_resource(c.m, "stallscope_lock_holder_age_seconds", {{"kind", "async_lock"}}, false);
  const auto contended =
      by_resource(c.m, "stallscope_lock_contended_total", {{"kind", "async_lock"}}, true);
  double busiest = 0;
  std::string busiest_name;
  for (const auto& [res, sum] : waits) {
    const double waiters = sum / c.window;
    if (waiters > busiest) std::tie(busiest, busiest_name) = std::tie(waiters, res.second);
    const auto h = hold.find(res);
    const double holds = h == hold.end() ? 0 : h->second.count;
    const double mean_hold = holds > 0 ? h->second.sum / holds : 0;
    const double waited = get(contended, res);
    if (waiters < c.t.async_lock_waiters &&
        (waited <= 0 || mean_hold < c.t.async_lock_hold_seconds)) {
      continue;
    }
    std::string line = fmt::format(
        "async_lock `{}` is held across co_await (an AsyncMutex) for {} on average over {} "
        "holds (threshold {}) while {} acquisitions waited, {:.2f} tasks waiting on average "
        "over the window (threshold {:g})",
        res.second, secs(mean_hold), count(holds), secs(c.t.async_lock_hold_seconds), count(waited),
        waiters, c.t.async_lock_waiters);
    if (const double age = get(holder, res); age > 0) {
      line += fmt::format("; the current holder has held it {}", secs(age));
    }
    line += " (which task holds an AsyncMutex is not recorded)";
    r.evidence.push_back(std::move(line));
    worsen(r, Verdict::kFail);
  }
  if (r.verdict == Verdict::kPass) {
    r.evidence.push_back(fmt::format(
        "no thread lock ended a task slice held ({} lock/task pairs counted); no AsyncMutex "
        "had {:g} or more waiters on average, or was waited for while held {} on average ({} "
        "AsyncMutex names{})",
        thread_locks, c.t.async_lock_waiters, secs(c.t.async_lock_hold_seconds), waits.size(),
        busiest_name.empty() ? std::string()
                             : fmt::format(", most: `{}` {:.2f}", busiest_name, busiest)));
  }
  return r;
}

CheckResult check_channels(const Context& c) {
  CheckResult r =
      started("channel-at-capacity",
              "2. no channel sat at capacity, or kept its senders waiting, for a share of the "
              "window");
  const auto capacity =
      by_resource(c.m, "stallscope_channel_capacity", {{"kind", "channel"}}, false);
  const auto full = by_resource(c.m, "stallscope_channel_full_seconds_total", {}, true);
  const auto send =
      by_resource(c.m, "stallscope_wait_seconds_sum", {{"kind", "channel"}, {"op", "send"}}, true);
  const auto depth = by_resource(c.m, "stallscope_channel_depth", {}, false);
  const auto waiting =
      by_resource(c.m, "stallscope_waiters", {{"kind", "channel"}, {"op", "send"}}, false);
  std::set<Resource> channels;
  for (const auto* m : {&capacity, &full, &send}) {
    for (const auto& [res, v] : *m) channels.insert(res);
  }
  for (const Resource& res : channels) {
    const double full_share = get(full, res) / c.window;
    const double senders = get(send, res) / c.window;
    if (full_share < c.t.channel_full_share && senders < c.t.channel_send_waiters) continue;
    r.evidence.push_back(fmt::format(
        "channel `{}` (capacity {}; its policy is not exported): at capacity {:.1f}% of the "
        "window (threshold {:g}%), {:.2f} senders waiting on average (threshold {:g}); depth "
        "now {}, {} senders waiting now",
        res.second, count(get(capacity, res)), full_share * 100, c.t.channel_full_share * 100,
        senders, c.t.channel_send_waiters, count(get(depth, res)), count(get(waiting, res))));
    worsen(r, Verdict::kFail);
  }
  if (r.verdict == Verdict::kPass) {
    r.evidence.push_back(fmt::format(
        "{} channel(s): none at capacity {:g}% of the window or with {:g} senders waiting on "
        "average",
        channels.size(), c.t.channel_full_share * 100, c.t.channel_send_waiters));
  }
  return r;
}

CheckResult check_cancellation(const Context& c) {
  CheckResult r =
      started("cancellation",
              "3. every cancelled task stopped (none lingering, none slow to observe its token)");
  for (const Stallz::Lingering& l : c.z.lingering) {
    r.evidence.push_back(fmt::format(
        "task `{}`: {} still alive after cancellation, the oldest cancelled {} ago (lingering)",
        l.task, count(l.count), secs(l.oldest)));
    worsen(r, Verdict::kFail);
  }
  double exits = 0, slowest = 0;
  for (const auto& [res, h] : histograms(c.m, "stallscope_task_cancel_exit_seconds", "task")) {
    exits += h.count;
    if (h.count > 0) slowest = std::max(slowest, h.max_bound());
    const auto [late, bound] = h.above(c.t.cancel_exit_seconds);
    if (late <= 0) continue;
    r.evidence.push_back(fmt::format(
        "task `{}`: {} of {} cancelled tasks took longer than {} to exit (a loop that does not "
        "observe its token?)",
        res.second, count(late), count(h.count), secs(bound)));
    worsen(r, Verdict::kFail);
  }
  if (r.verdict == Verdict::kPass) {
    r.evidence.push_back(
        exits > 0 ? fmt::format("{} cancelled task(s) exited in the window, each within {}; "
                                "none lingering",
                                count(exits), secs(slowest))
                  : std::string("no task was cancelled in the window; none lingering"));
  }
  return r;
}

CheckResult check_executor(const Context& c) {
  CheckResult r =
      started("executor-cpu",
              "4. no CPU-heavy or blocking work on executor threads, no thread blocked by a "
              "lock, no uncapped blocking work");
  const auto slow = by_resource(c.m, "stallscope_task_slow_slices_total", {}, true);
  std::size_t tasks = 0;
  for (const auto& [res, h] : histograms(c.m, "stallscope_task_slice_seconds", "task")) {
    ++tasks;
    const auto [long_slices, bound] = h.above(c.t.long_slice_seconds);
    if (h.count <= 0 || long_slices < c.t.long_slice_min ||
        long_slices / h.count < c.t.long_slice_share) {
      continue;
    }
    r.evidence.push_back(fmt::format(
        "task `{}`: {} of {} slices ({:.1f}%) ran longer than {} on an executor thread, {} "
        "longer than Config::slow_slice; {} of executor time in its slices (CPU-heavy or "
        "blocking work: move it to a BlockingPool)",
        res.second, count(long_slices), count(h.count), long_slices / h.count * 100, secs(bound),
        count(get(slow, res)), secs(h.sum)));
    worsen(r, Verdict::kFail);
  }
  for (const auto& [res, blocked] :
       by_resource(c.m, "stallscope_lock_executor_blocked_seconds_total", {}, true)) {
    const double threads = blocked / c.window;
    if (threads < c.t.lock_blocked_threads) continue;
    r.evidence.push_back(fmt::format(
        "{} `{}` blocked executor threads: {:.3f} threads on average waited for it inside task "
        "slices (threshold {:g})",
        res.first, res.second, threads, c.t.lock_blocked_threads));
    worsen(r, Verdict::kFail);
  }
  const bool failed = r.verdict == Verdict::kFail;
  const auto pool_threads = by_resource(c.m, "stallscope_pool_threads", {}, false);
  for (const auto& [res, sum] :
       by_resource(c.m, "stallscope_wait_seconds_sum", {{"kind", "pool"}}, true)) {
    const double threads = std::max(1.0, get(pool_threads, res));
    const double queued = sum / c.window;
    if (queued / threads < c.t.pool_queue_per_thread) continue;
    r.evidence.push_back(fmt::format(
        "warning: pool `{}`: {:.2f} jobs waited for its {} thread(s) on average (threshold {:g} "
        "per thread): uncapped blocking work; cap what is handed to it (a Semaphore)",
        res.second, queued, count(threads), c.t.pool_queue_per_thread));
    worsen(r, Verdict::kWarn);
  }
  if (failed) {
    for (const std::string& cause : c.z.causes) r.evidence.push_back("cause now: " + cause);
  }
  if (r.evidence.empty()) {
    r.evidence.push_back(fmt::format(
        "{} task name(s): none with {:g}% of its slices longer than {}; no lock blocked "
        "{:g} executor threads; no pool queue over {:g} jobs per thread",
        tasks, c.t.long_slice_share * 100, secs(c.t.long_slice_seconds), c.t.lock_blocked_threads,
        c.t.pool_queue_per_thread));
  }
  return r;
}

CheckResult check_coverage(const Context& c) {
  CheckResult r = started(
      "coverage", "5. the service exports queue depth, lock wait and task time for its resources");
  std::map<std::string, std::set<std::string>> names;  // kind -> resources
  double activity = 0;
  for (const Series& s : c.m.end()) {
    const std::string_view kind = label(s, "kind");
    const std::string_view res = label(s, "resource");
    if (!kind.empty() && !res.empty() && res != "__overflow__") {
      names[std::string(kind)].insert(std::string(res));
    }
    if (s.name == "stallscope_wait_seconds_count" ||
        s.name == "stallscope_task_slice_seconds_count" ||
        s.name == "stallscope_idle_seconds_count") {
      activity += c.m.delta(s);
    }
  }
  std::string kinds;
  for (const auto& [kind, set] : names) {
    kinds += fmt::format("{}{} {}", kinds.empty() ? "" : ", ", set.size(), kind);
  }
  const auto has = [&](std::initializer_list<std::string_view> ks) {
    return std::any_of(ks.begin(), ks.end(),
                       [&](std::string_view k) { return names.contains(std::string(k)); });
  };
  if (names.empty()) {
    r.evidence.push_back(
        "no stallscope resource is exported: is this a stallscope endpoint, and did the service "
        "create any wrapper?");
    worsen(r, Verdict::kFail);
    return r;
  }
  if (has({"task"}) && !has({"lock", "rwlock", "async_lock", "channel", "semaphore", "pool"})) {
    r.evidence.push_back(fmt::format(
        "warning: tasks are instrumented but no lock, channel, semaphore or pool is ({}): waits "
        "on uninstrumented locks and queues are invisible",
        kinds));
    worsen(r, Verdict::kWarn);
  }
  if (activity <= 0) {
    r.evidence.push_back(
        "warning: nothing was recorded in the window (no wait, no task slice): run the check "
        "while the load runs");
    worsen(r, Verdict::kWarn);
  }
  if (r.verdict == Verdict::kPass) r.evidence.push_back("resource names exported: " + kinds);
  return r;
}

CheckResult check_retries(const Context& c) {
  CheckResult r =
      started("retry-amplification",
              "retries stay within a budget: attempts per request at most the threshold");
  const auto requests = by_resource(c.m, "stallscope_retry_requests_total", {}, true);
  const auto attempted = by_resource(c.m, "stallscope_retry_attempted_total", {}, true);
  const auto denied = by_resource(c.m, "stallscope_retry_denied_total", {}, true);
  const auto abandoned = by_resource(c.m, "stallscope_retry_abandoned_total", {}, true);
  const auto backoff = by_resource(c.m, "stallscope_retry_backoff_seconds_total", {}, true);
  // Budgets created with {.unlimited = true}: their retries are counted, never bounded.
  const auto unlimited = by_resource(c.m, "stallscope_retry_unlimited", {}, false);
  std::set<Resource> budgets;
  for (const auto* m : {&requests, &attempted}) {
    for (const auto& [res, v] : *m) budgets.insert(res);
  }
  if (budgets.empty()) {
    r.evidence.push_back(
        "no retry budget is exported (stallscope_retry_requests_total): nothing "
        "to check");
    return r;
  }
  for (const Resource& res : budgets) {
    const double req = get(requests, res);
    const double retries = get(attempted, res);
    const double amp = req > 0 ? (req + retries) / req
                               : (retries > 0 ? std::numeric_limits<double>::infinity() : 1.0);
    const bool bad = amp > c.t.retry_amplification;
    r.evidence.push_back(fmt::format(
        "retry budget `{}`: amplification {:.3f} ({} requests + {} retries, threshold {:g}); {} "
        "retries denied by the budget, {} abandoned on cancellation, {} of backoff",
        res.second, amp, count(req), count(retries), c.t.retry_amplification,
        count(get(denied, res)), count(get(abandoned, res)), secs(get(backoff, res))));
    if (bad) worsen(r, Verdict::kFail);
    // A retry that nothing bounds fails whatever the amplification was in this window: the
    // next outage multiplies the load on the failing dependency without limit.
    if (get(unlimited, res) > 0 && retries > 0) {
      r.evidence.push_back(fmt::format(
          "retry budget `{}` is unlimited: its {} retries are counted but not bounded (give it a "
          "retry_share and a floor)",
          res.second, count(retries)));
      worsen(r, Verdict::kFail);
    }
  }
  return r;
}

CheckResult check_tiny_spawns(const Context& c) {
  CheckResult r =
      started("tiny-spawns", "warning: no task name whose median lifetime is a few spawn costs");
  for (const auto& [res, h] : histograms(c.m, "stallscope_task_lifetime_seconds", "task")) {
    if (h.count < c.t.tiny_task_min) continue;
    const auto [over, bound] = h.above(c.t.tiny_task_seconds);
    if (over > h.count / 2) continue;
    r.evidence.push_back(fmt::format(
        "warning: task `{}`: median lifetime at most {} over {} tasks (threshold {}): the work "
        "is too small to spawn a task for; run it inline or batch it",
        res.second, secs(h.quantile_bound(0.5)), count(h.count), secs(bound)));
    worsen(r, Verdict::kWarn);
  }
  if (r.evidence.empty()) {
    r.evidence.push_back(fmt::format(
        "no task name with {:g} or more tasks in the window had a median lifetime of {} or less",
        c.t.tiny_task_min, secs(c.t.tiny_task_seconds)));
  }
  return r;
}

std::string bytes(double x) {
  if (x >= 1024.0 * 1024 * 1024) return fmt::format("{:.3g} GiB", x / (1024.0 * 1024 * 1024));
  if (x >= 1024.0 * 1024) return fmt::format("{:.3g} MiB", x / (1024.0 * 1024));
  if (x >= 1024.0) return fmt::format("{:.3g} KiB", x / 1024.0);
  return fmt::format("{} B", count(x));
}

CheckResult check_heavy_payloads(const Context& c) {
  CheckResult r = started("heavy-payloads",
                          "warning: no channel queues or carries heavy payloads (channels with "
                          "ChannelOptions::size_of)");
  const auto queued = by_resource(c.m, "stallscope_channel_queued_bytes", {}, false);
  const auto sent = by_resource(c.m, "stallscope_channel_sent_bytes_total", {}, true);
  const auto items = by_resource(c.m, "stallscope_channel_sent_total", {{"lane", "data"}}, true);
  std::set<Resource> channels;
  for (const auto* m : {&queued, &sent}) {
    for (const auto& [res, v] : *m) channels.insert(res);
  }
  std::size_t measured = 0;
  for (const Resource& res : channels) {
    const double now = get(queued, res);
    const double sent_bytes = get(sent, res);
    if (sent_bytes <= 0 && now <= 0) continue;  // no size function, or nothing sent
    ++measured;
    const double n = get(items, res);
    const double per_item = n > 0 ? sent_bytes / n : 0;
    if (now < c.t.channel_queued_bytes && per_item < c.t.channel_item_bytes) continue;
    r.evidence.push_back(fmt::format(
        "warning: channel `{}`: {} queued at the window end (threshold {}), {} per item on "
        "average over {} items sent in the window (threshold {}): heavy payloads; send a handle "
        "(an id, a shared pointer) instead of the payload",
        res.second, bytes(now), bytes(c.t.channel_queued_bytes), bytes(per_item), count(n),
        bytes(c.t.channel_item_bytes)));
    worsen(r, Verdict::kWarn);
  }
  if (r.evidence.empty()) {
    r.evidence.push_back(
        measured == 0
            ? std::string("no channel measured its payload bytes in the window "
                          "(ChannelOptions::size_of): nothing to check")
            : fmt::format("{} channel(s) measured payload bytes: none had {} queued or {} per "
                          "item on average",
                          measured, bytes(c.t.channel_queued_bytes),
                          bytes(c.t.channel_item_bytes)));
  }
  return r;
}

CheckResult check_unrelated_traffic(const Context& c) {
  CheckResult r = started("unrelated-traffic",
                          "warning: no channel carries unrelated traffic (many task names "
                          "sending on one data lane)");
  const auto senders = by_resource(c.m, "stallscope_channel_sender_tasks", {}, false);
  double most = 0;
  for (const auto& [res, tasks] : senders) {
    most = std::max(most, tasks);
    if (tasks < c.t.channel_sender_tasks) continue;
    r.evidence.push_back(fmt::format(
        "warning: channel `{}`: {}{} distinct task names send on its data lane (threshold {:g}): "
        "one channel carrying unrelated traffic, where a slow kind of item delays every other "
        "queued behind it; give each kind of work its own channel",
        res.second, count(tasks), tasks >= kMaxSenderTasks ? " or more" : "",
        c.t.channel_sender_tasks));
    worsen(r, Verdict::kWarn);
  }
  if (r.evidence.empty()) {
    r.evidence.push_back(fmt::format(
        "{} channel(s): none with {:g} or more task names sending on its data lane (most: {})",
        senders.size(), c.t.channel_sender_tasks, count(most)));
  }
  return r;
}

// ---------------------------------------------------------------------------------------------
// Output

std::string evidence_text(const CheckResult& c) {
  std::string out;
  for (const std::string& e : c.evidence) {
    out += e;
    out += '\n';
  }
  return out;
}

}  // namespace

std::string_view to_string(Verdict v) noexcept {
  constexpr std::string_view kNames[] = {"pass", "warn", "fail"};  // in Verdict's order
  const auto i = static_cast<std::size_t>(v);
  return i < std::size(kNames) ? kNames[i] : "?";
}

Verdict Report::verdict() const noexcept {
  Verdict v = Verdict::kPass;
  for (const CheckResult& c : checks) v = std::max(v, c.verdict);
  return v;
}

int exit_code(const Report& report) noexcept { return report.verdict() == Verdict::kFail ? 1 : 0; }

Report evaluate(const Inputs& inputs, const Thresholds& thresholds) {
  if (!(inputs.window_seconds > 0) || !std::isfinite(inputs.window_seconds)) {
    throw std::invalid_argument(fmt::format(
        "the window must be a positive number of seconds, not {}", inputs.window_seconds));
  }
  const Scrapes m(inputs.metrics_start, inputs.metrics_end);
  const Stallz z = read_stallz(inputs.stallz_json);
  const Context c{m, z, thresholds, inputs.window_seconds};
  Report r;
  r.window_seconds = inputs.window_seconds;
  r.checks.push_back(check_locks(c));
  r.checks.push_back(check_channels(c));
  r.checks.push_back(check_cancellation(c));
  r.checks.push_back(check_executor(c));
  r.checks.push_back(check_coverage(c));
  r.checks.push_back(check_retries(c));
  r.checks.push_back(check_tiny_spawns(c));
  r.checks.push_back(check_heavy_payloads(c));
  r.checks.push_back(check_unrelated_traffic(c));
  return r;
}

std::string to_text(const Report& report) {
  std::string out = fmt::format("stallscope-check: window {:.1f} s\n", report.window_seconds);
  std::size_t failed = 0, warned = 0;
  for (const CheckResult& c : report.checks) {
    failed += c.verdict == Verdict::kFail ? 1 : 0;
    warned += c.verdict == Verdict::kWarn ? 1 : 0;
    std::string verdict(to_string(c.verdict));
    std::transform(verdict.begin(), verdict.end(), verdict.begin(),
                   [](char ch) { return static_cast<char>(ch - 'a' + 'A'); });
    fmt::format_to(std::back_inserter(out), "{:<5} {}: {}\n", verdict, c.id, c.title);
    for (const std::string& e : c.evidence)
      fmt::format_to(std::back_inserter(out), "      {}\n", e);
  }
  fmt::format_to(std::back_inserter(out), "result: {} ({} failed, {} warned, {} passed)\n",
                 failed > 0 ? "FAIL" : "PASS", failed, warned,
                 report.checks.size() - failed - warned);
  return out;
}

std::string to_junit(const Report& report) {
  std::size_t failed = 0;
  for (const CheckResult& c : report.checks) failed += c.verdict == Verdict::kFail ? 1 : 0;
  std::string out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  fmt::format_to(std::back_inserter(out),
                 "<testsuites name=\"stallscope-check\" tests=\"{0}\" failures=\"{1}\" "
                 "errors=\"0\">\n<testsuite name=\"stallscope-check\" tests=\"{0}\" "
                 "failures=\"{1}\" errors=\"0\" skipped=\"0\" time=\"{2:g}\">\n",
                 report.checks.size(), failed, report.window_seconds);
  for (const CheckResult& c : report.checks) {
    out += "<testcase classname=\"stallscope-check\" name=\"";
    markup_escape(out, c.id);
    out += "\" time=\"0\">\n";
    if (c.verdict == Verdict::kFail) {
      out += "<failure type=\"fail\" message=\"";
      markup_escape(out, c.title);
      out += "\">";
      markup_escape(out, evidence_text(c));
      out += "</failure>\n";
    }
    out += "<system-out>";
    markup_escape(out, fmt::format("{}: {}\n{}", to_string(c.verdict), c.title, evidence_text(c)));
    out += "</system-out>\n</testcase>\n";
  }
  out += "</testsuite>\n</testsuites>\n";
  return out;
}

std::string metrics_text() {
  return prometheus::TextSerializer().Serialize(Collectable(Registry::global()).Collect());
}

std::string stallz_json_text() {
  const StallWindow window;
  return stallz_json(make_stallz_report(Registry::global(), window, 0));
}

}  // namespace stallscope::check
