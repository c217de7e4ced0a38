#pragma once
// The demo's own measurements (request latency and outcomes; deliberately not stallscope's), and
// the stall ranking computed from stallscope's registry, as the dashboard's first panel does.

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace demo {

/// A log-linear latency histogram: 2% wide buckets from 10 us to about 1000 s, so quantiles are
/// within 1% of the truth. Not thread-safe (RequestStats guards it).
class LatencyHistogram {
 public:
  void record(std::chrono::nanoseconds latency);
  /// The q-quantile (0 < q <= 1) in milliseconds; 0 when empty.
  double quantile_ms(double q) const;
  std::uint64_t count() const { return count_; }
  void merge(const LatencyHistogram& other);

 private:
  static constexpr std::size_t kBuckets = 1000;
  std::array<std::uint64_t, kBuckets> counts_{};
  std::uint64_t count_ = 0;
};

/// What became of one request.
enum class Outcome { kCompleted, kFailed, kCancelled };

/// Request outcomes and latencies, per summary interval and for the whole run. Thread-safe.
class RequestStats {
 public:
  struct Window {
    std::uint64_t completed = 0;
    std::uint64_t failed = 0;     // the request gave up (fetch out of retries, storage refused)
    std::uint64_t rejected = 0;   // refused at admission: too many requests in flight
    std::uint64_t cancelled = 0;  // cut short by shutdown
    LatencyHistogram latency;     // completed requests only, from their scheduled arrival
  };

  void finish(Outcome outcome, std::chrono::nanoseconds latency);
  void reject();
  /// The window since the previous call, which starts a new one.
  Window take_interval();
  /// The whole run so far.
  Window total() const;

 private:
  mutable std::mutex mu_;  // a plain std::mutex: the demo's bookkeeping is not under study
  Window interval_;
  Window total_;
};

/// Total wait seconds (sum of stallscope_wait_seconds) per (kind, resource), read from
/// stallscope::Registry::global().collect().
using WaitTotals = std::map<std::pair<std::string, std::string>, double>;
WaitTotals read_wait_totals();

struct StallScore {
  std::string kind;
  std::string resource;
  double waiters = 0;  // wait seconds per second over the window: the average number of waiters
};

/// Every resource ranked by its stall score between two readings `seconds` apart, highest first
/// (rate(stallscope_wait_seconds_sum) summed by kind and resource, from the process itself).
std::vector<StallScore> rank_stalls(const WaitTotals& before, const WaitTotals& after,
                                    double seconds);

}  // namespace demo
