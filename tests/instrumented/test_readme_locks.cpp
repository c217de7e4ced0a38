// The README's Locks section: its two snippets are compiled and run here, and a test keeps them
// equal to the README's text (the first two ```cpp blocks after "### Locks").
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "stallscope/condition_variable.hpp"
#include "stallscope/mutex.hpp"
#include "support/readme.hpp"

namespace {

// The README's "any Lockable".
class MySpinLock {
 public:
  void lock() noexcept {
    while (flag_.test_and_set(std::memory_order_acquire)) {
    }
  }
  bool try_lock() noexcept { return !flag_.test_and_set(std::memory_order_acquire); }
  void unlock() noexcept { flag_.clear(std::memory_order_release); }

 private:
  std::atomic_flag flag_;
};

namespace declarations {
// README:locks:begin
stallscope::Mutex ledger{"ledger"};                       // std::mutex
stallscope::SharedMutex sessions{"sessions"};             // std::shared_mutex
stallscope::Mutex conn;                                   // unnamed: "server.cpp:42"
stallscope::Mutex audited{"audit", {.hold_time = true}};  // also time every hold
stallscope::Instrumented<MySpinLock> spin{"spin"};        // any Lockable
stallscope::ConditionVariable work_ready;                 // std::condition_variable
constinit stallscope::Mutex registry{"registry"};         // constant-initialized
// README:locks:end
}  // namespace declarations

// Unformatted: the comments stay aligned across the lambda, as in the README.
// clang-format off
int swapped() {
  // README:swap:begin
  stallscope::Mutex mu{"jobs"};      // was: std::mutex mu;
  stallscope::ConditionVariable cv;  // was: std::condition_variable cv;
  std::deque<int> jobs;              // guarded by mu
  std::jthread producer([&] {
    std::lock_guard lock(mu);        // unchanged
    jobs.push_back(42);
    cv.notify_one();                 // unchanged
  });
  std::unique_lock lock(mu);         // unchanged
  cv.wait(lock, [&] { return !jobs.empty(); });
  // README:swap:end
  return jobs.front();
}
// clang-format on

}  // namespace

TEST_CASE("the README's lock declarations compile and work", "[locks][readme]") {
  using namespace declarations;
  { std::lock_guard g(ledger); }
  { std::shared_lock g(sessions); }
  { std::lock_guard g(conn); }
  { std::lock_guard g(audited); }
  { std::lock_guard g(spin); }
  std::unique_lock g(registry);
  CHECK(work_ready.wait_for(g, std::chrono::milliseconds(1)) == std::cv_status::timeout);
}

TEST_CASE("the README's swap example runs", "[locks][condvar][readme][concurrency]") {
  CHECK(swapped() == 42);
}

TEST_CASE("the README's Locks snippets are the ones compiled here", "[locks][readme]") {
  using namespace stallscope::testing;
  const std::string readme = read_file(STALLSCOPE_README_PATH);
  const std::string self = read_file(STALLSCOPE_THIS_FILE);
  CHECK(readme_block(readme, "### Locks\n", 0) == marked(self, "locks"));
  CHECK(readme_block(readme, "### Locks\n", 1) == marked(self, "swap"));
}
