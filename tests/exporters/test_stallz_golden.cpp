// /stallz and /stallz.json, byte for byte, for one fixed state: a window sampled at t = 0 and a
// report at t = 10 s over synthetic families (every table filled, the ranking past one page),
// compared with the checked-in files in tests/exporters/golden/. Any change to the page or the
// JSON shows here; when it is meant, regenerate them with
//   STALLSCOPE_UPDATE_GOLDEN=1 build/dev/tests/exporters/stallscope-exporters-tests '[golden]'
// and review the diff. The version string is written as @VERSION@, and the page's inlined style
// and script (exporters/prometheus/src/stallz/) as @stallz.css@ and @stallz.js@: the golden page
// holds what the server renders, and neither a release nor an edit to those files changes it.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include "stallscope/config.hpp"
#include "stallscope/detectors.hpp"
#include "stallscope/stallz.hpp"

namespace {

using stallscope::FamilySnapshot;
using stallscope::Labels;
using stallscope::MetricType;
using stallscope::SampleSnapshot;

constexpr std::int64_t kSecond = 1'000'000'000;

FamilySnapshot family(std::string name, MetricType type,
                      const std::vector<std::pair<Labels, double>>& samples) {
  FamilySnapshot f;
  f.name = std::move(name);
  f.type = type;
  for (const auto& [labels, v] : samples) {
    SampleSnapshot s;
    s.labels = labels;
    if (type == MetricType::kHistogram) {
      s.histogram.sum = v;
      s.histogram.count = static_cast<std::uint64_t>(v * 100);
    } else {
      s.value = v;
    }
    f.samples.push_back(std::move(s));
  }
  return f;
}

Labels res(std::string kind, std::string resource,
           std::vector<std::pair<std::string, std::string>> extra = {}) {
  Labels l{{"kind", std::move(kind)}, {"resource", std::move(resource)}};
  for (auto& e : extra) l.push_back(std::move(e));
  return l;
}

// The families at `t` seconds: every total grows linearly, so that rates are exact.
std::vector<FamilySnapshot> families_at(double t) {
  std::vector<std::pair<Labels, double>> waits = {
      {res("lock", "ledger", {{"op", "exclusive"}}), 2.5 * t},
      {res("executor", "io"), 400 * t},
      {res("task", "tick-victim"), 0.75 * t},
      {res("channel", "orders", {{"op", "send"}}), 0.002 * t},
      {res("semaphore", "cpu", {{"op", "acquire"}}), 0.0000004 * t},
      {res("pool", "disk", {{"op", "queue"}}), 150 * t},
  };
  for (int i = 0; i < 50; ++i) {  // more than one page of rows
    waits.push_back({res("lock", fmt::format("quiet-{:02}", i), {{"op", "exclusive"}}), 0});
  }
  return {
      family("stallscope_wait_seconds", MetricType::kHistogram, waits),
      family("stallscope_waiters", MetricType::kGauge,
             {{res("lock", "ledger", {{"op", "exclusive"}}), 3},
              {res("pool", "disk", {{"op", "queue"}}), 12}}),
      family("stallscope_oldest_wait_age_seconds", MetricType::kGauge,
             {{res("lock", "ledger", {{"op", "exclusive"}}), 0.0183},
              {res("pool", "disk", {{"op", "queue"}}), 140}}),
      family("stallscope_lock_holder_age_seconds", MetricType::kGauge,
             {{res("lock", "ledger"), 1.5}}),
      family("stallscope_task_running_slice_seconds", MetricType::kGauge,
             {{res("task", "cruncher"), 0.00042}}),
      family("stallscope_pool_busy_threads", MetricType::kGauge, {{res("pool", "disk"), 4}}),
      family("stallscope_pool_oldest_run_age_seconds", MetricType::kGauge,
             {{res("pool", "disk"), 3}}),
      family("stallscope_semaphore_permits_in_use", MetricType::kGauge,
             {{res("semaphore", "cpu"), 7}}),
      family("stallscope_executor_thread_seconds_total", MetricType::kCounter,
             {{res("executor", "io", {{"state", "task"}}), 1.2 * t},
              {res("executor", "io", {{"state", "lock"}}), 0.5 * t},
              {res("executor", "io", {{"state", "other"}}), 0.1 * t},
              {res("executor", "io", {{"state", "idle"}}), 0.2 * t}}),
      family("stallscope_task_slice_seconds", MetricType::kHistogram,
             {{res("task", "cruncher", {{"op", "slice"}}), 1.0 * t},
              {res("task", "tick-victim", {{"op", "slice"}}), 0.3 * t}}),
      family("stallscope_task_blocked_seconds_total", MetricType::kCounter,
             {{res("task", "cruncher"), 0.1 * t}}),
      family("stallscope_lock_executor_blocked_seconds_total", MetricType::kCounter,
             {{res("lock", "ledger", {{"op", "exclusive"}}), 0.5 * t}}),
      family("stallscope_executor_threads", MetricType::kGauge, {{res("executor", "io"), 2}}),
  };
}

stallscope::StallzReport fixed_report() {
  stallscope::StallWindow window;
  window.add(0, families_at(0));
  stallscope::StallzReport r = window.report(10 * kSecond, families_at(10));
  r.unix_time = 1764134137.25;
  r.sample_interval_seconds = 1;
  r.lingering.push_back({"export-job", 2, 31.5});
  stallscope::DetectorEvent held;
  held.seq = 9;
  held.type = stallscope::DetectorEvent::Type::kLockHeldAcrossSuspend;
  held.lock = "ledger";
  held.task = "cruncher";
  held.age_seconds = 2.25;
  held.duration_seconds = -1;
  r.detector_events.push_back(held);
  stallscope::DetectorEvent slow = held;
  slow.seq = 8;
  slow.type = stallscope::DetectorEvent::Type::kLongSlice;
  slow.lock.clear();
  slow.age_seconds = 4;
  slow.duration_seconds = 0.125;
  r.detector_events.push_back(slow);
  stallscope::DeadlockReport cycle;
  cycle.seq = 3;
  cycle.age_seconds = 1.5;
  cycle.participants.push_back(
      {"thread 4242", "", {"lock/ledger"}, "channel/orders (its receivers)", "send", 1.75});
  cycle.participants.push_back({"task cruncher#00a1",
                                "cruncher",
                                {"receives from channel/orders"},
                                "lock/ledger",
                                "lock",
                                1.625});
  r.deadlocks.push_back(cycle);
  return r;
}

std::string without_version(std::string s) {
  const std::string_view version = STALLSCOPE_VERSION_STRING;
  for (auto at = s.find(version); at != std::string::npos; at = s.find(version, at)) {
    s.replace(at, version.size(), "@VERSION@");
  }
  return s;
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The page with the inlined stallz.css and stallz.js (each there once, byte for byte) named.
std::string with_assets_named(std::string page) {
  for (const char* file : {"stallz.css", "stallz.js"}) {
    const std::string text = read_file(std::filesystem::path(STALLSCOPE_TEST_STALLZ_ASSETS) / file);
    REQUIRE_FALSE(text.empty());
    const auto at = page.find(text);
    INFO(file);
    REQUIRE(at != std::string::npos);
    REQUIRE(page.find(text, at + 1) == std::string::npos);
    page.replace(at, text.size(), fmt::format("@{}@", file));
  }
  return page;
}

// Compares `actual` with the golden file `name`; on a difference, says where it starts.
void check_golden(const std::string& name, const std::string& actual) {
  const std::filesystem::path path = std::filesystem::path(STALLSCOPE_TEST_GOLDEN_DIR) / name;
  if (std::getenv("STALLSCOPE_UPDATE_GOLDEN") != nullptr) {
    std::ofstream(path, std::ios::binary) << actual;
    WARN("rewrote " << path.string());
    return;
  }
  const std::string expected = read_file(path);
  REQUIRE_FALSE(expected.empty());
  std::size_t at = 0;
  while (at < expected.size() && at < actual.size() && expected[at] == actual[at]) ++at;
  const std::size_t from = at < 80 ? 0 : at - 80;
  INFO(name << " differs from byte " << at << " on (sizes " << expected.size() << " vs "
            << actual.size() << ")\n  golden: " << expected.substr(from, 200)
            << "\n  actual: " << actual.substr(from, 200));
  CHECK(actual == expected);
}

}  // namespace

TEST_CASE("/stallz.json for a fixed state is byte for byte the golden one", "[stallz][golden]") {
  check_golden("stallz.json", without_version(stallscope::stallz_json(fixed_report())));
}

TEST_CASE("/stallz for a fixed state is byte for byte the golden page", "[stallz][golden]") {
  check_golden("stallz.html",
               with_assets_named(without_version(stallscope::stallz_html(fixed_report()))));
}
