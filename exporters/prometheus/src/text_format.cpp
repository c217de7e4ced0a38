#include "text_format.hpp"

#include <atomic>
#include <cmath>
#include <cstdint>
#include <iterator>
#include <limits>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <prometheus/client_metric.h>
#include <prometheus/metric_type.h>

namespace stallscope::detail {

namespace {

// The text goes straight into the std::string returned (fmt writes into a std::string's back
// inserter in place): a 32 MB scrape is not held twice, as a buffer and then its copy.
using Buffer = std::string;

void append(Buffer& out, std::string_view s) { out.append(s); }

// Label values escape backslash, double quote and newline (as \n).
void append_escaped(Buffer& out, std::string_view s) {
  for (char c : s) {
    if (c == '\n') {
      append(out, "\\n");
      continue;
    }
    if (c == '\\' || c == '"') out.push_back('\\');
    out.push_back(c);
  }
}

// 16 significant digits, like TextSerializer's %.16g; NaN and infinities spelled its way.
void append_number(Buffer& out, double v) {
  if (std::isnan(v)) {
    append(out, "Nan");
  } else if (std::isinf(v)) {
    append(out, v < 0 ? "-Inf" : "+Inf");
  } else {
    fmt::format_to(std::back_inserter(out), "{:.16g}", v);
  }
}

// name + suffix, then {labels[, extra="value"]}, then a space. (OpenMetrics' append_labels below
// writes the same from the agent's labels; sharing one template with it cost the text format 1%
// more instructions, bench/icount.cpp's scrape path.)
void append_head(Buffer& out, const prometheus::MetricFamily& family,
                 const prometheus::ClientMetric& metric, std::string_view suffix,
                 std::string_view extra_name = {}, std::string_view extra_value = {}) {
  append(out, family.name);
  append(out, suffix);
  if (!metric.label.empty() || !extra_name.empty()) {
    out.push_back('{');
    const char* sep = "";
    for (const auto& l : metric.label) {
      append(out, sep);
      append(out, l.name);
      append(out, "=\"");
      append_escaped(out, l.value);
      out.push_back('"');
      sep = ",";
    }
    if (!extra_name.empty()) {
      append(out, sep);
      append(out, extra_name);
      append(out, "=\"");
      append(out, extra_value);
      out.push_back('"');
    }
    out.push_back('}');
  }
  out.push_back(' ');
}

void append_tail(Buffer& out, const prometheus::ClientMetric& metric) {
  if (metric.timestamp_ms != 0) fmt::format_to(std::back_inserter(out), " {}", metric.timestamp_ms);
  out.push_back('\n');
}

// The one line of a counter, gauge or untyped series.
void append_value(Buffer& out, const prometheus::MetricFamily& f, const prometheus::ClientMetric& m,
                  double v) {
  append_head(out, f, m, "");
  append_number(out, v);
  append_tail(out, m);
}

std::string bound_text(double v) {
  Buffer b;
  append_number(b, v);
  return b;
}

// The le="..." texts, formatted once: every series of a family shares its bounds.
class BoundTexts {
 public:
  std::string_view get(std::size_t i, double bound) {
    if (i >= cache_.size()) cache_.resize(i + 1);
    auto& [b, text] = cache_[i];
    if (text.empty() || b != bound) {
      b = bound;
      text = bound_text(bound);
    }
    return text;
  }

