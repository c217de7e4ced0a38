// The embedded endpoint over real HTTP: exact series, promtool, bucket literals, HELP text, and
// stallscope's Collectable inside a user's own Exposer.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <limits>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/registry.h>

#include "stallscope/agent.hpp"
#include "stallscope/buckets.hpp"
#include "stallscope/config.hpp"
#include "stallscope/mutex.hpp"
#include "stallscope/prometheus.hpp"
#include "support.hpp"

namespace {

using namespace stallscope::test;

// Two acquisitions of `m`: this thread's, uncontended, then another thread's, which waits until
// the endpoint shows it waiting.
void contend_once(stallscope::Mutex& m, const std::string& resource, int port) {
  std::unique_lock held(m);
  std::thread waiter([&] { std::lock_guard lock(m); });
  const std::string waiters = lock_series("stallscope_waiters", resource);
  const std::string body =
      scrape_until(port, [&](const std::string& b) { return value_of(b, waiters) == 1.0; });
  CHECK(value_of(body, waiters) == 1.0);
  held.unlock();
  waiter.join();
}

}  // namespace

TEST_CASE("the endpoint serves exact lock counts over real HTTP", "[endpoint]") {
  stallscope::Agent agent(ephemeral());
  REQUIRE(agent.listening());
  CHECK(agent.error().empty());
  REQUIRE(agent.port() > 0);
  CHECK(agent.url() == fmt::format("http://127.0.0.1:{}/metrics", agent.port()));

  stallscope::Mutex a("exp-http-a");
  stallscope::Mutex b1("exp-http-b");
  stallscope::Mutex b2("exp-http-b");  // same name: one series
  for (int i = 0; i < 7; ++i) std::lock_guard lock(a);
  for (int i = 0; i < 3; ++i) std::lock_guard lock(b1);
  for (int i = 0; i < 4; ++i) std::lock_guard lock(b2);
  {
    std::lock_guard lock(a);
    std::thread([&] { CHECK_FALSE(a.try_lock()); }).join();
  }

  const stallscope::test::HttpResponse r =
      stallscope::test::http_get("127.0.0.1", agent.port(), "/metrics");
  REQUIRE(r.status == 200);
  CHECK_THAT(r.content_type, Catch::StartsWith("text/plain"));
  const std::string& body = r.body;
  INFO(body);

  CHECK(has_line(body, lock_series("stallscope_lock_acquisitions_total", "exp-http-a") + " 8"));
  CHECK(has_line(body, lock_series("stallscope_lock_try_failures_total", "exp-http-a") + " 1"));
  CHECK(has_line(body, lock_series("stallscope_lock_contended_total", "exp-http-a") + " 0"));
  CHECK(has_line(body, lock_series("stallscope_lock_timeouts_total", "exp-http-a") + " 0"));
  CHECK(has_line(body, lock_series("stallscope_waiters", "exp-http-a") + " 0"));
  CHECK(has_line(body, lock_series("stallscope_oldest_wait_age_seconds", "exp-http-a") + " 0"));
  CHECK(has_line(body, lock_series("stallscope_wait_seconds_count", "exp-http-a") + " 8"));
  CHECK(has_line(body, lock_series("stallscope_wait_seconds_sum", "exp-http-a") + " 0"));
  CHECK(has_line(body, "stallscope_lock_objects{kind=\"lock\",resource=\"exp-http-a\"} 1"));

  CHECK(has_line(body, lock_series("stallscope_lock_acquisitions_total", "exp-http-b") + " 7"));
  CHECK(has_line(body, "stallscope_lock_objects{kind=\"lock\",resource=\"exp-http-b\"} 2"));
}

