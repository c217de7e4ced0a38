// RetryBudget and retry(): the budget's arithmetic on a manual clock, exact under threads; retry()
// stops on success, on max_attempts, on the predicate, on the budget and on cancellation (at once,
// during a backoff); every request, retry, denial and abandonment is counted; and the figure of
// the issue: a downstream failing every call gets at most R x (1 + retry share) + floor attempts/s.
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <exception>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <catch2/catch.hpp>

#include "stallscope/retry.hpp"
#include "stallscope/task.hpp"
#include "support/metrics.hpp"
#include "support/poll.hpp"
#include "support/readme.hpp"

namespace asio = boost::asio;
using namespace std::chrono_literals;
using stallscope::CancellationToken;
using stallscope::ManualRetryClock;
using stallscope::RetryBudget;
using stallscope::RetryBudgetOptions;
using stallscope::RetryError;
using stallscope::RetryPolicy;
using namespace stallscope::testing;

namespace {

// A retry metric of budget `name`; -1 when absent. Compiled off, every metric is absent.
double metric(std::string_view family, const std::string& name) {
  return stallscope::testing::value(family, {{"kind", "retry"}, {"resource", name}}).value_or(-1);
}
struct Counts {
  double requests, attempted, denied, abandoned;
};
Counts counts(const std::string& name) {
  return {metric("stallscope_retry_requests_total", name),
          metric("stallscope_retry_attempted_total", name),
          metric("stallscope_retry_denied_total", name),
          metric("stallscope_retry_abandoned_total", name)};
}
void require_counts(const std::string& name, Counts want) {
  if constexpr (!STALLSCOPE_ENABLED) {
    CHECK(metric("stallscope_retry_requests_total", name) == -1);
    return;
  }
  const Counts c = counts(name);
  CHECK(c.requests == want.requests);
  CHECK(c.attempted == want.attempted);
  CHECK(c.denied == want.denied);
  CHECK(c.abandoned == want.abandoned);
}

struct Downstream : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Runs `aw` to completion on `io` (which must have nothing else to do) and returns what it
// returned, or its exception.
template <class T>
struct Outcome {
  std::optional<T> value;
  std::exception_ptr error;
  bool done = false;
};
template <class T>
Outcome<T> run(asio::io_context& io, asio::awaitable<T> aw) {
  Outcome<T> out;
  asio::co_spawn(io, std::move(aw), [&](std::exception_ptr e, T v) {
    out.done = true;
    out.error = e;
    if (!e) out.value = std::move(v);
  });
  io.restart();
  io.run();
  return out;
}

RetryPolicy<int> no_sleep(std::uint32_t attempts) {
  RetryPolicy<int> p;
  p.initial_backoff = 0ns;
  p.max_backoff = 0ns;
  p.max_attempts = attempts;
  return p;
}

template <class E>
E caught(const std::exception_ptr& e) {
  REQUIRE(e);
  try {
    std::rethrow_exception(e);
  } catch (const E& x) {
    return x;
  } catch (...) {
    FAIL("unexpected exception type");
  }
  throw std::logic_error("unreachable");
}

}  // namespace

