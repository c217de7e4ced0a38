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

namespace stallscope::detail {

std::string write_text(const std::vector<prometheus::MetricFamily>& families);

}  // namespace stallscope::detail
