#include "stallscope/detail/retry_recorder.hpp"

#include <string>

#include "families.hpp"
#include "series_support.hpp"

namespace stallscope::detail {

using namespace families::retry;

namespace {}  // namespace

RetrySeries::RetrySeries(ResourceKind kind, std::string name, std::uint32_t id, const Config&)
    : Series(kind, std::move(name), id), base(cell_allocator().allocate(kCounters)) {}

void RetrySeries::collect(Collector& out) {
  const auto c = summed_counters<kCounters>(base);
  const Labels res = resource_labels(*this);
  out.add(kRequestsFamily, res, static_cast<double>(c[kRequests]));
  out.add(kAttemptedFamily, res, static_cast<double>(c[kAttempted]));
  out.add(kDeniedFamily, res, static_cast<double>(c[kDenied]));
  out.add(kAbandonedFamily, res, static_cast<double>(c[kAbandoned]));
  out.add(kBackoffFamily, res, static_cast<double>(c[kBackoffNs]) * 1e-9);
  out.add(kUnlimitedFamily, res, static_cast<double>(unlimited.load(std::memory_order_relaxed)));
}

RetrySite::RetrySite(std::string_view name, bool unlimited) : unlimited_(unlimited) {
  series_ = &series_of<RetrySeries>(ResourceKind::kRetry, name);
  if (unlimited_) series_->unlimited.fetch_add(1, std::memory_order_relaxed);
}

RetrySite::~RetrySite() {
  if (unlimited_) series_->unlimited.fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace stallscope::detail