TEST_CASE("a retry budget rejects bad options with the value in the message", "[retry]") {
  auto msg = [](const RetryBudgetOptions& o) {
    try {
      RetryBudget b(unique_name("bad"), o);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no exception");
  };
  CHECK_THAT(msg({.ttl = 0s}), Catch::Contains("ttl") && Catch::Contains("got 0 s"));
  CHECK_THAT(msg({.ttl = 61s}), Catch::Contains("got 61 s"));
  CHECK_THAT(msg({.retry_share = -0.5}), Catch::Contains("retry_share") && Catch::Contains("-0.5"));
  CHECK_THAT(msg({.retry_share = std::nan("")}), Catch::Contains("retry_share"));
  CHECK_THAT(msg({.retry_share = 1001}), Catch::Contains("1001"));
  CHECK_THAT(msg({.min_retries_per_second = 2'000'000}), Catch::Contains("2000000"));
  CHECK_THROWS_AS(RetryBudget("__reserved"), std::invalid_argument);
  CHECK_NOTHROW(RetryBudget(unique_name("ok"), {.ttl = 60s, .retry_share = 1000}));
}

TEST_CASE("retry rejects a bad policy with the value in the message, before any attempt",
          "[retry]") {
  RetryBudget budget(unique_name("policy"));
  int calls = 0;
  auto op = [&]() -> asio::awaitable<int> {
    ++calls;
    co_return 1;
  };
  auto msg = [&](RetryPolicy<int> p) {
    try {
      (void)stallscope::retry(budget, CancellationToken(), p, op);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no exception");
  };
  RetryPolicy<int> p;
  p.max_attempts = 0;
  CHECK_THAT(msg(p), Catch::Contains("max_attempts"));
  p = {};
  p.jitter = 1.5;
  CHECK_THAT(msg(p), Catch::Contains("jitter") && Catch::Contains("1.5"));
  p = {};
  p.multiplier = 0.5;
  CHECK_THAT(msg(p), Catch::Contains("multiplier") && Catch::Contains("0.5"));
  p = {};
  p.initial_backoff = 2s;
  p.max_backoff = 1s;
  CHECK_THAT(msg(p), Catch::Contains("max_backoff") && Catch::Contains("1000000000"));
  CHECK(calls == 0);
}

TEST_CASE("deposits buy retry_share retries each, and expire after the ttl", "[retry]") {
  ManualRetryClock clock;
  const std::string name = unique_name("share");
  RetryBudget budget(name,
                     {.ttl = 2s, .min_retries_per_second = 0, .retry_share = 0.5, .clock = &clock});
  CHECK(budget.balance() == 0);
  CHECK_FALSE(budget.try_withdraw());
  for (int i = 0; i < 10; ++i) budget.deposit();
  CHECK(budget.balance() == 5);
  int granted = 0;
  while (budget.try_withdraw()) ++granted;
  CHECK(granted == 5);
  require_counts(name, {10, 5, 2, 0});

  // Deposits one second apart: both count within the 2 s ttl, the first expires after it.
  clock.advance(1s);
  for (int i = 0; i < 4; ++i) budget.deposit();
  CHECK(budget.balance() == 2);  // (10 + 4) / 2 - 5 taken
  clock.advance(1s);             // the first second's 10 deposits and 5 withdrawals expire
  CHECK(budget.balance() == 2);
  clock.advance(1s);
  CHECK(budget.balance() == 0);
  clock.advance(100s);  // a long idle gap: stale buckets count as nothing
  CHECK(budget.balance() == 0);
}

TEST_CASE("the floor allows min_retries_per_second x ttl retries per window without requests",
          "[retry]") {
  ManualRetryClock clock;
  RetryBudget budget(unique_name("floor"),
                     {.ttl = 3s, .min_retries_per_second = 2, .retry_share = 0, .clock = &clock});
  for (int window = 0; window < 3; ++window) {
    int granted = 0;
    for (int s = 0; s < 3; ++s) {
      while (budget.try_withdraw()) ++granted;
      clock.advance(1s);
    }
    CHECK(granted == 6);  // all in the window's first second, then none until it expires
  }
  while (budget.try_withdraw()) {
  }
  for (int i = 0; i < 100; ++i) budget.deposit();  // share 0: deposits buy nothing
  CHECK_FALSE(budget.try_withdraw());
}

TEST_CASE("an unlimited budget grants every retry and still counts them", "[retry]") {
  const std::string name = unique_name("unlimited");
  RetryBudget budget(name, {.unlimited = true});
  for (int i = 0; i < 1000; ++i) REQUIRE(budget.try_withdraw());
  budget.deposit();
  CHECK(budget.balance() == std::numeric_limits<std::int64_t>::max());
  require_counts(name, {1, 1000, 0, 0});
  if constexpr (STALLSCOPE_ENABLED) {
    CHECK(metric("stallscope_retry_unlimited", name) == 1);
    {
      RetryBudget second(name, {.unlimited = true});
      RetryBudget bounded(name);
      CHECK(metric("stallscope_retry_unlimited", name) == 2);
    }
    CHECK(metric("stallscope_retry_unlimited", name) == 1);
  }
}

TEST_CASE("concurrent withdrawals take exactly the budget, never one more",
          "[retry][concurrency]") {
  ManualRetryClock clock;
  const std::string name = unique_name("race");
  RetryBudget budget(name,
                     {.ttl = 10s, .min_retries_per_second = 0, .retry_share = 1, .clock = &clock});
  constexpr int kDeposits = 20000;
  constexpr int kThreads = 4;
  std::atomic<int> granted{0};
  {
    std::vector<std::jthread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&] {
        for (int i = 0; i < kDeposits / kThreads; ++i) {
          budget.deposit();
          // Two tries per deposit: at most one of them can succeed in total, over all threads.
          for (int k = 0; k < 2; ++k) granted += budget.try_withdraw() ? 1 : 0;
        }
      });
    }
  }
  CHECK(granted.load() == kDeposits);
  CHECK(budget.balance() == 0);
  require_counts(name, {kDeposits, kDeposits, kDeposits, 0});
}

