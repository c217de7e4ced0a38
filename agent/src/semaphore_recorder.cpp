#include "stallscope/detail/semaphore_recorder.hpp"

#include <algorithm>
#include <memory>
#include <string>

#include "families.hpp"
#include "series_support.hpp"
#include "stallscope/detail/lock_recorder.hpp"

namespace stallscope::detail {

using namespace families::lock;
using namespace families::semaphore;

namespace {

struct Families {
  const FamilyDesc* acquisitions;
  const FamilyDesc* contended;
  const FamilyDesc* timeouts;
  const FamilyDesc* cancelled;
  const FamilyDesc* try_failures;
  const FamilyDesc* hold;
  const FamilyDesc* objects;
  const char* op;       // the op label of the wait families
  bool op_on_counters;  // the lock families carry op on their per-op counters
};

constexpr Families kSemaphoreFamilies{&kSemAcquisitions, &kSemContended,   &kSemTimeouts,
                                      &kSemCancelled,    &kSemTryFailures, &kSemHold,
                                      &kSemObjects,      "acquire",        false};
constexpr Families kAsyncLockFamilies{&kLockAcquisitions, &kLockContended,   &kLockTimeouts,
                                      &kLockCancelled,    &kLockTryFailures, &kLockHold,
                                      &kLockObjects,      "exclusive",       true};

}  // namespace

SemaphoreSeries::SemaphoreSeries(ResourceKind kind, std::string name, std::uint32_t id,
                                 const Config& config)
    : Series(kind, std::move(name), id) {
  base = allocate_series_cells(kCounters, {{&wait, &shared_layout(config.wait_buckets)},
                                           {&hold, &shared_layout(config.hold_buckets)}});
  map_users(*this, UserRole::kUse, users);
}

void SemaphoreSeries::collect(Collector& out) {
  const bool is_lock = this->kind() == ResourceKind::kAsyncLock;
  const Families& f = is_lock ? kAsyncLockFamilies : kSemaphoreFamilies;
  const auto c = summed_counters<kCounters>(base);

  QueuedNow waiting;
  std::size_t in_use = 0, permits = 0;
  std::int64_t held_since = 0;
  sites_.for_each([&](const SemaphoreSite& s) {
    waiting.add(s.waiters_.load(std::memory_order_relaxed), s.oldest_since_);
    in_use += s.in_use_.load(std::memory_order_relaxed);
    permits += s.permits_;
    keep_oldest(held_since, s.held_since_.load(std::memory_order_relaxed));
  });

  const Labels res = resource_labels(*this);
  const Labels with_op = with_label(res, "op", f.op);
  const Labels& per_op = f.op_on_counters ? with_op : res;

  const std::uint64_t fast = c[kFast];
  HistogramSnapshot w = snapshot(wait);
  const std::uint64_t contended = w.count;
  const std::uint64_t gave_up = c[kTimedOut] + c[kCancelled];
  out.add_wait(with_op, plus_zero_waits(std::move(w), fast), static_cast<double>(waiting.count),
               waiting.oldest_since);

  // The cells are read without a common lock, so a scrape can see a give-up before its wait;
  // clamp rather than wrap around.
  const std::uint64_t granted = contended > gave_up ? contended - gave_up : 0;
  out.add(*f.acquisitions, per_op, static_cast<double>(fast + c[kTryOk] + granted));
  out.add(*f.contended, per_op, static_cast<double>(contended));
  out.add(*f.timeouts, per_op, static_cast<double>(c[kTimedOut]));
  out.add(*f.cancelled, per_op, static_cast<double>(c[kCancelled]));
  out.add(*f.try_failures, per_op, static_cast<double>(c[kTryFail]));
  out.add(*f.hold, per_op, snapshot(hold));
  if (is_lock) {
    out.add(kLockHolderAge, res, out.age_seconds(held_since));
  } else {
    out.add(kSemInUse, res, static_cast<double>(in_use));
    out.add(kSemPermits, res, static_cast<double>(permits));
  }
  out.add(*f.objects, res, static_cast<double>(sites_.size()));
}

SemaphoreSite::SemaphoreSite(ResourceKind kind, std::string_view name, std::size_t permits)
    : series_(&series_of<SemaphoreSeries>(kind, name)), permits_(permits) {
  series_->sites_.link(this);
  map_object(*series_, 1);
  map_fact(*series_, "permits", permits);
}

SemaphoreSite::~SemaphoreSite() {
  map_object(*series_, -1);
  series_->sites_.unlink(this);
}

}  // namespace stallscope::detail
