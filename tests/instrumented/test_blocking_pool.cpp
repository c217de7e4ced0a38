// BlockingPool: results and exceptions back on the caller's executor, the thread bound, exact
// accounting, live gauges while blocked, cancellation, shedding and destruction.
#include <atomic>
#include <chrono>
#include <exception>
#include <future>
#include <latch>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <catch2/catch.hpp>

#include "stallscope/blocking_pool.hpp"
#include "support/metrics.hpp"
#include "support/poll.hpp"

namespace asio = boost::asio;
using stallscope::BlockingPool;
using stallscope::PoolErrc;
using namespace stallscope::testing;

namespace {

// co_spawn completion: an unexpected exception escapes io.run() and fails the test.
void rethrow(std::exception_ptr e) {
  if (e) std::rethrow_exception(e);
}

boost::system::error_code code_of(const std::exception_ptr& e) {
  if (!e) return {};
  try {
    std::rethrow_exception(e);
  } catch (const boost::system::system_error& s) {
    return s.code();
  } catch (...) {
  }
  return {};
}

// An io_context run on a thread of its own until join() (a work guard keeps it running), and the
// void(exception_ptr, int) completions that handler() hands to it, counted by how they ended.
class Completions {
 public:
  explicit Completions(asio::io_context& io)
      : io_(io), guard_(asio::make_work_guard(io)), thread_([&io] { io.run(); }) {}
  ~Completions() { join(); }
  Completions(const Completions&) = delete;
  Completions& operator=(const Completions&) = delete;

  auto handler() {
    return asio::bind_executor(io_, [this](std::exception_ptr e, int) { count(e); });
  }
  int total() const { return ok + failed + aborted + stopped + shed + other; }
  void join() {
    guard_.reset();
    if (thread_.joinable()) thread_.join();
  }

  std::atomic<int> ok{0}, failed{0}, aborted{0}, stopped{0}, shed{0}, other{0};

 private:
  void count(const std::exception_ptr& e) {
    const auto ec = code_of(e);
    if (!e) {
      ++ok;
    } else if (ec == asio::error::operation_aborted) {
      ++aborted;
    } else if (ec == stallscope::make_error_code(PoolErrc::kStopped)) {
      ++stopped;
    } else if (ec == stallscope::make_error_code(PoolErrc::kQueueFull)) {
      ++shed;
    } else if (ec) {
      ++other;
    } else {
      ++failed;  // the job's own exception
    }
  }

  asio::io_context& io_;
  asio::executor_work_guard<asio::io_context::executor_type> guard_;
  std::thread thread_;
};

stallscope::testing::LabelMatch labels(const std::string& name) {
  return {{"kind", "pool"}, {"resource", name}};
}
stallscope::testing::LabelMatch queue_labels(const std::string& name) {
  return {{"kind", "pool"}, {"resource", name}, {"op", "queue"}};
}
double gauge(std::string_view family, const std::string& name) {
  return value(family, labels(name)).value_or(-1);
}
double jobs(const std::string& name, std::string_view outcome) {
  auto l = labels(name);
  l.emplace_back("outcome", std::string(outcome));
  return value("stallscope_pool_jobs_total", l).value_or(-1);
}
// [[maybe_unused]]: with recording compiled out their only callers are discarded, and clang
// warns (-Wunneeded-internal-declaration).
[[maybe_unused]] std::uint64_t queue_wait_count(const std::string& name) {
  auto h = stallscope::testing::histogram("stallscope_wait_seconds", queue_labels(name));
  return h ? h->count : ~std::uint64_t{0};
}
[[maybe_unused]] std::uint64_t run_count(const std::string& name) {
  auto h = stallscope::testing::histogram("stallscope_pool_run_seconds", labels(name));
  return h ? h->count : ~std::uint64_t{0};
}

// submitted == sum(outcomes) + queued + running.
void check_identity(const std::string& name) {
  if constexpr (!STALLSCOPE_ENABLED) return;
  double outcomes = 0;
  for (const char* o : {"completed", "failed", "cancelled", "shed"}) outcomes += jobs(name, o);
  CHECK(gauge("stallscope_pool_submitted_total", name) ==
        outcomes + gauge("stallscope_pool_queue_depth", name) +
            gauge("stallscope_pool_busy_threads", name));
}

}  // namespace

