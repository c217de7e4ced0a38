#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "stallscope/clock.hpp"
#include "stallscope/detail/series.hpp"
#include "stallscope/log.hpp"
#include "stallscope/options.hpp"
#include "stallscope/registry.hpp"
#include "support/metrics.hpp"

using stallscope::Config;
using stallscope::Registry;
using stallscope::ResourceKind;

namespace {

// A series with no metrics of its own, to exercise the registry alone.
class NullSeries final : public stallscope::detail::Series {
 public:
  using Series::Series;
  void collect(stallscope::detail::Collector&) override {}
};

std::unique_ptr<stallscope::detail::Series> make_null(ResourceKind k, std::string name,
                                                      std::uint32_t id, const Config&) {
  return std::make_unique<NullSeries>(k, std::move(name), id);
}

struct EnvVar {
  EnvVar(const char* name, const char* value) : name_(name) { ::setenv(name, value, 1); }
  ~EnvVar() { ::unsetenv(name_); }
  EnvVar(const EnvVar&) = delete;
  EnvVar& operator=(const EnvVar&) = delete;
  const char* name_;
};

}  // namespace

TEST_CASE("resource names are validated and errors name the bad value", "[registry]") {
  using stallscope::validate_resource_name;
  CHECK_NOTHROW(validate_resource_name("sessions"));
  CHECK_NOTHROW(validate_resource_name("audit-writer.v2:shard/3@eu_1"));
  CHECK_THROWS_WITH(validate_resource_name(""), Catch::Contains("empty"));
  CHECK_THROWS_WITH(validate_resource_name("has space"),
                    Catch::Contains("\"has space\"") && Catch::Contains("position 3"));
  CHECK_THROWS_WITH(validate_resource_name("quote\"d"), Catch::Contains("\\x22"));
  CHECK_THROWS_WITH(validate_resource_name("__reserved"), Catch::Contains("reserved"));
  CHECK_THROWS_WITH(validate_resource_name(std::string(129, 'a')), Catch::Contains("129"));
  CHECK_THROWS_AS(validate_resource_name("tab\there"), std::invalid_argument);
}

TEST_CASE("the same kind and name share one series; kinds are separate", "[registry]") {
  Registry& r = Registry::global();
  auto& a = r.series(ResourceKind::kPool, "shared-name", make_null);
  auto& b = r.series(ResourceKind::kPool, "shared-name", make_null);
  auto& c = r.series(ResourceKind::kSemaphore, "shared-name", make_null);
  CHECK(&a == &b);
  CHECK(&a != &c);
  CHECK(a.name() == "shared-name");
}

TEST_CASE("names beyond the cardinality cap go to one overflow series and are counted",
          "[registry]") {
  Registry& r = Registry::global();
  const Config before = r.config();
  const std::size_t existing = r.series_count(ResourceKind::kExecutor);
  Config capped = before;
  capped.max_resources_per_kind = existing + 3;
  r.configure(capped);

  std::vector<stallscope::detail::Series*> got;
  for (int i = 0; i < 6; ++i) {
    got.push_back(&r.series(ResourceKind::kExecutor, "cap-" + std::to_string(i), make_null));
  }
  r.configure(before);

  CHECK(got[0]->name() == "cap-0");
  CHECK(got[2]->name() == "cap-2");
  CHECK(got[3]->name() == "__overflow__");
  CHECK(got[4] == got[3]);
  CHECK(got[5] == got[3]);
  // The cap counts real names; the one overflow series comes on top.
  CHECK(r.series_count(ResourceKind::kExecutor) == existing + 4);
  // Already-known names still resolve to their own series after the cap is hit.
  CHECK(&r.series(ResourceKind::kExecutor, "cap-1", make_null) == got[1]);
  const auto overflowed =
      stallscope::testing::value("stallscope_resource_overflow_total", {{"kind", "executor"}});
  REQUIRE(overflowed.has_value());
  CHECK(*overflowed == 3.0);
}

TEST_CASE("a zero cardinality cap is rejected", "[registry]") {
  Config c;
  c.max_resources_per_kind = 0;
  CHECK_THROWS_WITH(Registry::global().configure(c), Catch::Contains("max_resources_per_kind"));
}

