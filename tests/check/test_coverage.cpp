// Check 5 in a process of its own: the registry is process-wide, so a service that has tasks
// but no instrumented lock or channel exists only where no other test created one.
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <catch2/catch.hpp>

#include "check/support.hpp"
#include "stallscope/mutex.hpp"
#include "stallscope/task.hpp"
#include "support/tasks.hpp"

namespace asio = boost::asio;
using Catch::Contains;
using namespace stallscope::testing;

namespace {

void run_tasks() {
  run_task("handler", []() -> asio::awaitable<void> {
    co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
  });
}

}  // namespace

TEST_CASE("check 5: nothing exported fails, tasks alone warn, a lock makes it pass",
          "[check][coverage]") {
  {
    const CheckWindow w;
    const auto report = expect_verdict(w, "coverage", Verdict::kFail);
    CHECK_THAT(evidence(report, "coverage"), Contains("no stallscope resource is exported"));
  }
  {
    const CheckWindow w;
    run_tasks();
    const auto report = expect_verdict(w, "coverage", Verdict::kWarn);
    CHECK_THAT(evidence(report, "coverage"),
               Contains("tasks are instrumented but no lock, channel"));
    CHECK(report.verdict() == Verdict::kWarn);
    CHECK(stallscope::check::exit_code(report) == 0);  // a warning does not fail the gate
  }
  {
    stallscope::Mutex mu("ledger");
    const CheckWindow w;
    { std::lock_guard g(mu); }
    run_tasks();
    const auto report = expect_verdict(w, "coverage", Verdict::kPass);
    CHECK_THAT(evidence(report, "coverage"), Contains("1 lock") && Contains("1 task"));
  }
  {
    // Names exported but nothing happening in the window: the check says to run under load.
    const CheckWindow w;
    const auto report = w.report();
    CHECK(result(report, "coverage").verdict == Verdict::kWarn);
    CHECK_THAT(evidence(report, "coverage"), Contains("nothing was recorded in the window"));
  }
}
