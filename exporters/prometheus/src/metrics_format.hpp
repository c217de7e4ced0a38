#pragma once
// Which exposition format a GET /metrics gets, from its Accept header (RFC 9110 content
// negotiation): the Prometheus text format 0.0.4 (the default) or OpenMetrics 1.0.0, which
// Prometheus asks for first (2.42 sends `application/openmetrics-text;version=1.0.0,
// application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1`).
#include <string_view>

namespace stallscope::detail {

enum class MetricsFormat { kText, kOpenMetrics };

inline constexpr std::string_view kTextContentType = "text/plain; version=0.0.4; charset=utf-8";
inline constexpr std::string_view kOpenMetricsContentType =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

// Each format's quality is that of the most specific media range that matches it (type/subtype
// with a version parameter, then type/subtype, type/*, */*); a range whose version parameter
// names another version does not match. OpenMetrics is served only when its quality is above 0
// and above the text format's; everything else (no header, ties, q=0 for both, ranges or
// q-values that do not parse, which are skipped) gets the text format, as Prometheus' own
// client libraries do, never a 406.
MetricsFormat negotiate_metrics_format(std::string_view accept) noexcept;

}  // namespace stallscope::detail
