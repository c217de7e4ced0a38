// The release check on written inputs: the retry check (its metrics come from the retry budget,
// which this test does not need), thresholds files, malformed inputs, and the JUnit output.
#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <string>

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include "check/support.hpp"

using Catch::Contains;
using namespace stallscope::testing;

namespace {

constexpr const char* kStallz =
    R"({"version":"0.1.0","resources":[],"causes":[],"waiting":[],"holding":[],)"
    R"("lingering_tasks":[],"detector_events":[]})";

// /metrics text of one retry budget's counters.
std::string retry_metrics(const std::string& budget, double requests, double retries,
                          double denied = 0, double abandoned = 0, double backoff = 0) {
  std::string out;
  const auto counter = [&](const char* name, double v) {
    out += fmt::format("# TYPE {0} counter\n{0}{{kind=\"retry\",resource=\"{1}\"}} {2}\n", name,
                       budget, v);
  };
  counter("stallscope_retry_requests_total", requests);
  counter("stallscope_retry_attempted_total", retries);
  counter("stallscope_retry_denied_total", denied);
  counter("stallscope_retry_abandoned_total", abandoned);
  counter("stallscope_retry_backoff_seconds_total", backoff);
  return out;
}

stallscope::check::Report evaluate(const std::string& start, const std::string& end,
                                   const stallscope::check::Thresholds& t = {}) {
  return stallscope::check::evaluate({kStallz, start, end, 10}, t);
}

}  // namespace

TEST_CASE("the retry check fails above the amplification threshold, over the window only",
          "[check][retry]") {
  // Over the window: 1,000 requests and 500 retries: 1.5 attempts per request.
  const auto storm =
      evaluate(retry_metrics("fetch", 5000, 100), retry_metrics("fetch", 6000, 600, 3, 2, 1.25));
  INFO(stallscope::check::to_text(storm));
  CHECK(result(storm, "retry-amplification").verdict == Verdict::kFail);
  CHECK_THAT(evidence(storm, "retry-amplification"),
             Contains("retry budget `fetch`: amplification 1.500 (1000 requests + 500 retries") &&
                 Contains("3 retries denied") && Contains("2 abandoned") &&
                 Contains("1.25 s of backoff"));
  CHECK(stallscope::check::exit_code(storm) == 1);

  // The same totals since start would be 6,000 and 600: 1.1, under the default 1.2.
  const auto totals = evaluate("", retry_metrics("fetch", 6000, 600));
  CHECK(result(totals, "retry-amplification").verdict == Verdict::kPass);

  // A counter reset (the process restarted) counts from zero.
  const auto reset = evaluate(retry_metrics("fetch", 5000, 100), retry_metrics("fetch", 100, 90));
  CHECK_THAT(evidence(reset, "retry-amplification"), Contains("amplification 1.900"));

  stallscope::check::Thresholds lax;
  lax.retry_amplification = 2;
  CHECK(result(evaluate(retry_metrics("fetch", 5000, 100), retry_metrics("fetch", 6000, 600), lax),
               "retry-amplification")
            .verdict == Verdict::kPass);
}

TEST_CASE("the retry check fails an unlimited budget that retried, whatever its amplification",
          "[check][retry]") {
  const std::string gauge =
      "# TYPE stallscope_retry_unlimited gauge\n"
      "stallscope_retry_unlimited{kind=\"retry\",resource=\"fetch\"} 1\n";
  // 1,000 requests and 100 retries: 1.1 attempts per request, under the threshold.
  const auto unbounded = evaluate(retry_metrics("fetch", 5000, 500) + gauge,
                                  retry_metrics("fetch", 6000, 600) + gauge);
  CHECK(result(unbounded, "retry-amplification").verdict == Verdict::kFail);
  CHECK_THAT(evidence(unbounded, "retry-amplification"),
             Contains("retry budget `fetch` is unlimited: its 100 retries"));
  // No retries in the window: nothing to fail yet.
  const auto idle = evaluate(retry_metrics("fetch", 6000, 600) + gauge,
                             retry_metrics("fetch", 7000, 600) + gauge);
  CHECK(result(idle, "retry-amplification").verdict == Verdict::kPass);
}

