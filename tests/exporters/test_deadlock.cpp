// The scrape path answers while the application is deadlocked on its own locks, and shows who
// waits where; scrape-time gauges stay sane while waits begin and end during a scrape.
#include <algorithm>
#include <chrono>
#include <mutex>
#include <stop_token>
#include <string>
#include <thread>

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include "stallscope/agent.hpp"
#include "stallscope/mutex.hpp"
#include "stallscope/prometheus.hpp"
#include "support.hpp"

using namespace stallscope::test;

TEST_CASE("a deadlocked application still answers /metrics and shows both waiters",
          "[endpoint][deadlock][concurrency]") {
  stallscope::Agent agent(ephemeral());
  REQUIRE(agent.listening());
  const int port = agent.port();
  Deadlock deadlock("exp-deadlock-a", "exp-deadlock-b");

  const std::string waiters_a = lock_series("stallscope_waiters", "exp-deadlock-a");
  const std::string waiters_b = lock_series("stallscope_waiters", "exp-deadlock-b");
  const std::string age_a = lock_series("stallscope_oldest_wait_age_seconds", "exp-deadlock-a");
  const std::string age_b = lock_series("stallscope_oldest_wait_age_seconds", "exp-deadlock-b");
  // A wait that begins while a scrape runs has age 0 in it (live state is read after the
  // scrape's one clock read), so the first scrape that sees both waiters may show age 0 for them:
  // scrape until both waits began before a scrape did.
  const std::string body = scrape_until(port, [&](const std::string& s) {
    return value_of(s, waiters_a) == 1.0 && value_of(s, waiters_b) == 1.0 &&
           value_of(s, age_a).value_or(0) > 0 && value_of(s, age_b).value_or(0) > 0;
  });
  {
    INFO(body);
    REQUIRE(value_of(body, waiters_a) == 1.0);
    REQUIRE(value_of(body, waiters_b) == 1.0);
    CHECK(value_of(body, age_a).value_or(0) > 0);
    CHECK(value_of(body, age_b).value_or(0) > 0);
  }

  // x is still in the same wait: a later scrape sees it older, and both locks held.
  const std::string later = scrape(port);
  {
    INFO(later);
    CHECK(value_of(later, waiters_b) == 1.0);
    CHECK(value_of(later, age_b).value_or(0) > value_of(body, age_b).value_or(0));
    CHECK(value_of(later,
                   "stallscope_lock_holder_age_seconds{kind=\"lock\",resource=\""
                   "exp-deadlock-a\"}")
              .value_or(0) > 0);
    CHECK(value_of(later,
                   "stallscope_lock_holder_age_seconds{kind=\"lock\",resource=\""
                   "exp-deadlock-b\"}")
              .value_or(0) > 0);
  }

  deadlock.stop();
  const int y_timeouts = deadlock.y_timeouts();
  const bool y_got_a = deadlock.y_got_a();
  CHECK_FALSE(y_got_a);
  REQUIRE(y_timeouts > 0);

  const std::string after = scrape(port);
  INFO(after);
  INFO("y gave up " << y_timeouts << " times");
  // a: x's one uncontended acquisition; every attempt of y waited and gave up.
  CHECK(
      has_line(after, lock_series("stallscope_lock_acquisitions_total", "exp-deadlock-a") + " 1"));
  CHECK(has_line(
      after, fmt::format("{} {}", lock_series("stallscope_lock_timeouts_total", "exp-deadlock-a"),
                         y_timeouts)));
  CHECK(has_line(
      after, fmt::format("{} {}", lock_series("stallscope_lock_contended_total", "exp-deadlock-a"),
                         y_timeouts)));
  CHECK(has_line(
      after, fmt::format("{} {}", lock_series("stallscope_wait_seconds_count", "exp-deadlock-a"),
                         y_timeouts + 1)));
  // b: y's uncontended acquisition, then x's after its one long wait.
  CHECK(
      has_line(after, lock_series("stallscope_lock_acquisitions_total", "exp-deadlock-b") + " 2"));
  CHECK(has_line(after, lock_series("stallscope_lock_contended_total", "exp-deadlock-b") + " 1"));
  CHECK(has_line(after, lock_series("stallscope_lock_timeouts_total", "exp-deadlock-b") + " 0"));
  CHECK(has_line(after, waiters_a + " 0"));
  CHECK(has_line(after, waiters_b + " 0"));
  CHECK(has_line(after, age_a + " 0"));
  CHECK(has_line(after, age_b + " 0"));
}

TEST_CASE("the oldest wait age is never negative when a wait begins during a scrape",
          "[collectable][concurrency]") {
  constexpr int kScrapes = 3000;
  stallscope::TimedMutex m("exp-age-race");
  const stallscope::Collectable collectable;
  std::unique_lock held(m);  // the waiter below only ever times out
  std::jthread waiter([&](std::stop_token stop) {
    while (!stop.stop_requested()) (void)m.try_lock_for(std::chrono::microseconds(1));
  });

  double lowest = 0;
  int seen_waiting = 0;
  for (int i = 0; i < kScrapes; ++i) {
    for (const auto& family : collectable.Collect()) {
      if (family.name != "stallscope_oldest_wait_age_seconds") continue;
      for (const auto& metric : family.metric) {
        const bool ours = std::any_of(metric.label.begin(), metric.label.end(), [](const auto& l) {
          return l.name == "resource" && l.value == "exp-age-race";
        });
        if (!ours) continue;
        lowest = std::min(lowest, metric.gauge.value);
        if (metric.gauge.value != 0) ++seen_waiting;
      }
    }
  }
  waiter.request_stop();
  waiter.join();
  INFO(seen_waiting << " of " << kScrapes << " scrapes saw the waiter");
  CHECK(lowest >= 0);
}