TEST_CASE("the endpoint counts contended acquisitions and the waiter they had",
          "[endpoint][concurrency]") {
  stallscope::Agent agent(ephemeral());
  REQUIRE(agent.listening());
  stallscope::Mutex m("exp-http-contended");
  for (int i = 0; i < 5; ++i) std::lock_guard lock(m);
  contend_once(m, "exp-http-contended", agent.port());

  const std::string body = scrape(agent.port());
  INFO(body);
  CHECK(has_line(body,
                 lock_series("stallscope_lock_acquisitions_total", "exp-http-contended") + " 7"));
  CHECK(
      has_line(body, lock_series("stallscope_lock_contended_total", "exp-http-contended") + " 1"));
  CHECK(has_line(body, lock_series("stallscope_wait_seconds_count", "exp-http-contended") + " 7"));
  CHECK(has_line(body, lock_series("stallscope_waiters", "exp-http-contended") + " 0"));
  const auto sum = value_of(body, lock_series("stallscope_wait_seconds_sum", "exp-http-contended"));
  REQUIRE(sum.has_value());
  CHECK(*sum > 0);
}

TEST_CASE("promtool check metrics accepts the endpoint's output without a warning",
          "[endpoint][promtool]") {
  const std::string promtool = STALLSCOPE_TEST_PROMTOOL;
  if (promtool.empty()) {
    FAIL(
        "promtool was not found when CMake configured this build; install it (Debian package "
        "\"prometheus\") and re-run cmake");
  }
  REQUIRE(::access(promtool.c_str(), X_OK) == 0);

  stallscope::Agent agent(ephemeral());
  REQUIRE(agent.listening());
  // Every shape of series: uncontended and contended exclusive locks, shared locks, hold times.
  stallscope::Mutex m("exp-promtool-lock");
  stallscope::SharedMutex rw("exp-promtool-rw", stallscope::LockOptions{.hold_time = true});
  for (int i = 0; i < 3; ++i) std::lock_guard lock(m);
  contend_once(m, "exp-promtool-lock", agent.port());
  { std::shared_lock lock(rw); }
  { std::lock_guard lock(rw); }

  const std::string body = scrape(agent.port());
  REQUIRE(has_line(body,
                   lock_series("stallscope_lock_acquisitions_total", "exp-promtool-lock") + " 5"));
  REQUIRE(
      has_line(body,
               "stallscope_lock_acquisitions_total{kind=\"rwlock\",resource=\"exp-promtool-rw\","
               "op=\"shared\"} 1"));

  const auto result = stallscope::test::run_with_input({promtool, "check", "metrics"}, body);
  INFO("promtool said:\n" << result.output << "\non this input:\n" << body);
  CHECK(result.exit_status == 0);
  CHECK(result.output.empty());
}

