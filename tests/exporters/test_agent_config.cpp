// Agent configuration and its errors: taken ports, bad addresses, the environment.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <system_error>

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include "stallscope/agent.hpp"
#include "stallscope/agent_options.hpp"
#include "stallscope/mutex.hpp"
#include "support.hpp"

namespace {

using Catch::Contains;
using stallscope::Agent;
using stallscope::AgentOptions;
using stallscope::test::LogCapture;
using stallscope::test::ScopedEnv;

// The what() of the exception of type E that f throws; a marker when it throws nothing.
template <class E, class F>
std::string what_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "<nothing was thrown>";
}

}  // namespace

TEST_CASE("a taken port is a clear error naming the address", "[agent][errors]") {
  Agent first(AgentOptions{.listen = "127.0.0.1:0"});
  REQUIRE(first.listening());
  const std::string address = fmt::format("127.0.0.1:{}", first.port());

  SECTION("by default it is logged and the Agent runs without an endpoint") {
    const LogCapture log;
    const Agent second(AgentOptions{.listen = address});
    CHECK_FALSE(second.listening());
    CHECK(second.port() == 0);
    CHECK(second.url().empty());
    CHECK_THAT(second.error(), Contains(address));
    CHECK_THAT(log.all(), Contains(address));
  }
  SECTION("with throw_on_error it throws std::system_error naming the address") {
    std::error_code code;
    const std::string what = what_of<std::system_error>([&] {
      try {
        const Agent second(AgentOptions{.listen = address, .throw_on_error = true});
      } catch (const std::system_error& e) {
        code = e.code();
        throw;
      }
    });
    CHECK_THAT(what, Contains(address));
    CHECK(code == std::errc::address_in_use);
  }
  // The first endpoint was not disturbed.
  CHECK(stallscope::test::scrape(first.port()).find("stallscope_build_info") != std::string::npos);
}

TEST_CASE("bad listen addresses are rejected naming the value", "[agent][errors]") {
  const std::string bad = GENERATE("nonsense", "127.0.0.1:99999", "300.1.1.1:80",
                                   "127.0.0.1:", "127.0.0.1:80x", "[::1:80", "example.com:80");
  INFO(bad);
  CHECK_THROWS_AS(stallscope::parse_listen_address(bad), std::invalid_argument);
  CHECK_THAT(what_of<std::invalid_argument>([&] { stallscope::parse_listen_address(bad); }),
             Contains(bad));
  CHECK_THAT(what_of<std::invalid_argument>(
                 [&] { const Agent agent(AgentOptions{.listen = bad, .throw_on_error = true}); }),
             Contains(bad));

  const LogCapture log;
  const Agent agent(AgentOptions{.listen = bad});
  CHECK_FALSE(agent.listening());
  CHECK(agent.port() == 0);
  CHECK_THAT(agent.error(), Contains(bad));
  CHECK_THAT(log.all(), Contains(bad));
}

TEST_CASE("good listen addresses parse to the host and port the endpoint binds", "[agent]") {
  CHECK(stallscope::parse_listen_address("127.0.0.1:9464").host == "127.0.0.1");
  CHECK(stallscope::parse_listen_address("127.0.0.1:9464").port == 9464);
  CHECK(stallscope::parse_listen_address("localhost:0").host == "127.0.0.1");
  CHECK(stallscope::parse_listen_address("localhost:0").port == 0);
  CHECK(stallscope::parse_listen_address("[::1]:65535").host == "[::1]");
  CHECK(stallscope::parse_listen_address("[::1]:65535").port == 65535);
  CHECK(stallscope::parse_listen_address("0.0.0.0:80").host == "0.0.0.0");
}

TEST_CASE("a disabled Agent serves nothing and reports no error", "[agent]") {
  const Agent agent(AgentOptions{.listen = "127.0.0.1:0", .enabled = false});
  CHECK_FALSE(agent.listening());
  CHECK(agent.port() == 0);
  CHECK(agent.url().empty());
  CHECK(agent.error().empty());
}

