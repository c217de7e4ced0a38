// /stallz/tasks and /stallz/tasks.json: served by the Agent over real HTTP, filtered by the query
// (bad values answered with 400 naming them), valid JSON and escaped HTML for hostile strings.
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <catch2/catch.hpp>

#include "json_reader.hpp"
#include "stallscope/agent.hpp"
#include "stallscope/cancellation.hpp"
#include "stallscope/semaphore.hpp"
#include "stallscope/stallz_tasks.hpp"
#include "stallscope/task.hpp"
#include "support.hpp"

namespace {

namespace asio = boost::asio;
using Catch::Contains;
using namespace stallscope::test;

// The tasks of a /stallz/tasks.json body named `name`.
std::vector<Json> tasks_named(const Json& d, std::string_view name) {
  std::vector<Json> out;
  for (const Json& t : d["tasks"].items) {
    if (t["name"].string == name) out.push_back(t);
  }
  return out;
}

// The body of a GET that must answer 200.
std::string get_ok_body(int port, const std::string& path) {
  const HttpResponse r = http_get("127.0.0.1", port, path);
  REQUIRE(r.status == 200);
  return r.body;
}

// GETs `path` until the JSON has `n` tasks named `name` in `state`, for at most 30 s.
Json json_until(int port, const std::string& path, std::string_view name, std::string_view state,
                std::size_t n) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (;;) {
    const HttpResponse r = http_get("127.0.0.1", port, path);
    REQUIRE(r.status == 200);
    Json d = parse_json(r.body);
    std::size_t seen = 0;
    for (const Json& t : tasks_named(d, name)) seen += t["state"].string == state ? 1u : 0u;
    if (seen == n || std::chrono::steady_clock::now() >= end) return d;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // poll interval, not a sync
  }
}

}  // namespace

