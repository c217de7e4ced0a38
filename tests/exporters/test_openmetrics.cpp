// OpenMetrics on /metrics: content negotiation from the Accept header, the format's rules, and
// the wait histogram's exemplars (task name, trace id from the application's provider).
#include <atomic>
#include <cstring>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>

#include "metrics_format.hpp"
#include "raw_http.hpp"
#include "stallscope/agent.hpp"
#include "stallscope/detail/histogram.hpp"
#include "stallscope/mutex.hpp"
#include "stallscope/prometheus.hpp"
#include "stallscope/trace.hpp"
#include "stallz_endpoint.hpp"
#include "support.hpp"
#include "support/metrics.hpp"
#include "support/poll.hpp"
#include "support/tasks.hpp"
#include "text_format.hpp"

namespace {

using stallscope::detail::MetricsFormat;
using stallscope::detail::negotiate_metrics_format;
using stallscope::testing::eventually;
using stallscope::testing::unique_name;

// What Prometheus 2.42 sends by default.
constexpr std::string_view kPrometheusAccept =
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

bool wants_om(std::string_view accept) {
  return negotiate_metrics_format(accept) == MetricsFormat::kOpenMetrics;
}

std::vector<std::string_view> lines(std::string_view text) {
  std::vector<std::string_view> out;
  while (!text.empty()) {
    const auto nl = text.find('\n');
    out.push_back(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
  }
  return out;
}

// The lines of `text` that start with `prefix`.
std::vector<std::string_view> lines_starting(std::string_view text, std::string_view prefix) {
  std::vector<std::string_view> out;
  for (auto l : lines(text)) {
    if (l.starts_with(prefix)) out.push_back(l);
  }
  return out;
}

}  // namespace

TEST_CASE("OpenMetrics is served when the Accept header prefers it", "[openmetrics][negotiation]") {
  CHECK(wants_om(kPrometheusAccept));
  CHECK(wants_om("application/openmetrics-text"));
  CHECK(wants_om("application/openmetrics-text; version=1.0.0"));
  CHECK(wants_om("APPLICATION/OpenMetrics-Text; Version=\"1.0.0\"; charset=utf-8"));
  CHECK(wants_om("text/plain;q=0.5, application/openmetrics-text;q=0.9"));
  CHECK(wants_om("application/*;q=0.8, text/plain;q=0.2"));
  // A more specific range overrides a wider one: text/plain refused, */* takes OpenMetrics.
  CHECK(wants_om("text/plain;q=0, */*"));
  // Extension parameters after q are not the media type's.
  CHECK(wants_om("application/openmetrics-text;version=1.0.0;q=1;foo=bar,text/plain;q=0.3"));
}

TEST_CASE("the text format is served otherwise", "[openmetrics][negotiation]") {
  CHECK_FALSE(wants_om(""));
  CHECK_FALSE(wants_om("*/*"));  // a tie: the default
  CHECK_FALSE(wants_om("text/plain"));
  CHECK_FALSE(wants_om("text/plain;version=0.0.4"));
  CHECK_FALSE(wants_om("application/openmetrics-text;q=0"));
  CHECK_FALSE(wants_om("application/openmetrics-text;q=0.000, */*"));
  CHECK_FALSE(wants_om("application/openmetrics-text;q=0.5, text/plain;q=0.5"));
  CHECK_FALSE(wants_om("application/openmetrics-text;q=0.4, text/*;q=0.5"));
  // Another version of OpenMetrics than the one served: no match.
  CHECK_FALSE(wants_om("application/openmetrics-text;version=0.0.1"));
  CHECK_FALSE(wants_om("application/openmetrics-text;version=2.0.0, text/plain;q=0.1"));
  CHECK_FALSE(wants_om("application/json"));
}

TEST_CASE("garbage in the Accept header is skipped, never an error", "[openmetrics][negotiation]") {
  for (std::string_view bad : {
           "garbage",
           ",,,;;;",
           "application/openmetrics-text;q=2",
           "application/openmetrics-text;q=1.5",
           "application/openmetrics-text;q=0.12345",
           "application/openmetrics-text;q=abc",
           "application/openmetrics-text;q=-1",
           "application/openmetrics-text;q=",
           "application/openmetrics-text;novalue",
           "/openmetrics-text",
           "application/",
           "*/openmetrics-text",
           "application/openmetrics-text;version=\"1.0.0",
           "\"application/openmetrics-text\"",
       }) {
    INFO(bad);
    CHECK_FALSE(wants_om(bad));
  }
  // A bad range among good ones costs only itself.
  CHECK(wants_om("bogus;;q=x, application/openmetrics-text;q=0.9, text/plain;q=abc"));
  CHECK(wants_om("text/plain;q=7, application/openmetrics-text"));
}

namespace {

// A hand-built snapshot with one family of each type, hostile label values and exemplars.
std::vector<stallscope::FamilySnapshot> hand_built() {
  using stallscope::MetricType;
  std::vector<stallscope::FamilySnapshot> f(4);
  f[0].name = "om_requests_total";
  f[0].help = "Requests \"served\", back\\slash\nnewline.";
  f[0].type = MetricType::kCounter;
  f[0].samples.push_back({{{"path", "quote\" back\\ nl\n end"}}, 3, {}});
  f[1].name = "om_queue_bytes";
  f[1].type = MetricType::kGauge;
  f[1].samples.push_back({{}, std::nan(""), {}});
  f[2].name = "om_wait_seconds";
  f[2].help = "Waits.";
  f[2].type = MetricType::kHistogram;
  stallscope::SampleSnapshot h;
  h.labels = {{"resource", "r"}};
  h.histogram.bounds = {0.001, 1};
  h.histogram.counts = {2, 3, 1};
  h.histogram.count = 6;
  h.histogram.sum = 2.5;
  h.histogram.exemplars.resize(3);
  h.histogram.exemplars[1].labels = {{"trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"},
                                     {"task", "fetch \"x\""}};
  h.histogram.exemplars[1].value = 0.25;
  h.histogram.exemplars[1].timestamp = 1700000000.125;
  h.histogram.exemplars[2].labels = {{"task", std::string(124, 't')}};  // 4 + 124: exactly 128
  h.histogram.exemplars[2].value = 2;
  h.histogram.exemplars[2].timestamp = 1700000001;
  f[2].samples.push_back(h);
  f[3].name = "om_counter_without_suffix";  // the format wants _total on its sample anyway
  f[3].type = MetricType::kCounter;
  f[3].samples.push_back({{}, 1, {}});
  return f;
}

}  // namespace

TEST_CASE("the OpenMetrics text follows the format's rules", "[openmetrics][text]") {
  const std::string om = stallscope::detail::write_openmetrics(hand_built());
  INFO(om);
  REQUIRE(om.ends_with("\n# EOF\n"));
  CHECK(om.find("# EOF") == om.size() - 6);  // once, last

  // Counters: the family without _total, the sample with it; HELP escapes \, " and newline.
  CHECK(lines_starting(om, "# TYPE om_requests ") ==
        std::vector<std::string_view>{"# TYPE om_requests counter"});
  CHECK(lines_starting(om, "# HELP om_requests ") ==
        std::vector<std::string_view>{
            R"(# HELP om_requests Requests \"served\", back\\slash\nnewline.)"});
  CHECK(lines_starting(om, "om_requests") ==
        std::vector<std::string_view>{R"(om_requests_total{path="quote\" back\\ nl\n end"} 3)"});
  CHECK(lines_starting(om, "# TYPE om_counter_without_suffix ").size() == 1);
  CHECK(lines_starting(om, "om_counter_without_suffix_total 1").size() == 1);

  // Units are the names' suffix; NaN is spelled NaN.
  CHECK(lines_starting(om, "# UNIT ") ==
        std::vector<std::string_view>{"# UNIT om_queue_bytes bytes",
                                      "# UNIT om_wait_seconds seconds"});
  CHECK(lines_starting(om, "om_queue_bytes ") ==
        std::vector<std::string_view>{"om_queue_bytes NaN"});

  // Histograms: cumulative buckets (exemplars after #), then _count and _sum; no _created.
  CHECK(
      lines_starting(om, "om_wait_seconds") ==
      std::vector<std::string_view>{
          R"(om_wait_seconds_bucket{resource="r",le="0.001"} 2)",
          R"(om_wait_seconds_bucket{resource="r",le="1"} 5 # {trace_id="4bf92f3577b34da6a3ce929d0e0e4736",task="fetch \"x\""} 0.25 1700000000.125)",
          R"(om_wait_seconds_bucket{resource="r",le="+Inf"} 6 # {task=")" + std::string(124, 't') +
              R"("} 2 1700000001.000)",
          R"(om_wait_seconds_count{resource="r"} 6)", R"(om_wait_seconds_sum{resource="r"} 2.5)"});
  CHECK(om.find("_created") == std::string::npos);

  // Every line is metadata, a sample or # EOF; every family's metadata comes before its samples.
  for (auto l : lines(om)) {
    INFO(l);
    CHECK((l.starts_with("# TYPE ") || l.starts_with("# HELP ") || l.starts_with("# UNIT ") ||
           l.starts_with("om_") || l == "# EOF"));
  }
}

