// The live map (stallscope/service_map.hpp) of a scripted service, the comparison of two maps
// (stallscope/map_diff.hpp) and stallscope-check map-diff's exit codes.
#include <pthread.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <catch2/catch.hpp>
#include <fmt/format.h>

#include "exporters/support.hpp"
#include "stallscope/agent.hpp"
#include "stallscope/blocking_pool.hpp"
#include "stallscope/channel.hpp"
#include "stallscope/map_diff.hpp"
#include "stallscope/mutex.hpp"
#include "stallscope/semaphore.hpp"
#include "stallscope/service_map.hpp"
#include "stallscope/task.hpp"

namespace asio = boost::asio;
namespace json = boost::json;
using Catch::Contains;

namespace {

// The entry of `section` named `name` in a parsed map; fails the test when absent.
const json::object& entry(const json::value& map, std::string_view section, std::string_view name) {
  for (const json::value& e : map.at(section).as_array()) {
    if (e.at("name").as_string() == name) return e.as_object();
  }
  FAIL("no " << section << " entry named " << name << " in " << json::serialize(map));
  throw std::logic_error("unreachable");
}

std::vector<std::string> strings(const json::value& v) {
  std::vector<std::string> out;
  for (const json::value& x : v.as_array()) out.emplace_back(x.as_string());
  return out;
}

using Names = std::vector<std::string>;

}  // namespace

TEST_CASE("the map names a service's groups, channels, semaphores, pools, locks and their users",
          "[map]") {
  asio::io_context io;
  using Strand = asio::strand<asio::io_context::executor_type>;
  stallscope::TaskGroup<Strand> ingest(asio::make_strand(io), "map-ingest");
  stallscope::TaskGroup<Strand> store(asio::make_strand(io), "map-store", ingest.token());
  stallscope::Channel<int> jobs("map-jobs", {.capacity = 8});
  stallscope::Channel<int> events("map-events",
                                  {.capacity = std::numeric_limits<std::size_t>::max(),
                                   .policy = stallscope::OverflowPolicy::kDropOldest});
  stallscope::Semaphore cpu("map-cpu", 2);
  stallscope::BlockingPool disk("map-disk", 2);
  stallscope::Mutex ledger("map-ledger");

  ingest.spawn("map-reader", [&]() -> asio::awaitable<void> {
    { std::lock_guard lock(ledger); }
    auto permit = co_await cpu.async_acquire();
    (void)co_await jobs.async_send(1);
    (void)events.try_send(2);
  });
  store.spawn("map-writer", [&]() -> asio::awaitable<void> {
    (void)co_await jobs.async_receive();
    { std::lock_guard lock(ledger); }
    co_await disk.run([] {});
  });
  io.run();
  REQUIRE(events.try_receive() == 2);  // this thread: named "thread" (it has the process's name)

  // A thread with a hostile name takes a lock of its own.
  stallscope::Mutex stats("map-stats");
  std::thread t([&] {
    pthread_setname_np(pthread_self(), "<b>&'x\"");
    std::lock_guard lock(stats);
  });
  t.join();

  const std::string text = stallscope::service_map_json();
  const json::value map = json::parse(text);
  CHECK(map.at("schema") == "stallscope-map/1");

  const json::object& gi = entry(map, "groups", "map-ingest");
  CHECK(gi.at("objects") == 1);
  CHECK_THAT(std::string(strings(gi.at("parents")).at(0)), Catch::StartsWith("scope-"));
  CHECK(gi.at("tasks").as_array().size() == 1);
  CHECK(gi.at("tasks").at(0).at("name") == "map-reader");
  CHECK(gi.at("tasks").at(0).at("spawned") == 1);
  CHECK(gi.at("tasks").at(0).at("live") == 0);
  const json::object& gs = entry(map, "groups", "map-store");
  CHECK(strings(gs.at("parents")) == Names{"group:map-ingest"});
  CHECK(gs.at("tasks").at(0).at("name") == "map-writer");
  CHECK(gs.at("state") == "open");

  const json::object& j = entry(map, "channels", "map-jobs");
  CHECK(j.at("capacity").as_array() == json::array{8});
  CHECK(j.at("unbounded") == false);
  CHECK(strings(j.at("policy")) == Names{"wait"});
  CHECK(j.at("control_capacity").as_array() == json::array{16});
  CHECK(strings(j.at("senders").at("tasks")) == Names{"map-reader"});
  CHECK(strings(j.at("receivers").at("tasks")) == Names{"map-writer"});
  CHECK(j.at("receivers").at("threads").as_array().empty());

  const json::object& e = entry(map, "channels", "map-events");
  CHECK(e.at("unbounded") == true);
  CHECK(strings(e.at("policy")) == Names{"drop_oldest"});
  CHECK(strings(e.at("senders").at("tasks")) == Names{"map-reader"});
  CHECK(strings(e.at("receivers").at("threads")) == Names{"thread"});
  CHECK(e.at("depth") == 0);

  const json::object& c = entry(map, "semaphores", "map-cpu");
  CHECK(c.at("permits").as_array() == json::array{2});
  CHECK(strings(c.at("users").at("tasks")) == Names{"map-reader"});

  const json::object& d = entry(map, "pools", "map-disk");
  CHECK(d.at("threads").as_array() == json::array{2});
  CHECK(d.at("unbounded") == true);
  CHECK(strings(d.at("users").at("tasks")) == Names{"map-writer"});

  const json::object& l = entry(map, "locks", "map-ledger");
  CHECK(l.at("kind") == "lock");
  CHECK(strings(l.at("users").at("tasks")) == Names{"map-reader", "map-writer"});
  CHECK(l.at("users").at("more") == 0);

  // The hostile thread name: escaped in the JSON text and in the page, read back intact.
  const json::object& s = entry(map, "locks", "map-stats");
  CHECK(strings(s.at("users").at("threads")) == Names{"thread <b>&'x\""});
  CHECK(text.find("<b>") == std::string::npos);
  CHECK_THAT(text, Contains("\\u003cb\\u003e\\u0026\\u0027x\\\""));
  const std::string html = stallscope::service_map_html();
  CHECK(html.find("<b>&") == std::string::npos);
  CHECK_THAT(html, Contains("&lt;b&gt;&amp;&#39;x&quot;"));
  CHECK_THAT(html, Contains("<svg"));
}

