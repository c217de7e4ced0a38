#include <chrono>
#include <limits>

#include <prometheus/client_metric.h>
#include <prometheus/metric_type.h>

#include "stallscope/clock.hpp"
#include "stallscope/config.hpp"
#include "stallscope/prometheus.hpp"
#include "text_format.hpp"

namespace stallscope {

namespace {

prometheus::MetricType convert(MetricType t) {
  switch (t) {
    case MetricType::kCounter:
      return prometheus::MetricType::Counter;
    case MetricType::kGauge:
      return prometheus::MetricType::Gauge;
    case MetricType::kHistogram:
      return prometheus::MetricType::Histogram;
  }
  return prometheus::MetricType::Untyped;
}

}  // namespace

std::vector<prometheus::MetricFamily> to_prometheus(const std::vector<FamilySnapshot>& families) {
  std::vector<prometheus::MetricFamily> out;
  out.reserve(families.size());
  for (const FamilySnapshot& f : families) {
    prometheus::MetricFamily pf;
    pf.name = f.name;
    pf.help = f.help;
    pf.type = convert(f.type);
    pf.metric.reserve(f.samples.size());
    for (const SampleSnapshot& s : f.samples) {
      prometheus::ClientMetric m;
      m.label.reserve(s.labels.size());
      for (const auto& [k, v] : s.labels) m.label.push_back({k, v});
      switch (f.type) {
        case MetricType::kCounter:
          m.counter.value = s.value;
          break;
        case MetricType::kGauge:
          m.gauge.value = s.value;
          break;
        case MetricType::kHistogram: {
          const HistogramSnapshot& h = s.histogram;
          std::uint64_t cumulative = 0;
          m.histogram.bucket.reserve(h.counts.size());
          for (std::size_t i = 0; i < h.counts.size(); ++i) {
            cumulative += h.counts[i];
            prometheus::ClientMetric::Bucket b;
            b.cumulative_count = cumulative;
            b.upper_bound =
                i < h.bounds.size() ? h.bounds[i] : std::numeric_limits<double>::infinity();
            m.histogram.bucket.push_back(b);
          }
          m.histogram.sample_count = cumulative;
          m.histogram.sample_sum = h.sum;
          break;
        }
      }
      pf.metric.push_back(std::move(m));
    }
    out.push_back(std::move(pf));
  }
  return out;
}

namespace detail {

std::vector<FamilySnapshot> collect_families(const Registry& registry) {
  const std::int64_t t0 = now_ns();
  std::vector<FamilySnapshot> out = registry.collect();

  FamilySnapshot info;
  info.name = "stallscope_build_info";
  info.help = "stallscope build: version and whether recording was compiled in. Always 1.";
  info.type = MetricType::kGauge;
  SampleSnapshot is;
  is.labels = {{"enabled", STALLSCOPE_ENABLED ? "true" : "false"},
               {"version", STALLSCOPE_VERSION_STRING}};
  is.value = 1;
  info.samples.push_back(std::move(is));
  out.push_back(std::move(info));

  FamilySnapshot took;
  took.name = "stallscope_collect_duration_seconds";
  took.help = "Time this scrape spent collecting stallscope's metrics (before serialization).";
  took.type = MetricType::kGauge;
  SampleSnapshot ts;
  ts.value = static_cast<double>(now_ns() - t0) * 1e-9;
  took.samples.push_back(std::move(ts));
  out.push_back(std::move(took));
  return out;
}

}  // namespace detail

std::vector<prometheus::MetricFamily> Collectable::Collect() const {
  const std::int64_t t0 = now_ns();
  std::vector<prometheus::MetricFamily> out = to_prometheus(detail::collect_families(registry_));
  // The collection as this model's users know it: the conversion included.
  out.back().metric.front().gauge.value = static_cast<double>(now_ns() - t0) * 1e-9;
  return out;
}

std::shared_ptr<Collectable> make_collectable(const Registry& registry) {
  if (&registry == &Registry::global()) {
    static const auto* const global =
        new std::shared_ptr<Collectable>(std::make_shared<Collectable>(registry));
    return *global;
  }
  return std::make_shared<Collectable>(registry);
}

}  // namespace stallscope