 private:
  std::vector<std::pair<double, std::string>> cache_;
};

// The _count and _sum lines that histograms and summaries share.
void append_count_sum(Buffer& out, const prometheus::MetricFamily& f,
                      const prometheus::ClientMetric& m, std::uint64_t count, double sum) {
  append_head(out, f, m, "_count");
  fmt::format_to(std::back_inserter(out), "{}", count);
  append_tail(out, m);
  append_head(out, f, m, "_sum");
  append_number(out, sum);
  append_tail(out, m);
}

void append_histogram(Buffer& out, const prometheus::MetricFamily& f,
                      const prometheus::ClientMetric& m, BoundTexts& bounds) {
  append_count_sum(out, f, m, m.histogram.sample_count, m.histogram.sample_sum);
  double last = -std::numeric_limits<double>::infinity();
  for (std::size_t i = 0; i < m.histogram.bucket.size(); ++i) {
    const auto& b = m.histogram.bucket[i];
    append_head(out, f, m, "_bucket", "le", bounds.get(i, b.upper_bound));
    fmt::format_to(std::back_inserter(out), "{}", b.cumulative_count);
    append_tail(out, m);
    last = b.upper_bound;
  }
  if (last != std::numeric_limits<double>::infinity()) {
    append_head(out, f, m, "_bucket", "le", "+Inf");
    fmt::format_to(std::back_inserter(out), "{}", m.histogram.sample_count);
    append_tail(out, m);
  }
}

void append_summary(Buffer& out, const prometheus::MetricFamily& f,
                    const prometheus::ClientMetric& m) {
  append_count_sum(out, f, m, m.summary.sample_count, m.summary.sample_sum);
  for (const auto& q : m.summary.quantile) {
    append_head(out, f, m, "", "quantile", bound_text(q.quantile));
    append_number(out, q.value);
    append_tail(out, m);
  }
}

std::string_view type_name(prometheus::MetricType t) {
  switch (t) {
    case prometheus::MetricType::Counter:
      return "counter";
    case prometheus::MetricType::Gauge:
      return "gauge";
    case prometheus::MetricType::Summary:
      return "summary";
    case prometheus::MetricType::Histogram:
      return "histogram";
    case prometheus::MetricType::Untyped:
      return "untyped";
  }
  return "untyped";
}

}  // namespace

std::string write_text(const std::vector<prometheus::MetricFamily>& families) {
  // Sized from the previous scrape (a little more, for growth): growing the buffer step by step
  // was about 30% of writing 1,000 locks' text.
  static std::atomic<std::size_t> last_size{0};
  Buffer out;
  const std::size_t last = last_size.load(std::memory_order_relaxed);
  out.reserve(last + last / 8);
  BoundTexts bounds;
  for (const auto& f : families) {
    if (!f.help.empty()) fmt::format_to(std::back_inserter(out), "# HELP {} {}\n", f.name, f.help);
    fmt::format_to(std::back_inserter(out), "# TYPE {} {}\n", f.name, type_name(f.type));
    for (const auto& m : f.metric) {
      switch (f.type) {
        case prometheus::MetricType::Counter:
          append_value(out, f, m, m.counter.value);
          break;
        case prometheus::MetricType::Gauge:
          append_value(out, f, m, m.gauge.value);
          break;
        case prometheus::MetricType::Untyped:
          append_value(out, f, m, m.untyped.value);
          break;
        case prometheus::MetricType::Summary:
          append_summary(out, f, m);
          break;
        case prometheus::MetricType::Histogram:
          append_histogram(out, f, m, bounds);
          break;
      }
    }
  }
  last_size.store(out.size(), std::memory_order_relaxed);
  return out;
}

namespace {

// --- OpenMetrics 1.0.0 ---

// OpenMetrics spells NaN "NaN" (the text format's "Nan" is TextSerializer's).
void append_om_number(Buffer& out, double v) {
  if (std::isnan(v)) {
    append(out, "NaN");
  } else {
    append_number(out, v);
  }
}

constexpr std::size_t kMaxExemplarLabelChars = 128;

// UTF-8 code points in `s` (bytes that do not continue a sequence).
std::size_t code_points(std::string_view s) noexcept {
  std::size_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80 ? 1 : 0;
  return n;
}

void append_labels(Buffer& out, const Labels& labels, std::string_view extra_name = {},
                   std::string_view extra_value = {}) {
  if (labels.empty() && extra_name.empty()) return;
  out.push_back('{');
  const char* sep = "";
  for (const auto& [name, value] : labels) {
    append(out, sep);
    append(out, name);
    append(out, "=\"");
    append_escaped(out, value);
    out.push_back('"');
    sep = ",";
  }
  if (!extra_name.empty()) {
    append(out, sep);
    append(out, extra_name);
    append(out, "=\"");
    append(out, extra_value);
    out.push_back('"');
  }
  out.push_back('}');
}

// " # {labels} value timestamp" after a bucket's count: the labels in order, each kept only if
// the names and values so far stay within 128 code points; nothing when no label fits.
void append_exemplar(Buffer& out, const ExemplarSnapshot& e) {
  Labels kept;
  std::size_t chars = 0;
  for (const auto& label : e.labels) {
    const std::size_t n = code_points(label.first) + code_points(label.second);
    if (chars + n > kMaxExemplarLabelChars) continue;
    chars += n;
    kept.push_back(label);
  }
  if (kept.empty()) return;
  append(out, " # ");
  append_labels(out, kept);
  out.push_back(' ');
  append_om_number(out, e.value);
  fmt::format_to(std::back_inserter(out), " {:.3f}", e.timestamp);
}

void append_om_sample(Buffer& out, std::string_view name, std::string_view suffix,
                      const Labels& labels, double value) {
  append(out, name);
  append(out, suffix);
  append_labels(out, labels);
  out.push_back(' ');
  append_om_number(out, value);
  out.push_back('\n');
}

void append_om_histogram(Buffer& out, std::string_view name, const SampleSnapshot& s,
                         BoundTexts& bounds) {
  const HistogramSnapshot& h = s.histogram;
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < h.counts.size(); ++i) {
    cumulative += h.counts[i];
    append(out, name);
    append(out, "_bucket");
    append_labels(out, s.labels, "le",
                  i < h.bounds.size() ? bounds.get(i, h.bounds[i]) : std::string_view("+Inf"));
    fmt::format_to(std::back_inserter(out), " {}", cumulative);
    if (i < h.exemplars.size()) append_exemplar(out, h.exemplars[i]);
    out.push_back('\n');
  }
  if (h.counts.empty() || h.counts.size() <= h.bounds.size()) {  // no +Inf bucket given
    append(out, name);
    append(out, "_bucket");
    append_labels(out, s.labels, "le", "+Inf");
    fmt::format_to(std::back_inserter(out), " {}\n", cumulative);
  }
  append(out, name);
  append(out, "_count");
  append_labels(out, s.labels);
  fmt::format_to(std::back_inserter(out), " {}\n", cumulative);
  append_om_sample(out, name, "_sum", s.labels, h.sum);
}

std::string_view om_type_name(MetricType t) {
  switch (t) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "unknown";
}

}  // namespace