TEST_CASE("plain threads on a channel's thread API are its senders and receivers, by name",
          "[map]") {
  // Each thread is noted when it is not the channel's last sender (receiver): every one of them
  // here, though none waits and each comes after another thread's first operation.
  stallscope::Channel<int> ch("map-thread-peers", {.capacity = 16});
  REQUIRE(ch.try_send(0).accepted());  // this thread: "thread" (it has the process's name)
  auto named = [&](const char* name, auto body) {
    std::thread t([&] {
      pthread_setname_np(pthread_self(), name);
      body();
    });
    t.join();
  };
  // Catch2's assertions are not for other threads: each thread's result is checked here.
  std::vector<bool> sent;
  std::vector<std::optional<int>> got;
  named("pump-1", [&] { sent.push_back(ch.try_send(1).accepted()); });
  named("pump-2", [&] { sent.push_back(ch.send(2).accepted()); });
  named("pump-2", [&] { sent.push_back(ch.try_send(3).accepted()); });
  CHECK(sent == std::vector<bool>{true, true, true});
  REQUIRE(ch.try_receive() == 0);
  named("drain-7", [&] { got.push_back(ch.try_receive()); });
  named("drain-12", [&] { got.push_back(ch.receive()); });
  named("audit", [&] { got.push_back(ch.try_receive()); });
  CHECK(got == std::vector<std::optional<int>>{1, 2, 3});

  const json::value map = json::parse(stallscope::service_map_json());
  const json::object& c = entry(map, "channels", "map-thread-peers");
  // A pool's numbered threads are one user, "thread pump-*", however many run.
  CHECK(strings(c.at("senders").at("threads")) == Names{"thread", "thread pump-*"});
  CHECK(c.at("senders").at("tasks").as_array().empty());
  CHECK(strings(c.at("receivers").at("threads")) ==
        Names{"thread", "thread audit", "thread drain-*"});
  CHECK(c.at("senders").at("more") == 0);
  CHECK(c.at("receivers").at("more") == 0);
  CHECK_THAT(stallscope::service_map_html(), Contains("thread drain-*"));
}