TEST_CASE("retry stops at the first success and counts one request and its retries",
          "[retry][asio]") {
  asio::io_context io;
  const std::string name = unique_name("success");
  RetryBudget budget(name);
  int calls = 0;
  auto op = [&]() -> asio::awaitable<int> {
    if (++calls < 3) throw Downstream("down");
    co_return 42;
  };
  auto out = run(io, stallscope::retry(budget, CancellationToken(), no_sleep(5), op));
  REQUIRE(out.done);
  REQUIRE_FALSE(out.error);
  CHECK(*out.value == 42);
  CHECK(calls == 3);
  require_counts(name, {1, 2, 0, 0});
}

TEST_CASE("retry makes max_attempts attempts, then rethrows the last error", "[retry][asio]") {
  asio::io_context io;
  const std::string name = unique_name("attempts");
  RetryBudget budget(name);
  int calls = 0;
  auto op = [&]() -> asio::awaitable<int> {
    throw Downstream("down " + std::to_string(++calls));
    co_return 0;
  };
  RetryPolicy<int> p = no_sleep(4);
  p.initial_backoff = 1ms;  // real (short) sleeps, so backoff time is recorded
  p.max_backoff = 1ms;
  p.jitter = 0;
  auto out = run(io, stallscope::retry(budget, CancellationToken(), p, op));
  CHECK(calls == 4);
  CHECK_THAT(caught<Downstream>(out.error).what(), Catch::Equals("down 4"));
  require_counts(name, {1, 3, 0, 0});
  if constexpr (STALLSCOPE_ENABLED) {
    CHECK(metric("stallscope_retry_backoff_seconds_total", name) > 0);
  }
}

TEST_CASE("the predicate decides which results and errors are retried", "[retry][asio]") {
  asio::io_context io;
  RetryBudget budget(unique_name("predicate"));
  std::vector<int> answers{-1, -2, 7};
  std::size_t calls = 0;
  auto op = [&]() -> asio::awaitable<int> { co_return answers[calls++]; };
  RetryPolicy<int> p = no_sleep(10);
  p.retry_if = [](const int* r, const std::exception_ptr&) { return r != nullptr && *r < 0; };
  auto out = run(io, stallscope::retry(budget, CancellationToken(), p, op));
  CHECK(*out.value == 7);
  CHECK(calls == 3);

  // Out of attempts with a retryable result: the last result is returned.
  calls = 0;
  p.max_attempts = 2;
  out = run(io, stallscope::retry(budget, CancellationToken(), p, op));
  CHECK(*out.value == -2);

  // The default retries exceptions but never a cancellation; this predicate retries nothing.
  int thrown = 0;
  auto aborts = [&]() -> asio::awaitable<int> {
    ++thrown;
    throw boost::system::system_error(asio::error::operation_aborted);
    co_return 0;
  };
  out = run(io, stallscope::retry(budget, CancellationToken(), no_sleep(5), aborts));
  CHECK(thrown == 1);
  CHECK(caught<boost::system::system_error>(out.error).code() == asio::error::operation_aborted);
  thrown = 0;
  auto fails = [&]() -> asio::awaitable<int> {
    ++thrown;
    throw Downstream("no");
    co_return 0;
  };
  out = run(io, stallscope::retry(budget, CancellationToken(), p, fails));
  CHECK(thrown == 1);
  CHECK_THAT(caught<Downstream>(out.error).what(), Catch::Equals("no"));
}