std::string write_openmetrics(const std::vector<FamilySnapshot>& families) {
  static std::atomic<std::size_t> last_size{0};  // as in write_text
  Buffer out;
  const std::size_t last = last_size.load(std::memory_order_relaxed);
  out.reserve(last + last / 8);
  BoundTexts bounds;
  for (const FamilySnapshot& f : families) {
    std::string_view name = f.name;
    if (f.type == MetricType::kCounter && name.ends_with("_total")) {
      name.remove_suffix(6);
    }
    fmt::format_to(std::back_inserter(out), "# TYPE {} {}\n", name, om_type_name(f.type));
    if (name.ends_with("_seconds")) {
      fmt::format_to(std::back_inserter(out), "# UNIT {} seconds\n", name);
    } else if (name.ends_with("_bytes")) {
      fmt::format_to(std::back_inserter(out), "# UNIT {} bytes\n", name);
    }
    if (!f.help.empty()) {
      fmt::format_to(std::back_inserter(out), "# HELP {} ", name);
      append_escaped(out, f.help);
      out.push_back('\n');
    }
    for (const SampleSnapshot& s : f.samples) {
      switch (f.type) {
        case MetricType::kCounter:
          append_om_sample(out, name, "_total", s.labels, s.value);
          break;
        case MetricType::kGauge:
          append_om_sample(out, name, "", s.labels, s.value);
          break;
        case MetricType::kHistogram:
          append_om_histogram(out, name, s, bounds);
          break;
      }
    }
  }
  append(out, "# EOF\n");
  last_size.store(out.size(), std::memory_order_relaxed);
  return out;
}

}  // namespace stallscope::detail
