#include "stallscope/detail/pool_recorder.hpp"

#include <algorithm>

#include "families.hpp"
#include "series_support.hpp"

namespace stallscope::detail {

using namespace families::pool;

namespace {

constexpr const char* kOutcomeNames[kJobOutcomes] = {"completed", "failed", "cancelled", "shed"};

}  // namespace

PoolSeries::PoolSeries(ResourceKind kind, std::string name, std::uint32_t id, const Config& config)
    : Series(kind, std::move(name), id) {
  base = allocate_series_cells(kCounters, {{&queue_wait, &shared_layout(config.wait_buckets)},
                                           {&run_time, &shared_layout(config.hold_buckets)}});
  map_users(*this, UserRole::kUse, users);
}

void PoolSeries::collect(Collector& out) {
  const auto c = summed_counters<kCounters>(base);
  const Labels res = resource_labels(*this);

  QueuedNow queued;
  std::size_t threads = 0, busy = 0;
  std::int64_t oldest_run = 0;
  sites_.for_each([&](const PoolSite& s) {
    queued.add(s.queued_.load(std::memory_order_relaxed), s.oldest_queued_since_);
    threads += s.threads_;
    for (std::size_t i = 0; i < s.threads_; ++i) {
      const std::int64_t since = s.running_since_[i].since_ns.load(std::memory_order_relaxed);
      if (since == 0) continue;
      ++busy;
      keep_oldest(oldest_run, since);
    }
  });

  out.add_wait(with_label(res, "op", "queue"), snapshot(queue_wait),
               static_cast<double>(queued.count), queued.oldest_since);
  out.add(kQueueDepth, res, static_cast<double>(queued.count));
  out.add(kRunSeconds, res, snapshot(run_time));
  out.add(kSubmittedFamily, res, static_cast<double>(c[kSubmitted]));
  for (std::uint32_t o = 0; o < kJobOutcomes; ++o) {
    out.add(kJobs, with_label(res, "outcome", kOutcomeNames[o]),
            static_cast<double>(c[kOutcomes + o]));
  }
  out.add(kThreads, res, static_cast<double>(threads));
  out.add(kBusyThreads, res, static_cast<double>(busy));
  out.add(kOldestRunAge, res, out.age_seconds(oldest_run));
}

PoolSite::PoolSite(std::string_view name, std::size_t threads)
    : series_(&series_of<PoolSeries>(ResourceKind::kPool, name)),
      threads_(threads),
      running_since_(std::make_unique<Running[]>(threads)) {
  series_->sites_.link(this);
  map_object(*series_, 1);
  map_fact(*series_, "threads", threads);
}

PoolSite::~PoolSite() {
  map_object(*series_, -1);
  series_->sites_.unlink(this);
}

void PoolSite::queue_limit(std::size_t max_queue) noexcept {
  map_fact(*series_, "max_queue", max_queue);
}

}  // namespace stallscope::detail