TEST_CASE("histogram bucket bounds are exact literals and _count equals the +Inf bucket",
          "[endpoint][histogram]") {
  stallscope::Agent agent(ephemeral());
  REQUIRE(agent.listening());
  stallscope::Mutex m("exp-hist", {.hold_time = true});
  for (int i = 0; i < 9; ++i) std::lock_guard lock(m);
  contend_once(m, "exp-hist", agent.port());

  const std::string body = scrape(agent.port());
  INFO(body);
  auto bucket = [](const char* le) {
    return lock_series("stallscope_wait_seconds_bucket", "exp-hist", fmt::format(",le=\"{}\"", le));
  };
  // Uncontended acquisitions count as zero waits: all 10 sit in the first bucket.
  const auto first = value_of(body, bucket("1e-06"));
  REQUIRE(first.has_value());
  CHECK(*first >= 10);
  CHECK(value_of(body, bucket("2.5e-06")).has_value());
  CHECK(value_of(body, bucket("0.001")).has_value());
  CHECK(value_of(body, bucket("50")).has_value());
  CHECK(has_line(body, bucket("+Inf") + " 11"));
  CHECK(has_line(body, lock_series("stallscope_wait_seconds_count", "exp-hist") + " 11"));

  // Every bound of Buckets::latency() appears, in order, and parses back to the same double;
  // the counts are cumulative (never decrease).
  std::string head = lock_series("stallscope_wait_seconds_bucket", "exp-hist");
  head.replace(head.size() - 1, 1, ",le=\"");  // ...op="exclusive",le="
  std::vector<double> les;
  std::vector<double> counts;
  for (std::string_view l : lines_of(body)) {
    if (!l.starts_with(head)) continue;
    l.remove_prefix(head.size());
    const auto quote = l.find('"');
    REQUIRE(quote != std::string_view::npos);
    les.push_back(std::strtod(std::string(l.substr(0, quote)).c_str(), nullptr));
    counts.push_back(std::strtod(std::string(l.substr(l.rfind(' ') + 1)).c_str(), nullptr));
  }
  const stallscope::Buckets latency = stallscope::Buckets::latency();
  const auto bounds = latency.bounds();
  REQUIRE(les.size() == bounds.size() + 1);
  for (std::size_t i = 0; i < bounds.size(); ++i) CHECK(les[i] == bounds[i]);
  CHECK(les.back() == std::numeric_limits<double>::infinity());
  for (std::size_t i = 1; i < counts.size(); ++i) CHECK(counts[i - 1] <= counts[i]);

  // Across every histogram series in the output: _count == the +Inf bucket.
  std::map<std::string, double> inf_buckets;
  std::map<std::string, double> count_lines;
  for (std::string_view l : lines_of(body)) {
    if (l.starts_with("#")) continue;
    const auto sp = l.rfind(' ');
    const std::string series(l.substr(0, sp));
    const double v = std::strtod(std::string(l.substr(sp + 1)).c_str(), nullptr);
    if (const auto at = series.find("_bucket{");
        at != std::string::npos && series.ends_with(",le=\"+Inf\"}")) {
      // name_bucket{labels,le="+Inf"} -> name{labels}
      std::string key = series.substr(0, at) + series.substr(at + 7);
      key.erase(key.size() - 11);
      inf_buckets[key + "}"] = v;
    } else if (const auto c = series.find("_count{"); c != std::string::npos) {
      count_lines[series.substr(0, c) + series.substr(c + 6)] = v;
    }
  }
  std::size_t stallscope_histograms = 0;
  for (const auto& [key, inf] : inf_buckets) {
    INFO(key);
    REQUIRE(count_lines.contains(key));
    CHECK(count_lines[key] == inf);
    if (key.starts_with("stallscope_")) ++stallscope_histograms;
  }
  CHECK(stallscope_histograms >= 2);  // wait and hold of exp-hist at least
}

TEST_CASE("stallscope_build_info carries the version and every family has HELP text",
          "[endpoint]") {
  stallscope::Agent agent(ephemeral());
  REQUIRE(agent.listening());
  stallscope::Mutex m("exp-help");
  { std::lock_guard lock(m); }

  const std::string body = scrape(agent.port());
  INFO(body);
  CHECK(has_line(body, fmt::format("stallscope_build_info{{enabled=\"true\",version=\"{}\"}} 1",
                                   STALLSCOPE_VERSION_STRING)));
  CHECK(std::string(STALLSCOPE_VERSION_STRING) == STALLSCOPE_TEST_PROJECT_VERSION);

  std::map<std::string, std::string> help;
  std::vector<std::string> typed;
  for (std::string_view l : lines_of(body)) {
    if (l.starts_with("# HELP ")) {
      l.remove_prefix(7);
      const auto sp = l.find(' ');
      help[std::string(l.substr(0, sp))] =
          sp == std::string_view::npos ? std::string() : std::string(l.substr(sp + 1));
    } else if (l.starts_with("# TYPE ")) {
      l.remove_prefix(7);
      typed.emplace_back(l.substr(0, l.find(' ')));
    }
  }
  for (const char* f :
       {"stallscope_wait_seconds", "stallscope_waiters", "stallscope_oldest_wait_age_seconds",
        "stallscope_lock_acquisitions_total", "stallscope_lock_contended_total",
        "stallscope_lock_timeouts_total", "stallscope_lock_try_failures_total",
        "stallscope_lock_hold_seconds", "stallscope_lock_holder_age_seconds",
        "stallscope_lock_objects", "stallscope_resources", "stallscope_resource_overflow_total",
        "stallscope_recording_threads", "stallscope_shard_memory_bytes", "stallscope_build_info"}) {
    INFO(f);
    CHECK(std::find(typed.begin(), typed.end(), f) != typed.end());
  }
  for (const std::string& f : typed) {
    INFO(f);
    REQUIRE(help.contains(f));
    CHECK_FALSE(help[f].empty());
  }
}