TEST_CASE("exemplar labels are cut to OpenMetrics' 128 characters", "[openmetrics][text]") {
  auto families = hand_built();
  auto& e = families[2].samples[0].histogram.exemplars;
  e[0].labels = {{"trace_id", std::string(32, 'a')},
                 {"task", std::string(100, 'b')}};  // 8 + 32 + 4 + 100 = 144: task dropped
  e[0].value = 0.0005;
  e[0].timestamp = 1;
  e[2].labels = {{"task", std::string(125, 't')}};  // 129 alone: no exemplar at all
  // Multi-byte characters count once each: 4 + 124 code points fit.
  e[1].labels = {{"task", std::string(120, 'u') + "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"}};
  const std::string om = stallscope::detail::write_openmetrics(families);
  INFO(om);
  CHECK(
      lines_starting(om, "om_wait_seconds_bucket{resource=\"r\",le=\"0.001\"} 2 # ") ==
      std::vector<std::string_view>{
          R"(om_wait_seconds_bucket{resource="r",le="0.001"} 2 # {trace_id="aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"} 0.0005 1.000)"});
  CHECK(lines_starting(om, "om_wait_seconds_bucket{resource=\"r\",le=\"+Inf\"} 6") ==
        std::vector<std::string_view>{R"(om_wait_seconds_bucket{resource="r",le="+Inf"} 6)"});
  CHECK(lines_starting(om, "om_wait_seconds_bucket{resource=\"r\",le=\"1\"} 5 # {task=").size() ==
        1);
}

