// The block profile's async waits (stallscope/profile.hpp): AsyncMutex, Semaphore, a full
// Channel's send and a BlockingPool's queue, sampled with the waiter's stack and labelled, the
// waits in progress listed with their age, and tasks' scheduling delays as label-only samples.
// Every event is sampled (ProfileRate::events(1)), so the counts are exact.
#include <chrono>
#include <cstdint>
#include <future>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <catch2/catch.hpp>

#include "stallscope/blocking_pool.hpp"
#include "stallscope/channel.hpp"
#include "stallscope/profile.hpp"
#include "stallscope/semaphore.hpp"
#include "stallscope/task.hpp"
#include "support/metrics.hpp"
#include "support/poll.hpp"
#include "support/tasks.hpp"

namespace asio = boost::asio;
using stallscope::ProfileSample;
using stallscope::ProfileType;
using namespace stallscope::testing;

namespace {

// Samples every event while it lives; the previous rate comes back after.
struct EveryEvent {
  EveryEvent() { stallscope::set_profile_rate(stallscope::ProfileRate::events(1)); }
  ~EveryEvent() { stallscope::set_profile_rate(before); }
  stallscope::ProfileRate before = stallscope::profile_rate();
};

std::vector<ProfileSample> block_samples(const std::string& resource, bool in_progress) {
  std::vector<ProfileSample> out;
  for (ProfileSample& s : stallscope::profile_samples(ProfileType::kBlock)) {
    if (s.resource == resource && s.in_progress == in_progress) out.push_back(std::move(s));
  }
  return out;
}

double total(const std::vector<ProfileSample>& xs, double ProfileSample::*field) {
  double sum = 0;
  for (const ProfileSample& s : xs) sum += s.*field;
  return sum;
}

// Three tasks named `task` on `io`, each running `body`.
template <class Body>
void spawn_three(asio::io_context& io, const char* task, Body body) {
  for (int i = 0; i < 3; ++i) stallscope::spawn(io.get_executor(), task, body, asio::detached);
}

bool in_progress_count(const std::string& resource, std::size_t n) {
  return block_samples(resource, true).size() == n;
}

}  // namespace

TEST_CASE(
    "coroutine waits on an AsyncMutex are sampled with their stack and task, and listed "
    "while in progress",
    "[profile][semaphore]") {
  EveryEvent rate;
  const std::string name = unique_name("prof-alock");
  stallscope::AsyncMutex mu(name);
  asio::io_context io;
  mu.lock();  // held by this thread: the tasks queue
  spawn_three(io, "alock-waiter",
              [&mu]() -> asio::awaitable<void> { auto guard = co_await mu.async_lock(); });
  std::thread runner([&] { io.run(); });
  REQUIRE(eventually([&] { return in_progress_count(name, 3); }));
  for (const ProfileSample& s : block_samples(name, true)) {
    CHECK(s.kind == "async_lock");
    CHECK(s.op == "exclusive");
    CHECK(s.task == "alock-waiter");
    CHECK(s.count == 1);
    CHECK(s.delay_ns >= 0);
    CHECK_FALSE(s.pcs.empty());  // drawn at the call (the mutex was held): its stack is kept
  }
  mu.unlock();
  runner.join();

  const std::vector<ProfileSample> ended = block_samples(name, false);
  REQUIRE_FALSE(ended.empty());
  CHECK(total(ended, &ProfileSample::count) == 3);
  CHECK(total(ended, &ProfileSample::delay_ns) > 0);
  for (const ProfileSample& s : ended) {
    CHECK(s.kind == "async_lock");
    CHECK(s.op == "exclusive");
    CHECK(s.task == "alock-waiter");  // the task that waited, not the thread that released
    CHECK_FALSE(s.pcs.empty());
  }
  CHECK(block_samples(name, true).empty());
}

TEST_CASE("an uncontended AsyncMutex leaves no block sample", "[profile][semaphore]") {
  EveryEvent rate;
  const std::string name = unique_name("prof-alock-free");
  stallscope::AsyncMutex mu(name);
  run_task("alock-free", [&mu]() -> asio::awaitable<void> {
    for (int i = 0; i < 10; ++i) auto guard = co_await mu.async_lock();
  });
  CHECK(block_samples(name, false).empty());
}

TEST_CASE("thread waits on a Semaphore are sampled at their end and listed while in progress",
          "[profile][semaphore]") {
  EveryEvent rate;
  const std::string name = unique_name("prof-sem");
  stallscope::Semaphore sem(name, 1);
  auto held = sem.acquire();
  std::vector<std::thread> waiters;
  for (int i = 0; i < 2; ++i) {
    waiters.emplace_back([&] { auto p = sem.acquire(); });
  }
  REQUIRE(eventually([&] { return in_progress_count(name, 2); }));
  for (const ProfileSample& s : block_samples(name, true)) {
    CHECK(s.kind == "semaphore");
    CHECK(s.op == "acquire");
    CHECK(s.count == 1);
  }
  held = {};  // hands the permit on; each waiter releases its own as it leaves
  for (auto& t : waiters) t.join();
  const std::vector<ProfileSample> ended = block_samples(name, false);
  CHECK(total(ended, &ProfileSample::count) == 2);
  CHECK(total(ended, &ProfileSample::delay_ns) > 0);
  for (const ProfileSample& s : ended) {
    CHECK(s.op == "acquire");
    CHECK(s.task.empty());
    CHECK_FALSE(s.pcs.empty());
  }
}