TEST_CASE("an exhausted budget ends retrying with budget_exhausted and the last error",
          "[retry][asio]") {
  asio::io_context io;
  ManualRetryClock clock;
  const std::string name = unique_name("denied");
  // One retry per ttl from the floor, none from deposits.
  RetryBudget budget(name,
                     {.ttl = 1s, .min_retries_per_second = 1, .retry_share = 0, .clock = &clock});
  int calls = 0;
  auto op = [&]() -> asio::awaitable<int> {
    ++calls;
    throw Downstream("down");
    co_return 0;
  };
  auto out = run(io, stallscope::retry(budget, CancellationToken(), no_sleep(10), op));
  CHECK(calls == 2);  // the first attempt and the floor's one retry
  const RetryError e = caught<RetryError>(out.error);
  CHECK(e.code() == stallscope::make_error_code(stallscope::RetryErrc::kBudgetExhausted));
  CHECK(e.attempts() == 2);
  CHECK_THAT(std::string(e.what()), Catch::Contains("retry budget exhausted"));
  CHECK_THROWS_AS(std::rethrow_exception(e.last_error()), Downstream);
  require_counts(name, {1, 1, 1, 0});
}

TEST_CASE("cancelling the token ends a backoff at once and abandons the retry",
          "[retry][asio][cancel]") {
  asio::io_context io;
  const std::string name = unique_name("cancel");
  RetryBudget budget(name, {.min_retries_per_second = 1, .retry_share = 0});
  const std::int64_t before = budget.balance();
  CancellationToken token;
  std::vector<std::string> events;
  auto op = [&]() -> asio::awaitable<int> {
    events.push_back("attempt");
    // Cancel from another thread once the retry loop is asleep in its backoff (an hour long):
    // if the sleep did not race the token, io.run() would not return for an hour.
    asio::post(io, [&] {
      events.push_back("cancel");
      std::thread([&] { token.cancel(); }).join();
    });
    throw Downstream("down");
    co_return 0;
  };
  RetryPolicy<int> p;
  p.initial_backoff = 1h;
  p.max_backoff = 1h;
  p.jitter = 0;
  auto out = run(io, stallscope::retry(budget, token, p, op));
  events.push_back("returned");
  CHECK(events == std::vector<std::string>{"attempt", "cancel", "returned"});
  const RetryError e = caught<RetryError>(out.error);
  CHECK(e.code() == asio::error::operation_aborted);
  CHECK(e.attempts() == 1);
  CHECK(budget.balance() == before);  // the retry taken for the sleep was given back
  require_counts(name, {1, 0, 0, 1});

  // Already cancelled: no sleep, no retry.
  events.clear();
  out = run(io, stallscope::retry(budget, token, p, op));
  CHECK(events.front() == "attempt");
  CHECK(caught<RetryError>(out.error).code() == asio::error::operation_aborted);
  require_counts(name, {2, 0, 0, 2});
}

TEST_CASE("a task spawned with the token is cancelled out of its backoff too",
          "[retry][asio][cancel]") {
  asio::io_context io;
  const std::string name = unique_name("task-cancel");
  RetryBudget budget(name);
  CancellationToken token;
  RetryPolicy<int> p;
  p.initial_backoff = 1h;
  p.max_backoff = 1h;
  int calls = 0;
  std::exception_ptr error;
  bool done = false;
  // The retry gets a token that nobody cancels; the task's own token reaches the sleep through
  // the coroutine's cancellation slot.
  stallscope::spawn(
      io.get_executor(), "retrier", token,
      [&]() -> asio::awaitable<int> {
        co_return co_await stallscope::retry(budget, CancellationToken(), p,
                                             [&]() -> asio::awaitable<int> {
                                               ++calls;
                                               asio::post(io, [&] { token.cancel(); });
                                               throw Downstream("down");
                                               co_return 0;
                                             });
      },
      [&](std::exception_ptr e, int) {
        error = e;
        done = true;
      });
  io.run();
  CHECK(done);
  CHECK(calls == 1);
  CHECK(caught<RetryError>(error).code() == asio::error::operation_aborted);
  require_counts(name, {1, 0, 0, 1});
}

