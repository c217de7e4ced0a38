#include "stallscope/detail/histogram.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>

namespace stallscope {

namespace {

void validate(std::span<const double> b) {
  if (b.empty()) throw std::invalid_argument("stallscope: bucket bounds must not be empty");
  if (b.size() > Buckets::kMaxBounds) {
    throw std::invalid_argument(fmt::format(
        "stallscope: {} bucket bounds given, at most {} allowed", b.size(), Buckets::kMaxBounds));
  }
  double prev_ns = -1;
  for (double v : b) {
    if (!std::isfinite(v) || v < 1e-9 || v > 3600) {
      throw std::invalid_argument(
          fmt::format("stallscope: bucket bound {} is out of range (finite, 1e-9 s to 3600 s)", v));
    }
    const double ns = std::floor(v * 1e9);
    if (ns <= prev_ns) {
      throw std::invalid_argument(fmt::format(
          "stallscope: bucket bound {} is not greater than the previous one (to the nanosecond)",
          v));
    }
    prev_ns = ns;
  }
}

}  // namespace

Buckets::Buckets(std::initializer_list<double> bounds_seconds)
    : Buckets(std::span<const double>(bounds_seconds.begin(), bounds_seconds.size())) {}

Buckets::Buckets(std::span<const double> bounds_seconds)
    : bounds_(bounds_seconds.begin(), bounds_seconds.end()) {
  validate(bounds_);
}

Buckets Buckets::latency() {
  return Buckets{0.000001, 0.0000025, 0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025,
                 0.0005,   0.001,     0.0025,   0.005,   0.01,     0.025,   0.05,   0.1,
                 0.25,     0.5,       1,        2.5,     5,        10,      25,     50};
}

namespace detail {

BucketLayout::BucketLayout(const Buckets& buckets)
    : buckets_(buckets), n_(static_cast<std::uint32_t>(buckets.size())) {
  for (std::uint32_t i = 0; i < n_; ++i) {
    bounds_ns_[i] = static_cast<std::int64_t>(std::floor(buckets.bounds()[i] * 1e9));
  }
  for (std::uint32_t i = n_; i < bounds_ns_.size(); ++i) {
    bounds_ns_[i] = std::numeric_limits<std::int64_t>::max();
  }
  // first_[w]: the first bucket that a value of bit width w can fall in, i.e. the first bound
  // >= 2^(w-1), the smallest value of that width.
  for (std::uint32_t w = 0; w < first_.size(); ++w) {
    const std::uint64_t lo = w == 0 ? 0 : (std::uint64_t{1} << (w - 1));
    std::uint32_t i = 0;
    while (i < n_ && static_cast<std::uint64_t>(bounds_ns_[i]) < lo) ++i;
    first_[w] = static_cast<std::uint8_t>(i);
  }
}

const BucketLayout& shared_layout(const Buckets& buckets) {
  static std::mutex mu;
  // Leaked on purpose: series (and so their layouts) are used until the very end of the process.
  static auto* const layouts = new std::vector<std::unique_ptr<BucketLayout>>;
  std::lock_guard lock(mu);
  for (const auto& l : *layouts) {
    const auto have = l->buckets().bounds();
    const auto want = buckets.bounds();
    if (std::equal(have.begin(), have.end(), want.begin(), want.end())) return *l;
  }
  layouts->push_back(std::make_unique<BucketLayout>(buckets));
  return *layouts->back();
}

HistogramSnapshot to_snapshot(const BucketLayout& layout, const std::uint64_t* cells) {
  HistogramSnapshot h;
  h.bounds.assign(layout.buckets().bounds().begin(), layout.buckets().bounds().end());
  h.counts.assign(cells, cells + layout.bucket_count());
  for (auto c : h.counts) h.count += c;
  h.sum = static_cast<double>(cells[layout.bucket_count()]) * 1e-9;
  return h;
}

HistogramSnapshot read(const HistogramCells& h) {
  std::vector<std::uint64_t> raw(h.layout->cells());
  sum_cells(h.base, h.layout->cells(), raw.data());
  return to_snapshot(*h.layout, raw.data());
}

}  // namespace detail
}  // namespace stallscope