TEST_CASE("http_threads out of range is rejected naming the value", "[agent][errors]") {
  const int threads = GENERATE(0, 65);
  CHECK_THAT(what_of<std::invalid_argument>([&] {
               const Agent agent(AgentOptions{
                   .listen = "127.0.0.1:0", .http_threads = threads, .throw_on_error = true});
             }),
             Contains(fmt::format("http_threads = {}", threads)));
}

TEST_CASE("AgentOptions::from_env honours STALLSCOPE_LISTEN and STALLSCOPE_AGENT", "[agent][env]") {
  SECTION("unset: the defaults") {
    const ScopedEnv listen("STALLSCOPE_LISTEN", nullptr);
    const ScopedEnv enabled("STALLSCOPE_AGENT", nullptr);
    const AgentOptions o = AgentOptions::from_env();
    CHECK(o.listen == "127.0.0.1:9464");
    CHECK(o.enabled);
  }
  SECTION("STALLSCOPE_LISTEN sets the address") {
    const ScopedEnv listen("STALLSCOPE_LISTEN", "127.0.0.1:0");
    const ScopedEnv enabled("STALLSCOPE_AGENT", nullptr);
    CHECK(AgentOptions::from_env().listen == "127.0.0.1:0");

    const Agent agent;  // reads the environment
    REQUIRE(agent.listening());
    CHECK(agent.port() > 0);
    CHECK(stallscope::test::scrape(agent.port()).find("stallscope_build_info") !=
          std::string::npos);
  }
  SECTION("STALLSCOPE_AGENT=0 disables the endpoint") {
    const ScopedEnv listen("STALLSCOPE_LISTEN", "127.0.0.1:0");
    const std::string off = GENERATE("0", "false", "off");
    const ScopedEnv enabled("STALLSCOPE_AGENT", off.c_str());
    CHECK_FALSE(AgentOptions::from_env().enabled);
    const Agent agent;
    CHECK_FALSE(agent.listening());
    CHECK(agent.error().empty());
  }
  SECTION("STALLSCOPE_AGENT=1 enables it") {
    const std::string on = GENERATE("1", "true", "on");
    const ScopedEnv enabled("STALLSCOPE_AGENT", on.c_str());
    CHECK(AgentOptions::from_env().enabled);
  }
}

TEST_CASE("a bad environment value is logged and only that variable keeps its default",
          "[agent][env][errors]") {
  SECTION("STALLSCOPE_LISTEN") {
    const ScopedEnv listen("STALLSCOPE_LISTEN", "127.0.0.1:70000");
    const ScopedEnv enabled("STALLSCOPE_AGENT", "0");
    const LogCapture log;
    AgentOptions o;
    REQUIRE_NOTHROW(o = AgentOptions::from_env());
    CHECK(o.listen == AgentOptions{}.listen);
    CHECK_FALSE(o.enabled);  // the other variable still applies
    REQUIRE(log.messages().size() == 1);
    CHECK_THAT(log.all(), Contains("STALLSCOPE_LISTEN=\"127.0.0.1:70000\"") &&
                              Contains("using the default (127.0.0.1:9464)"));
    CHECK_THAT(log.all(), !Contains("stallscope: "));  // the sink's caller adds no prefix twice
  }
  SECTION("STALLSCOPE_AGENT") {
    const ScopedEnv enabled("STALLSCOPE_AGENT", "maybe");
    const ScopedEnv watchdog("STALLSCOPE_WATCHDOG_MS", "250");
    const LogCapture log;
    const AgentOptions o = AgentOptions::from_env();
    CHECK(o.enabled);
    CHECK(o.watchdog_threshold == std::chrono::milliseconds(250));
    CHECK_THAT(log.all(), Contains("STALLSCOPE_AGENT=\"maybe\"") && Contains("default (on)"));
  }
  SECTION("STALLSCOPE_WATCHDOG_MS") {
    const char* bad = GENERATE("abc", "-1", "3600001", "10ms");
    const ScopedEnv watchdog("STALLSCOPE_WATCHDOG_MS", bad);
    const ScopedEnv listen("STALLSCOPE_LISTEN", "127.0.0.1:0");
    const ScopedEnv enabled("STALLSCOPE_AGENT", nullptr);
    const LogCapture log;
    const AgentOptions o = AgentOptions::from_env();
    CHECK(o.watchdog_threshold == AgentOptions{}.watchdog_threshold);
    CHECK(o.listen == "127.0.0.1:0");
    CHECK_THAT(log.all(), Contains(fmt::format("STALLSCOPE_WATCHDOG_MS=\"{}\"", bad)) &&
                              Contains("default (100 ms)"));
  }
}