TEST_CASE("make_collectable serves stallscope's series from a user's own Exposer",
          "[collectable]") {
  prometheus::Exposer exposer("127.0.0.1:0", 1);
  auto user_registry = std::make_shared<prometheus::Registry>();
  auto& requests = prometheus::BuildCounter()
                       .Name("user_requests_total")
                       .Help("The user's own counter.")
                       .Register(*user_registry);
  requests.Add({}).Increment(3);
  exposer.RegisterCollectable(user_registry);
  // The Exposer keeps only a weak_ptr: the caller keeps the Collectable alive.
  const auto stallscope_metrics = stallscope::make_collectable();
  exposer.RegisterCollectable(stallscope_metrics);
  const std::vector<int> ports = exposer.GetListeningPorts();
  REQUIRE(ports.size() == 1);

  stallscope::Mutex m("exp-user-exposer");
  for (int i = 0; i < 5; ++i) std::lock_guard lock(m);

  const std::string body = scrape(ports[0]);
  INFO(body);
  CHECK(has_line(body, "user_requests_total 3"));
  CHECK(
      has_line(body, lock_series("stallscope_lock_acquisitions_total", "exp-user-exposer") + " 5"));
  CHECK(value_of(body, fmt::format("stallscope_build_info{{enabled=\"true\",version=\"{}\"}}",
                                   STALLSCOPE_VERSION_STRING)) == 1.0);
}

TEST_CASE("the documented one-line registration into a user's Exposer serves stallscope's series",
          "[collectable]") {
  prometheus::Exposer exposer("127.0.0.1:0", 1);
  // Verbatim from the contract of stallscope::Collectable in stallscope/prometheus.hpp.
  exposer.RegisterCollectable(stallscope::make_collectable());
  const std::vector<int> ports = exposer.GetListeningPorts();
  REQUIRE(ports.size() == 1);

  stallscope::Mutex m("exp-user-exposer-oneline");
  { std::lock_guard lock(m); }

  const std::string body = scrape(ports[0]);
  INFO(body);
  CHECK(has_line(
      body, lock_series("stallscope_lock_acquisitions_total", "exp-user-exposer-oneline") + " 1"));
}

TEST_CASE("scrapes during heavy locking see counts that only grow and end exact",
          "[endpoint][concurrency]") {
  constexpr int kThreads = 2;
  constexpr int kPerThread = 20000;
  stallscope::Agent agent(ephemeral());
  REQUIRE(agent.listening());
  stallscope::Mutex m("exp-hammer");
  const std::string acquisitions = lock_series("stallscope_lock_acquisitions_total", "exp-hammer");
  const std::string count = lock_series("stallscope_wait_seconds_count", "exp-hammer");

  std::atomic<int> running{kThreads};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) std::lock_guard lock(m);
      running.fetch_sub(1);
    });
  }
  double last = 0;
  int scrapes = 0;
  bool monotonic = true;
  do {
    const std::string body = scrape(agent.port());
    // A literal-named lock registers at its first use: before that the series is absent, and
    // absent is zero acquisitions.
    const double v = value_of(body, acquisitions).value_or(0);
    monotonic = monotonic && v >= last;
    last = v;
    ++scrapes;
  } while (running.load() > 0);
  for (auto& t : threads) t.join();
  CHECK(monotonic);
  CHECK(scrapes > 0);

  const std::string body = scrape(agent.port());
  INFO(body);
  CHECK(has_line(body, fmt::format("{} {}", acquisitions, kThreads * kPerThread)));
  CHECK(has_line(body, fmt::format("{} {}", count, kThreads * kPerThread)));
  CHECK(has_line(body, lock_series("stallscope_waiters", "exp-hammer") + " 0"));
}