TEST_CASE("a send that waits on a full Channel is sampled; receives are not",
          "[profile][channel]") {
  EveryEvent rate;
  const std::string name = unique_name("prof-chan");
  stallscope::Channel<int> ch(name, 1);
  REQUIRE(ch.try_send(0).outcome == stallscope::SendOutcome::kEnqueued);  // full now
  asio::io_context io;
  stallscope::spawn(
      io.get_executor(), "chan-sender",
      [&ch]() -> asio::awaitable<void> {
        for (int i = 1; i <= 2; ++i) (void)co_await ch.async_send(i);
      },
      asio::detached);
  std::thread runner([&] { io.run(); });
  REQUIRE(eventually([&] { return in_progress_count(name, 1); }));
  const std::vector<ProfileSample> waiting = block_samples(name, true);
  REQUIRE(waiting.size() == 1);
  CHECK(waiting[0].kind == "channel");
  CHECK(waiting[0].op == "send");
  CHECK(waiting[0].task == "chan-sender");
  CHECK_FALSE(waiting[0].pcs.empty());
  CHECK(ch.receive() == 0);  // room for the waiting send of 1, then 2 waits in turn
  REQUIRE(eventually([&] { return in_progress_count(name, 1) && ch.size() == 1; }));
  CHECK(ch.receive() == 1);
  CHECK(ch.receive() == 2);
  runner.join();
  const std::vector<ProfileSample> ended = block_samples(name, false);
  CHECK(total(ended, &ProfileSample::count) == 2);
  for (const ProfileSample& s : ended) {
    CHECK(s.op == "send");
    CHECK(s.task == "chan-sender");
  }
}

TEST_CASE("jobs that queue behind a BlockingPool's busy threads are sampled", "[profile][pool]") {
  EveryEvent rate;
  const std::string name = unique_name("prof-pool");
  stallscope::BlockingPool pool(name, 1);
  std::promise<void> go;
  std::shared_future<void> gate = go.get_future().share();
  std::atomic<bool> running{false};
  // Outside a task: whether this one queued depends on whether the worker was idle yet.
  auto first = pool.run(
      [&] {
        running = true;
        gate.wait();
      },
      asio::use_future);
  REQUIRE(eventually([&] { return running.load(); }));
  asio::io_context io;
  stallscope::spawn(
      io.get_executor(), "pool-submitter",
      [&pool]() -> asio::awaitable<void> { co_await pool.run([] {}); }, asio::detached);
  stallscope::spawn(
      io.get_executor(), "pool-submitter",
      [&pool]() -> asio::awaitable<void> { co_await pool.run([] {}); }, asio::detached);
  std::thread runner([&] { io.run(); });
  REQUIRE(eventually([&] { return pool.queued() == 2; }));
  go.set_value();
  first.get();
  runner.join();
  double queued_from_tasks = 0;
  for (const ProfileSample& s : block_samples(name, false)) {
    CHECK(s.kind == "pool");
    CHECK(s.op == "queue");
    if (s.task == "pool-submitter") queued_from_tasks += s.count;
  }
  CHECK(queued_from_tasks == 2);
}

TEST_CASE("task resumptions' scheduling delays are label-only block samples",
          "[profile][executor]") {
  EveryEvent rate;
  const std::string task = unique_name("prof-sched");
  asio::io_context io;
  for (int i = 0; i < 4; ++i) {
    stallscope::spawn(
        io.get_executor(), task,
        []() -> asio::awaitable<void> {
          spin_for(std::chrono::microseconds(200));  // the others wait for the thread meanwhile
          co_return;
        },
        asio::detached);
  }
  io.run();
  double count = 0, delay = 0;
  for (const ProfileSample& s : stallscope::profile_samples(ProfileType::kBlock)) {
    if (s.task != task || s.op != "schedule") continue;
    CHECK((s.kind == "executor" || s.kind == "task"));
    CHECK(s.pcs.empty());
    count += s.count;
    delay += s.delay_ns;
  }
  // Every resumption that waited is sampled once, with its delay: the task's own histogram.
  const auto h = histogram("stallscope_wait_seconds",
                           {{"kind", "task"}, {"resource", task}, {"op", "schedule"}});
  REQUIRE(h);
  CHECK(count >= 3);  // the three that waited behind the first's 200 us slice
  CHECK(count <= static_cast<double>(h->count));
  CHECK(delay * 1e-9 == Approx(h->sum).epsilon(1e-6));
}

TEST_CASE("by delay, async waits longer than the rate are each kept once at their own delay",
          "[profile][semaphore]") {
  const stallscope::ProfileRate before = stallscope::profile_rate();
  stallscope::set_profile_rate(stallscope::ProfileRate::by_delay(std::chrono::microseconds(1)));
  const std::string name = unique_name("prof-sem-delay");
  stallscope::Semaphore sem(name, 1);
  asio::io_context io;
  auto held = sem.acquire();
  spawn_three(io, "sem-delay",
              [&sem]() -> asio::awaitable<void> { auto permit = co_await sem.async_acquire(); });
  std::thread runner([&] { io.run(); });
  REQUIRE(eventually([&] { return in_progress_count(name, 3); }));
  std::this_thread::sleep_for(std::chrono::milliseconds(2));  // each waits well over the rate
  held.release();
  runner.join();
  stallscope::set_profile_rate(before);

  const std::vector<ProfileSample> ended = block_samples(name, false);
  CHECK(total(ended, &ProfileSample::count) == 3);  // weight 1 each: q = p = 1
  // The delays are the waits themselves: the wait histogram's sum (its zero waits add nothing).
  const auto h = histogram("stallscope_wait_seconds",
                           {{"kind", "semaphore"}, {"resource", name}, {"op", "acquire"}});
  REQUIRE(h);
  CHECK(total(ended, &ProfileSample::delay_ns) * 1e-9 == Approx(h->sum).epsilon(1e-6));
}
