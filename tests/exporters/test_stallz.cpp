// /stallz: the stall-score window, the JSON and HTML renderings (escaping included), and the page
// served over real HTTP next to /metrics, while locks are contended or deadlocked and while
// tasks linger or hold locks across co_await.
#include <civetweb.h>
#include <strings.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <catch2/catch.hpp>
#include <fmt/format.h>

#include "json_reader.hpp"
#include "stallscope/agent.hpp"
#include "stallscope/cancellation.hpp"
#include "stallscope/config.hpp"
#include "stallscope/detectors.hpp"
#include "stallscope/mutex.hpp"
#include "stallscope/registry.hpp"
#include "stallscope/stallz.hpp"
#include "stallscope/task.hpp"
#include "support.hpp"
#include "support/metrics.hpp"

namespace {

namespace asio = boost::asio;
using Catch::Contains;
using namespace stallscope::test;

// ---- helpers over the served page ----

struct RawResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string header(std::string_view name) const {
    for (const auto& [k, v] : headers) {
      if (strcasecmp(k.c_str(), std::string(name).c_str()) == 0) return v;
    }
    return {};
  }
};

// One request with any method over a real TCP connection (support.hpp's http_get only GETs).
RawResponse http_request(int port, const std::string& method, const std::string& path) {
  char err[256] = "";
  mg_connection* raw = mg_connect_client("127.0.0.1", port, 0, err, sizeof err);
  if (raw == nullptr) throw std::runtime_error(fmt::format("cannot connect: {}", err));
  const std::unique_ptr<mg_connection, void (*)(mg_connection*)> conn(raw, mg_close_connection);
  mg_printf(raw, "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Length: 0\r\n\r\n",
            method.c_str(), path.c_str(), port);
  if (mg_get_response(raw, err, sizeof err, 30000) < 0) {
    throw std::runtime_error(fmt::format("no response to {} {}: {}", method, path, err));
  }
  RawResponse r;
  const mg_response_info* info = mg_get_response_info(raw);
  r.status = info->status_code;
  for (int i = 0; i < info->num_headers; ++i) {
    r.headers.emplace_back(info->http_headers[i].name, info->http_headers[i].value);
  }
  char buf[16384];
  for (int n; (n = mg_read(raw, buf, sizeof buf)) > 0;)
    r.body.append(buf, static_cast<std::size_t>(n));
  return r;
}

HttpResponse get_ok(int port, const std::string& path) {
  HttpResponse r = http_get("127.0.0.1", port, path);
  if (r.status != 200) {
    throw std::runtime_error(fmt::format("GET {} answered {}: {}", path, r.status, r.body));
  }
  return r;
}

// GETs /stallz.json until pred(parsed) holds, for at most 30 s; returns the last body. Callers
// assert on the result, so a condition that never comes fails with the text to read.
template <class Pred>
std::string stallz_until(int port, Pred pred) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  std::string body = get_ok(port, "/stallz.json").body;
  while (!pred(parse_json(body)) && std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // poll interval, not a sync
    body = get_ok(port, "/stallz.json").body;
  }
  return body;
}

// The index of the resources row for (kind, resource); nullopt when absent.
std::optional<std::size_t> rank_of(const Json& d, std::string_view kind,
                                   std::string_view resource) {
  const Json& rows = d["resources"];
  for (std::size_t i = 0; i < rows.items.size(); ++i) {
    if (rows[i]["kind"].string == kind && rows[i]["resource"].string == resource) return i;
  }
  return std::nullopt;
}

const Json* find_row(const Json& list, std::string_view field, std::string_view value) {
  for (const Json& row : list.items) {
    if (row[field].string == value) return &row;
  }
  return nullptr;
}

// ---- synthetic snapshots for the window ----