TEST_CASE("a bad pool configuration is rejected with the value named", "[pool]") {
  CHECK_THROWS_AS(BlockingPool("pool-zero-threads", 0), std::invalid_argument);
  CHECK_THROWS_WITH(BlockingPool("pool-zero-threads", 0), Catch::Contains("threads 0"));
  if constexpr (STALLSCOPE_ENABLED) {
    CHECK_THROWS_WITH(BlockingPool("bad pool", 1), Catch::Contains("\"bad pool\""));
  }
}

TEST_CASE("a coroutine gets the job's result back, or its exception rethrown", "[pool][asio]") {
  const std::string name = unique_name("result");
  BlockingPool pool(name, 2);
  CHECK(pool.name() == name);
  CHECK(pool.threads() == 2);
  CHECK(pool.max_queue() == 0);
  asio::io_context io;
  const std::thread::id io_thread = std::this_thread::get_id();
  int got = 0;
  bool void_ran = false;
  std::unique_ptr<int> moved;
  std::string what;
  std::thread::id job_thread, resumed_thread;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        got = co_await pool.run([&] {
          job_thread = std::this_thread::get_id();
          return 6 * 7;
        });
        resumed_thread = std::this_thread::get_id();
        co_await pool.run([&] { void_ran = true; });
        moved = co_await pool.run([] { return std::make_unique<int>(5); });  // move-only result
        try {
          co_await pool.run([]() -> int { throw std::runtime_error("job failed"); });
        } catch (const std::runtime_error& e) {
          what = e.what();
        }
      },
      rethrow);
  io.run();
  CHECK(got == 42);
  CHECK(void_ran);
  REQUIRE(moved != nullptr);
  CHECK(*moved == 5);
  CHECK(what == "job failed");
  CHECK(job_thread != io_thread);      // the work ran off the io_context thread
  CHECK(resumed_thread == io_thread);  // and the coroutine resumed on its own executor
  if constexpr (STALLSCOPE_ENABLED) {
    CHECK(jobs(name, "completed") == 3);
    CHECK(jobs(name, "failed") == 1);
  }
  check_identity(name);
}

TEST_CASE("use_future gets results and exceptions too", "[pool][asio]") {
  BlockingPool pool(unique_name("future"), 1);
  std::future<int> f = pool.run([] { return 7; }, asio::use_future);
  CHECK(f.get() == 7);
  std::future<int> g =
      pool.run([]() -> int { throw std::logic_error("bad input"); }, asio::use_future);
  CHECK_THROWS_AS(g.get(), std::logic_error);
  std::future<void> h = pool.run([] {}, asio::use_future);
  CHECK_NOTHROW(h.get());
}

