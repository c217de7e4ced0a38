#pragma once
// The Prometheus text exposition format (0.0.4), written with fmt into one buffer.
//
// Written by hand rather than with prometheus::TextSerializer because a benchmark showed we
// must: TextSerializer (std::ostream, one locale-aware insertion per token) costs about 0.8 us
// per line, 50 ms for the /metrics of 1,000 named locks against a 20 ms target
// (bench/README.md, "Scrape"). The output is byte-identical to TextSerializer's for what
// stallscope exports (a test compares them).
#include <string>
#include <vector>

#include <prometheus/metric_family.h>

#include "stallscope/registry.hpp"
#include "stallscope/snapshot.hpp"

namespace stallscope::detail {

std::string write_text(const std::vector<prometheus::MetricFamily>& families);

// OpenMetrics 1.0.0 text (application/openmetrics-text) of the same families, written straight
// from the agent's snapshot (prometheus-cpp's model has no exemplars):
// - a counter's family is named without `_total` in # TYPE and # HELP, its sample with it;
// - # UNIT for families whose name ends in _seconds or _bytes (the unit is the name's suffix);
// - no _created samples: Prometheus before 2.50 (and 2.x without the created-timestamp feature)
//   stores each as a series of its own, one more series per counter and histogram, and
//   stallscope's series have no creation time worth one;
// - histogram buckets carry their exemplars (HistogramSnapshot::exemplars) after `#`, labels cut
//   to OpenMetrics' 128 characters (whole labels dropped from the end: a cut trace id links to
//   nothing; with none left, no exemplar);
// - le values spelled as in the text format ("0.0025", "1", "+Inf"), not "1.0": Prometheus 2.x
//   does not normalize them, so a scraper switching formats keeps the same series;
// - `# EOF` last.
std::string write_openmetrics(const std::vector<FamilySnapshot>& families);

// Registry::collect() with the endpoint's own two families (stallscope_build_info and
// stallscope_collect_duration_seconds) at the end, as the Collectable exports them.
std::vector<FamilySnapshot> collect_families(const Registry& registry);

}  // namespace stallscope::detail