TEST_CASE("code of a task run inline inside another task's slice is that task's", "[map]") {
  asio::io_context io;
  auto strand = asio::make_strand(io);
  stallscope::Mutex in_child("map-in-child");
  stallscope::Mutex after_child("map-after-child");
  stallscope::spawn(
      strand, "map-parent",
      [&]() -> asio::awaitable<void> {
        // The child starts inline on the same strand, inside the parent's slice; the parent
        // resumes inline inside the child's completion.
        co_await stallscope::spawn(
            strand, "map-child",
            [&]() -> asio::awaitable<void> {
              std::lock_guard lock(in_child);
              co_return;
            },
            asio::use_awaitable);
        std::lock_guard lock(after_child);
      },
      asio::detached);
  io.run();
  const json::value map = json::parse(stallscope::service_map_json());
  CHECK(strings(entry(map, "locks", "map-in-child").at("users").at("tasks")) == Names{"map-child"});
  CHECK(strings(entry(map, "locks", "map-after-child").at("users").at("tasks")) ==
        Names{"map-parent"});
}

TEST_CASE("past 16 users a resource counts the others exactly, once each", "[map]") {
  asio::io_context io;
  stallscope::Mutex crowd("map-crowd");
  for (int round = 0; round < 3; ++round) {  // each name takes it three times
    for (int i = 0; i < 21; ++i) {
      stallscope::spawn(
          io.get_executor(), fmt::format("map-crowd-{}", i),
          [&]() -> asio::awaitable<void> {
            std::lock_guard lock(crowd);
            co_return;
          },
          asio::detached);
    }
  }
  io.run();
  const json::value map = json::parse(stallscope::service_map_json());
  const json::object& c = entry(map, "locks", "map-crowd");
  CHECK(c.at("users").at("tasks").as_array().size() == 16);
  CHECK(c.at("users").at("more") == 5);
}

TEST_CASE("the map's groups show shutdown order and state", "[map]") {
  asio::io_context io;
  stallscope::TaskGroup first(io.get_executor(), "map-first");
  stallscope::TaskGroup second(io.get_executor(), "map-second");
  (void)second.shutdown_and_wait(std::chrono::milliseconds(0));
  (void)first.shutdown_and_wait(std::chrono::milliseconds(0));
  const json::value map = json::parse(stallscope::service_map_json());
  const auto order = [&](std::string_view g) {
    return entry(map, "groups", g).at("shutdown_order").at(0).to_number<std::uint64_t>();
  };
  CHECK(order("map-second") < order("map-first"));
  CHECK(entry(map, "groups", "map-first").at("state") == "shutting_down");
  CHECK(entry(map, "groups", "map-first").at("closed") == 1);
}