TEST_CASE("every collected family has help text and a stallscope_ name", "[registry]") {
  (void)Registry::global().series(ResourceKind::kPool, "help-check", make_null);
  for (const auto& f : Registry::global().collect()) {
    INFO(f.name);
    CHECK(f.name.rfind("stallscope_", 0) == 0);
    CHECK_FALSE(f.help.empty());
    if (f.type == stallscope::MetricType::kCounter) CHECK(f.name.ends_with("_total"));
  }
}

// Collects what stallscope logs while alive.
class LogLines {
 public:
  LogLines() {
    stallscope::set_log_sink(
        [this](stallscope::LogLevel, std::string_view m) { lines_.emplace_back(m); });
  }
  ~LogLines() { stallscope::set_log_sink({}); }
  LogLines(const LogLines&) = delete;
  LogLines& operator=(const LogLines&) = delete;
  const std::vector<std::string>& lines() const { return lines_; }

 private:
  std::vector<std::string> lines_;
};

namespace {

// Config::from_env() with two variables set (each unset again after it), and what it logged.
struct FromEnv {
  Config config;
  std::vector<std::string> log;
};
FromEnv from_env(std::pair<const char*, const char*> a, std::pair<const char*, const char*> b) {
  EnvVar x(a.first, a.second);
  EnvVar y(b.first, b.second);
  const LogLines log;
  FromEnv read;
  REQUIRE_NOTHROW(read.config = Config::from_env());
  read.log = log.lines();
  return read;
}

}  // namespace

TEST_CASE("configuration from the environment reads each variable on its own", "[config]") {
  SECTION("good values are used") {
    const auto [c, log] =
        from_env({"STALLSCOPE_HOLD_TIME", "1"}, {"STALLSCOPE_MAX_RESOURCES", "25"});
    CHECK(c.hold_time);
    CHECK(c.max_resources_per_kind == 25);
    CHECK(log.empty());
  }
  SECTION("a bad hold time is logged and the valid cap still applies") {
    const auto [c, log] =
        from_env({"STALLSCOPE_HOLD_TIME", "maybe"}, {"STALLSCOPE_MAX_RESOURCES", "5"});
    CHECK_FALSE(c.hold_time);
    CHECK(c.max_resources_per_kind == 5);
    REQUIRE(log.size() == 1);
    CHECK(log[0] ==
          "STALLSCOPE_HOLD_TIME=\"maybe\" is not one of 0, 1, true, false, on, off; using the "
          "default (off)");
  }
  SECTION("a bad cap is logged and the valid hold time still applies") {
    const auto [c, log] =
        from_env({"STALLSCOPE_HOLD_TIME", "1"}, {"STALLSCOPE_MAX_RESOURCES", "abc"});
    CHECK(c.hold_time);
    CHECK(c.max_resources_per_kind == Config{}.max_resources_per_kind);
    REQUIRE(log.size() == 1);
    CHECK_THAT(log[0], Catch::Contains("STALLSCOPE_MAX_RESOURCES=\"abc\"") &&
                           Catch::Contains("using the default (1000)"));
  }
  SECTION("numbers out of range or with trailing text are refused") {
    const char* bad = GENERATE("0", "1000001", "12abc", "-3", " 7", "99999999999999999999999");
    EnvVar m("STALLSCOPE_MAX_RESOURCES", bad);
    const LogLines log;
    CHECK(Config::from_env().max_resources_per_kind == Config{}.max_resources_per_kind);
    REQUIRE(log.lines().size() == 1);
    CHECK_THAT(log.lines()[0], Catch::Contains(bad));
  }
  CHECK_FALSE(Config::from_env().hold_time);
}