TEST_CASE("the retry check passes with no retry budget, saying so", "[check][retry]") {
  const auto r = evaluate("", "");
  CHECK(result(r, "retry-amplification").verdict == Verdict::kPass);
  CHECK_THAT(evidence(r, "retry-amplification"), Contains("no retry budget is exported"));
}

TEST_CASE("the tiny-spawn warning reads the median task lifetime", "[check][warnings]") {
  // 300 `lookup` tasks in the window, 200 of them done within 5 us: the median is at most 5 us.
  const std::string end =
      "stallscope_task_lifetime_seconds_bucket{kind=\"task\",resource=\"lookup\",le=\"5e-06\"} "
      "200\n"
      "stallscope_task_lifetime_seconds_bucket{kind=\"task\",resource=\"lookup\",le=\"1e-05\"} "
      "250\n"
      "stallscope_task_lifetime_seconds_bucket{kind=\"task\",resource=\"lookup\",le=\"+Inf\"} 300\n"
      "stallscope_task_lifetime_seconds_sum{kind=\"task\",resource=\"lookup\"} 0.01\n"
      "stallscope_task_lifetime_seconds_count{kind=\"task\",resource=\"lookup\"} 300\n";
  const auto r = evaluate("", end);
  CHECK(result(r, "tiny-spawns").verdict == Verdict::kWarn);
  CHECK_THAT(evidence(r, "tiny-spawns"),
             Contains("task `lookup`: median lifetime at most 5 us over 300 tasks"));
  stallscope::check::Thresholds t;
  t.tiny_task_min = 301;  // too few tasks to judge
  CHECK(result(evaluate("", end, t), "tiny-spawns").verdict == Verdict::kPass);
}

TEST_CASE("thresholds files: defaults, overrides, and errors naming the bad key or value",
          "[check][config]") {
  const stallscope::check::Thresholds defaults;
  const auto t = stallscope::check::parse_thresholds(
      "retry_amplification: 1.5\nlong_slice_seconds: 0.005\n", "t.yaml");
  CHECK(t.retry_amplification == 1.5);
  CHECK(t.long_slice_seconds == 0.005);
  CHECK(t.channel_full_share == defaults.channel_full_share);
  CHECK(stallscope::check::parse_thresholds("", "empty.yaml").async_lock_waiters ==
        defaults.async_lock_waiters);

  CHECK_THROWS_WITH(stallscope::check::parse_thresholds("retry_amplificaton: 2\n", "t.yaml"),
                    Contains("t.yaml") && Contains("unknown key \"retry_amplificaton\"") &&
                        Contains("retry_amplification"));
  CHECK_THROWS_WITH(stallscope::check::parse_thresholds("long_slice_share: lots\n", "t.yaml"),
                    Contains("long_slice_share: \"lots\" is not a finite number"));
  CHECK_THROWS_WITH(stallscope::check::parse_thresholds("long_slice_share: -1\n", "t.yaml"),
                    Contains("\"-1\""));
  CHECK_THROWS_WITH(stallscope::check::parse_thresholds("- 1\n", "t.yaml"),
                    Contains("must be a mapping"));
  CHECK_THROWS_WITH(stallscope::check::load_thresholds("/nonexistent/stallscope.yaml"),
                    Contains("/nonexistent/stallscope.yaml: cannot be read"));
}

