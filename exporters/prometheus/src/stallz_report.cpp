// The /stallz report: the window of wait totals, the stall scores rated over it, and the
// executors' causes, from Registry::collect(). The writers are stallz_json.cpp and
// stallz_html.cpp.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <stdexcept>
#include <string_view>
#include <tuple>

#include <fmt/format.h>

#include "stallscope/clock.hpp"
#include "stallscope/detail/metric_names.hpp"
#include "stallscope/stallz.hpp"

namespace stallscope {

namespace {

namespace names = detail::metric_names;

using Key = std::pair<std::string, std::string>;  // (kind, resource)

// A rate needs a base sample at least this old when the history is shorter than the window.
constexpr std::int64_t kMinSpanNs = 500'000'000;

std::string_view label(const Labels& labels, std::string_view key) {
  for (const auto& [k, v] : labels) {
    if (k == key) return v;
  }
  return {};
}

Key key_of(const Labels& labels) {
  return {std::string(label(labels, "kind")), std::string(label(labels, "resource"))};
}

using CounterKey = std::tuple<std::string, std::string, std::string, std::string>;

// The counters an executor's cause is rated from, summed over ops: (what, kind, resource, state).
std::map<CounterKey, double> cause_counters(const std::vector<FamilySnapshot>& families) {
  std::map<CounterKey, double> out;
  for (const FamilySnapshot& f : families) {
    const char* what = nullptr;
    if (f.name == names::kExecutorThreadSeconds) {
      what = "exec";
    } else if (f.name == names::kTaskSliceSeconds) {
      what = "task";
    } else if (f.name == names::kTaskBlocked) {
      what = "task_blocked";
    } else if (f.name == names::kLockExecutorBlocked) {
      what = "lock";
    } else {
      continue;
    }
    const bool histogram = f.type == MetricType::kHistogram;
    for (const SampleSnapshot& x : f.samples) {
      out[{what, std::string(label(x.labels, "kind")), std::string(label(x.labels, "resource")),
           std::string(label(x.labels, "state"))}] += histogram ? x.histogram.sum : x.value;
    }
  }
  return out;
}

std::string cause_text(const StallzCause& c) {
  std::string text = fmt::format("executor `{}`: ", c.executor);
  if (c.busy_threads <= 0) return text + "idle";
  if (c.threads > 0) {
    text += fmt::format("{:.2f} of {:g} threads busy", c.busy_threads, c.threads);
  } else {
    text += fmt::format("{:.2f} threads busy", c.busy_threads);
  }
  int named = 0;
  for (const StallzCausePart& p : c.parts) {
    if (p.what == "idle" || p.share < 0.01 || named == 4) continue;
    text += named++ == 0 ? ": " : ", ";
    const long pct = std::lround(p.share * 100);
    if (p.what == "task") {
      text += p.name.empty() ? fmt::format("task slices {}%", pct)
                             : fmt::format("task `{}` {}%", p.name, pct);
    } else if (p.what == "lock") {
      text += p.name.empty() ? fmt::format("blocked on locks {}%", pct)
                             : fmt::format("blocked on {} `{}` {}%", p.kind, p.name, pct);
    } else {
      text += fmt::format("other handlers {}%", pct);
    }
  }
  return text;
}

// Each executor's thread time over the window, split by cause (see StallzCause).
std::vector<StallzCause> make_causes(const std::map<CounterKey, double>& rates,
                                     const std::vector<FamilySnapshot>& now,
                                     const std::vector<StallzResource>& resources) {
  // Per task name (slice time less lock-blocked time) and per lock, process-wide.
  std::map<std::pair<std::string, std::string>, double> tasks;
  std::map<std::pair<std::string, std::string>, double> locks;
  double task_total = 0;
  double lock_total = 0;
  for (const auto& [key, rate] : rates) {
    const auto& [what, kind, resource, state] = key;
    if (what == "task") {
      double blocked = 0;
      if (auto it = rates.find({"task_blocked", kind, resource, ""}); it != rates.end()) {
        blocked = it->second;
      }
      const double v = std::max(0.0, rate - blocked);
      tasks[{kind, resource}] += v;
      task_total += v;
    } else if (what == "lock") {
      locks[{kind, resource}] += rate;
      lock_total += rate;
    }
  }
  std::map<std::string, StallzCause> causes;
  for (const auto& [key, rate] : rates) {
    const auto& [what, kind, resource, state] = key;
    if (what != "exec") continue;
    StallzCause& c = causes[resource];
    c.executor = resource;
    if (state == "task") {
      for (const auto& [name, v] : tasks) {
        if (v > 0) c.parts.push_back({"task", name.first, name.second, rate * v / task_total, 0});
      }
      if (task_total == 0 && rate > 0) c.parts.push_back({"task", "", "", rate, 0});
    } else if (state == "lock") {
      for (const auto& [name, v] : locks) {
        if (v > 0) c.parts.push_back({"lock", name.first, name.second, rate * v / lock_total, 0});
      }
      if (lock_total == 0 && rate > 0) c.parts.push_back({"lock", "", "", rate, 0});
    } else if (state == "other" || state == "idle") {
      c.parts.push_back({state, "", "", rate, 0});
    }
  }
  for (const FamilySnapshot& f : now) {
    if (f.name != names::kExecutorThreads) continue;
    for (const SampleSnapshot& x : f.samples) {
      if (auto it = causes.find(std::string(label(x.labels, "resource"))); it != causes.end()) {
        it->second.threads = x.value;
      }
    }
  }
  std::vector<StallzCause> out;
  for (auto& [name, c] : causes) {
    for (const StallzCausePart& p : c.parts) {
      if (p.what != "idle") c.busy_threads += p.threads;
    }
    if (c.busy_threads <= 0) continue;
    for (StallzCausePart& p : c.parts) p.share = p.what == "idle" ? 0 : p.threads / c.busy_threads;
    // Order: threads blocked in lock waits first when they are a tenth of the busy time or
    // more (a blocked thread runs nothing, and the slices it waits behind hold that lock: the
    // lock is what to fix first), then the busiest, idle last.
    const auto rank = [](const StallzCausePart& p) {
      if (p.what == "idle") return 2;
      return p.what == "lock" && p.share >= 0.1 ? 0 : 1;
    };
    std::stable_sort(c.parts.begin(), c.parts.end(),
                     [&](const StallzCausePart& a, const StallzCausePart& b) {
                       if (rank(a) != rank(b)) return rank(a) < rank(b);
                       return a.threads > b.threads;
                     });
    for (const StallzResource& res : resources) {
      if (res.kind == "executor" && res.resource == name) c.score = res.score[0].value_or(0);
    }
    c.text = cause_text(c);
    out.push_back(std::move(c));
  }
  std::stable_sort(out.begin(), out.end(), [](const StallzCause& a, const StallzCause& b) {
    if (a.score != b.score) return a.score > b.score;
    return a.busy_threads > b.busy_threads;
  });
  return out;
}

}  // namespace

// -----------------------------------------------------------------------------------------------
// StallWindow

StallWindow::StallWindow(std::size_t capacity) : capacity_(capacity) {
  if (capacity < 2) {
    throw std::invalid_argument(
        fmt::format("stallscope: StallWindow capacity {} is too small (at least 2)", capacity));
  }
}

void StallWindow::add(std::int64_t t_ns, const std::vector<FamilySnapshot>& families) {
  std::map<Key, Totals> totals;
  for (const FamilySnapshot& f : families) {
    if (f.name != names::kWaitSeconds) continue;
    for (const SampleSnapshot& s : f.samples) {
      Totals& t = totals[key_of(s.labels)];
      t.sum += s.histogram.sum;
      t.count += s.histogram.count;
    }
  }
  const std::map<CounterKey, double> counters = cause_counters(families);
  std::lock_guard lock(mu_);
  if (!samples_.empty() && t_ns <= samples_.back().t_ns) return;
  Sample sample;
  sample.t_ns = t_ns;
  sample.totals.resize(keys_.size());
  for (auto& [key, t] : totals) {
    const auto next = static_cast<std::uint32_t>(keys_.size());
    const std::uint32_t index = keys_.try_emplace(key, next).first->second;
    if (index >= sample.totals.size()) sample.totals.resize(index + 1);
    sample.totals[index] = t;
  }
  sample.counters.resize(counter_keys_.size());
  for (const auto& [key, v] : counters) {
    const auto next = static_cast<std::uint32_t>(counter_keys_.size());
    const std::uint32_t index = counter_keys_.try_emplace(key, next).first->second;
    if (index >= sample.counters.size()) sample.counters.resize(index + 1);
    sample.counters[index] = v;
  }
  samples_.push_back(std::move(sample));
  while (samples_.size() > capacity_) samples_.pop_front();
}

std::size_t StallWindow::size() const {
  std::lock_guard lock(mu_);
  return samples_.size();
}

StallzReport StallWindow::report(std::int64_t now_ns,
                                 const std::vector<FamilySnapshot>& now) const {
  StallzReport r;
  std::map<Key, StallzResource> rows;
  for (const FamilySnapshot& f : now) {
    if (f.name != names::kWaitSeconds) continue;
    for (const SampleSnapshot& s : f.samples) {
      Key key = key_of(s.labels);
      StallzResource& row = rows[key];
      row.kind = key.first;
      row.resource = key.second;
      row.wait_seconds_total += s.histogram.sum;
      row.waits_total += s.histogram.count;
    }
  }

  using OpKey = std::tuple<std::string, std::string, std::string>;
  std::map<OpKey, StallzWaiting> waiting;
  std::map<Key, StallzHolding> holding;
  const auto holder = [&holding](const Labels& labels, const char* what) -> StallzHolding& {
    Key key = key_of(labels);
    StallzHolding& h = holding[key];
    h.kind = key.first;
    h.resource = key.second;
    h.what = what;
    return h;
  };
  for (const FamilySnapshot& f : now) {
    for (const SampleSnapshot& s : f.samples) {
      const double v = s.value;
      if (f.name == names::kWaiters || f.name == names::kOldestWaitAge) {
        const bool count = f.name == names::kWaiters;
        if (auto it = rows.find(key_of(s.labels)); it != rows.end()) {
          if (count) {
            it->second.waiters += v;
          } else {
            it->second.oldest_wait_age_seconds = std::max(it->second.oldest_wait_age_seconds, v);
          }
        }
        if (v <= 0) continue;
        OpKey key{std::string(label(s.labels, "kind")), std::string(label(s.labels, "resource")),
                  std::string(label(s.labels, "op"))};
        StallzWaiting& w = waiting[key];
        std::tie(w.kind, w.resource, w.op) = key;
        (count ? w.waiters : w.oldest_wait_age_seconds) = v;
      } else if (f.name == names::kLockHolderAge) {
        if (v > 0) holder(s.labels, "lock held").age_seconds = v;
      } else if (f.name == names::kTaskRunningSlice) {
        if (v > 0) holder(s.labels, "slice running").age_seconds = v;
      } else if (f.name == names::kPoolOldestRunAge) {
        if (v > 0) holder(s.labels, "job running").age_seconds = v;
      } else if (f.name == names::kPoolBusyThreads) {
        if (v > 0) holder(s.labels, "job running").count = v;
      } else if (f.name == names::kSemaphorePermitsInUse) {
        if (v > 0) holder(s.labels, "permits in use").count = v;
      }
    }
  }

  const std::map<CounterKey, double> now_counters = cause_counters(now);
  std::map<CounterKey, double> counter_rates;
  {
    std::lock_guard lock(mu_);
    r.samples = samples_.size();
    for (std::size_t w = 0; w < kStallzWindowCount; ++w) {
      const std::int64_t window_ns = std::int64_t{kStallzWindows[w]} * 1'000'000'000;
      const Sample* base = nullptr;
      for (auto it = samples_.rbegin(); it != samples_.rend(); ++it) {
        if (now_ns - it->t_ns >= window_ns) {
          base = &*it;
          break;
        }
      }
      if (base == nullptr && !samples_.empty() && now_ns - samples_.front().t_ns >= kMinSpanNs) {
        base = &samples_.front();
      }
      if (base == nullptr) continue;
      const double span = static_cast<double>(now_ns - base->t_ns) * 1e-9;
      r.covered_seconds[w] = span;
      if (w == 0) {
        for (const auto& [key, v] : now_counters) {
          double old = 0;
          if (const auto k = counter_keys_.find(key);
              k != counter_keys_.end() && k->second < base->counters.size()) {
            old = base->counters[k->second];
          }
          counter_rates[key] = std::max(0.0, (v - old) / span);
        }
      }
      for (auto& [key, row] : rows) {
        Totals old;
        if (const auto k = keys_.find(key); k != keys_.end() && k->second < base->totals.size()) {
          old = base->totals[k->second];
        }
        row.score[w] = std::max(0.0, (row.wait_seconds_total - old.sum) / span);
        row.waits_per_second[w] =
            static_cast<double>(row.waits_total >= old.count ? row.waits_total - old.count : 0) /
            span;
      }
    }
  }

  r.resources.reserve(rows.size());
  for (auto& [key, row] : rows) r.resources.push_back(std::move(row));
  std::sort(r.resources.begin(), r.resources.end(),
            [](const StallzResource& a, const StallzResource& b) {
              for (std::size_t w = 0; w < kStallzWindowCount; ++w) {
                const double x = a.score[w].value_or(-1);
                const double y = b.score[w].value_or(-1);
                if (x != y) return x > y;
              }
              if (a.wait_seconds_total != b.wait_seconds_total) {
                return a.wait_seconds_total > b.wait_seconds_total;
              }
              return std::tie(a.kind, a.resource) < std::tie(b.kind, b.resource);
            });

  r.causes = make_causes(counter_rates, now, r.resources);

  for (auto& [key, w] : waiting) r.waiting.push_back(std::move(w));
  std::stable_sort(r.waiting.begin(), r.waiting.end(),
                   [](const StallzWaiting& a, const StallzWaiting& b) {
                     return a.oldest_wait_age_seconds > b.oldest_wait_age_seconds;
                   });
  for (auto& [key, h] : holding) r.holding.push_back(std::move(h));
  std::stable_sort(r.holding.begin(), r.holding.end(),
                   [](const StallzHolding& a, const StallzHolding& b) {
                     return a.age_seconds.value_or(-1) > b.age_seconds.value_or(-1);
                   });
  return r;
}

StallzReport make_stallz_report(const Registry& registry, const StallWindow& window,
                                double sample_interval_seconds) {
  const std::int64_t t = now_ns();
  StallzReport r = window.report(t, registry.collect());
  r.unix_time =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  r.sample_interval_seconds = sample_interval_seconds;

  std::map<std::string, StallzLingering> lingering;
  for (LingeringTask& task : lingering_tasks()) {
    StallzLingering& l = lingering[task.task];
    l.task = std::move(task.task);
    ++l.count;
    l.oldest_cancelled_seconds_ago =
        std::max(l.oldest_cancelled_seconds_ago, task.cancelled_seconds_ago);
  }
  for (auto& [name, l] : lingering) r.lingering.push_back(std::move(l));
  std::stable_sort(r.lingering.begin(), r.lingering.end(),
                   [](const StallzLingering& a, const StallzLingering& b) {
                     return a.oldest_cancelled_seconds_ago > b.oldest_cancelled_seconds_ago;
                   });
  r.detector_events = recent_detector_events();
  r.deadlocks = current_deadlocks();
  return r;
}

}  // namespace stallscope
