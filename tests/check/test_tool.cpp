// stallscope-check, the executable, against a real Agent endpoint in this process: exit codes,
// the JUnit file, and usage and connection errors that name the bad value.
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <catch2/catch.hpp>
#include <fmt/format.h>

#include "exporters/support.hpp"
#include "stallscope/agent.hpp"
#include "stallscope/channel.hpp"
#include "stallscope/mutex.hpp"
#include "stallscope/task.hpp"
#include "support/poll.hpp"

namespace asio = boost::asio;
using Catch::Contains;
using stallscope::test::ProcessResult;
using stallscope::test::run_with_input;
using namespace stallscope::testing;

namespace {

ProcessResult check(const std::vector<std::string>& args) {
  std::vector<std::string> argv{STALLSCOPE_CHECK_TOOL};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_with_input(argv, "");
}

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// A task running until stopped: `heavy` spins 3 ms per slice (check 4 fails), otherwise each
// slice takes a lock and passes an item through a channel (every check passes). It runs on a
// thread of its own, which a loaded machine may start after the check's first scrape: the test
// waits until it has run a slice.
class Service {
 public:
  explicit Service(bool heavy)
      : lock_(unique_name("ledger")), channel_(unique_name("queue"), {.capacity = 8}) {
    stallscope::spawn(
        io_.get_executor(), heavy ? "cruncher" : "handler",
        [this, heavy]() -> asio::awaitable<void> {
          while (!stop_) {
            if (heavy) {
              const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(3);
              while (std::chrono::steady_clock::now() < end) {
              }
            } else {
              { std::lock_guard g(lock_); }
              (void)channel_.try_send(1);
              (void)channel_.try_receive();
            }
            ++slices_;
            co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
          }
        },
        asio::detached);
    thread_ = std::thread([this] { io_.run(); });
  }
  // Whether the task has run a slice (by the generous deadline of eventually()).
  bool started() const {
    return eventually([this] { return slices_.load() > 0; });
  }
  ~Service() {
    stop_ = true;
    thread_.join();
  }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<int> slices_{0};
  stallscope::Mutex lock_;
  stallscope::Channel<int> channel_;
  asio::io_context io_;
  std::thread thread_;
};

}  // namespace

TEST_CASE("stallscope-check exits 0 on a healthy service and 1 on a failing one, with JUnit",
          "[check][tool]") {
  stallscope::Agent agent(stallscope::AgentOptions{.listen = "127.0.0.1:0"});
  REQUIRE(agent.listening());
  const std::string url = fmt::format("http://127.0.0.1:{}", agent.port());
  const auto junit = std::filesystem::temp_directory_path() / unique_name("stallscope-junit");
  {
    const Service service(false);
    REQUIRE(service.started());
    const ProcessResult r = check({"--url", url, "--window", "500ms"});
    INFO(r.output);
    CHECK(r.exit_status == 0);
    CHECK_THAT(r.output, Contains("PASS  executor-cpu") && Contains("result: PASS"));
  }
  {
    const Service service(true);
    REQUIRE(service.started());
    const ProcessResult r = check({"--url", url + "/", "--window", "0.5", "--junit", junit});
    INFO(r.output);
    CHECK(r.exit_status == 1);
    CHECK_THAT(r.output, Contains("FAIL  executor-cpu") && Contains("task `cruncher`"));
    const std::string xml = read_file(junit);
    INFO(xml);
    CHECK_THAT(xml, Contains("<testsuite name=\"stallscope-check\"") &&
                        Contains("name=\"executor-cpu\" time=\"0\">\n<failure") &&
                        Contains("name=\"coverage\""));
  }
  {
    // A thresholds file that tolerates the spinning passes the same service.
    const auto config = std::filesystem::temp_directory_path() / unique_name("thresholds.yaml");
    std::ofstream(config) << "long_slice_share: 1.01\n";
    const Service service(true);
    REQUIRE(service.started());
    const ProcessResult r = check({"--url", url, "--window", "500ms", "--config", config});
    INFO(r.output);
    CHECK(r.exit_status == 0);
    std::filesystem::remove(config);
  }
  std::filesystem::remove(junit);
}

TEST_CASE("stallscope-check exits 2 on usage and connection errors, naming the value",
          "[check][tool]") {
  // A port that refuses connections: bound by this socket, so no other process (a test running
  // beside this one) can listen on it, and not listening.
  asio::io_context io;
  asio::ip::tcp::socket bound(io);
  bound.open(asio::ip::tcp::v4());
  bound.bind({asio::ip::address_v4::loopback(), 0});
  const int closed_port = bound.local_endpoint().port();
  const std::string refused = fmt::format("http://127.0.0.1:{}", closed_port);
  const struct {
    std::vector<std::string> args;
    std::string message;
  } cases[] = {
      {{"--url", refused, "--window", "1s"},
       fmt::format("--url \"{}\": cannot connect to 127.0.0.1:{}", refused, closed_port)},
      {{"--url", "127.0.0.1:9464"}, "--url \"127.0.0.1:9464\" does not start with http://"},
      {{"--url", "https://127.0.0.1:9464"}, "HTTPS is not supported"},
      {{"--url", "http://127.0.0.1:99999"}, "\"99999\" is not a port"},
      {{"--url", "http://127.0.0.1:9464/metrics"}, "with no path"},
      {{"--url", refused, "--window", "soon"}, "--window \"soon\" is not a positive duration"},
      {{"--url", refused, "--config", "/nonexistent/t.yaml"},
       "--config: /nonexistent/t.yaml: cannot be read"},
      {{"--window", "1s"}, "--url is required"},
      {{"--url"}, "--url needs a value"},
      {{"--verbose"}, "unknown argument \"--verbose\""},
  };
  for (const auto& c : cases) {
    const ProcessResult r = check(c.args);
    INFO(r.output);
    CHECK(r.exit_status == 2);
    CHECK_THAT(r.output, Contains(c.message));
  }

  const ProcessResult help = check({"--help"});
  CHECK(help.exit_status == 0);
  CHECK_THAT(help.output, Contains("usage: stallscope-check --url"));
}
