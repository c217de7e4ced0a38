// The contention profiles over HTTP beyond the cumulative ones: delta profiles (?seconds=N, a
// deferred reply that holds no thread while it waits), their limits and bad values, the debug=1
// text form, and /stallz/sites (one resource's holder and waiter sites). The profiles' encoding
// is checked by tests/pprof with an independent decoder; here the text form (debug=1) is read.
#include <poll.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include "json_reader.hpp"
#include "pprof_detail.hpp"
#include "raw_http.hpp"
#include "stallscope/agent.hpp"
#include "stallscope/mutex.hpp"
#include "stallscope/profile.hpp"
#include "stallscope/registry.hpp"
#include "stallz_endpoint.hpp"
#include "support.hpp"

namespace {

using namespace std::chrono_literals;
using stallscope::Mutex;
using stallscope::ProfileRate;

// Sets the sampling rate for one test and puts the previous one back.
class RateGuard {
 public:
  explicit RateGuard(ProfileRate r)
      : old_((stallscope::Registry::global(), stallscope::profile_rate())) {
    stallscope::set_profile_rate(r);  // after the registry has set the configured rate
  }
  ~RateGuard() { stallscope::set_profile_rate(old_); }
  RateGuard(const RateGuard&) = delete;
  RateGuard& operator=(const RateGuard&) = delete;

 private:
  ProfileRate old_;
};

// Whether someone waits on `resource` now (its stallscope_waiters gauge).
bool someone_waits(std::string_view resource) {
  for (const auto& f : stallscope::Registry::global().collect()) {
    if (f.name != "stallscope_waiters") continue;
    for (const auto& s : f.samples) {
      for (const auto& [k, v] : s.labels) {
        if (k == "resource" && v == resource && s.value >= 1) return true;
      }
    }
  }
  return false;
}

void until_waiting(std::string_view resource) {
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (!someone_waits(resource)) {
    REQUIRE(std::chrono::steady_clock::now() < deadline);
    std::this_thread::sleep_for(100us);
  }
}

[[gnu::noinline]] void pprof_http_waiter(Mutex& mu) { std::lock_guard lock(mu); }

// Holds `lock` (of `mu`, named `name`) until another thread is seen waiting for `mu`; returns
// that thread, to join after the release.
std::thread hold_until_waited(Mutex& mu, std::string_view name) {
  std::thread waiter(pprof_http_waiter, std::ref(mu));
  until_waiting(name);
  return waiter;
}

// One contended acquisition: this thread holds `mu` until another is seen waiting for it, then
// releases. With events(1): one holder event (mutex profile) and one wait (block profile).
[[gnu::noinline]] void contend_once(Mutex& mu, std::string_view name) {
  std::thread waiter;
  {
    std::lock_guard lock(mu);
    waiter = hold_until_waited(mu, name);
  }
  waiter.join();
}

// The sum of the counts of the samples labelled resource=`resource` in a debug=1 text profile.
long long text_count(const std::string& text, std::string_view resource) {
  std::istringstream in(text);
  std::string line;
  long long count = 0;
  long long last = 0;
  const std::string label = fmt::format(" resource={} ", resource);
  while (std::getline(in, line)) {
    if (line.find(" @") != std::string::npos && !line.starts_with("#")) {
      std::istringstream fields(line);
      long long delay = 0;
      fields >> delay >> last;
    } else if (line.starts_with("# labels:") && line.find(label) != std::string::npos) {
      count += last;
    }
  }
  return count;
}

stallscope::test::RawResponse get(int port, const std::string& target) {
  const auto r = stallscope::test::roundtrip(port, stallscope::test::get_request(target));
  REQUIRE(r.has_value());
  return *r;
}

// Whether `s` has bytes (or an EOF) to read now.
bool readable(const stallscope::test::Socket& s) {
  pollfd p{s.fd(), POLLIN, 0};
  return ::poll(&p, 1, 0) > 0;
}

}  // namespace