TEST_CASE("never more than `threads` jobs run at once, and every job is counted",
          "[pool][accounting][concurrency]") {
  const std::string name = unique_name("bound");
  constexpr int kThreads = 3;
  constexpr int kJobs = 90;
  BlockingPool pool(name, kThreads);
  std::atomic<int> active{0}, max_active{0}, ran{0};
  std::mutex ids_mu;
  std::set<std::thread::id> ids;
  int ok = 0, failed = 0;
  asio::io_context io;
  for (int i = 0; i < kJobs; ++i) {
    asio::co_spawn(
        io,
        [&, i]() -> asio::awaitable<void> {
          try {
            const int v = co_await pool.run([&, i] {
              const int now = ++active;
              int seen = max_active.load();
              while (now > seen && !max_active.compare_exchange_weak(seen, now)) {
              }
              {
                std::lock_guard lock(ids_mu);
                ids.insert(std::this_thread::get_id());
              }
              for (int k = 0; k < 200; ++k) std::this_thread::yield();  // let jobs overlap
              ++ran;
              --active;
              if (i % 10 == 0) throw std::runtime_error("every tenth job fails");
              return i;
            });
            CHECK(v == i);
            ++ok;
          } catch (const std::runtime_error&) {
            ++failed;
          }
        },
        rethrow);
  }
  io.run();
  CHECK(max_active.load() >= 1);
  CHECK(max_active.load() <= kThreads);
  CHECK(ids.size() <= static_cast<std::size_t>(kThreads));
  CHECK(ids.count(std::this_thread::get_id()) == 0);
  CHECK(ran.load() == kJobs);
  CHECK(ok == kJobs - kJobs / 10);
  CHECK(failed == kJobs / 10);
  if constexpr (STALLSCOPE_ENABLED) {
    CHECK(gauge("stallscope_pool_submitted_total", name) == kJobs);
    CHECK(jobs(name, "completed") == ok);
    CHECK(jobs(name, "failed") == failed);
    CHECK(jobs(name, "cancelled") == 0);
    CHECK(jobs(name, "shed") == 0);
    CHECK(run_count(name) == kJobs);         // every job that ran
    CHECK(queue_wait_count(name) == kJobs);  // every job that left the queue
    CHECK(gauge("stallscope_pool_threads", name) == kThreads);
    CHECK(gauge("stallscope_pool_busy_threads", name) == 0);
    CHECK(gauge("stallscope_pool_queue_depth", name) == 0);
  }
  check_identity(name);
}

TEST_CASE("queued jobs, their age and busy threads are visible while the pool is blocked",
          "[pool][concurrency]") {
  const std::string name = unique_name("blocked");
  BlockingPool pool(name, 2);
  std::latch release(1);
  std::atomic<int> started{0};
  int done = 0;
  asio::io_context io;
  for (int i = 0; i < 5; ++i) {
    pool.run(
        [&] {
          ++started;
          release.wait();
          return 1;
        },
        asio::bind_executor(io, [&](std::exception_ptr e, int v) {
          CHECK_FALSE(e);  // runs on this thread, in io.run()
          done += v;
        }));
  }
  REQUIRE(eventually([&] { return started.load() == 2 && pool.queued() == 3; }));
  if constexpr (STALLSCOPE_ENABLED) {
    CHECK(value("stallscope_waiters", queue_labels(name)) == 3);
    CHECK(gauge("stallscope_pool_queue_depth", name) == 3);
    CHECK(gauge("stallscope_pool_busy_threads", name) == 2);
    CHECK(gauge("stallscope_pool_threads", name) == 2);
    CHECK(eventually([&] {
      return value("stallscope_oldest_wait_age_seconds", queue_labels(name)).value_or(0) > 0;
    }));
    CHECK(eventually([&] { return gauge("stallscope_pool_oldest_run_age_seconds", name) > 0; }));
    check_identity(name);
  }
  io.poll();
  CHECK(done == 0);
  CHECK_FALSE(io.stopped());  // pending jobs keep outstanding work on the io_context
  release.count_down();
  io.run();
  CHECK(done == 5);
  CHECK(pool.queued() == 0);
  if constexpr (STALLSCOPE_ENABLED) {
    CHECK(value("stallscope_waiters", queue_labels(name)) == 0);
    CHECK(value("stallscope_oldest_wait_age_seconds", queue_labels(name)) == 0);
    CHECK(gauge("stallscope_pool_busy_threads", name) == 0);
    CHECK(gauge("stallscope_pool_oldest_run_age_seconds", name) == 0);
    const auto w = stallscope::testing::histogram("stallscope_wait_seconds", queue_labels(name));
    REQUIRE(w.has_value());
    CHECK(w->count == 5);
    CHECK(w->sum > 0);  // three jobs waited for the blocked threads
    CHECK(jobs(name, "completed") == 5);
  }
  check_identity(name);
}

