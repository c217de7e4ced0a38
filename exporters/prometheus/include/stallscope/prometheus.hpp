#pragma once
/// stallscope's metrics as a prometheus-cpp Collectable, and the embedded endpoint.

#include <memory>
#include <string>
#include <vector>

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include "stallscope/registry.hpp"

namespace stallscope {

/// Turns Registry::collect() into prometheus-cpp metric families at scrape time, plus
/// stallscope_build_info and stallscope_collect_duration_seconds. Register it into an Exposer
/// you already run: `exposer.RegisterCollectable(stallscope::make_collectable());`
/// Thread-safe. Collect() takes no lock that user code can hold.
class Collectable final : public prometheus::Collectable {
 public:
  explicit Collectable(const Registry& registry = Registry::global()) : registry_(registry) {}
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const Registry& registry_;
};

/// For the process registry this returns one instance that lives as long as the process, since
/// prometheus::Exposer::RegisterCollectable keeps only a weak_ptr.
std::shared_ptr<Collectable> make_collectable(const Registry& registry = Registry::global());

/// Converts a snapshot to prometheus-cpp's model (histogram buckets made cumulative).
std::vector<prometheus::MetricFamily> to_prometheus(const std::vector<FamilySnapshot>& families);

}  // namespace stallscope