TEST_CASE("the OpenMetrics output has the text format's families and samples",
          "[openmetrics][text]") {
  stallscope::Mutex m(unique_name("om-same"));
  { std::lock_guard g(m); }
  const auto snapshot = stallscope::detail::collect_families(stallscope::Registry::global());
  const std::string om = stallscope::detail::write_openmetrics(snapshot);
  const std::string text = stallscope::detail::write_text(stallscope::to_prometheus(snapshot));
  // Each text sample line appears in the OpenMetrics output as it is (counters and every other
  // sample keep their names, labels and values), and the OpenMetrics output has no other.
  std::size_t text_samples = 0;
  for (auto l : lines(text)) {
    if (l.empty() || l.starts_with('#')) continue;
    ++text_samples;
    INFO(l);
    CHECK(om.find(std::string(l) + "\n") != std::string::npos);
  }
  std::size_t om_samples = 0;
  for (auto l : lines(om)) om_samples += (!l.empty() && !l.starts_with('#')) ? 1u : 0u;
  CHECK(om_samples == text_samples);
  CHECK(lines_starting(text, "# TYPE ").size() == lines_starting(om, "# TYPE ").size());
}

namespace {

// One contended wait on `mu`: this thread holds it until `lock_in_waiter` (run on a thread, or
// a task on it) shows up as waiting, then lets it in.
template <class Start>
void contended_wait(stallscope::Mutex& mu, const std::string& resource, Start start) {
  std::unique_lock held(mu);
  std::thread waiter(start);
  REQUIRE(eventually([&] {
    return stallscope::testing::value("stallscope_waiters",
                                      stallscope::testing::lock_labels(resource))
               .value_or(0) == 1;
  }));
  held.unlock();
  waiter.join();
}

// The exemplars of a lock's wait histogram, one per bucket (labels empty: none there).
std::vector<stallscope::ExemplarSnapshot> exemplars_of(const std::string& resource) {
  const stallscope::detail::ExemplarsWanted wanted;
  const auto h = stallscope::testing::histogram("stallscope_wait_seconds",
                                                stallscope::testing::lock_labels(resource));
  REQUIRE(h.has_value());
  return h->exemplars;
}

// The exemplars that have labels.
std::vector<stallscope::ExemplarSnapshot> kept(const std::vector<stallscope::ExemplarSnapshot>& e) {
  std::vector<stallscope::ExemplarSnapshot> out;
  for (const auto& x : e) {
    if (!x.labels.empty()) out.push_back(x);
  }
  return out;
}

// Installs a provider for one test, and none again after it.
struct ScopedProvider {
  explicit ScopedProvider(stallscope::TraceIdProvider p) { stallscope::set_trace_id_provider(p); }
  ~ScopedProvider() { stallscope::set_trace_id_provider(nullptr); }
  ScopedProvider(const ScopedProvider&) = delete;
  ScopedProvider& operator=(const ScopedProvider&) = delete;
};

std::atomic<int> g_provider_calls{0};

std::size_t fixed_trace(std::span<char, stallscope::kMaxTraceIdLength> out) {
  ++g_provider_calls;
  constexpr std::string_view id = "4bf92f3577b34da6a3ce929d0e0e4736";
  std::memcpy(out.data(), id.data(), id.size());
  return id.size();
}

std::size_t throwing_trace(std::span<char, stallscope::kMaxTraceIdLength>) {
  ++g_provider_calls;
  throw std::runtime_error("the tracer is gone");
}

std::size_t too_long_trace(std::span<char, stallscope::kMaxTraceIdLength>) {
  return stallscope::kMaxTraceIdLength + 1;
}

std::size_t hostile_trace(std::span<char, stallscope::kMaxTraceIdLength> out) {
  std::memcpy(out.data(), "a\"b\nc", 5);
  return 5;
}

}  // namespace