TEST_CASE("a delta profile counts exactly the events of its window", "[pprof_http]") {
  const RateGuard rate(ProfileRate::events(1));
  Mutex before{"delta-before"};
  Mutex inside{"delta-inside"};
  for (int i = 0; i < 3; ++i) contend_once(before, "delta-before");

  const stallscope::detail::StallzEndpoint endpoint(stallscope::Registry::global());
  // The handler takes the baseline and defers; the server calls then() after `defer`.
  stallscope::detail::HttpReply mutex = endpoint.render("/debug/pprof/mutex?seconds=2&debug=1");
  stallscope::detail::HttpReply block = endpoint.render("/debug/pprof/block?debug=1&seconds=2");
  REQUIRE(mutex.then);
  REQUIRE(block.then);
  CHECK(mutex.defer == 2s);
  CHECK(mutex.body.empty());
  for (int i = 0; i < 4; ++i) contend_once(inside, "delta-inside");
  contend_once(before, "delta-before");

  const std::string mutex_delta = mutex.then().body;
  const std::string block_delta = block.then().body;
  CHECK(mutex_delta.starts_with("--- mutex:\ncycles/second=1000000000\n"));
  CHECK(block_delta.starts_with("--- contention:\n"));
  CHECK(text_count(mutex_delta, "delta-inside") == 4);
  CHECK(text_count(mutex_delta, "delta-before") == 1);
  CHECK(text_count(block_delta, "delta-inside") == 4);
  CHECK(text_count(block_delta, "delta-before") == 1);
  // The cumulative profile has them all.
  const std::string all = endpoint.render("/debug/pprof/mutex?debug=1").body;
  CHECK(text_count(all, "delta-before") == 4);
  CHECK(text_count(all, "delta-inside") == 4);
  // Symbolized frames, the user's first.
  CHECK(mutex_delta.find("contend_once") != std::string::npos);
}

TEST_CASE("delta profiles over HTTP: events before the request are left out", "[pprof_http]") {
  const RateGuard rate(ProfileRate::events(1));
  stallscope::Agent agent(stallscope::test::ephemeral());
  REQUIRE(agent.listening());
  Mutex old{"delta-http-old"};
  for (int i = 0; i < 3; ++i) contend_once(old, "delta-http-old");

  const auto r = get(agent.port(), "/debug/pprof/mutex?seconds=1&debug=1");
  REQUIRE(r.status == 200);
  CHECK(r.body.starts_with("--- mutex:\n"));
  CHECK(text_count(r.body, "delta-http-old") == 0);
  const auto all = get(agent.port(), "/debug/pprof/mutex?debug=1");
  CHECK(text_count(all.body, "delta-http-old") == 3);

  // Without debug: pprof's gzip-compressed protobuf, as the cumulative profile.
  const auto pb = get(agent.port(), "/debug/pprof/block?seconds=1");
  REQUIRE(pb.status == 200);
  CHECK(pb.header("content-type") == "application/octet-stream");
  REQUIRE(pb.body.size() > 2);
  CHECK(static_cast<unsigned char>(pb.body[0]) == 0x1f);
  CHECK(static_cast<unsigned char>(pb.body[1]) == 0x8b);
}

namespace {

// Sends five 60-second delta requests for `profiles` (five names) and waits for the one the
// server refuses: at most four wait, so the refusal comes only once the other four wait, each
// past its baseline, whatever order the server read them in. The poll's deadline only guards
// against a hang; the others wait twice as long as it can last.
struct FifthRefused {
  std::vector<stallscope::test::Socket> waiting;
  stallscope::test::RawResponse refused;
};

FifthRefused refuse_fifth(int port, const std::array<const char*, 5>& profiles) {
  std::vector<stallscope::test::Socket> sockets;
  for (const char* profile : profiles) {
    sockets.push_back(stallscope::test::connect_local(port));
    REQUIRE(stallscope::test::send_all(
        sockets.back(),
        stallscope::test::get_request(fmt::format("/debug/pprof/{}?seconds=60", profile))));
  }
  std::vector<pollfd> fds;
  for (const stallscope::test::Socket& s : sockets) fds.push_back({s.fd(), POLLIN, 0});
  REQUIRE(::poll(fds.data(), fds.size(), 30000) == 1);
  FifthRefused out;
  for (std::size_t i = 0; i < sockets.size(); ++i) {
    if ((fds[i].revents & POLLIN) == 0) {
      out.waiting.push_back(std::move(sockets[i]));
      continue;
    }
    auto r = stallscope::test::read_response(sockets[i]);
    REQUIRE(r.has_value());
    out.refused = std::move(*r);
  }
  REQUIRE(out.waiting.size() == 4);
  return out;
}

}  // namespace

