#include "stallscope/detail/task_recorder.hpp"

#include <array>
#include <functional>

#include "families.hpp"
#include "series_support.hpp"
#include "stallscope/detectors.hpp"

namespace stallscope::detail {

using namespace families::task;

constinit thread_local SliceContext* tls_slice = nullptr;
// Config's defaults; the registry sets the configured values when it is created, before any
// task series exists.
constinit std::atomic<std::int64_t> g_slow_slice_ns{10'000'000};
constinit std::atomic<std::int64_t> g_cancel_grace_ns{1'000'000'000};

void apply_task_config(const Config& config) noexcept {
  g_slow_slice_ns.store(config.slow_slice.count(), std::memory_order_relaxed);
  g_cancel_grace_ns.store(config.cancel_grace.count(), std::memory_order_relaxed);
}

namespace {}  // namespace

TaskSeries::TaskSeries(ResourceKind kind, std::string name, std::uint32_t id, const Config& config)
    : Series(kind, std::move(name), id), layout_(shared_layout(config.wait_buckets)) {
  base = allocate_series_cells(kCounters, layout_, {&sched, &slice, &lifetime, &cancel_exit});
}

void TaskSeries::collect(Collector& out) {
  const auto c = summed_counters<kCounters>(base);
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

}  // namespace stallscope
