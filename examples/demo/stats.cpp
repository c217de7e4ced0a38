#include "stats.hpp"

#include <algorithm>
#include <cmath>
#include <string_view>

#include <stallscope/registry.hpp>
#include <stallscope/snapshot.hpp>

namespace demo {

namespace {

constexpr double kMinSeconds = 10e-6;
constexpr double kGrowth = 1.02;

std::string_view label(const stallscope::Labels& labels, std::string_view name) {
  for (const auto& [k, v] : labels) {
    if (k == name) return v;
  }
  return {};
}

}  // namespace

void LatencyHistogram::record(std::chrono::nanoseconds latency) {
  const double s = std::chrono::duration<double>(latency).count();
  std::size_t i = 0;
  if (s > kMinSeconds) {
    const double b = std::log(s / kMinSeconds) / std::log(kGrowth);
    i = std::min(kBuckets - 1, static_cast<std::size_t>(b));
  }
  ++counts_[i];
  ++count_;
}

double LatencyHistogram::quantile_ms(double q) const {
  if (count_ == 0) return 0;
  const auto rank =
      static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(count_)));  // 1-based
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < kBuckets; ++i) {
    seen += counts_[i];
    if (seen >= std::max<std::uint64_t>(rank, 1)) {
      // The bucket's geometric middle: within 1% of any value in it.
      return 1e3 * kMinSeconds * std::pow(kGrowth, static_cast<double>(i) + 0.5);
    }
  }
  return 1e3 * kMinSeconds * std::pow(kGrowth, static_cast<double>(kBuckets));
}

void LatencyHistogram::merge(const LatencyHistogram& other) {
  for (std::size_t i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
  count_ += other.count_;
}

void RequestStats::finish(Outcome outcome, std::chrono::nanoseconds latency) {
  std::lock_guard lock(mu_);
  for (Window* w : {&interval_, &total_}) {
    switch (outcome) {
      case Outcome::kCompleted:
        ++w->completed;
        w->latency.record(latency);
        break;
      case Outcome::kFailed:
        ++w->failed;
        break;
      case Outcome::kCancelled:
        ++w->cancelled;
        break;
    }
  }
}

void RequestStats::reject() {
  std::lock_guard lock(mu_);
  ++interval_.rejected;
  ++total_.rejected;
}

RequestStats::Window RequestStats::take_interval() {
  std::lock_guard lock(mu_);
  Window w = interval_;
  interval_ = Window{};
  return w;
}

RequestStats::Window RequestStats::total() const {
  std::lock_guard lock(mu_);
  return total_;
}

WaitTotals read_wait_totals() {
  WaitTotals totals;
  for (const stallscope::FamilySnapshot& family : stallscope::Registry::global().collect()) {
    if (family.name != "stallscope_wait_seconds") continue;
    for (const stallscope::SampleSnapshot& s : family.samples) {
      totals[{std::string(label(s.labels, "kind")), std::string(label(s.labels, "resource"))}] +=
          s.histogram.sum;
    }
  }
  return totals;
}

std::vector<StallScore> rank_stalls(const WaitTotals& before, const WaitTotals& after,
                                    double seconds) {
  std::vector<StallScore> out;
  if (seconds <= 0) return out;
  for (const auto& [key, total] : after) {
    const auto it = before.find(key);
    const double delta = total - (it == before.end() ? 0.0 : it->second);
    out.push_back({key.first, key.second, std::max(0.0, delta) / seconds});
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const StallScore& a, const StallScore& b) { return a.waiters > b.waiters; });
  return out;
}

}  // namespace demo