TEST_CASE("waiting delta profiles hold no thread: /metrics answers meanwhile", "[pprof_http]") {
  stallscope::Agent agent(stallscope::test::ephemeral());  // two render threads (the default)
  REQUIRE(agent.listening());
  // /metrics comes after four deltas wait (the refused fifth says so).
  const FifthRefused deltas =
      refuse_fifth(agent.port(), {"mutex", "block", "mutex", "block", "block"});
  CHECK(deltas.refused.status == 503);
  // Had each taken a render thread for 60 s, this would wait for them (and read_response gives
  // up after 30 s, or finds them answered).
  const auto metrics = get(agent.port(), "/metrics");
  CHECK(metrics.status == 200);
  CHECK(metrics.body.find("stallscope_") != std::string::npos);
  for (const auto& s : deltas.waiting) CHECK_FALSE(readable(s));  // still waiting
}

TEST_CASE("delta profiles: at most four wait at once, the fifth is a 503", "[pprof_http]") {
  stallscope::Agent agent(stallscope::test::ephemeral());
  REQUIRE(agent.listening());
  using stallscope::test::Socket;
  FifthRefused deltas = refuse_fifth(agent.port(), {"mutex", "mutex", "mutex", "mutex", "mutex"});
  CHECK(deltas.refused.status == 503);
  CHECK(deltas.refused.body.find("4 requests already wait") != std::string::npos);
  for (const Socket& s : deltas.waiting) CHECK_FALSE(readable(s));

  // Clients that leave while waiting free their places at once.
  deltas.waiting.clear();
  CHECK(get(agent.port(), "/metrics").status == 200);  // the server has seen the closes
  std::vector<Socket> sockets;
  for (int i = 0; i < 4; ++i) {
    sockets.push_back(stallscope::test::connect_local(agent.port()));
    REQUIRE(stallscope::test::send_all(
        sockets.back(), stallscope::test::get_request("/debug/pprof/block?seconds=1")));
  }
  for (const Socket& s : sockets) {
    const auto ok = stallscope::test::read_response(s);
    REQUIRE(ok.has_value());
    CHECK(ok->status == 200);
  }
}

TEST_CASE("delta profiles: a bad seconds or debug value is a 400 naming it", "[pprof_http]") {
  stallscope::Agent agent(stallscope::test::ephemeral());
  REQUIRE(agent.listening());
  for (const std::string value :
       {"abc", "-1", "0", "61", "3600", "1.5", "", "99999999999999999999"}) {
    CAPTURE(value);
    const auto r = get(agent.port(), "/debug/pprof/mutex?seconds=" + value);
    CHECK(r.status == 400);
    CHECK(r.body.find(fmt::format("seconds = \"{}\"", value)) != std::string::npos);
    CHECK(r.body.find("from 1 to 60") != std::string::npos);
  }
  const auto debug = get(agent.port(), "/debug/pprof/block?debug=2");
  CHECK(debug.status == 400);
  CHECK(debug.body.find("debug = \"2\"") != std::string::npos);
  const auto escape = get(agent.port(), "/debug/pprof/block?seconds=%zz");
  CHECK(escape.status == 400);
  // Other parameters are ignored, as Go does.
  CHECK(get(agent.port(), "/debug/pprof/block?gc=1").status == 200);
}

// The planted sites: a slow holder among fast ones, each releasing in its own frame. A release
// is charged at most its hold time (one waiter), so the slow holder outranks the fast ones when
// it holds, over its calls, longer than all of theirs together.
[[gnu::noinline]] void sites_slow_holder(Mutex& mu, std::chrono::nanoseconds hold) {
  std::thread waiter;
  {
    std::lock_guard lock(mu);
    waiter = hold_until_waited(mu, "sites-cache");
    std::this_thread::sleep_for(hold);
  }
  waiter.join();
}