TEST_CASE("an Agent with a bad environment value still serves", "[agent][env][errors]") {
  const ScopedEnv listen("STALLSCOPE_LISTEN", "127.0.0.1:0");
  const ScopedEnv enabled("STALLSCOPE_AGENT", "yes please");
  const ScopedEnv watchdog("STALLSCOPE_WATCHDOG_MS", "soon");
  const LogCapture log;
  const Agent agent;  // must not throw
  REQUIRE(agent.listening());
  CHECK(agent.error().empty());
  CHECK(stallscope::test::scrape(agent.port()).find("stallscope_build_info") != std::string::npos);
  CHECK_THAT(log.all(), Contains("STALLSCOPE_AGENT=\"yes please\"") &&
                            Contains("STALLSCOPE_WATCHDOG_MS=\"soon\""));
}

TEST_CASE("an Agent whose web config cannot be loaded serves nothing and names the file",
          "[agent][errors][webconfig]") {
  const std::string file = (std::filesystem::temp_directory_path() /
                            fmt::format("stallscope-bad-web-{}.yml", ::getpid()))
                               .string();
  std::ofstream(file) << "basic_auth_users:\n  ops: not-a-hash\n";
  SECTION("logged: no fallback to serving without the authentication it asks for") {
    const LogCapture log;
    const Agent agent(AgentOptions{.listen = "127.0.0.1:0", .web_config_file = file});
    CHECK_FALSE(agent.listening());
    CHECK_THAT(agent.error(), Contains(file) && Contains("basic_auth_users.ops"));
    CHECK_THAT(log.all(), Contains(file));
  }
  SECTION("thrown with throw_on_error") {
    CHECK_THAT(what_of<std::invalid_argument>([&] {
                 const Agent agent(AgentOptions{
                     .listen = "127.0.0.1:0", .throw_on_error = true, .web_config_file = file});
               }),
               Contains(file) && Contains("not a bcrypt hash"));
  }
  SECTION("through STALLSCOPE_WEB_CONFIG") {
    const ScopedEnv listen("STALLSCOPE_LISTEN", "127.0.0.1:0");
    const ScopedEnv web("STALLSCOPE_WEB_CONFIG", file.c_str());
    const ScopedEnv enabled("STALLSCOPE_AGENT", nullptr);
    const LogCapture log;
    const Agent agent;
    CHECK_FALSE(agent.listening());
    CHECK_THAT(agent.error(), Contains(file));
  }
  std::filesystem::remove(file);
}

TEST_CASE("listen addresses are parsed and bad ones named", "[config]") {
  using stallscope::parse_listen_address;
  CHECK(parse_listen_address("127.0.0.1:9464").port == 9464);
  CHECK(parse_listen_address("localhost:0").host == "127.0.0.1");
  CHECK(parse_listen_address("[::1]:80").host == "[::1]");
  CHECK_THROWS_WITH(parse_listen_address("9464"), Catch::Contains("\"9464\""));
  CHECK_THROWS_WITH(parse_listen_address("127.0.0.1:70000"), Catch::Contains("70000"));
  CHECK_THROWS_WITH(parse_listen_address("example.com:80"), Catch::Contains("example.com"));
  CHECK_THROWS_AS(parse_listen_address("[nope]:80"), std::invalid_argument);
  CHECK_THROWS_AS(parse_listen_address("127.0.0.1:"), std::invalid_argument);
}