TEST_CASE("a wait in a task leaves an exemplar with the task's name", "[openmetrics][exemplars]") {
  if constexpr (!STALLSCOPE_ENABLED) return;
  const std::string resource = unique_name("om-task-lock");
  const std::string task = unique_name("om-task");
  stallscope::Mutex mu(resource);
  contended_wait(mu, resource, [&] {
    boost::asio::io_context io;
    stallscope::testing::spawn_locker(io, task, mu);
    io.run();
  });
  const auto e = kept(exemplars_of(resource));
  REQUIRE(e.size() == 1);
  CHECK(e[0].labels == stallscope::Labels{{"task", task}});
  CHECK(e[0].value > 0);
  // Stamped with the wall clock at the end of the wait: within this test's run.
  const double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  CHECK(e[0].timestamp <= now + 1);
  CHECK(e[0].timestamp > now - 600);
}

TEST_CASE("the trace id provider's id goes with the exemplar", "[openmetrics][exemplars]") {
  if constexpr (!STALLSCOPE_ENABLED) return;
  const ScopedProvider provider(fixed_trace);
  const std::string resource = unique_name("om-trace-lock");
  stallscope::Mutex mu(resource);
  g_provider_calls = 0;
  { std::lock_guard uncontended(mu); }
  CHECK(g_provider_calls == 0);  // never on the fast path
  contended_wait(mu, resource, [&] { std::lock_guard g(mu); });
  CHECK(g_provider_calls == 1);
  const auto e = kept(exemplars_of(resource));
  REQUIRE(e.size() == 1);
  CHECK(e[0].labels == stallscope::Labels{{"trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"}});
}