TEST_CASE("the task thresholds come from the environment as durations", "[config]") {
  using namespace std::chrono_literals;
  SECTION("good values are used, each with its unit") {
    const auto [c, log] =
        from_env({"STALLSCOPE_SLOW_SLICE", "250us"}, {"STALLSCOPE_CANCEL_GRACE", "3s"});
    CHECK(c.slow_slice == 250us);
    CHECK(c.cancel_grace == 3s);
    CHECK(log.empty());
  }
  SECTION("a bad value is logged naming the variable and the value; the default stays") {
    const char* bad = GENERATE("50", "ms", "-5ms", "5 ms", "2h", "3601s", "1.5s", "10msx");
    const auto [c, log] =
        from_env({"STALLSCOPE_SLOW_SLICE", bad}, {"STALLSCOPE_CANCEL_GRACE", "7ms"});
    CHECK(c.slow_slice == Config{}.slow_slice);
    CHECK(c.cancel_grace == 7ms);
    REQUIRE(log.size() == 1);
    CHECK_THAT(log[0], Catch::Contains(std::string("STALLSCOPE_SLOW_SLICE=\"") + bad + "\"") &&
                           Catch::Contains("using the default (10ms)"));
  }
  SECTION("the grace period is read on its own") {
    EnvVar g("STALLSCOPE_CANCEL_GRACE", "soon");
    const LogLines log;
    CHECK(Config::from_env().cancel_grace == Config{}.cancel_grace);
    REQUIRE(log.lines().size() == 1);
    CHECK_THAT(log.lines()[0], Catch::Contains("STALLSCOPE_CANCEL_GRACE=\"soon\"") &&
                                   Catch::Contains("using the default (1s)"));
  }
}

TEST_CASE("negative task thresholds are refused, naming the value", "[config]") {
  Config c;
  c.slow_slice = std::chrono::nanoseconds(-5);
  CHECK_THROWS_WITH(Registry::global().configure(c),
                    Catch::Contains("slow_slice") && Catch::Contains("-5"));
  c = Config{};
  c.cancel_grace = std::chrono::nanoseconds(-7);
  CHECK_THROWS_WITH(Registry::global().configure(c),
                    Catch::Contains("cancel_grace") && Catch::Contains("-7"));
}

TEST_CASE("the log sink is replaceable and a throwing sink is contained", "[log]") {
  std::vector<std::string> seen;
  stallscope::set_log_sink([&](stallscope::LogLevel, std::string_view m) { seen.emplace_back(m); });
  stallscope::log(stallscope::LogLevel::kWarning, "hello");
  stallscope::set_log_sink([](stallscope::LogLevel, std::string_view) { throw 42; });
  CHECK_NOTHROW(stallscope::log(stallscope::LogLevel::kError, "boom"));
  stallscope::set_log_sink({});
  REQUIRE(seen.size() == 1);
  CHECK(seen[0] == "hello");
}

TEST_CASE("the recording clock is monotonic and runs at steady_clock's rate", "[clock]") {
  (void)Registry::global();  // calibrates the clock
  using stallscope::detail::steady_ns;
  // Each reading of the recording clock sits between two steady_clock readings, so a thread
  // preempted between the reads widens the bracket instead of failing the test.
  struct Bracket {
    std::int64_t before, clock, after;
  };
  auto bracket = [] {
    Bracket b{};
    b.before = steady_ns();
    b.clock = stallscope::now_ns();
    b.after = steady_ns();
    return b;
  };
  const Bracket start = bracket();
  std::int64_t prev = start.clock;
  for (int i = 0; i < 100000; ++i) {
    const std::int64_t t = stallscope::now_ns();
    REQUIRE(t >= prev);  // one thread: never goes back
    prev = t;
  }
  while (steady_ns() - start.after < 20'000'000) {
  }
  const Bracket end = bracket();
  // Same rate within 1% over 20 ms or more (calibration error is ~1e-5; this catches a wrong
  // scale), and the same epoch: each reading within a millisecond of its bracket.
  const double clock_elapsed = static_cast<double>(end.clock - start.clock);
  CHECK(clock_elapsed >= 0.99 * static_cast<double>(end.before - start.after));
  CHECK(clock_elapsed <= 1.01 * static_cast<double>(end.after - start.before));
  for (const Bracket& b : {start, end}) {
    CHECK(b.clock >= b.before - 1'000'000);
    CHECK(b.clock <= b.after + 1'000'000);
  }
}