TEST_CASE("a job cancelled while queued never runs and completes with operation_aborted",
          "[pool][cancel]") {
  const std::string name = unique_name("cancel-queued");
  std::atomic<bool> blocker_started{false}, cancelled_ran{false};
  int blocker_result = 0;
  bool completed = false;
  std::exception_ptr error;
  asio::io_context io;
  {
    BlockingPool pool(name, 1);
    std::latch release(1);
    pool.run(
        [&] {
          blocker_started = true;
          release.wait();
          return 1;
        },
        asio::bind_executor(io, [&](std::exception_ptr, int v) { blocker_result = v; }));
    REQUIRE(eventually([&] { return blocker_started.load(); }));
    asio::cancellation_signal signal;
    pool.run(
        [&] {
          cancelled_ran = true;
          return 2;
        },
        asio::bind_cancellation_slot(signal.slot(),
                                     asio::bind_executor(io, [&](std::exception_ptr e, int) {
                                       error = e;
                                       completed = true;
                                     })));
    CHECK(pool.queued() == 1);
    signal.emit(asio::cancellation_type::terminal);
    CHECK(pool.queued() == 0);
    CHECK_FALSE(completed);  // posted, not run inside emit()
    release.count_down();
    io.run();
  }  // the pool is joined: nothing can run any more
  CHECK(completed);
  CHECK_FALSE(cancelled_ran.load());
  CHECK(code_of(error) == asio::error::operation_aborted);
  CHECK(blocker_result == 1);
  if constexpr (STALLSCOPE_ENABLED) {
    CHECK(jobs(name, "cancelled") == 1);
    CHECK(jobs(name, "completed") == 1);
    CHECK(run_count(name) == 1);
    CHECK(queue_wait_count(name) == 2);  // the cancelled job's wait counts too
  }
  check_identity(name);
}

TEST_CASE("a job cancelled after it started runs to the end", "[pool][cancel]") {
  const std::string name = unique_name("cancel-running");
  BlockingPool pool(name, 1);
  std::latch release(1);
  std::atomic<bool> started{false};
  asio::io_context io;
  asio::cancellation_signal signal;
  std::exception_ptr error;
  int got = 0;
  pool.run(
      [&] {
        started = true;
        release.wait();
        return 3;
      },
      asio::bind_cancellation_slot(signal.slot(),
                                   asio::bind_executor(io, [&](std::exception_ptr e, int v) {
                                     error = e;
                                     got = v;
                                   })));
  REQUIRE(eventually([&] { return started.load(); }));
  signal.emit(asio::cancellation_type::terminal);
  release.count_down();
  io.run();
  CHECK_FALSE(error);
  CHECK(got == 3);
  if constexpr (STALLSCOPE_ENABLED) {
    CHECK(jobs(name, "cancelled") == 0);
    CHECK(jobs(name, "completed") == 1);
  }
}

TEST_CASE("a timer that beats a queued job cancels it via awaitable operators",
          "[pool][asio][cancel]") {
  using namespace asio::experimental::awaitable_operators;
  const std::string name = unique_name("race");
  BlockingPool pool(name, 1);
  std::latch release(1);
  std::atomic<bool> blocker_started{false}, raced_ran{false};
  asio::io_context io;
  pool.run(
      [&] {
        blocker_started = true;
        release.wait();
      },
      asio::bind_executor(io, [](std::exception_ptr) {}));
  REQUIRE(eventually([&] { return blocker_started.load(); }));
  bool timer_won = false;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        // The only thread is blocked until after the race, so the timer always wins.
        asio::steady_timer t(io, std::chrono::milliseconds(1));
        auto r = co_await (pool.run([&] {
          raced_ran = true;
          return 1;
        }) || t.async_wait(asio::use_awaitable));
        timer_won = r.index() == 1;
        release.count_down();
      },
      rethrow);
  io.run();
  CHECK(timer_won);
  CHECK_FALSE(raced_ran.load());
  if constexpr (STALLSCOPE_ENABLED) CHECK(jobs(name, "cancelled") == 1);
}