namespace {

// A map in the shape service_map_json() writes, with the given sections' entries.
std::string map_text(std::string_view channels, std::string_view locks,
                     std::string_view extra = "") {
  return fmt::format(
      R"({{"schema":"stallscope-map/1","groups":[{{"name":"ingest","objects":1,"parents":["scope-1"],"state":"open","tasks":[{{"name":"reader","live":2,"spawned":9}}]}}],"channels":[{}],"semaphores":[{}],"pools":[],"locks":[{}]}})",
      channels, extra, locks);
}

constexpr std::string_view kJobs =
    R"({"name":"jobs","objects":1,"capacity":[8],"unbounded":false,"policy":["wait"],"control_capacity":[16],"depth":3,"senders":{"tasks":["reader"],"threads":[],"more":0},"receivers":{"tasks":["writer"],"threads":[],"more":0}})";
constexpr std::string_view kLedger =
    R"({"kind":"lock","name":"ledger","users":{"tasks":["reader","writer"],"threads":[],"more":2}})";
constexpr std::string_view kCpu =
    R"({"name":"cpu","objects":1,"permits":[2],"users":{"tasks":["reader"],"threads":[],"more":0}})";

std::string replaced(std::string s, std::string_view from, std::string_view to) {
  const std::size_t at = s.find(from);
  REQUIRE(at != std::string::npos);
  return s.replace(at, from.size(), to);
}

}  // namespace

TEST_CASE("maps that differ only in depths, counts and states compare equal", "[map]") {
  const std::string a = map_text(kJobs, kLedger, kCpu);
  std::string b = replaced(a, R"("depth":3)", R"("depth":250)");
  b = replaced(b, R"("live":2,"spawned":9)", R"("live":0,"spawned":12000)");
  b = replaced(b, R"("more":2)", R"("more":7)");
  b = replaced(b, R"("state":"open")", R"("state":"shutting_down")");
  CHECK(stallscope::compare_maps(a, b).empty());
}

TEST_CASE("compare_maps names each structural difference", "[map]") {
  const std::string a = map_text(kJobs, kLedger, kCpu);
  std::string b = replaced(
      a, kJobs,
      std::string(kJobs) +
          R"(,{"name":"events","capacity":[18446744073709551615],"unbounded":true,"policy":["wait"],"control_capacity":[16],"senders":{"tasks":[],"threads":["thread"],"more":0},"receivers":{"tasks":[],"threads":[],"more":0}})");
  b = replaced(b, R"("capacity":[8])", R"("capacity":[16])");
  b = replaced(b, R"("policy":["wait"])", R"("policy":["shed"])");
  b = replaced(b, R"("tasks":["reader","writer"])", R"("tasks":["flusher","reader","writer"])");
  b = replaced(b, kCpu, "");
  b = replaced(b, R"("tasks":[{"name":"reader")", R"("tasks":[{"name":"parser")");
  CHECK(stallscope::compare_maps(a, b) ==
        Names{
            "group `ingest`: new task name `parser`",
            "group `ingest`: task name `reader` no longer spawned",
            "channel `events` added: unbounded, capacity unbounded, policy wait, control "
            "capacity 16",
            "channel `jobs`: capacity changed from 8 to 16",
            "channel `jobs`: policy changed from wait to shed",
            "semaphore `cpu` removed",
            "lock `ledger`: taken by a new task name `flusher`",
        });
  // A channel that becomes unbounded, and a lock that loses a user.
  std::string c = replaced(a, R"("unbounded":false)", R"("unbounded":true)");
  c = replaced(c, R"("tasks":["reader","writer"])", R"("tasks":["reader"])");
  CHECK(stallscope::compare_maps(a, c) ==
        Names{"channel `jobs`: now unbounded",
              "lock `ledger`: no longer taken by task name `writer`"});
}

TEST_CASE("compare_maps refuses input that is not a map, naming which", "[map]") {
  const std::string good = map_text(kJobs, kLedger);
  CHECK_THROWS_WITH(stallscope::compare_maps("{not json", good),
                    Contains("expected map is not valid JSON"));
  CHECK_THROWS_WITH(stallscope::compare_maps(good, "[1,2]"),
                    Contains("actual map is not a JSON object"));
  CHECK_THROWS_WITH(stallscope::compare_maps(good, R"({"schema":"other/2"})"),
                    Contains(R"(actual map is not a stallscope map: its "schema" is "other/2")"));
  CHECK_THROWS_WITH(stallscope::compare_maps(replaced(good, R"("pools":[],)", ""), good),
                    Contains(R"(expected map: "pools" is missing or not an array)"));
  CHECK_THROWS_WITH(
      stallscope::compare_maps(good, replaced(good, R"("pools":[])", R"("pools":[7])")),
      Contains(R"(actual map: an entry of "pools" is not an object with a string "name": 7)"));
}

