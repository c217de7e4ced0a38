// to_prometheus(): the snapshot model turned into prometheus-cpp's, without any server.
#include <cmath>
#include <limits>
#include <vector>

#include <catch2/catch.hpp>
#include <prometheus/metric_family.h>
#include <prometheus/metric_type.h>

#include "stallscope/prometheus.hpp"

namespace {

using stallscope::FamilySnapshot;
using stallscope::HistogramSnapshot;
using stallscope::MetricType;
using stallscope::SampleSnapshot;

FamilySnapshot hand_built_histogram() {
  FamilySnapshot f;
  f.name = "test_wait_seconds";
  f.help = "A hand-built histogram.";
  f.type = MetricType::kHistogram;
  SampleSnapshot s;
  s.labels = {{"kind", "lock"}, {"resource", "r"}};
  // Per bucket, not cumulative: 1 in (..0.001], 2 in (0.001..0.01], 0 in (0.01..1], 4 above.
  s.histogram = HistogramSnapshot{{0.001, 0.01, 1.0}, {1, 2, 0, 4}, 7, 12.5};
  f.samples.push_back(s);
  return f;
}

}  // namespace

TEST_CASE("to_prometheus makes per-bucket counts cumulative", "[to_prometheus]") {
  const auto out = stallscope::to_prometheus({hand_built_histogram()});
  REQUIRE(out.size() == 1);
  const prometheus::MetricFamily& f = out[0];
  CHECK(f.name == "test_wait_seconds");
  CHECK(f.help == "A hand-built histogram.");
  CHECK(f.type == prometheus::MetricType::Histogram);
  REQUIRE(f.metric.size() == 1);
  const auto& h = f.metric[0].histogram;
  REQUIRE(h.bucket.size() == 4);
  CHECK(h.bucket[0].upper_bound == 0.001);
  CHECK(h.bucket[1].upper_bound == 0.01);
  CHECK(h.bucket[2].upper_bound == 1.0);
  CHECK(std::isinf(h.bucket[3].upper_bound));
  CHECK(h.bucket[3].upper_bound > 0);
  CHECK(h.bucket[0].cumulative_count == 1);
  CHECK(h.bucket[1].cumulative_count == 3);
  CHECK(h.bucket[2].cumulative_count == 3);
  CHECK(h.bucket[3].cumulative_count == 7);
  CHECK(h.sample_count == 7);
  CHECK(h.sample_sum == 12.5);
}

TEST_CASE("to_prometheus keeps labels in order and converts counters and gauges",
          "[to_prometheus]") {
  FamilySnapshot counter{"test_ops_total", "Ops.", MetricType::kCounter, {}};
  counter.samples.push_back(SampleSnapshot{{{"kind", "lock"}, {"resource", "a"}}, 42, {}});
  counter.samples.push_back(SampleSnapshot{{{"kind", "lock"}, {"resource", "b"}}, 0, {}});
  FamilySnapshot gauge{"test_waiters", "Waiters.", MetricType::kGauge, {}};
  gauge.samples.push_back(SampleSnapshot{{}, 2.5, {}});
  FamilySnapshot empty{"test_empty", "Declared, no samples.", MetricType::kGauge, {}};

  const auto out = stallscope::to_prometheus({counter, gauge, empty});
  REQUIRE(out.size() == 3);

  CHECK(out[0].type == prometheus::MetricType::Counter);
  REQUIRE(out[0].metric.size() == 2);
  const auto& l = out[0].metric[0].label;
  REQUIRE(l.size() == 2);
  CHECK(l[0].name == "kind");
  CHECK(l[0].value == "lock");
  CHECK(l[1].name == "resource");
  CHECK(l[1].value == "a");
  CHECK(out[0].metric[0].counter.value == 42);
  CHECK(out[0].metric[1].label[1].value == "b");
  CHECK(out[0].metric[1].counter.value == 0);

  CHECK(out[1].type == prometheus::MetricType::Gauge);
  REQUIRE(out[1].metric.size() == 1);
  CHECK(out[1].metric[0].label.empty());
  CHECK(out[1].metric[0].gauge.value == 2.5);

  CHECK(out[2].name == "test_empty");
  CHECK(out[2].help == "Declared, no samples.");
  CHECK(out[2].metric.empty());
}

TEST_CASE("to_prometheus gives a never-observed histogram zero in every bucket",
          "[to_prometheus]") {
  FamilySnapshot f{"test_idle_seconds", "Never observed.", MetricType::kHistogram, {}};
  f.samples.push_back(SampleSnapshot{{}, 0, HistogramSnapshot{{0.5}, {0, 0}, 0, 0}});
  const auto out = stallscope::to_prometheus({f});
  REQUIRE(out.size() == 1);
  REQUIRE(out[0].metric.size() == 1);
  const auto& h = out[0].metric[0].histogram;
  REQUIRE(h.bucket.size() == 2);
  CHECK(h.bucket[0].cumulative_count == 0);
  CHECK(h.bucket[1].cumulative_count == 0);
  CHECK(h.bucket[1].upper_bound == std::numeric_limits<double>::infinity());
  CHECK(h.sample_count == 0);
  CHECK(h.sample_sum == 0);
}