TEST_CASE("a full queue sheds with PoolErrc::kQueueFull, posted, never inline", "[pool][shed]") {
  const std::string name = unique_name("shed");
  BlockingPool pool(name, 1, 1);
  CHECK(pool.max_queue() == 1);
  std::latch release(1);
  std::atomic<bool> started{false}, shed_ran{false};
  asio::io_context io;
  std::vector<int> results;
  std::exception_ptr shed_error;
  bool shed_done = false;
  auto collect = asio::bind_executor(io, [&](std::exception_ptr e, int v) {
    CHECK_FALSE(e);
    results.push_back(v);
  });
  pool.run(
      [&] {
        started = true;
        release.wait();
        return 1;
      },
      collect);
  REQUIRE(eventually([&] { return started.load(); }));
  pool.run([] { return 2; }, collect);  // waits: the one queue slot
  pool.run(
      [&] {
        shed_ran = true;
        return 3;
      },
      asio::bind_executor(io, [&](std::exception_ptr e, int) {
        shed_error = e;
        shed_done = true;
      }));
  CHECK_FALSE(shed_done);  // refused at once, but completed through the executor
  CHECK(pool.queued() == 1);
  release.count_down();
  io.run();
  CHECK(shed_done);
  CHECK_FALSE(shed_ran.load());
  CHECK(code_of(shed_error) == stallscope::make_error_code(PoolErrc::kQueueFull));
  try {
    std::rethrow_exception(shed_error);
  } catch (const boost::system::system_error& e) {
    CHECK_THAT(e.what(), Catch::Contains(name) && Catch::Contains("queue full"));
  }
  CHECK(results == std::vector<int>{1, 2});
  if constexpr (STALLSCOPE_ENABLED) {
    CHECK(gauge("stallscope_pool_submitted_total", name) == 3);
    CHECK(jobs(name, "shed") == 1);
    CHECK(jobs(name, "completed") == 2);
    CHECK(queue_wait_count(name) == 2);  // a shed job never waited
  }
  check_identity(name);
}

TEST_CASE("destroying a pool cancels queued jobs, finishes the running one, completes each once",
          "[pool][concurrency]") {
  const std::string name = unique_name("destroy");
  asio::io_context io;
  Completions done(io);
  auto count = done.handler();
  std::atomic<int> queued_ran{0};
  auto pool = std::make_unique<BlockingPool>(name, 1);
  BlockingPool* raw = pool.get();
  std::latch release(1);
  std::atomic<bool> started{false};
  pool->run(
      [&, raw] {
        started = true;
        release.wait();
        // The destructor is running by now: follow-up work is refused, not lost.
        raw->run([] { return 0; }, count);
        return 1;
      },
      count);
  REQUIRE(eventually([&] { return started.load(); }));
  for (int i = 0; i < 3; ++i) {
    pool->run(
        [&] {
          ++queued_ran;
          return 2;
        },
        count);
  }
  std::thread destroyer([&] { pool.reset(); });
  // Queued jobs are cancelled first; the destructor then waits for the running one.
  REQUIRE(eventually([&] { return done.aborted.load() == 3; }));
  CHECK(done.ok.load() == 0);
  release.count_down();
  destroyer.join();
  REQUIRE(eventually([&] { return done.total() == 5; }));
  done.join();
  CHECK(done.ok.load() == 1);
  CHECK(done.aborted.load() == 3);
  CHECK(done.stopped.load() == 1);
  CHECK(done.other.load() == 0);
  CHECK(done.failed.load() == 0);
  CHECK(done.shed.load() == 0);
  CHECK(queued_ran.load() == 0);
  if constexpr (STALLSCOPE_ENABLED) {
    CHECK(gauge("stallscope_pool_submitted_total", name) == 5);
    CHECK(jobs(name, "completed") == 1);
    CHECK(jobs(name, "cancelled") == 3);
    CHECK(jobs(name, "shed") == 1);
    CHECK(gauge("stallscope_pool_threads", name) == 0);  // no live pool under this name
  }
  check_identity(name);
}

