#pragma once
/// Histogram bucket bounds, in seconds.
///
/// A Buckets value is validated at construction: at least one bound, every bound finite,
/// at least one nanosecond, at most 3600 s, strictly increasing (also after rounding to whole
/// nanoseconds), at most kMaxBounds bounds. Violations throw std::invalid_argument naming the
/// offending value. Immutable and cheap to copy; thread-safe to share.

#include <cstddef>
#include <initializer_list>
#include <span>
#include <vector>

namespace stallscope {

class Buckets final {
 public:
  static constexpr std::size_t kMaxBounds = 60;

  /// Throws std::invalid_argument on an invalid list (see class comment).
  Buckets(std::initializer_list<double> bounds_seconds);
  explicit Buckets(std::span<const double> bounds_seconds);

  /// 1 us .. 50 s in 1-2.5-5 steps (24 bounds): covers an uncontended handoff and a
  /// stuck lock alike.
  static Buckets latency();

  std::span<const double> bounds() const& noexcept { return bounds_; }
  /// Not on a temporary: the span would dangle (`Buckets::latency().bounds()`).
  std::span<const double> bounds() && = delete;
  std::size_t size() const noexcept { return bounds_.size(); }

  friend bool operator==(const Buckets&, const Buckets&) = default;

 private:
  std::vector<double> bounds_;
};

}  // namespace stallscope
