#include "stallscope/detail/retry_recorder.hpp"

#include <memory>
#include <string>

#include "series_support.hpp"

namespace stallscope::detail {

namespace {

const FamilyDesc kRequestsFamily{"stallscope_retry_requests_total",
                                 "Requests that deposited into the retry budget (first attempts).",
                                 MetricType::kCounter};
const FamilyDesc kAttemptedFamily{
    "stallscope_retry_attempted_total",
    "Retries the budget granted and that were started (first attempts "
    "not counted).",
    MetricType::kCounter};
const FamilyDesc kDeniedFamily{
    "stallscope_retry_denied_total",
    "Retries the budget refused: the request failed instead of retrying.", MetricType::kCounter};
const FamilyDesc kAbandonedFamily{
    "stallscope_retry_abandoned_total",
    "Retries dropped because the request's cancellation token (or its "
    "coroutine) was cancelled, before or during the backoff.",
    MetricType::kCounter};
const FamilyDesc kBackoffFamily{"stallscope_retry_backoff_seconds_total",
                                "Time spent sleeping in retry backoff (a sleep cut short by "
                                "cancellation counts up to the cancel).",
                                MetricType::kCounter};

const FamilyDesc kUnlimitedFamily{
    "stallscope_retry_unlimited",
    "Live retry budgets with this name that allow every retry (RetryBudgetOptions::unlimited): "
    "their retries are counted but nothing bounds them.",
    MetricType::kGauge};

}  // namespace

RetrySeries::RetrySeries(ResourceKind kind, std::string name, std::uint32_t id, const Config&)
    : Series(kind, std::move(name), id), base(cell_allocator().allocate(kCounters)) {}

void RetrySeries::collect(Collector& out) {
  std::uint64_t c[kCounters];
  sum_cells(base, kCounters, c);
  const Labels res = resource_labels(*this);
  out.add(kRequestsFamily, res, static_cast<double>(c[kRequests]));
  out.add(kAttemptedFamily, res, static_cast<double>(c[kAttempted]));
  out.add(kDeniedFamily, res, static_cast<double>(c[kDenied]));
  out.add(kAbandonedFamily, res, static_cast<double>(c[kAbandoned]));
  out.add(kBackoffFamily, res, static_cast<double>(c[kBackoffNs]) * 1e-9);
  out.add(kUnlimitedFamily, res, static_cast<double>(unlimited.load(std::memory_order_relaxed)));
}

RetrySite::RetrySite(std::string_view name, bool unlimited) : unlimited_(unlimited) {
  auto make = [](ResourceKind k, std::string n, std::uint32_t id,
                 const Config& c) -> std::unique_ptr<Series> {
    return std::make_unique<RetrySeries>(k, std::move(n), id, c);
  };
  series_ = static_cast<RetrySeries*>(&Registry::global().series(ResourceKind::kRetry, name, make));
  if (unlimited_) series_->unlimited.fetch_add(1, std::memory_order_relaxed);
}

RetrySite::~RetrySite() {
  if (unlimited_) series_->unlimited.fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace stallscope::detail
