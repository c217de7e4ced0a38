#pragma once
// Helpers for the release-check tests: a window over the process registry, and the result of
// one check by id.
#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <string>
#include <string_view>

#include <catch2/catch.hpp>

#include "stallscope/check.hpp"

namespace stallscope::testing {

// The tests `using namespace stallscope::testing` and compare verdicts by name.
using check::Verdict;

// /metrics at construction; report() reads /metrics and /stallz.json again and evaluates the
// checks over the time in between, as stallscope-check does over HTTP.
class CheckWindow {
 public:
  CheckWindow() : start_text_(check::metrics_text()), start_(std::chrono::steady_clock::now()) {}

  check::Report report(const check::Thresholds& t = {}) const {
    check::Inputs in;
    in.metrics_start = start_text_;
    in.metrics_end = check::metrics_text();
    in.window_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    in.stallz_json = check::stallz_json_text();
    return check::evaluate(in, t);
  }

 private:
  std::string start_text_;
  std::chrono::steady_clock::time_point start_;
};

inline const check::CheckResult& result(const check::Report& r, std::string_view id) {
  const auto it = std::find_if(r.checks.begin(), r.checks.end(),
                               [&](const check::CheckResult& c) { return c.id == id; });
  if (it == r.checks.end()) throw std::out_of_range("no check " + std::string(id));
  return *it;
}

// The check's evidence, one line each, for failure messages and substring asserts.
inline std::string evidence(const check::Report& r, std::string_view id) {
  std::string out;
  for (const std::string& e : result(r, id).evidence) out += e + "\n";
  return out;
}

// The report over `w` so far (with thresholds `t`), whose check `id` must have verdict `v`; the
// whole report is printed when it has not.
inline check::Report expect_verdict(const CheckWindow& w, std::string_view id, Verdict v,
                                    const check::Thresholds& t = {}) {
  check::Report report = w.report(t);
  INFO(check::to_text(report));
  CHECK(result(report, id).verdict == v);
  return report;
}

}  // namespace stallscope::testing
