#pragma once
/// A point-in-time copy of every metric, in the Prometheus data model but with no Prometheus
/// types: what exporters turn into their own format. Produced by Registry::collect().

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace stallscope {

enum class MetricType { kCounter, kGauge, kHistogram };

using Labels = std::vector<std::pair<std::string, std::string>>;

/// One observation kept as an example of its bucket (OpenMetrics exemplars): the newest wait
/// recorded in the bucket, with the task that waited and the application's trace id.
struct ExemplarSnapshot {
  Labels labels;         // task="...", trace_id="..." (each only when known)
  double value = 0;      // seconds
  double timestamp = 0;  // Unix time in seconds
};

struct HistogramSnapshot {
  std::vector<double> bounds;         // upper bounds in seconds, +Inf implied
  std::vector<std::uint64_t> counts;  // per bucket, not cumulative; bounds.size() + 1 entries
  std::uint64_t count = 0;            // == sum of counts
  double sum = 0;                     // seconds
  /// Empty, or one per bucket (counts.size()); an entry with no labels: none for that bucket.
  std::vector<ExemplarSnapshot> exemplars = {};
};

struct SampleSnapshot {
  Labels labels;
  double value = 0;             // counters and gauges
  HistogramSnapshot histogram;  // histograms
};

struct FamilySnapshot {
  std::string name;
  std::string help;
  MetricType type = MetricType::kGauge;
  std::vector<SampleSnapshot> samples;
};

}  // namespace stallscope
