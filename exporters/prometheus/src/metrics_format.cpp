#include "metrics_format.hpp"

#include <cctype>
#include <optional>

namespace stallscope::detail {

namespace {

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// RFC 9110 qvalue: 0[.ddd] or 1[.000], in thousandths; nullopt when it does not parse.
std::optional<int> parse_q(std::string_view v) noexcept {
  if (v.empty() || (v[0] != '0' && v[0] != '1')) return std::nullopt;
  int q = (v[0] - '0') * 1000;
  if (v.size() == 1) return q;
  if (v[1] != '.' || v.size() > 5) return std::nullopt;
  int scale = 100;
  for (char c : v.substr(2)) {
    if (c < '0' || c > '9') return std::nullopt;
    q += (c - '0') * scale;
    scale /= 10;
  }
  return q <= 1000 ? std::optional<int>(q) : std::nullopt;
}

// Splits `s` at `sep` outside double quotes; returns the part before and leaves the rest in s.
std::string_view next_part(std::string_view& s, char sep) noexcept {
  bool quoted = false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '"') quoted = !quoted;
    if (s[i] == '\\' && quoted) ++i;
    if (i < s.size() && s[i] == sep && !quoted) {
      const std::string_view part = s.substr(0, i);
      s.remove_prefix(i + 1);
      return part;
    }
  }
  const std::string_view part = s;
  s = {};
  return part;
}

struct Format {
  std::string_view type;
  std::string_view subtype;
  std::string_view version;
};
constexpr Format kText{"text", "plain", "0.0.4"};
constexpr Format kOpenMetrics{"application", "openmetrics-text", "1.0.0"};

// What one media range says of a format: how specific the match is (0: no match) and its q.
struct Match {
  int specificity = 0;
  int q = 0;
};

// The best match for `f` over the whole header.
Match best_match(std::string_view accept, const Format& f) noexcept {
  Match best;
  while (!accept.empty()) {
    std::string_view range = next_part(accept, ',');
    const std::string_view media = trim(next_part(range, ';'));
    const auto slash = media.find('/');
    if (slash == std::string_view::npos) continue;  // garbage: skipped
    const std::string_view type = trim(media.substr(0, slash));
    const std::string_view subtype = trim(media.substr(slash + 1));
    if (type.empty() || subtype.empty()) continue;
    std::string_view version;
    int q = 1000;
    bool ok = true;
    while (!range.empty()) {
      const std::string_view param = trim(next_part(range, ';'));
      if (param.empty()) continue;
      const auto eq = param.find('=');
      if (eq == std::string_view::npos) {
        ok = false;
        break;
      }
      const std::string_view name = trim(param.substr(0, eq));
      std::string_view value = trim(param.substr(eq + 1));
      if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
        value = value.substr(1, value.size() - 2);
      }
      if (iequals(name, "q")) {
        const auto parsed = parse_q(value);
        if (!parsed) {
          ok = false;
          break;
        }
        q = *parsed;
        break;  // what follows q are extension parameters, not the media type's
      }
      if (iequals(name, "version")) version = value;
    }
    if (!ok) continue;
    int specificity = 0;
    if (type == "*") {
      specificity = subtype == "*" ? 1 : 0;
    } else if (iequals(type, f.type)) {
      if (subtype == "*") {
        specificity = 2;
      } else if (iequals(subtype, f.subtype)) {
        if (version.empty()) {
          specificity = 3;
        } else if (version == f.version) {
          specificity = 4;
        }
      }
    }
    if (specificity > best.specificity ||
        (specificity == best.specificity && specificity > 0 && q > best.q)) {
      best = {specificity, q};
    }
  }
  return best;
}

}  // namespace

MetricsFormat negotiate_metrics_format(std::string_view accept) noexcept {
  const Match om = best_match(accept, kOpenMetrics);
  if (om.specificity == 0 || om.q == 0) return MetricsFormat::kText;
  const Match text = best_match(accept, kText);
  return om.q > text.q ? MetricsFormat::kOpenMetrics : MetricsFormat::kText;
}

}  // namespace stallscope::detail
