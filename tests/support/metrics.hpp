#pragma once
// Test helpers: read one value out of Registry::collect(), and check a wait histogram.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "stallscope/registry.hpp"
#include "stallscope/snapshot.hpp"

namespace stallscope::testing {

// Installs `config` in the process registry until the end of the scope, then puts back the one
// that was there.
class ScopedConfig {
 public:
  explicit ScopedConfig(const Config& config) : before_(Registry::global().config()) {
    Registry::global().configure(config);
  }
  ~ScopedConfig() { Registry::global().configure(before_); }
  ScopedConfig(const ScopedConfig&) = delete;
  ScopedConfig& operator=(const ScopedConfig&) = delete;

 private:
  Config before_;
};

using LabelMatch = std::vector<std::pair<std::string, std::string>>;

inline const SampleSnapshot* find_sample(const std::vector<FamilySnapshot>& families,
                                         std::string_view family, const LabelMatch& match) {
  for (const FamilySnapshot& f : families) {
    if (f.name != family) continue;
    for (const SampleSnapshot& s : f.samples) {
      bool all = true;
      for (const auto& [k, v] : match) {
        bool found = false;
        for (const auto& [lk, lv] : s.labels) found = found || (lk == k && lv == v);
        all = all && found;
      }
      if (all) return &s;
    }
  }
  return nullptr;
}

// Value of a counter or gauge; nullopt when the series does not exist.
inline std::optional<double> value(std::string_view family, const LabelMatch& match) {
  const auto families = Registry::global().collect();
  const SampleSnapshot* s = find_sample(families, family, match);
  if (s == nullptr) return std::nullopt;
  return s->value;
}

inline std::optional<HistogramSnapshot> histogram(std::string_view family,
                                                  const LabelMatch& match) {
  const auto families = Registry::global().collect();
  const SampleSnapshot* s = find_sample(families, family, match);
  if (s == nullptr) return std::nullopt;
  return s->histogram;
}

inline LabelMatch lock_labels(std::string_view resource, std::string_view op = "exclusive") {
  return {{"resource", std::string(resource)}, {"op", std::string(op)}};
}

// The exact-accounting checks of a primitive whose acquisitions are all waits (zero ones in the
// first bucket) and holds: both histograms exist, `n` acquisitions made one wait observation and
// one hold each, the wait buckets add up to the count, and the `contended` count lies in [0, n]
// with every uncontended wait in bucket 0.
inline void check_wait_accounting(const std::optional<HistogramSnapshot>& wait,
                                  const std::optional<HistogramSnapshot>& hold, double n,
                                  double contended) {
  REQUIRE(wait.has_value());
  REQUIRE(hold.has_value());
  CHECK(static_cast<double>(wait->count) == n);
  std::uint64_t buckets = 0;
  for (auto c : wait->counts) buckets += c;
  CHECK(buckets == wait->count);
  CHECK(contended >= 0);
  CHECK(contended <= n);
  CHECK(static_cast<double>(wait->counts[0]) >= n - contended);
  CHECK(static_cast<double>(hold->count) == n);
}

}  // namespace stallscope::testing