// The figure: a downstream failing every call at R requests/s, each request retried as
// often as the budget allows. Over any ttl window, attempts stay within R x (1 + retry_share) +
// min_retries_per_second per second, and in steady state they reach that bound (the budget
// grants what it promises). Time is a manual clock: one simulated second per loop turn.
TEST_CASE("a failing downstream sees at most R x (1 + share) + floor attempts per second",
          "[retry][asio][figure]") {
  constexpr int kRate = 100;  // R: requests per second
  constexpr int kTtl = 10;
  constexpr int kFloor = 10;
  constexpr double kShare = 0.2;
  constexpr int kSeconds = 60;
  asio::io_context io;
  ManualRetryClock clock;
  const std::string name = unique_name("figure");
  RetryBudget budget(name, {.ttl = std::chrono::seconds(kTtl),
                            .min_retries_per_second = kFloor,
                            .retry_share = kShare,
                            .clock = &clock});
  std::vector<int> attempts(kSeconds, 0);
  int second = 0;
  auto downstream = [&]() -> asio::awaitable<int> {
    ++attempts[static_cast<std::size_t>(second)];
    throw Downstream("unavailable");
    co_return 0;
  };
  RetryPolicy<int> unbounded = no_sleep(1'000'000);
  int denied = 0;
  for (second = 0; second < kSeconds; ++second) {
    for (int r = 0; r < kRate; ++r) {
      asio::co_spawn(io, stallscope::retry(budget, CancellationToken(), unbounded, downstream),
                     [&](std::exception_ptr e, int) {
                       try {
                         std::rethrow_exception(e);
                       } catch (const RetryError& re) {
                         denied += re.code() == stallscope::make_error_code(
                                                    stallscope::RetryErrc::kBudgetExhausted);
                       } catch (...) {
                       }
                     });
    }
    io.restart();
    io.run();
    clock.advance(1s);
  }
  const int bound = static_cast<int>(std::lround((kRate * (1 + kShare) + kFloor) * kTtl));
  int total = 0;
  for (int s = 0; s < kSeconds; ++s) total += attempts[static_cast<std::size_t>(s)];
  for (int s = 0; s + kTtl <= kSeconds; ++s) {
    int window = 0;
    for (int i = s; i < s + kTtl; ++i) window += attempts[static_cast<std::size_t>(i)];
    INFO("window starting at second " << s);
    CHECK(window <= bound);
    if (s >= kTtl) CHECK(window >= bound - 5);  // steady state: the budget is used, not hoarded
  }
  CHECK(denied == kRate * kSeconds);  // every request ended on the budget, none on attempts
  require_counts(name, {kRate * kSeconds, double(total - kRate * kSeconds), kRate * kSeconds, 0});
  // For the record (ctest -V): the amplification the budget allowed.
  WARN("attempts per request: " << static_cast<double>(total) / (kRate * kSeconds) << " (bound "
                                << 1 + kShare + double(kFloor) / kRate << ")");
}

namespace readme {

struct Stock {
  int status = 0;
  int count = 0;
};
int lookups = 0;
asio::awaitable<Stock> lookup(const std::string&) {
  co_return ++lookups < 3 ? Stock{503, 0} : Stock{200, 7};  // unavailable twice, then found
}

// Unformatted: as in the README.
// clang-format off
asio::awaitable<int> stock_of(std::string sku, CancellationToken shutdown) {
  // README:retry:begin
  stallscope::RetryBudget budget{"inventory", {.retry_share = 0.1}};  // see RetryBudgetOptions
  stallscope::RetryPolicy<Stock> policy;  // 3 attempts, backoff 10 ms x2 up to 1 s, jittered
  policy.retry_if = [](const Stock* s, const std::exception_ptr& e) {
    return e != nullptr || s->status == 503;  // errors and "unavailable" are retried
  };
  Stock stock = co_await stallscope::retry(budget, shutdown, policy, [&] { return lookup(sku); });
  // README:retry:end
  co_return stock.count;
}
// clang-format on

}  // namespace readme

TEST_CASE("the README's retry snippet runs, and is the one in the README", "[retry][readme]") {
  asio::io_context io;
  auto out = run(io, readme::stock_of("sku-1", CancellationToken()));
  CHECK(*out.value == 7);
  CHECK(readme::lookups == 3);
  using namespace stallscope::testing;
  const std::string readme = read_file(STALLSCOPE_README_PATH);
  CHECK(readme_block(readme, "### Retry budgets\n", 0) ==
        marked(read_file(STALLSCOPE_THIS_FILE), "retry"));
}