// Returns how long it held the lock.
[[gnu::noinline]] std::chrono::nanoseconds sites_fast_holder(Mutex& mu) {
  std::thread waiter;
  std::chrono::steady_clock::time_point start;
  {
    std::lock_guard lock(mu);
    start = std::chrono::steady_clock::now();
    waiter = hold_until_waited(mu, "sites-cache");
  }
  const auto held = std::chrono::steady_clock::now() - start;
  waiter.join();
  return held;
}

TEST_CASE("/stallz/sites ranks a resource's holder and waiter sites", "[pprof_http]") {
  const RateGuard rate(ProfileRate::events(1));
  stallscope::Agent agent(stallscope::test::ephemeral());
  REQUIRE(agent.listening());
  Mutex cache{"sites-cache"};
  std::chrono::nanoseconds fast{0};
  for (int i = 0; i < 10; ++i) fast += sites_fast_holder(cache);
  for (int i = 0; i < 2; ++i)
    sites_slow_holder(cache, std::max<std::chrono::nanoseconds>(fast, 20ms));

  const auto r = get(agent.port(), "/stallz/sites.json?kind=lock&resource=sites-cache");
  REQUIRE(r.status == 200);
  CHECK(r.header("content-type") == "application/json");
  const auto j = stallscope::test::parse_json(r.body);
  CHECK(j["kind"].string == "lock");
  CHECK(j["resource"].string == "sites-cache");
  CHECK(j["profile_rate"].string == "1");
  CHECK(j["holders"]["count"].number == 12);
  CHECK(j["waiters"]["count"].number == 12);
  const auto& holders = j["holders"]["sites"];
  REQUIRE(holders.items.size() >= 2);
  CHECK(holders[0]["function"].string.find("sites_slow_holder") != std::string::npos);
  CHECK(holders[0]["count"].number == 2);
  CHECK(holders[0]["file"].string.ends_with("test_pprof_http.cpp"));
  CHECK(holders[0]["line"].number > 0);
  CHECK(holders[0]["share"].number > holders[1]["share"].number);
  CHECK(holders[0]["delay_seconds"].number >= 0.040);
  CHECK(holders[0]["stack"].items.size() >= 2);
  const auto& waiters = j["waiters"]["sites"];
  REQUIRE(waiters.items.size() >= 1);
  CHECK(waiters[0]["function"].string.find("pprof_http_waiter") != std::string::npos);
  CHECK(waiters[0]["count"].number == 12);
  CHECK(j["pprof"]["mutex"].string ==
        fmt::format("go tool pprof -top -tagfocus 'resource=^sites-cache$' "
                    "http://127.0.0.1:{}/debug/pprof/mutex",
                    agent.port()));
  CHECK(j["holders"]["empty_reason"].is_null());

  const auto page = get(agent.port(), "/stallz/sites?kind=lock&resource=sites-cache");
  REQUIRE(page.status == 200);
  CHECK(page.header("content-type") == "text/html; charset=utf-8");
  CHECK(page.header("content-security-policy").find("default-src 'none'") != std::string::npos);
  CHECK(page.body.find("sites_slow_holder") != std::string::npos);
  CHECK(page.body.find("<script") == std::string::npos);
  CHECK(page.body.find("src=") == std::string::npos);  // nothing loaded from anywhere

  // /stallz links each ranked resource here.
  const auto stallz = get(agent.port(), "/stallz");
  CHECK(stallz.body.find("href=\"stallz/sites?kind=lock&amp;resource=sites-cache\"") !=
        std::string::npos);
}

