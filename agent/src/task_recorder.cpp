#include "stallscope/detail/task_recorder.hpp"

#include <algorithm>
#include <array>
#include <functional>
#include <mutex>

#include <fmt/format.h>

#include "series_support.hpp"
#include "stallscope/detail/lock_recorder.hpp"
#include "stallscope/detectors.hpp"
#include "stallscope/log.hpp"

namespace stallscope::detail {

constinit thread_local SliceContext* tls_slice = nullptr;
// Config's defaults; the registry sets the configured values when it is created, before any
// task series exists.
constinit std::atomic<std::int64_t> g_slow_slice_ns{10'000'000};
constinit std::atomic<std::int64_t> g_cancel_grace_ns{1'000'000'000};

void apply_task_config(const Config& config) noexcept {
  g_slow_slice_ns.store(config.slow_slice.count(), std::memory_order_relaxed);
  g_cancel_grace_ns.store(config.cancel_grace.count(), std::memory_order_relaxed);
}

namespace {

const FamilyDesc kSlice{"stallscope_task_slice_seconds",
                        "Run time of one task slice: one resumption of the coroutine on an "
                        "executor thread (the analogue of a Tokio poll).",
                        MetricType::kHistogram};
const FamilyDesc kSlow{"stallscope_task_slow_slices_total",
                       "Slices longer than Config::slow_slice (default 10 ms): the task hogged "
                       "an executor thread.",
                       MetricType::kCounter};
const FamilyDesc kSpawnedFamily{"stallscope_task_spawned_total", "Tasks spawned.",
                                MetricType::kCounter};
const FamilyDesc kFinished{"stallscope_task_finished_total",
                           "Tasks that ended, by outcome: completed, failed (an exception), "
                           "cancelled (cancellation requested, or ended by operation_aborted).",
                           MetricType::kCounter};
const FamilyDesc kBlocked{"stallscope_task_blocked_seconds_total",
                          "Slice time this task spent blocked in contended stallscope lock waits "
                          "(part of its slice time: the executor thread could run nothing else).",
                          MetricType::kCounter};
const FamilyDesc kActive{"stallscope_task_active", "Tasks alive now.", MetricType::kGauge};
const FamilyDesc kLifetime{"stallscope_task_lifetime_seconds", "Task lifetime, spawn to exit.",
                           MetricType::kHistogram};
const FamilyDesc kCancelExit{"stallscope_task_cancel_exit_seconds",
                             "Time from a cancellation request to the task's exit.",
                             MetricType::kHistogram};
const FamilyDesc kLingering{"stallscope_task_lingering",
                            "Tasks still alive longer than Config::cancel_grace after their "
                            "cancellation was requested.",
                            MetricType::kGauge};
const FamilyDesc kRunning{"stallscope_task_running_slice_seconds",
                          "How long the longest slice of this task running right now has run "
                          "(0: none running). A stuck handler shows here before it ends.",
                          MetricType::kGauge};

struct EventRing {
  static constexpr std::size_t kSize = 64;
  std::array<DetectorEvent, kSize> events{};
  std::array<std::int64_t, kSize> at_ns{};
  std::uint64_t next_seq = 1;
};

EventRing& ring() {
  static auto* const r = new EventRing;  // leaked: detectors may fire during exit
  return *r;
}

// Caller holds held_across_mu().
std::uint64_t push_event(DetectorEvent e, std::int64_t at) {
  EventRing& r = ring();
  e.seq = r.next_seq++;
  const std::size_t i = e.seq % EventRing::kSize;
  r.events[i] = std::move(e);
  r.at_ns[i] = at;
  return r.events[i].seq;
}

}  // namespace

std::mutex& held_across_mu() noexcept {
  static auto* const mu = new std::mutex;
  return *mu;
}

TaskSeries::TaskSeries(ResourceKind kind, std::string name, std::uint32_t id, const Config& config)
    : Series(kind, std::move(name), id), layout_(shared_layout(config.wait_buckets)) {
  base = allocate_series_cells(kCounters, layout_, {&sched, &slice, &lifetime, &cancel_exit});
}

void TaskSeries::collect(Collector& out) {
  std::uint64_t c[kCounters];
  sum_cells(base, kCounters, c);
  const Labels res = resource_labels(*this);
  auto with = [&](const char* k, const char* v) { return with_label(res, k, v); };
  out.add(kWaitSeconds, with("op", "schedule"), snapshot(sched));
  out.add(kSlice, res, snapshot(slice));
  out.add(kSlow, res, static_cast<double>(c[kSlowSlices]));
  out.add(kBlocked, res, static_cast<double>(c[kBlockedNs]) * 1e-9);
  out.add(kSpawnedFamily, res, static_cast<double>(c[kSpawned]));
  out.add(kFinished, with("outcome", "completed"), static_cast<double>(c[kCompleted]));
  out.add(kFinished, with("outcome", "failed"), static_cast<double>(c[kFailed]));
  out.add(kFinished, with("outcome", "cancelled"), static_cast<double>(c[kCancelled]));
  // Read without a common lock with the threads that spawn and end tasks: clamp a transient
  // negative (an exit seen before its spawn) at 0.
  out.add(kActive, res,
          c[kSpawned] > c[kDestroyed] ? static_cast<double>(c[kSpawned] - c[kDestroyed]) : 0.0);
  out.add(kLifetime, res, snapshot(lifetime));
  out.add(kCancelExit, res, snapshot(cancel_exit));
  std::size_t lingering = 0;
  const std::int64_t grace = g_cancel_grace_ns.load(std::memory_order_relaxed);
  cancelled_.for_each([&](const TaskState& t) {
    const std::int64_t c_ns = t.cancel_ns_.load(std::memory_order_relaxed);
    if (c_ns != 0 && out.age_ns(c_ns) > grace) ++lingering;
  });
  out.add(kLingering, res, static_cast<double>(lingering));
  const std::int64_t running = out.running_since(id());
  out.add(kRunning, res, running == 0 ? 0.0 : static_cast<double>(out.age_ns(running)) * 1e-9);
}

TaskSeries* task_series(std::string_view name) {
  // Every spawn names its task: remember this thread's recent names, so spawning does not take
  // the registry's mutex each time (series live as long as the process). Trivially destructible,
  // so a spawn during thread exit still finds it; a hit is confirmed against the series' name
  // (a name folded into the overflow series is never a hit).
  struct Recent {
    std::size_t hash;
    TaskSeries* series;
  };
  constinit thread_local std::array<Recent, 8> recent{};
  constinit thread_local std::uint32_t next = 0;
  const std::size_t hash = std::hash<std::string_view>{}(name);
  for (const Recent& r : recent) {
    if (r.series != nullptr && r.hash == hash && r.series->name() == name) return r.series;
  }
  auto make = [](ResourceKind k, std::string n, std::uint32_t id,
                 const Config& c) -> std::unique_ptr<Series> {
    return std::make_unique<TaskSeries>(k, std::move(n), id, c);
  };
  auto* series =
      static_cast<TaskSeries*>(&Registry::global().series(ResourceKind::kTask, name, make));
  recent[next++ % recent.size()] = Recent{hash, series};
  return series;
}

TaskState::TaskState(TaskSeries* series) : series_(series), spawned_ns_(now_ns()) {
  add(series_->base + TaskSeries::kSpawned);
}

TaskState::~TaskState() {
  // A cancel_requested() that linked this task returned before the owner let go of it.
  if (cancel_ns_.load(std::memory_order_relaxed) != 0) series_->cancelled_.unlink(this);
  add(series_->base + TaskSeries::kDestroyed);
}

bool TaskState::cancel_requested() noexcept {
  std::int64_t expected = 0;
  if (!cancel_ns_.compare_exchange_strong(expected, now_ns(), std::memory_order_relaxed)) {
    return false;
  }
  series_->cancelled_.link(this);
  return true;
}

void TaskState::finished(bool failed, bool aborted) noexcept {
  const std::int64_t now = now_ns();
  series_->lifetime.record(now - spawned_ns_);
  const std::int64_t c = cancel_ns_.load(std::memory_order_relaxed);
  if (c != 0) series_->cancel_exit.record(now - c);
  const std::uint32_t outcome = (c != 0 || aborted) ? TaskSeries::kCancelled
                                : failed            ? TaskSeries::kFailed
                                                    : TaskSeries::kCompleted;
  add(series_->base + outcome);
}

void SliceScope::end_without_shard(std::int64_t now) noexcept {
  finish(now, [](std::uint32_t cell, std::uint64_t delta) { add(cell, delta); });
}

void on_suspended_holding(SliceContext& ctx, std::int64_t now) noexcept {
  try {
    std::lock_guard lock(held_across_mu());
    const std::uint32_t n = std::min(ctx.held_n, SliceContext::kMaxHeld);
    for (std::uint32_t i = 0; i < n; ++i) {
      LockSite* site = ctx.held[i];
      LockSeries* ls = site->series_;
      auto it = ls->held_across_.find(ctx.series->name());
      if (it == ls->held_across_.end()) {
        it = ls->held_across_.emplace(ctx.series->name(), 0).first;
      }
      ++it->second;
      DetectorEvent e;
      e.type = DetectorEvent::Type::kLockHeldAcrossSuspend;
      e.lock = ls->name();
      e.task = ctx.series->name();
      e.duration_seconds = -1;
      site->held_across_seq_.store(push_event(std::move(e), now), std::memory_order_relaxed);
    }
  } catch (...) {
    // Out of memory while recording a detection: drop the event, never the application.
  }
  ctx.held_n = 0;
}

void on_held_across_released(LockSite*, std::uint64_t event_seq) noexcept {
  const std::int64_t now = now_ns();
  std::lock_guard lock(held_across_mu());
  EventRing& r = ring();
  const std::size_t i = event_seq % EventRing::kSize;
  if (r.events[i].seq == event_seq) {
    r.events[i].duration_seconds = static_cast<double>(now - r.at_ns[i]) * 1e-9;
  }
}

void on_long_slice(std::uint32_t task_series_id, std::int64_t ran_ns) noexcept {
  try {
    std::string task = Registry::global().series_name(task_series_id);
    {
      std::lock_guard lock(held_across_mu());
      DetectorEvent e;
      e.type = DetectorEvent::Type::kLongSlice;
      e.task = task;
      e.duration_seconds = static_cast<double>(ran_ns) * 1e-9;
      push_event(std::move(e), now_ns());
    }
    log(LogLevel::kWarning,
        fmt::format("stallscope: task \"{}\" has been running for {:.3f} s without yielding its "
                    "executor thread",
                    task, static_cast<double>(ran_ns) * 1e-9));
  } catch (...) {
  }
}

}  // namespace stallscope::detail

namespace stallscope {

std::vector<LingeringTask> lingering_tasks() {
  using namespace detail;
  std::vector<LingeringTask> out;
  const std::int64_t grace = g_cancel_grace_ns.load(std::memory_order_relaxed);
  Registry::global().for_each_series(ResourceKind::kTask, [&](Series& s) {
    auto& ts = static_cast<TaskSeries&>(s);
    const std::int64_t now = now_ns();
    ts.for_each_cancelled_task([&](const TaskState& t) {
      const std::int64_t c = t.cancel_ns();
      if (c != 0 && now - c > grace) {
        out.push_back({ts.name(), static_cast<double>(now - c) * 1e-9});
      }
    });
  });
  return out;
}

std::vector<DetectorEvent> recent_detector_events() {
  std::vector<DetectorEvent> out;
  const std::int64_t now = now_ns();
  std::lock_guard lock(detail::held_across_mu());
  auto& r = detail::ring();
  for (std::size_t k = 0; k < detail::EventRing::kSize; ++k) {
    const std::uint64_t seq = r.next_seq - 1 - k;
    if (seq == 0 || seq >= r.next_seq) break;
    const std::size_t i = seq % detail::EventRing::kSize;
    if (r.events[i].seq != seq) break;
    DetectorEvent e = r.events[i];
    e.age_seconds = static_cast<double>(now - r.at_ns[i]) * 1e-9;
    out.push_back(std::move(e));
  }
  return out;
}

std::string_view to_string(DetectorEvent::Type type) noexcept {
  switch (type) {
    case DetectorEvent::Type::kLockHeldAcrossSuspend:
      return "lock_held_across_suspend";
    case DetectorEvent::Type::kLongSlice:
      return "long_slice";
  }
  return "unknown";
}

}  // namespace stallscope