TEST_CASE("/stallz/tasks serves every live task as HTML and JSON, filtered by the query",
          "[stallz][tasks][endpoint]") {
  asio::io_context io;
  auto work = asio::make_work_guard(io);
  std::thread runner([&] { io.run(); });
  {
    stallscope::AsyncMutex lock("tasks-page-lock");
    REQUIRE(lock.try_lock());
    stallscope::CancellationToken root("tasks-page");
    for (int i = 0; i < 3; ++i) {
      stallscope::spawn(
          io.get_executor(), "tasks-page-waiter", root.child("req"),
          [&]() -> asio::awaitable<void> { (void)co_await lock.async_lock(asio::use_awaitable); },
          asio::detached);
    }
    stallscope::spawn(
        io.get_executor(), "tasks-page-sleeper",
        []() -> asio::awaitable<void> {
          asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::hours(1));
          co_await t.async_wait(asio::use_awaitable);
        },
        asio::detached);

    stallscope::Agent agent(ephemeral());
    REQUIRE(agent.listening());
    const int port = agent.port();
    const Json d = json_until(port, "/stallz/tasks.json", "tasks-page-waiter", "waiting", 3);
    CHECK(d["version"].string == STALLSCOPE_VERSION_STRING);
    CHECK(d["live"].number >= 4);
    CHECK(d["by_state"]["waiting"].number >= 3);
    const auto waiters = tasks_named(d, "tasks-page-waiter");
    REQUIRE(waiters.size() == 3);
    for (const Json& t : waiters) {
      CHECK(t["state"].string == "waiting");
      CHECK(t["waiting_on"]["kind"].string == "async_lock");
      CHECK(t["waiting_on"]["resource"].string == "tasks-page-lock");
      CHECK(t["waiting_on"]["op"].string == "exclusive");
      CHECK(t["token_path"].string == "tasks-page/req");
      CHECK(t["group"].is_null());
      CHECK(t["cancel_requested"].type == Json::Type::kBool);
      CHECK_FALSE(t["cancel_requested"].boolean);
    }
    const auto sleepers = tasks_named(d, "tasks-page-sleeper");
    REQUIRE(sleepers.size() == 1);
    CHECK(sleepers[0]["waiting_on"].is_null());
    CHECK(sleepers[0]["token_path"].is_null());

    // Filtered by name and state; the filter is echoed back.
    const HttpResponse by_name =
        http_get("127.0.0.1", port, "/stallz/tasks.json?name=tasks-page-sleeper");
    REQUIRE(by_name.status == 200);
    const Json n = parse_json(by_name.body);
    REQUIRE(n["tasks"].items.size() == 1);
    CHECK(n["tasks"][0]["name"].string == "tasks-page-sleeper");
    CHECK(n["filter"]["name"].string == "tasks-page-sleeper");
    const Json w = parse_json(
        http_get("127.0.0.1", port, "/stallz/tasks.json?state=waiting&name=tasks-page-waiter")
            .body);
    CHECK(w["tasks"].items.size() == 3);
    CHECK(w["filter"]["state"].string == "waiting");
    const Json two = parse_json(
        http_get("127.0.0.1", port, "/stallz/tasks.json?name=tasks-page-waiter&limit=2").body);
    CHECK(two["tasks"].items.size() == 2);
    CHECK(two["matched"].number == 3);
    CHECK(two["filter"]["limit"].number == 2);
    CHECK(w["filter"]["limit"].is_null());
    const Json none = parse_json(
        http_get("127.0.0.1", port, "/stallz/tasks.json?state=running&name=tasks-page-waiter")
            .body);
    CHECK(none["tasks"].items.empty());

    root.cancel();  // they ignore nothing here: the waits end with operation_aborted
    // Polled until they have exited (0 waiting is not enough: on their way out they run).
    Json after = parse_json(get_ok_body(port, "/stallz/tasks.json?name=tasks-page-waiter"));
    for (int i = 0; i < 3000 && !tasks_named(after, "tasks-page-waiter").empty(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));  // poll interval, not a sync
      after = parse_json(get_ok_body(port, "/stallz/tasks.json?name=tasks-page-waiter"));
    }
    CHECK(tasks_named(after, "tasks-page-waiter").empty());

    // The page: the same data rendered on the server, with links to the filtered pages.
    const HttpResponse page = http_get("127.0.0.1", port, "/stallz/tasks?state=suspended");
    REQUIRE(page.status == 200);
    CHECK(page.content_type == "text/html; charset=utf-8");
    CHECK_THAT(page.body, Contains("tasks-page-sleeper"));
    CHECK_THAT(page.body, Contains("href=\"tasks?state=waiting\""));
    CHECK_THAT(page.body, Contains("href=\"tasks.json?state=suspended\""));
    CHECK_THAT(page.body, Contains("not instrumented"));
    CHECK(page.body.find("src=") == std::string::npos);  // nothing loaded from anywhere

    // /stallz links to the page and to the map.
    const std::string overview = http_get("127.0.0.1", port, "/stallz").body;
    CHECK_THAT(overview, Contains("href=\"stallz/tasks\""));
    CHECK_THAT(overview, Contains("href=\"stallz/map\""));
  }
  work.reset();
  io.stop();
  runner.join();
}