TEST_CASE("/stallz/sites: unknown resources, bad values and empty profiles", "[pprof_http]") {
  stallscope::Agent agent(stallscope::test::ephemeral());
  REQUIRE(agent.listening());
  const auto unknown = get(agent.port(), "/stallz/sites?kind=lock&resource=no-such-lock");
  CHECK(unknown.status == 404);
  CHECK(unknown.body.find("no lock named \"no-such-lock\"") != std::string::npos);
  const auto no_name = get(agent.port(), "/stallz/sites.json?kind=lock");
  CHECK(no_name.status == 400);
  const auto bad_kind = get(agent.port(), "/stallz/sites?kind=spoon&resource=x");
  CHECK(bad_kind.status == 400);
  CHECK(bad_kind.body.find("kind = \"spoon\"") != std::string::npos);
  const auto bad_name = get(agent.port(), "/stallz/sites?resource=%3Cb%3E");
  CHECK(bad_name.status == 400);
  CHECK(bad_name.body.find("resource = \"<b>\"") != std::string::npos);

  {
    const RateGuard off(ProfileRate::off());
    Mutex quiet{"sites-quiet"};
    contend_once(quiet, "sites-quiet");  // not sampled: profiling is off
    const auto j = stallscope::test::parse_json(
        get(agent.port(), "/stallz/sites.json?kind=lock&resource=sites-quiet").body);
    CHECK(j["holders"]["sites"].items.empty());
    CHECK(j["holders"]["empty_reason"].string.find("profiling is off") != std::string::npos);
    const auto page = get(agent.port(), "/stallz/sites?kind=lock&resource=sites-quiet");
    CHECK(page.status == 200);
    CHECK(page.body.find("profiling is off") != std::string::npos);
  }
  const RateGuard on(ProfileRate::events(1));
  Mutex calm{"sites-calm"};
  { const std::lock_guard lock(calm); }  // uncontended: nothing to sample
  const auto j = stallscope::test::parse_json(
      get(agent.port(), "/stallz/sites.json?resource=sites-calm").body);
  CHECK(j["kind"].is_null());
  CHECK(j["waiters"]["empty_reason"].string.find("No samples yet") != std::string::npos);
}

TEST_CASE("stacks are cut after stallscope's frames, whatever form the debug paths take",
          "[pprof][trim]") {
  using stallscope::detail::first_user_frame;
  using stallscope::detail::SourceFrame;
  const std::string asio = "/usr/include/boost/asio/";
  SECTION("a coroutine built with relative debug paths keeps its own frame") {
    // Debian's -ffile-prefix-map and ccache's base_dir name the application's sources relative,
    // as glibc names its own: only the runtime's shared object makes a frame the C library's.
    const std::vector<SourceFrame> frames = {
        {"stallscope::detail::profile_async_draw(stallscope::detail::WaitHint const&)",
         "agent/src/profile.cpp", 561},
        {"stallscope::detail::PermitOwner::async_wait()", "/x/include/stallscope/detail/p.hpp", 9},
        {"fetch_rows(fetch_rows()::Frame*) [clone .actor]", "./src/db.cpp", 42},
        {"std::__n4861::coroutine_handle<void>::resume() const", "/usr/include/c++/12/coroutine",
         1},
        {"boost::asio::detail::awaitable_thread<boost::asio::any_io_executor>::pump()",
         asio + "impl/awaitable.hpp", 2},
        {"stallscope::detail::SliceHandler<boost::asio::detail::executor_function>::operator()()",
         "/x/include/stallscope/task.hpp", 128},
        {"boost::asio::io_context::run()", asio + "impl/io_context.ipp", 63},
    };
    CHECK(first_user_frame(frames) == 2);
  }
  SECTION("the C library's frames under a lock are passed over") {
    const std::vector<SourceFrame> frames = {
        {"stallscope::detail::on_stack_signal(int)", "agent/src/profile.cpp", 1},
        {"futex_wait", "../sysdeps/nptl/futex-internal.h", 146, true},
        {"lll_mutex_lock_optimized", "./nptl/pthread_mutex_lock.c", 48, true},
        {"std::mutex::lock()", "/usr/include/c++/12/bits/std_mutex.h", 100},
        {"stallscope::Mutex::lock()", "/x/include/stallscope/mutex.hpp", 50},
        {"std::lock_guard<stallscope::Mutex>::lock_guard(stallscope::Mutex&)",
         "/usr/include/c++/12/bits/std_mutex.h", 229},
        {"update_cache()", "./src/cache.cpp", 17},
        {"main", "./src/main.cpp", 3},
    };
    CHECK(first_user_frame(frames) == 6);
  }
  SECTION("a stack of nothing but stallscope's frames is kept whole") {
    const std::vector<SourceFrame> frames = {
        {"stallscope::detail::capture(unsigned long*)", "agent/src/profile.cpp", 82},
        {"stallscope::detail::BlockingPool::work()", "/x/include/stallscope/pool.hpp", 7},
    };
    CHECK(first_user_frame(frames) == 0);
  }
}
