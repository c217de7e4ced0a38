#include "stallscope/detail/executor_recorder.hpp"

#include <algorithm>

#include "families.hpp"
#include "series_support.hpp"

namespace stallscope::detail {

using namespace families::executor;

constinit std::atomic<std::uint64_t> g_executor_generation{1};
constinit thread_local const void* tls_executor_key = nullptr;
constinit thread_local std::uint64_t tls_executor_gen = 0;
constinit thread_local ExecutorSite* tls_executor_site = nullptr;
constinit thread_local std::int64_t tls_slice_ns = 0;

namespace {}  // namespace

ExecutorSeries::ExecutorSeries(ResourceKind kind, std::string name, std::uint32_t id,
                               const Config& config)
    : Series(kind, std::move(name), id), layout_(shared_layout(config.wait_buckets)) {
  base = allocate_series_cells(kCounters, layout_, {&sched, &lag});
}

void ExecutorSeries::collect(Collector& out) {
  const auto c = summed_counters<kCounters>(base);
  const Labels res = resource_labels(*this);
  auto with = [&](const char* k, const char* v) { return with_label(res, k, v); };
  out.add(kWaitSeconds, with("op", "schedule"), snapshot(sched));
  out.add(kLag, res, snapshot(lag));
  // Handler time includes the slices that ran on stallscope::run threads; other is the rest.
  // Cells are read without a common lock with the recording threads: clamp a transient negative.
  const std::uint64_t in_slices = c[kTaskNs] + c[kLockNs];
  const std::uint64_t other = c[kHandlerNs] > in_slices ? c[kHandlerNs] - in_slices : 0;
  const auto secs = [](std::uint64_t ns) { return static_cast<double>(ns) * 1e-9; };
  out.add(kThreadSeconds, with("state", "task"), secs(c[kTaskNs]));
  out.add(kThreadSeconds, with("state", "lock"), secs(c[kLockNs]));
  out.add(kThreadSeconds, with("state", "other"), secs(other));
  out.add(kThreadSeconds, with("state", "idle"), secs(c[kIdleNs]));
  out.add(kThreads, res,
          static_cast<double>(std::max<std::int64_t>(0, threads.load(std::memory_order_relaxed))));
}

ExecutorSeries* executor_series(std::string_view name) {
  return &series_of<ExecutorSeries>(ResourceKind::kExecutor, name);
}

ExecutorSite::ExecutorSite(ExecutorSeries* series, std::int64_t period_ns) noexcept
    : series_(series),
      period_ns_(period_ns),
      late_ns_(std::max<std::int64_t>(period_ns / 4, 100'000)),
      batch_gap_ns_(std::max<std::int64_t>(period_ns / 2, 100'000)) {
  g_executor_generation.fetch_add(1, std::memory_order_relaxed);
}

ExecutorSite::~ExecutorSite() { g_executor_generation.fetch_add(1, std::memory_order_relaxed); }

void ExecutorSite::tick(std::int64_t expiry_ns, std::int64_t ran_ns) noexcept {
  series_->lag.record(ran_ns - expiry_ns);
  std::lock_guard lock(tick_mu_);
  // Ticks of one batch may run out of order on several threads: keep the newest expiry.
  if (expiry_ns < last_expiry_.load(std::memory_order_relaxed)) return;
  last_expiry_.store(expiry_ns, std::memory_order_relaxed);
  last_ran_.store(ran_ns, std::memory_order_relaxed);
}

}  // namespace stallscope::detail