TEST_CASE("a job may destroy its own pool", "[pool][concurrency]") {
  const std::string name = unique_name("self-destroy");
  asio::io_context io;
  auto pool = std::make_unique<BlockingPool>(name, 2);
  std::exception_ptr error;
  int got = 0;
  pool->run(
      [&] {
        pool.reset();  // joins the other thread, detaches this one
        return 9;
      },
      asio::bind_executor(io, [&](std::exception_ptr e, int v) {
        error = e;
        got = v;
      }));
  io.run();
  CHECK_FALSE(error);
  CHECK(got == 9);
  CHECK(pool == nullptr);
}

TEST_CASE("pools sharing a name aggregate into one series", "[pool]") {
  const std::string name = unique_name("shared");
  {
    BlockingPool a(name, 2);
    BlockingPool b(name, 3);
    if constexpr (STALLSCOPE_ENABLED) CHECK(gauge("stallscope_pool_threads", name) == 5);
    a.run([] {}, asio::use_future).get();
    b.run([] {}, asio::use_future).get();
  }
  if constexpr (STALLSCOPE_ENABLED) {
    CHECK(gauge("stallscope_pool_threads", name) == 0);
    CHECK(jobs(name, "completed") == 2);
  }
}

TEST_CASE("submitters on several threads, with cancellation and shedding, account exactly",
          "[pool][accounting][concurrency]") {
  const std::string name = unique_name("mixed");
  constexpr int kSubmitters = 3;
  constexpr int kPerSubmitter = 300;
  constexpr int kTotal = kSubmitters * kPerSubmitter;
  asio::io_context io;
  Completions done(io);
  auto count = done.handler();
  std::atomic<int> ran{0};
  {
    BlockingPool pool(name, 2, 8);
    std::vector<std::thread> submitters;
    for (int s = 0; s < kSubmitters; ++s) {
      submitters.emplace_back([&] {
        for (int i = 0; i < kPerSubmitter; ++i) {
          asio::cancellation_signal signal;
          pool.run(
              [&, i] {
                ++ran;
                for (int k = 0; k < 20; ++k) std::this_thread::yield();
                if (i % 5 == 0) throw std::runtime_error("fails");
                return i;
              },
              asio::bind_cancellation_slot(signal.slot(), count));
          if (i % 3 == 0) signal.emit(asio::cancellation_type::terminal);
        }
      });
    }
    for (auto& t : submitters) t.join();
    REQUIRE(eventually([&] { return done.total() == kTotal; }));
  }
  done.join();
  CHECK(done.other.load() == 0);
  CHECK(done.stopped.load() == 0);
  CHECK(ran.load() == done.ok.load() + done.failed.load());
  if constexpr (STALLSCOPE_ENABLED) {
    CHECK(gauge("stallscope_pool_submitted_total", name) == kTotal);
    CHECK(jobs(name, "completed") == done.ok.load());
    CHECK(jobs(name, "failed") == done.failed.load());
    CHECK(jobs(name, "cancelled") == done.aborted.load());
    CHECK(jobs(name, "shed") == done.shed.load());
    CHECK(run_count(name) == static_cast<std::uint64_t>(ran.load()));
    CHECK(queue_wait_count(name) == static_cast<std::uint64_t>(ran.load() + done.aborted.load()));
  }
  check_identity(name);
}