TEST_CASE("malformed inputs are errors naming the input and the line", "[check][inputs]") {
  CHECK_THROWS_WITH(evaluate("", "stallscope_x{kind=\"a\" 1\n"),
                    Contains("metrics at the window end line 1"));
  CHECK_THROWS_WITH(evaluate("ok 1\nstallscope_x one\n", ""),
                    Contains("metrics at the window start line 2") && Contains("\"one\""));
  CHECK_THROWS_WITH(stallscope::check::evaluate({"{not json", "", "", 10}),
                    Contains("stallz.json is not valid JSON"));
  CHECK_THROWS_WITH(stallscope::check::evaluate({kStallz, "", "", 0}),
                    Contains("positive number of seconds, not 0"));
}

TEST_CASE("JUnit output has one test case per check, failures with their evidence",
          "[check][junit]") {
  const auto r = evaluate("", retry_metrics("fetch<&>", 10, 10));
  const std::string xml = stallscope::check::to_junit(r);
  INFO(xml);
  std::size_t cases = 0;
  for (auto p = xml.find("<testcase "); p != std::string::npos; p = xml.find("<testcase ", p + 1)) {
    ++cases;
  }
  CHECK(cases == r.checks.size());
  CHECK_THAT(xml, Contains(fmt::format("tests=\"{}\" failures=\"1\"", r.checks.size())));
  CHECK_THAT(xml, Contains("name=\"retry-amplification\" time=\"0\">\n<failure type=\"fail\""));
  CHECK_THAT(xml, Contains("`fetch&lt;&amp;&gt;`: amplification 2.000"));
  CHECK(xml.find("fetch<&>") == std::string::npos);  // escaped everywhere
  CHECK_THAT(stallscope::check::to_text(r),
             Contains("FAIL  retry-amplification") && Contains("result: FAIL (1 failed"));
}

TEST_CASE("the README's thresholds table is the defaults", "[check][config][readme]") {
  std::ifstream in(STALLSCOPE_README_PATH);
  REQUIRE(in);
  std::string line, yaml;
  bool table = false;
  int rows = 0;
  while (std::getline(in, line)) {
    if (line == "| key | default | meaning |") {
      table = true;
      continue;
    }
    if (!table || line.starts_with("|---")) continue;
    if (!line.starts_with("| `")) break;
    const auto key_end = line.find('`', 3);
    const auto value_start = line.find("| ", key_end) + 2;
    const auto value_end = line.find(' ', value_start);
    yaml += fmt::format("{}: {}\n", line.substr(3, key_end - 3),
                        line.substr(value_start, value_end - value_start));
    ++rows;
  }
  INFO(yaml);
  // Every key in the table is real (an unknown one throws) and has its default here.
  const auto t = stallscope::check::parse_thresholds(yaml, "README.md");
  const stallscope::check::Thresholds d;
  CHECK(rows == 17);  // every member below
  CHECK(t.held_across_suspend == d.held_across_suspend);
  CHECK(t.async_lock_waiters == d.async_lock_waiters);
  CHECK(t.async_lock_hold_seconds == d.async_lock_hold_seconds);
  CHECK(t.channel_full_share == d.channel_full_share);
  CHECK(t.channel_send_waiters == d.channel_send_waiters);
  CHECK(t.cancel_exit_seconds == d.cancel_exit_seconds);
  CHECK(t.long_slice_seconds == d.long_slice_seconds);
  CHECK(t.long_slice_share == d.long_slice_share);
  CHECK(t.long_slice_min == d.long_slice_min);
  CHECK(t.lock_blocked_threads == d.lock_blocked_threads);
  CHECK(t.pool_queue_per_thread == d.pool_queue_per_thread);
  CHECK(t.retry_amplification == d.retry_amplification);
  CHECK(t.tiny_task_seconds == d.tiny_task_seconds);
  CHECK(t.tiny_task_min == d.tiny_task_min);
  CHECK(t.channel_queued_bytes == d.channel_queued_bytes);
  CHECK(t.channel_item_bytes == d.channel_item_bytes);
  CHECK(t.channel_sender_tasks == d.channel_sender_tasks);
}