TEST_CASE("stallscope-check map-diff exits 0 on a match, 1 naming differences, 2 on bad input",
          "[map][tool]") {
  const auto dir =
      std::filesystem::temp_directory_path() / fmt::format("stallscope-map-diff-{}", ::getpid());
  std::filesystem::create_directories(dir);
  auto write = [&](const char* name, const std::string& text) {
    std::ofstream(dir / name) << text;
    return (dir / name).string();
  };
  const std::string a = map_text(kJobs, kLedger);
  const std::string expected = write("expected.json", a);
  const std::string same = write("same.json", replaced(a, R"("depth":3)", R"("depth":0)"));
  const std::string changed =
      write("changed.json", replaced(a, R"("capacity":[8])", R"("capacity":[9])"));
  const std::string bad = write("bad.json", "<html>");
  auto run = [](std::vector<std::string> args) {
    args.insert(args.begin(), {STALLSCOPE_CHECK_TOOL, "map-diff"});
    return stallscope::test::run_with_input(args, "");
  };

  const auto match = run({expected, same});
  CHECK(match.exit_status == 0);
  CHECK_THAT(match.output, Contains("the maps match"));
  const auto differ = run({expected, changed});
  CHECK(differ.exit_status == 1);
  CHECK_THAT(differ.output, Contains("channel `jobs`: capacity changed from 8 to 9"));
  CHECK_THAT(differ.output, Contains("1 difference from " + expected));
  const auto not_json = run({expected, bad});
  CHECK(not_json.exit_status == 2);
  CHECK_THAT(not_json.output, Contains("actual map is not valid JSON"));
  CHECK_THAT(not_json.output, Contains(bad));
  const auto missing = run({expected, (dir / "absent.json").string()});
  CHECK(missing.exit_status == 2);
  CHECK_THAT(missing.output, Contains("cannot read \"" + (dir / "absent.json").string() + "\""));
  const auto usage = run({expected});
  CHECK(usage.exit_status == 2);
  CHECK_THAT(usage.output, Contains("map-diff needs two arguments"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("the Agent serves /stallz/map and /stallz/map.json, and map-diff reads a URL",
          "[map][tool]") {
  stallscope::Agent agent(stallscope::AgentOptions{.listen = "127.0.0.1:0"});
  REQUIRE(agent.listening());
  stallscope::Channel<int> served("map-served", {.capacity = 4});
  const auto json_reply = stallscope::test::http_get("127.0.0.1", agent.port(), "/stallz/map.json");
  CHECK(json_reply.status == 200);
  CHECK(json_reply.content_type == "application/json");
  CHECK(entry(json::parse(json_reply.body), "channels", "map-served").at("capacity") ==
        json::array{4});
  const auto html = stallscope::test::http_get("127.0.0.1", agent.port(), "/stallz/map");
  CHECK(html.status == 200);
  CHECK_THAT(html.content_type, Contains("text/html"));
  CHECK_THAT(html.body, Contains("map-served"));

  const auto file = std::filesystem::temp_directory_path() /
                    fmt::format("stallscope-map-served-{}.json", ::getpid());
  std::ofstream(file) << json_reply.body;
  const auto r =
      stallscope::test::run_with_input({STALLSCOPE_CHECK_TOOL, "map-diff", file.string(),
                                        fmt::format("http://127.0.0.1:{}", agent.port())},
                                       "");
  std::filesystem::remove(file);
  CHECK(r.exit_status == 0);
  CHECK_THAT(r.output, Contains("the maps match"));
}