TEST_CASE("a bad task filter is answered with 400 naming the bad value", "[stallz][tasks]") {
  stallscope::Agent agent(ephemeral());
  REQUIRE(agent.listening());
  struct Case {
    const char* query;
    const char* named;
  };
  for (const Case& c :
       {Case{"state=sleeping", "\"sleeping\""}, Case{"cancelled=maybe", "\"maybe\""},
        Case{"colour=red", "\"colour\""}, Case{"name=a%20b", "\"a b\""},
        Case{"name=", "name = \"\""}, Case{"state=%zz", "%zz"}, Case{"limit=0", "\"0\""},
        Case{"limit=-3", "\"-3\""}, Case{"limit=5x", "\"5x\""}, Case{"limit=", "limit = \"\""},
        Case{"limit=99999999999999999999999", "\"99999999999999999999999\""}}) {
    for (const char* path : {"/stallz/tasks?", "/stallz/tasks.json?"}) {
      const std::string url = std::string(path) + c.query;
      INFO(url);
      const HttpResponse r = http_get("127.0.0.1", agent.port(), url);
      CHECK(r.status == 400);
      CHECK_THAT(r.body, Contains(c.named));
    }
  }
  // Good values, percent-encoded or not.
  CHECK(http_get("127.0.0.1", agent.port(), "/stallz/tasks.json?state=queued&cancelled=false")
            .status == 200);
  CHECK(http_get("127.0.0.1", agent.port(), "/stallz/tasks?name=a%2Fb%3Ac").status == 200);
  CHECK(stallscope::parse_task_filter("?name=a%2Fb%3Ac").name == "a/b:c");
  CHECK(stallscope::parse_task_filter("?limit=25").limit == 25);
  CHECK(stallscope::parse_task_filter("?state=waiting").limit == 0);
}

TEST_CASE("the task dump's JSON stays valid and its page escaped for hostile strings",
          "[stallz][tasks]") {
  const std::string hostile = "<script>alert('x')</script>\"\\&\n\x01";
  stallscope::TaskDump dump;
  dump.live = 1;
  stallscope::TaskInfo t;
  t.id = 7;
  t.name = hostile;
  t.group_id = 3;
  t.group = hostile;
  t.token_path = hostile;
  t.state = stallscope::TaskRunState::kWaiting;
  t.wait_kind = "channel";
  t.wait_resource = hostile;
  t.wait_op = "send";
  t.cancel_requested = true;
  dump.tasks.push_back(t);
  stallscope::TaskFilter f;
  f.name = hostile;

  const std::string json = stallscope::stallz_tasks_json(dump, f);
  INFO(json);
  CHECK(html_safe(json));
  const Json d = parse_json(json);  // throws, failing the test, unless it is valid JSON
  CHECK(d["tasks"][0]["name"].string == hostile);
  CHECK(d["tasks"][0]["group"]["name"].string == hostile);
  CHECK(d["tasks"][0]["token_path"].string == hostile);
  CHECK(d["tasks"][0]["waiting_on"]["resource"].string == hostile);
  CHECK(d["filter"]["name"].string == hostile);

  const std::string html = stallscope::stallz_tasks_html(dump, f);
  CHECK(html.find("<script>alert") == std::string::npos);
  CHECK_THAT(html, Contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
  // The name's link: percent-encoded, then escaped for the attribute.
  CHECK_THAT(html, Contains("href=\"tasks?name=%3Cscript%3Ealert%28%27x%27%29"));
}

TEST_CASE("a suspended task shows its Asio operation, or how to see it", "[stallz][tasks]") {
  stallscope::TaskDump dump;
  dump.live = 2;
  stallscope::TaskInfo known;
  known.id = 1;
  known.name = "reader";
  known.state = stallscope::TaskRunState::kSuspended;
  known.asio_op = "socket async_receive";
  stallscope::TaskInfo unknown = known;
  unknown.id = 2;
  unknown.name = "sleeper";
  unknown.asio_op.clear();
  dump.tasks = {known, unknown};

  for (const bool tracking : {false, true}) {
    dump.asio_tracking = tracking;
    const Json d = parse_json(stallscope::stallz_tasks_json(dump, {}));
    CHECK(d["asio_tracking"].boolean == tracking);
    CHECK(d["tasks"][0]["asio_op"].string == "socket async_receive");
    CHECK(d["tasks"][1]["asio_op"].is_null());
    const std::string html = stallscope::stallz_tasks_html(dump, {});
    CHECK_THAT(html, Contains("Asio: socket async_receive"));
    // Without the opt-in the page says how to get the operation; with it, that none is known.
    CHECK((html.find("-DSTALLSCOPE_ASIO_TRACKING=ON") != std::string::npos) == !tracking);
    CHECK((html.find("no Asio operation outstanding") != std::string::npos) == tracking);
  }
}
