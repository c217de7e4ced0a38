// /metrics is written by stallscope's own text writer (faster than prometheus-cpp's
// TextSerializer): it must produce the very same bytes.
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <prometheus/text_serializer.h>

#include "stallscope/mutex.hpp"
#include "stallscope/prometheus.hpp"
#include "text_format.hpp"

TEST_CASE("the text writer produces TextSerializer's bytes for every metric type",
          "[endpoint][text]") {
  std::vector<std::unique_ptr<stallscope::Mutex>> locks;
  for (int i = 0; i < 50; ++i) {
    locks.push_back(std::make_unique<stallscope::Mutex>("text-" + std::to_string(i),
                                                        stallscope::LockOptions{i % 2 == 0}));
    std::lock_guard g(*locks.back());
  }
  auto families = stallscope::Collectable{}.Collect();

  // What stallscope never exports but the format allows: summaries, untyped, odd values and
  // label values that need escaping, timestamps.
  prometheus::MetricFamily odd;
  odd.name = "text_odd";
  odd.help = "help text";
  odd.type = prometheus::MetricType::Summary;
  prometheus::ClientMetric m;
  m.label = {{"a", "quote\" backslash\\ newline\n end"}};
  m.summary.sample_count = 3;
  m.summary.sample_sum = 0.1;
  m.summary.quantile = {{0.5, 1e-7}, {0.99, std::nan("")}};
  odd.metric.push_back(m);
  families.push_back(odd);
  prometheus::MetricFamily untyped;
  untyped.name = "text_untyped";
  untyped.type = prometheus::MetricType::Untyped;
  prometheus::ClientMetric u;
  u.untyped.value = -std::numeric_limits<double>::infinity();
  u.timestamp_ms = 1700000000000;
  untyped.metric.push_back(u);
  prometheus::ClientMetric big;
  big.untyped.value = 123456789.123456789;
  untyped.metric.push_back(big);
  families.push_back(untyped);
  prometheus::MetricFamily open_hist;  // buckets without +Inf: the writer adds it
  open_hist.name = "text_hist";
  open_hist.type = prometheus::MetricType::Histogram;
  prometheus::ClientMetric h;
  h.histogram.sample_count = 4;
  h.histogram.sample_sum = 2.5;
  h.histogram.bucket = {{1, 0.25}, {3, 1.0}};
  open_hist.metric.push_back(h);
  families.push_back(open_hist);

  const std::string expected = prometheus::TextSerializer().Serialize(families);
  const std::string got = stallscope::detail::write_text(families);
  CHECK(got.size() == expected.size());
  CHECK(got == expected);
}