TEST_CASE("without a task or a trace id a wait leaves no exemplar", "[openmetrics][exemplars]") {
  if constexpr (!STALLSCOPE_ENABLED) return;
  const std::string resource = unique_name("om-plain-lock");
  stallscope::Mutex mu(resource);
  contended_wait(mu, resource, [&] { std::lock_guard g(mu); });
  CHECK(kept(exemplars_of(resource)).empty());
  CHECK(stallscope::testing::value("stallscope_lock_contended_total",
                                   stallscope::testing::lock_labels(resource)) == 1);
}

TEST_CASE("a provider that throws or returns a bad id gives no trace id, and the wait counts",
          "[openmetrics][exemplars]") {
  if constexpr (!STALLSCOPE_ENABLED) return;
  for (auto provider : {throwing_trace, too_long_trace, hostile_trace}) {
    const ScopedProvider installed(provider);
    const std::string resource = unique_name("om-bad-provider");
    const std::string task = unique_name("om-bad-provider-task");
    stallscope::Mutex mu(resource);
    g_provider_calls = 0;
    contended_wait(mu, resource, [&] {
      boost::asio::io_context io;
      stallscope::testing::spawn_locker(io, task, mu);
      io.run();
    });
    CHECK(stallscope::testing::value("stallscope_lock_contended_total",
                                     stallscope::testing::lock_labels(resource)) == 1);
    const auto e = kept(exemplars_of(resource));
    REQUIRE(e.size() == 1);
    CHECK(e[0].labels == stallscope::Labels{{"task", task}});  // the task's name still
  }
  CHECK(stallscope::trace_id_provider() == nullptr);
}

TEST_CASE("the endpoint negotiates over HTTP and serves exemplars in OpenMetrics only",
          "[openmetrics][endpoint]") {
  if constexpr (!STALLSCOPE_ENABLED) return;
  const ScopedProvider provider(fixed_trace);
  const std::string resource = unique_name("om-http-lock");
  const std::string task = unique_name("om-http-task");
  stallscope::Mutex mu(resource);
  contended_wait(mu, resource, [&] {
    boost::asio::io_context io;
    stallscope::testing::spawn_locker(io, task, mu);
    io.run();
  });
  const stallscope::Agent agent(stallscope::test::ephemeral());
  REQUIRE(agent.listening());
  using stallscope::test::get_request;
  using stallscope::test::roundtrip;
  const auto om = roundtrip(
      agent.port(), get_request("/metrics", fmt::format("Accept: {}\r\n", kPrometheusAccept)));
  REQUIRE(om.has_value());
  CHECK(om->status == 200);
  CHECK(om->header("content-type") == "application/openmetrics-text; version=1.0.0; charset=utf-8");
  CHECK(om->header("vary") == "Accept, Accept-Encoding");
  CHECK(om->body.ends_with("# EOF\n"));
  const std::string exemplar =
      fmt::format("# {{trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\",task=\"{}\"}} ", task);
  CHECK(om->body.find(exemplar) != std::string::npos);

  const auto text = roundtrip(agent.port(), get_request("/metrics"));
  REQUIRE(text.has_value());
  CHECK(text->header("content-type") == "text/plain; version=0.0.4; charset=utf-8");
  CHECK(text->body.find(" # {") == std::string::npos);
  CHECK(text->body.find("# EOF") == std::string::npos);
  CHECK(text->body.find(resource) != std::string::npos);
}
