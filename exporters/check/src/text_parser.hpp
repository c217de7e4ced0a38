#pragma once
// A reader of the Prometheus text exposition format (0.0.4): samples only (comments, HELP and
// TYPE lines skipped), which is all the checks need. The repository has a writer
// (exporters/prometheus/src/text_format.hpp) but no reader, and no Debian package offers one
// for C++.
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace stallscope::check::detail {

using Labels = std::vector<std::pair<std::string, std::string>>;  // sorted by name

struct Series {
  std::string name;
  Labels labels;
  double value = 0;
};

/// Every sample in `text`. Throws std::invalid_argument naming `origin`, the line number and
/// what is wrong with it.
std::vector<Series> parse_text(std::string_view text, std::string_view origin);

/// The value of label `key`, "" when absent.
std::string_view label(const Series& s, std::string_view key) noexcept;

}  // namespace stallscope::check::detail