stallscope::FamilySnapshot wait_family(
    const std::vector<std::tuple<std::string, std::string, double, std::uint64_t>>& rows) {
  stallscope::FamilySnapshot f;
  f.name = "stallscope_wait_seconds";
  f.type = stallscope::MetricType::kHistogram;
  for (const auto& [kind, resource, sum, count] : rows) {
    stallscope::SampleSnapshot s;
    s.labels = {{"kind", kind}, {"resource", resource}, {"op", "exclusive"}};
    s.histogram.sum = sum;
    s.histogram.count = count;
    f.samples.push_back(s);
  }
  return f;
}

stallscope::FamilySnapshot gauge_family(const std::string& name, const stallscope::Labels& labels,
                                        double value) {
  stallscope::FamilySnapshot f;
  f.name = name;
  stallscope::SampleSnapshot s;
  s.labels = labels;
  s.value = value;
  f.samples.push_back(s);
  return f;
}

constexpr std::int64_t kSecond = 1'000'000'000;

const stallscope::StallzResource& row_of(const stallscope::StallzReport& r,
                                         std::string_view resource) {
  for (const auto& row : r.resources) {
    if (row.resource == resource) return row;
  }
  throw std::out_of_range(std::string(resource));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The window and the renderers, without HTTP.

TEST_CASE("the stall score is the rate of the wait-seconds sum over each window", "[stallz]") {
  stallscope::StallWindow window;
  // "hot" accumulates 0.5 s of waiting per second (half a waiter on average), "warm" 0.1.
  for (int t = 0; t <= 70; ++t) {
    window.add(t * kSecond, {wait_family({{"lock", "hot", 0.5 * t, std::uint64_t(10 * t)},
                                          {"lock", "warm", 0.1 * t, std::uint64_t(t)}})});
  }
  CHECK(window.size() == 64);  // the default capacity: the oldest samples were dropped
  // Since the last sample "hot" has had two waiters: 1.3 waiters on average over the last 10 s.
  const std::int64_t now = 75 * kSecond;
  const auto r = window.report(now, {wait_family({{"lock", "hot", 35 + 0.5 * 5 + 4 + 4, 760},
                                                  {"lock", "warm", 7.5, 75},
                                                  {"channel", "new", 0, 0}})});
  REQUIRE(r.resources.size() == 3);
  CHECK(r.resources[0].resource == "hot");
  CHECK(r.resources[1].resource == "warm");
  CHECK(r.resources[2].resource == "new");
  CHECK(r.samples == 64);
  // 10 s: based on the newest sample at least 10 s old (t = 65 s).
  REQUIRE(r.covered_seconds[0].has_value());
  CHECK(*r.covered_seconds[0] == Approx(10));
  const auto& hot = row_of(r, "hot");
  CHECK(*hot.score[0] == Approx((45.5 - 32.5) / 10));
  CHECK(*hot.waits_per_second[0] == Approx((760 - 650) / 10.0));
  CHECK(*row_of(r, "warm").score[0] == Approx(0.1));
  // A resource the window has never sampled is rated against zero.
  CHECK(*row_of(r, "new").score[0] == 0);
  // 60 s: based on t = 15 s.
  CHECK(*r.covered_seconds[1] == Approx(60));
  CHECK(*hot.score[1] == Approx((45.5 - 7.5) / 60));
  CHECK(hot.wait_seconds_total == Approx(45.5));
  CHECK(hot.waits_total == 760);
}

TEST_CASE("a short history rates over what it has, and none gives no score", "[stallz]") {
  stallscope::StallWindow window;
  const std::vector<stallscope::FamilySnapshot> now = {
      wait_family({{"lock", "a", 3, 30}, {"lock", "b", 9, 9}})};

  SECTION("no sample: no score; the ranking falls back to total wait time") {
    const auto r = window.report(5 * kSecond, now);
    CHECK_FALSE(r.covered_seconds[0].has_value());
    CHECK_FALSE(r.resources[0].score[0].has_value());
    CHECK(r.resources[0].resource == "b");
  }
  SECTION("a sample too recent to rate against gives no score") {
    window.add(5 * kSecond, {wait_family({{"lock", "a", 1, 10}})});
    const auto r = window.report(5 * kSecond + kSecond / 10, now);
    CHECK_FALSE(r.covered_seconds[1].has_value());
  }
  SECTION("3 s of history: both windows rate over those 3 s") {
    window.add(2 * kSecond, {wait_family({{"lock", "a", 0, 0}, {"lock", "b", 9, 9}})});
    window.add(4 * kSecond, {wait_family({{"lock", "a", 1, 10}, {"lock", "b", 9, 9}})});
    window.add(3 * kSecond, {wait_family({{"lock", "a", 99, 99}})});  // out of order: ignored
    CHECK(window.size() == 2);
    const auto r = window.report(5 * kSecond, now);
    CHECK(*r.covered_seconds[0] == Approx(3));
    CHECK(*r.covered_seconds[1] == Approx(3));
    CHECK(r.resources[0].resource == "a");
    CHECK(*r.resources[0].score[0] == Approx(1));
    CHECK(*r.resources[1].score[0] == 0);
  }
  CHECK_THROWS_AS(stallscope::StallWindow(1), std::invalid_argument);
}

TEST_CASE("waiters, holders, pool jobs and permits now come from the gauges", "[stallz]") {
  const stallscope::StallWindow window;
  const stallscope::Labels lock{{"kind", "lock"}, {"resource", "ledger"}};
  const auto r = window.report(
      kSecond,
      {wait_family({{"lock", "ledger", 1, 1}, {"lock", "idle", 0, 5}}),
       gauge_family("stallscope_waiters",
                    {{"kind", "lock"}, {"resource", "ledger"}, {"op", "exclusive"}}, 3),
       gauge_family("stallscope_oldest_wait_age_seconds",
                    {{"kind", "lock"}, {"resource", "ledger"}, {"op", "exclusive"}}, 0.25),
       gauge_family("stallscope_waiters",
                    {{"kind", "lock"}, {"resource", "idle"}, {"op", "exclusive"}}, 0),
       gauge_family("stallscope_lock_holder_age_seconds", lock, 1.5),
       gauge_family("stallscope_task_running_slice_seconds",
                    {{"kind", "task"}, {"resource", "parse"}}, 0.2),
       gauge_family("stallscope_pool_busy_threads", {{"kind", "pool"}, {"resource", "disk"}}, 2),
       gauge_family("stallscope_pool_oldest_run_age_seconds",
                    {{"kind", "pool"}, {"resource", "disk"}}, 3),
       gauge_family("stallscope_semaphore_permits_in_use",
                    {{"kind", "semaphore"}, {"resource", "cpu"}}, 4)});
  REQUIRE(r.waiting.size() == 1);  // the idle lock has nobody waiting
  CHECK(r.waiting[0].resource == "ledger");
  CHECK(r.waiting[0].op == "exclusive");
  CHECK(r.waiting[0].waiters == 3);
  CHECK(r.waiting[0].oldest_wait_age_seconds == 0.25);
  CHECK(row_of(r, "ledger").waiters == 3);
  CHECK(row_of(r, "ledger").oldest_wait_age_seconds == 0.25);

  REQUIRE(r.holding.size() == 4);  // oldest first; permits have no age
  CHECK(r.holding[0].resource == "disk");
  CHECK(r.holding[0].what == "job running");
  CHECK(r.holding[0].count == 2);
  CHECK(r.holding[0].age_seconds == 3);
  CHECK(r.holding[1].resource == "ledger");
  CHECK(r.holding[1].what == "lock held");
  CHECK(r.holding[1].age_seconds == 1.5);
  CHECK(r.holding[2].what == "slice running");
  CHECK(r.holding[3].what == "permits in use");
  CHECK(r.holding[3].count == 4);
  CHECK_FALSE(r.holding[3].age_seconds.has_value());
}

TEST_CASE("every string is escaped in the JSON and the HTML", "[stallz][escaping]") {
  const std::string evil = "<script>alert(\"x\")</script>&'\\\n\t\x01";
  stallscope::StallzReport r;
  r.unix_time = 1700000000.25;
  r.sample_interval_seconds = 1;
  r.samples = 2;
  r.covered_seconds = {1.0, std::nullopt};
  stallscope::StallzResource res;
  res.kind = evil;
  res.resource = evil;
  res.score = {0.5, std::nullopt};
  res.waits_per_second = {2.0, std::nullopt};
  r.resources.push_back(res);
  r.waiting.push_back({evil, evil, evil, 1, 0.5});
  r.holding.push_back({evil, evil, evil, std::nullopt, 2.0});
  r.lingering.push_back({evil, 3, 4.0});
  stallscope::DetectorEvent e;
  e.lock = evil;
  e.task = evil;
  e.duration_seconds = -1;
  e.seq = 7;
  r.detector_events.push_back(e);

  const std::string json = stallscope::stallz_json(r);
  INFO(json);
  CHECK(html_safe(json));
  const Json d = parse_json(json);  // throws, failing the test, unless it is valid JSON
  CHECK(d["resources"][0]["resource"].string == evil);
  CHECK(d["resources"][0]["score"]["10s"].number == 0.5);
  CHECK(d["resources"][0]["score"]["60s"].is_null());
  CHECK(d["windows"][1]["covered_seconds"].is_null());
  CHECK(d["waiting"][0]["op"].string == evil);
  CHECK(d["holding"][0]["what"].string == evil);
  CHECK(d["holding"][0]["count"].is_null());
  CHECK(d["lingering_tasks"][0]["task"].string == evil);
  CHECK(d["lingering_tasks"][0]["count"].number == 3);
  CHECK(d["detector_events"][0]["lock"].string == evil);
  CHECK(d["detector_events"][0]["type"].string == "lock_held_across_suspend");
  CHECK(d["detector_events"][0]["seq"].number == 7);

  const std::string html = stallscope::stallz_html(r);
  INFO(html);
  CHECK(html.find("<script>alert") == std::string::npos);
  CHECK(html.find("alert(\"x\")") == std::string::npos);
  const std::string escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;";
  std::size_t count = 0;
  for (auto at = html.find(escaped); at != std::string::npos; at = html.find(escaped, at + 1)) {
    ++count;
  }
  CHECK(count == 11);  // every string field above, each in its own cell
  // The page's own markup is there, and exactly one script, with nothing loaded from elsewhere.
  CHECK_THAT(html, Contains("<!doctype html>"));
  CHECK_THAT(html, Contains("still held"));
  CHECK(html.find("<script>") == html.rfind("<script>"));
  CHECK(html.find("src=") == std::string::npos);
  CHECK(html.find("http://") == std::string::npos);
  CHECK(html.find("https://") == std::string::npos);
}

TEST_CASE("the page says when there is nothing to show", "[stallz]") {
  const stallscope::StallzReport empty;
  const std::string html = stallscope::stallz_html(empty);
  CHECK_THAT(html, Contains("No resources yet"));
  CHECK_THAT(html, Contains("Nobody is waiting."));
  CHECK_THAT(html, Contains("collecting history"));
  const Json d = parse_json(stallscope::stallz_json(empty));
  CHECK(d["resources"].items.empty());
  CHECK(d["samples"].number == 0);
}

// ---------------------------------------------------------------------------------------------
// Over real HTTP.

TEST_CASE("/stallz serves HTML and /stallz.json JSON next to /metrics", "[stallz][endpoint]") {
  stallscope::Agent agent(ephemeral());
  REQUIRE(agent.listening());
  const int port = agent.port();
  CHECK(agent.stallz_url() == fmt::format("http://127.0.0.1:{}/stallz", port));
  stallscope::Mutex m("exp-stallz-served");
  { std::lock_guard lock(m); }

  const HttpResponse html = http_get("127.0.0.1", port, "/stallz");
  REQUIRE(html.status == 200);
  CHECK(html.content_type == "text/html; charset=utf-8");
  CHECK_THAT(html.body, Contains("<!doctype html>"));
  CHECK_THAT(html.body, Contains("exp-stallz-served"));
  CHECK_THAT(html.body, Contains("</html>"));

  const HttpResponse json = http_get("127.0.0.1", port, "/stallz.json");
  REQUIRE(json.status == 200);
  CHECK(json.content_type == "application/json");
  const Json d = parse_json(json.body);
  CHECK(d["version"].string == STALLSCOPE_VERSION_STRING);
  CHECK(d["sample_interval_seconds"].number == 1);
  REQUIRE(d["windows"].items.size() == 2);
  CHECK(d["windows"][0]["seconds"].number == 10);
  CHECK(d["windows"][1]["seconds"].number == 60);
  CHECK(rank_of(d, "lock", "exp-stallz-served").has_value());

  // HEAD: the headers alone; other methods: 405.
  const RawResponse head = http_request(port, "HEAD", "/stallz.json");
  CHECK(head.status == 200);
  CHECK(head.header("Content-Type") == "application/json");
  CHECK(std::stoul(head.header("Content-Length")) > 0);
  CHECK(head.body.empty());
  const RawResponse post = http_request(port, "POST", "/stallz");
  CHECK(post.status == 405);
  CHECK(post.header("Allow") == "GET, HEAD");
  // The page loads nothing from elsewhere, and is never cached.
  const RawResponse page = http_request(port, "GET", "/stallz");
  CHECK(page.status == 200);
  CHECK_THAT(page.header("Content-Security-Policy"), Contains("default-src 'none'"));
  CHECK(page.header("Cache-Control") == "no-store");
  CHECK(std::stoul(page.header("Content-Length")) == page.body.size());

  // Other paths are untouched: /metrics still serves, anything else is still a 404.
  const HttpResponse metrics = http_get("127.0.0.1", port, "/metrics");
  CHECK(metrics.status == 200);
  CHECK_THAT(metrics.body, Contains("stallscope_build_info"));
  for (const char* path : {"/nope", "/stallz/", "/stallz.jsonx", "/stallzz", "/"}) {
    INFO(path);
    CHECK(http_get("127.0.0.1", port, path).status == 404);
  }
}

TEST_CASE("/stallz ranks a contended lock above an uncontended one and shows who waits",
          "[stallz][endpoint][concurrency]") {
  stallscope::Agent agent(ephemeral());
  REQUIRE(agent.listening());
  const int port = agent.port();
  stallscope::Mutex hot("exp-stallz-hot");
  stallscope::Mutex cold("exp-stallz-cold");
  for (int i = 0; i < 100; ++i) std::lock_guard lock(cold);  // never contended

  // Two threads queue on "hot" while this thread holds it, until the window has sampled them
  // waiting twice, so that the waits they then complete fall inside the window. (Declared
  // before `held`, so that a failed REQUIRE unlocks before it joins them.) Ages as in the
  // deadlock test below: a wait that began during a scrape, and a hold that no earlier
  // collection saw, have age 0 in it, so poll until both have aged.
  std::vector<std::jthread> waiters;
  std::unique_lock held(hot);
  for (int i = 0; i < 2; ++i) waiters.emplace_back([&] { std::lock_guard lock(hot); });
  const std::string during = stallz_until(port, [](const Json& d) {
    const Json* w = find_row(d["waiting"], "resource", "exp-stallz-hot");
    const Json* h = find_row(d["holding"], "resource", "exp-stallz-hot");
    return d["samples"].number >= 2 && w != nullptr && (*w)["waiters"].number == 2 &&
           (*w)["oldest_wait_age_seconds"].number > 0 && h != nullptr &&
           (*h)["age_seconds"].number > 0;
  });
  {
    INFO(during);
    const Json d = parse_json(during);
    CHECK(d["samples"].number >= 2);
    const Json* w = find_row(d["waiting"], "resource", "exp-stallz-hot");
    REQUIRE(w != nullptr);
    CHECK((*w)["kind"].string == "lock");
    CHECK((*w)["op"].string == "exclusive");
    CHECK((*w)["waiters"].number == 2);
    CHECK((*w)["oldest_wait_age_seconds"].number > 0);
    const Json* h = find_row(d["holding"], "resource", "exp-stallz-hot");
    REQUIRE(h != nullptr);
    CHECK((*h)["what"].string == "lock held");
    CHECK((*h)["age_seconds"].number > 0);
    const auto hot_rank = rank_of(d, "lock", "exp-stallz-hot");
    REQUIRE(hot_rank);
    CHECK(d["resources"][*hot_rank]["waiters"].number == 2);
  }
  held.unlock();
  waiters.clear();  // joins

  const std::string after = stallz_until(port, [](const Json& d) {
    const auto r = rank_of(d, "lock", "exp-stallz-hot");
    return r && !d["resources"][*r]["score"]["10s"].is_null() &&
           d["resources"][*r]["score"]["10s"].number > 0;
  });
  INFO(after);
  const Json d = parse_json(after);
  const auto hot_rank = rank_of(d, "lock", "exp-stallz-hot");
  const auto cold_rank = rank_of(d, "lock", "exp-stallz-cold");
  REQUIRE(hot_rank);
  REQUIRE(cold_rank);
  CHECK(*hot_rank < *cold_rank);
  const Json& h = d["resources"][*hot_rank];
  const Json& c = d["resources"][*cold_rank];
  CHECK(h["score"]["10s"].number > 0);
  CHECK(h["score"]["60s"].number > 0);
  CHECK(h["waits_per_second"]["10s"].number > 0);
  CHECK(h["waits_total"].number == 3);  // this thread's uncontended one, then the two waiters
  CHECK(c["score"]["10s"].number == 0);
  CHECK(c["waits_total"].number == 100);
  CHECK(c["wait_seconds_total"].number == 0);

  // The HTML page shows the same order.
  const std::string html = get_ok(port, "/stallz").body;
  const auto hot_at = html.find(">exp-stallz-hot<");
  const auto cold_at = html.find(">exp-stallz-cold<");
  REQUIRE(hot_at != std::string::npos);
  REQUIRE(cold_at != std::string::npos);
  CHECK(hot_at < cold_at);
}

TEST_CASE("a resource name that looks hostile is served escaped", "[stallz][endpoint][escaping]") {
  stallscope::Agent agent(ephemeral());
  REQUIRE(agent.listening());
  // Valid (letters, digits and _ - . : / @ only) but shaped like a URL and a path traversal.
  const std::string name = "javascript:alert/../../@evil.example:80/x--y";
  stallscope::Mutex m(name);
  { std::lock_guard lock(m); }
  const std::string html = get_ok(agent.port(), "/stallz").body;
  // The ranked row links to its sites page, the name percent-encoded in the link.
  CHECK_THAT(html, Contains("<td class=\"name\"><a href=\"stallz/sites?kind=lock&amp;resource="
                            "javascript%3Aalert%2F..%2F..%2F%40evil.example%3A80%2Fx--y\">" +
                            name + "</a></td>"));
  CHECK(html.find("href=\"javascript") == std::string::npos);
  const Json d = parse_json(get_ok(agent.port(), "/stallz.json").body);
  CHECK(rank_of(d, "lock", name).has_value());
}

TEST_CASE("/stallz answers while the application is deadlocked on its own locks",
          "[stallz][endpoint][deadlock][concurrency]") {
  stallscope::Agent agent(ephemeral());
  REQUIRE(agent.listening());
  Deadlock deadlock("exp-stallz-deadlock-a", "exp-stallz-deadlock-b");

  // Holder ages of acquisitions that did not wait count from the first collection that saw them,
  // so they show from the second one on; a wait that began during a scrape has age 0 in it (live
  // state is read after the scrape's clock read), so poll until b's waiter has aged.
  const std::string body = stallz_until(agent.port(), [](const Json& d) {
    const Json* wb = find_row(d["waiting"], "resource", "exp-stallz-deadlock-b");
    return find_row(d["waiting"], "resource", "exp-stallz-deadlock-a") != nullptr &&
           wb != nullptr && (*wb)["oldest_wait_age_seconds"].number > 0 &&
           find_row(d["holding"], "resource", "exp-stallz-deadlock-a") != nullptr &&
           find_row(d["holding"], "resource", "exp-stallz-deadlock-b") != nullptr;
  });
  {
    INFO(body);
    const Json d = parse_json(body);
    const Json* wa = find_row(d["waiting"], "resource", "exp-stallz-deadlock-a");
    const Json* wb = find_row(d["waiting"], "resource", "exp-stallz-deadlock-b");
    REQUIRE(wa != nullptr);
    REQUIRE(wb != nullptr);
    CHECK((*wb)["waiters"].number == 1);
    CHECK((*wb)["oldest_wait_age_seconds"].number > 0);
    CHECK(find_row(d["holding"], "resource", "exp-stallz-deadlock-a") != nullptr);
    CHECK(find_row(d["holding"], "resource", "exp-stallz-deadlock-b") != nullptr);
  }
  // The HTML page renders too, with both locks in its "waiting now" table.
  const HttpResponse html = get_ok(agent.port(), "/stallz");
  CHECK_THAT(html.body, Contains(">exp-stallz-deadlock-b<"));
  CHECK_THAT(html.body, Contains(">exp-stallz-deadlock-a<"));

  deadlock.stop();
}

TEST_CASE("/stallz lists lingering tasks and detector events",
          "[stallz][endpoint][task][concurrency]") {
  stallscope::Agent agent(ephemeral());
  REQUIRE(agent.listening());
  const int port = agent.port();
  const std::string lingering = "exp-stallz-lingerer";
  const std::string holder = "exp-stallz-holder";
  const std::string lock_name = "exp-stallz-held-lock";

  stallscope::Config quick = stallscope::Registry::global().config();
  quick.cancel_grace = std::chrono::milliseconds(1);
  const stallscope::testing::ScopedConfig configured(quick);  // until the test ends

  asio::io_context io;
  stallscope::CancellationToken token;
  std::atomic<bool> release{false};
  stallscope::Mutex mu(lock_name);
  // Ignores its cancellation: lingers until released.
  stallscope::spawn(
      io.get_executor(), lingering, token,
      [&]() -> asio::awaitable<void> {
        co_await asio::this_coro::throw_if_cancelled(false);
        while (!release) {
          asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(1));
          co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
          co_await asio::this_coro::reset_cancellation_state();
        }
      },
      asio::detached);
  // Suspends while holding a lock: a detector event.
  stallscope::spawn(
      io.get_executor(), holder,
      [&]() -> asio::awaitable<void> {
        mu.lock();
        asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(1));
        co_await t.async_wait(asio::use_awaitable);
        mu.unlock();
      },
      asio::detached);
  token.cancel();
  std::jthread runner([&] { io.run(); });
  // Lets the lingering task finish before `runner` is joined, even after a failed REQUIRE.
  struct Release {
    std::atomic<bool>& flag;
    ~Release() { flag = true; }
  } release_on_exit{release};

  const std::string body = stallz_until(port, [&](const Json& d) {
    bool event = false;
    for (const Json& e : d["detector_events"].items) {
      event = event || (e["lock"].string == lock_name && e["task"].string == holder);
    }
    return event && find_row(d["lingering_tasks"], "task", lingering) != nullptr;
  });
  {
    INFO(body);
    const Json d = parse_json(body);
    const Json* l = find_row(d["lingering_tasks"], "task", lingering);
    REQUIRE(l != nullptr);
    CHECK((*l)["count"].number == 1);
    CHECK((*l)["oldest_cancelled_seconds_ago"].number > 0);
    const Json* e = find_row(d["detector_events"], "lock", lock_name);
    REQUIRE(e != nullptr);
    CHECK((*e)["type"].string == "lock_held_across_suspend");
    CHECK((*e)["task"].string == holder);
  }
  const std::string html = get_ok(port, "/stallz").body;
  CHECK_THAT(html, Contains(">" + lingering + "<"));
  CHECK_THAT(html, Contains(">" + lock_name + "<"));
  CHECK_THAT(html, Contains("lock held across suspend"));

  release = true;
  runner.join();
}
