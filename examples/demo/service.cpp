#include "service.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <iterator>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>
#include <fmt/format.h>
#include <stallscope/blocking_pool.hpp>
#include <stallscope/cancellation.hpp>
#include <stallscope/channel.hpp>
#include <stallscope/mutex.hpp>
#include <stallscope/retry.hpp>
#include <stallscope/semaphore.hpp>
#include <stallscope/task.hpp>

#include "payload.hpp"

namespace demo {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;
using Strand = asio::strand<asio::io_context::executor_type>;
// Every task that can be cancelled runs on a strand: Asio cancellation signals must not be
// emitted concurrently with the coroutine (see stallscope/task.hpp).
using Group = stallscope::TaskGroup<Strand>;

std::string_view to_string(Variant variant) { return variant == Variant::kSlow ? "slow" : "fixed"; }

namespace {

// The simulated external API: 4 ms plus an exponential tail (mean 6 ms, cut at 150 ms); 10% of
// calls fail after their latency.
constexpr auto kFetchBase = std::chrono::milliseconds(4);
constexpr double kFetchTailMeanMs = 6;
constexpr double kFetchTailMaxMs = 150;
// The fixed variant gives a fetch this long (with retries, a few percent run past it), then
// gives up.
constexpr auto kFetchDeadline = std::chrono::milliseconds(30);
constexpr double kFetchFailure = 0.10;
// Fetch retries, through stallscope::retry and the RetryBudget "fetch". slow: every failure
// retried after 5 ms, forever, through an unlimited budget (counted, so the amplification shows,
// never bounded). fixed: at most 2 retries per request, jittered exponential backoff from 5 ms,
// and only while the budget allows: 10% of the last 10 s of requests, plus 2 per second.
constexpr auto kSlowRetryDelay = std::chrono::milliseconds(5);
constexpr std::uint32_t kMaxAttempts = 3;
constexpr auto kRetryBackoff = std::chrono::milliseconds(5);
constexpr auto kRetryBackoffMax = std::chrono::milliseconds(40);
constexpr double kRetryBudgetShare = 0.10;
constexpr std::uint32_t kRetryFloor = 2;

constexpr std::uint32_t kCacheKeys = 64;
constexpr std::size_t kRecordsCapacity = 256;
constexpr std::size_t kWriterBatchBytes = 64 * 1024;
constexpr auto kSyncInterval = std::chrono::milliseconds(200);

// Shutdown: in-flight requests get this long to unwind after cancellation; the writer gets this
// long to write and fsync what is queued; then whatever still runs gets this long to react to
// cancellation before it is reported as lingering.
constexpr auto kRequestGrace = std::chrono::seconds(2);
constexpr auto kFlushDeadline = std::chrono::seconds(1);
constexpr auto kGiveUpGrace = std::chrono::milliseconds(200);

std::mt19937_64& rng() {
  thread_local std::mt19937_64 engine{std::random_device{}() ^
                                      std::hash<std::thread::id>{}(std::this_thread::get_id())};
  return engine;
}
double uniform() { return std::uniform_real_distribution<double>(0, 1)(rng()); }

Clock::duration ms(double milliseconds) {
  return std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double, std::milli>(milliseconds));
}

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

struct FetchFailed : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// What a request hands to the writer. The control lane carries kStop.
struct Record {
  enum class Type : std::uint8_t { kData, kStop };
  Type type = Type::kData;
  std::uint64_t id = 0;
  std::uint32_t key = 0;
  std::uint64_t version = 0;
  std::uint64_t hash = 0;
  std::uint64_t items = 0;

  static Record stop() {
    Record r;
    r.type = Type::kStop;
    return r;
  }
};

struct CacheEntry {
  std::uint64_t version = 0;
  std::uint64_t hash = 0;
};

stallscope::RetryBudgetOptions retry_budget_options(Variant variant) {
  if (variant == Variant::kSlow) return {.unlimited = true};
  return {.ttl = std::chrono::seconds(10),
          .min_retries_per_second = kRetryFloor,
          .retry_share = kRetryBudgetShare};
}

stallscope::RetryPolicy<std::string> retry_policy(Variant variant) {
  stallscope::RetryPolicy<std::string> p;
  if (variant == Variant::kSlow) {
    p.initial_backoff = p.max_backoff = kSlowRetryDelay;
    p.multiplier = 1;
    p.jitter = 0;
    p.max_attempts = std::numeric_limits<std::uint32_t>::max();
  } else {
    p.initial_backoff = kRetryBackoff;
    p.max_backoff = kRetryBackoffMax;
    p.multiplier = 2;
    p.jitter = 0.5;
    p.max_attempts = kMaxAttempts;
  }
  // Only the API's own failures are retried; a cancellation (the deadline, shutdown) is not.
  p.retry_if = [](const std::string*, const std::exception_ptr& e) {
    if (!e) return false;
    try {
      std::rethrow_exception(e);
    } catch (const FetchFailed&) {
      return true;
    } catch (...) {
      return false;
    }
  };
  return p;
}

void write_batch(int fd, const std::string& batch, bool sync) {
  std::size_t done = 0;
  while (done < batch.size()) {
    const ssize_t n = ::write(fd, batch.data() + done, batch.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw std::system_error(errno, std::generic_category(), "write records.log");
    done += static_cast<std::size_t>(n);
  }
  if (sync && ::fdatasync(fd) != 0) {
    throw std::system_error(errno, std::generic_category(), "fdatasync records.log");
  }
}

std::string signal_name(int signo) {
  switch (signo) {
    case SIGINT:
      return "SIGINT";
    case SIGTERM:
      return "SIGTERM";
    default:
      return fmt::format("signal {}", signo);
  }
}

void report_failure(std::string_view task, const std::exception_ptr& e) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    std::fprintf(stderr, "stallscope-demo: %.*s failed: %s\n", static_cast<int>(task.size()),
                 task.data(), x.what());
  } catch (...) {
    std::fprintf(stderr, "stallscope-demo: %.*s failed\n", static_cast<int>(task.size()),
                 task.data());
  }
}

class Service {
 public:
  Service(const DemoOptions& options, const std::string& payload_template, asio::io_context& io)
      : options_(options),
        template_(payload_template),
        io_(io),
        signals_(io, SIGINT, SIGTERM),
        deadline_(io),
        control_(asio::make_strand(io)),
        records_("records", kRecordsCapacity),
        retry_budget_("fetch", retry_budget_options(options.variant)),
        retry_policy_(retry_policy(options.variant)),
        input_(asio::make_strand(io), "input", root_),
        monitor_(asio::make_strand(io), "monitor", root_),
        storage_(asio::make_strand(io), "storage", storage_token_) {
    if (options.variant == Variant::kSlow) {
      // One coroutine lock around the whole request: legal across co_await, and it serializes
      // every fetch and every parse in the service.
      cache_async_.emplace("cache");
    } else {
      cache_mutex_.emplace("cache");
      const std::size_t cores = options.cores > 0
                                    ? static_cast<std::size_t>(options.cores)
                                    : std::max(1U, std::thread::hardware_concurrency());
      parse_pool_.emplace("parse", cores);
      // At most two parses per pool thread are handed to the pool (one running, one queued); the
      // rest wait on the semaphore, holding no CPU, and leave it at once when cancelled.
      parse_cpu_.emplace("parse-cpu", 2 * cores);
      storage_pool_.emplace("storage", 1);
    }
    // Several strands per thread: requests on one strand never run in parallel, and a request
    // parsing on its strand (slow variant) delays only that strand's other requests.
    const int shards = 2 * options.threads;
    for (int i = 0; i < shards; ++i) {
      requests_.push_back(std::make_unique<Group>(asio::make_strand(io), "requests", root_));
    }
    for (std::uint32_t k = 0; k < kCacheKeys; ++k) cache_[k] = CacheEntry{};
  }

  void start() {
    start_ = Clock::now();
    start_waits_ = read_wait_totals();
    storage_.spawn("writer", writer());
    if (options_.clients > 0) {
      for (int i = 0; i < options_.clients; ++i) {
        input_.spawn("client", client(static_cast<std::uint64_t>(i) + 1));
      }
    } else {
      input_.spawn("loadgen", load_generator());
    }
    if (options_.summary_interval_s > 0) monitor_.spawn("summary", summaries());
    signals_.async_wait(asio::bind_executor(control_, [this](boost::system::error_code ec, int s) {
      if (!ec) begin_shutdown(signal_name(s));
    }));
    if (options_.duration_s > 0) {
      deadline_.expires_after(std::chrono::seconds(options_.duration_s));
      deadline_.async_wait(asio::bind_executor(control_, [this](boost::system::error_code ec) {
        if (!ec) begin_shutdown(fmt::format("--duration {}", options_.duration_s));
      }));
    }
  }

  RunReport report() const {
    RunReport r;
    r.requests = stats_.total();
    r.seconds = seconds_between(start_, end_);
    r.stalls = rank_stalls(start_waits_, end_waits_, r.seconds);
    r.clean_shutdown = clean_;
    return r;
  }

 private:
  // ---- requests ----

  asio::awaitable<void> load_generator() {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    const auto period = std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(1.0 / options_.rate));
    Clock::time_point next = Clock::now();
    for (std::uint64_t id = 1;; ++id) {
      // Open loop: arrivals keep their schedule however slow the service is (a late wake-up
      // sends the overdue arrivals at once), and latency counts from the scheduled arrival.
      next += period;
      timer.expires_at(next);
      co_await timer.async_wait(asio::use_awaitable);
      admit(id, next);
    }
  }

  // Closed loop: one client sends its next request as soon as the last one is done, so the
  // service runs at saturation and throughput is what it can do. Its requests run inside the
  // client task, on the request groups' strands' io_context.
  asio::awaitable<void> client(std::uint64_t first_id) {
    const auto step = static_cast<std::uint64_t>(options_.clients);
    for (std::uint64_t id = first_id;; id += step) {
      inflight_.fetch_add(1, std::memory_order_relaxed);
      try {
        co_await request(id, Clock::now());
      } catch (...) {
        // Counted by request(); the client goes on, unless the service is shutting down.
        if (root_.cancelled()) throw;
      }
    }
  }

  void admit(std::uint64_t id, Clock::time_point arrival) {
    if (inflight_.load(std::memory_order_relaxed) >= options_.max_inflight) {
      stats_.reject();
      return;
    }
    inflight_.fetch_add(1, std::memory_order_relaxed);
    Group& group = *requests_[id % requests_.size()];
    if (!group.spawn("request", request(id, arrival))) {
      inflight_.fetch_sub(1, std::memory_order_relaxed);  // shutting down
    }
  }

  asio::awaitable<void> request(std::uint64_t id, Clock::time_point arrival) {
    Outcome outcome = Outcome::kFailed;
    std::exception_ptr error;
    try {
      if (options_.variant == Variant::kSlow) {
        co_await handle_slow(id);
      } else {
        co_await handle_fixed(id);
      }
      outcome = Outcome::kCompleted;
    } catch (const boost::system::system_error& e) {
      outcome = e.code() == asio::error::operation_aborted ? Outcome::kCancelled : Outcome::kFailed;
      error = std::current_exception();
    } catch (...) {
      error = std::current_exception();
    }
    stats_.finish(outcome, Clock::now() - arrival);
    inflight_.fetch_sub(1, std::memory_order_relaxed);
    // Rethrown so that stallscope counts the task as failed or cancelled.
    if (error) std::rethrow_exception(error);
  }

  // The mistakes: one coroutine lock held across the fetch (and its retries, without a budget)
  // and the parse, and the parse on the executor thread.
  asio::awaitable<void> handle_slow(std::uint64_t id) {
    const std::uint32_t key = pick_key();
    stallscope::AsyncMutex::Guard guard = co_await cache_async_->async_lock(asio::use_awaitable);
    const CacheEntry cached = cache_[key];
    const std::string payload = co_await fetch(id);
    const ParseResult parsed = parse_payload(payload);
    if (!parsed.valid) throw std::runtime_error("invalid payload");
    cache_[key] = CacheEntry{cached.version + 1, parsed.hash};
    guard.unlock();
    co_await store(
        Record{Record::Type::kData, id, key, cached.version + 1, parsed.hash, parsed.records});
  }

  // The repairs: the lock only around the map, never across co_await; the fetch with a retry
  // budget; the parse capped by a semaphore and run on the blocking pool.
  asio::awaitable<void> handle_fixed(std::uint64_t id) {
    const std::uint32_t key = pick_key();
    CacheEntry cached;
    {
      std::lock_guard lock(*cache_mutex_);
      cached = cache_[key];
    }
    const std::string payload = co_await fetch(id);
    ParseResult parsed;
    {
      stallscope::Semaphore::Permit permit =
          co_await parse_cpu_->async_acquire(asio::use_awaitable);
      parsed = co_await parse_pool_->run([&payload] { return parse_payload(payload); },
                                         asio::use_awaitable);
    }
    if (!parsed.valid) throw std::runtime_error("invalid payload");
    std::uint64_t version = 0;
    {
      std::lock_guard lock(*cache_mutex_);
      CacheEntry& entry = cache_[key];
      version = std::max(entry.version, cached.version) + 1;
      entry = CacheEntry{version, parsed.hash};
    }
    co_await store(Record{Record::Type::kData, id, key, version, parsed.hash, parsed.records});
  }

  // The external API call, as its own task "fetch" on the request's strand: cancelling the
  // request reaches it through the awaiting coroutine's cancellation slot.
  asio::awaitable<std::string> fetch(std::uint64_t id) {
    auto executor = co_await asio::this_coro::executor;
    if (options_.variant == Variant::kSlow) {
      co_return co_await stallscope::spawn(
          executor, "fetch",
          [this, id]() -> asio::awaitable<std::string> {
            return call_api(id, stallscope::CancellationToken::none());
          },
          asio::use_awaitable);
    }
    // The repair: a deadline. The fetch task is bound to a token of its own that a timer cancels
    // after kFetchDeadline; the request then fails fast instead of waiting out the tail, and
    // stallscope records how long the fetch took to stop (cancel-to-exit).
    stallscope::CancellationToken deadline;
    asio::steady_timer timer(executor, kFetchDeadline);
    timer.async_wait([deadline](boost::system::error_code ec) {
      if (!ec) deadline.cancel();
    });
    struct CancelTimer {
      asio::steady_timer& t;
      ~CancelTimer() { t.cancel(); }
    } cancel_timer{timer};
    co_return co_await stallscope::spawn(
        executor, "fetch", deadline,
        // `deadline` by reference: it outlives the task (this coroutine awaits it). Captured by
        // value, it was released once too often when the task threw: with GCC 12, plain
        // asio::co_spawn of a lambda with a shared_ptr capture whose awaitable throws does the
        // same (valgrind: a use after free in co_spawn_entry_point).
        [this, id, &deadline]() -> asio::awaitable<std::string> { return call_api(id, deadline); },
        asio::use_awaitable);
  }

  // The API call with its retries: the budget "fetch" records every request, retry, denial and
  // backoff. `token` is the fetch's deadline (fixed variant): it ends a backoff at once.
  asio::awaitable<std::string> call_api(std::uint64_t id, stallscope::CancellationToken token) {
    return stallscope::retry(retry_budget_, token, retry_policy_,
                             [this, id] { return call_api_once(id); });
  }

  // One call: 4 ms plus an exponential tail, then the payload or (10%) FetchFailed.
  asio::awaitable<std::string> call_api_once(std::uint64_t id) {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    const double tail = std::exponential_distribution<double>(1 / kFetchTailMeanMs)(rng());
    timer.expires_after(kFetchBase + ms(std::min(tail, kFetchTailMaxMs)));
    co_await timer.async_wait(asio::use_awaitable);
    if (uniform() >= kFetchFailure) co_return make_payload(template_, id);
    throw FetchFailed("fetch: the external API failed");
  }

  // Hands the record to the writer; waits while the channel is full (backpressure).
  asio::awaitable<void> store(Record record) {
    stallscope::SendResult<Record> r =
        co_await records_.async_send(std::move(record), asio::use_awaitable);
    if (r.outcome == stallscope::SendOutcome::kCancelled) {
      throw boost::system::system_error(asio::error::operation_aborted, "records");
    }
    if (!r.accepted()) throw std::runtime_error("records: " + std::string(to_string(r.outcome)));
  }

  static std::uint32_t pick_key() { return static_cast<std::uint32_t>(rng()() % kCacheKeys); }

  // ---- storage ----

  // Owns records.log: appends batches of records, fdatasync at most every 200 ms. Stops on the
  // control lane's kStop: closes the channel, writes everything still queued, syncs. If it
  // fails, it closes the channel, so that requests fail instead of waiting for it forever.
  asio::awaitable<void> writer() {
    try {
      co_await write_records();
    } catch (...) {
      report_failure("writer", std::current_exception());
      records_.close();  // senders fail fast instead of waiting for a writer that is gone
      throw;
    }
  }

  asio::awaitable<void> write_records() {
    const std::string path = options_.data_dir + "/records.log";
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) throw std::system_error(errno, std::generic_category(), "open " + path);
    struct Closer {
      int fd;
      ~Closer() { ::close(fd); }
    } closer{fd};
    std::string batch;
    Clock::time_point last_sync = Clock::now();
    bool stopping = false;
    auto take = [&](const Record& r) {
      if (r.type == Record::Type::kStop) {
        stopping = true;
        records_.close();  // refuses new sends; everything queued is still received
        return;
      }
      fmt::format_to(std::back_inserter(batch), "{} {} {} {:016x} {}\n", r.id, r.key, r.version,
                     r.hash, r.items);
      ++written_;
    };
    for (;;) {
      auto [ec, record] = co_await records_.async_receive(asio::as_tuple(asio::use_awaitable));
      if (ec) break;  // closed and empty, or cancelled
      take(record);
      while (batch.size() < kWriterBatchBytes) {
        std::optional<Record> more = records_.try_receive();
        if (!more) break;
        take(*more);
      }
      const bool sync = stopping || Clock::now() - last_sync >= kSyncInterval;
      if (!batch.empty() || sync) co_await write(fd, batch, sync);
      batch.clear();
      if (sync) {
        last_sync = Clock::now();
        ++syncs_;
      }
    }
  }

  asio::awaitable<void> write(int fd, const std::string& batch, bool sync) {
    if (storage_pool_) {
      co_await storage_pool_->run([fd, &batch, sync] { write_batch(fd, batch, sync); },
                                  asio::use_awaitable);
    } else {
      write_batch(fd, batch, sync);  // slow: blocks an executor thread
    }
  }

  // ---- monitoring ----

  asio::awaitable<void> summaries() {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    WaitTotals before = read_wait_totals();
    Clock::time_point since = Clock::now();
    for (;;) {
      timer.expires_after(std::chrono::seconds(options_.summary_interval_s));
      co_await timer.async_wait(asio::use_awaitable);
      if (root_.cancelled()) co_return;  // shutting down: the final line says the rest
      WaitTotals after = read_wait_totals();
      const Clock::time_point now = Clock::now();
      const double seconds = seconds_between(since, now);
      const RequestStats::Window w = stats_.take_interval();
      std::string stalls;
      const std::vector<StallScore> ranked = rank_stalls(before, after, seconds);
      for (std::size_t i = 0; i < std::min<std::size_t>(3, ranked.size()); ++i) {
        stalls += fmt::format("{}{}/{} {:.2f}", i == 0 ? "" : ", ", ranked[i].kind,
                              ranked[i].resource, ranked[i].waiters);
      }
      fmt::print(
          "[{:5.0f}s] {}: {} done ({:.1f}/s), {} failed, {} rejected | p50 {:.1f} ms, p99 {:.1f} "
          "ms | {} in flight | top stalls (avg waiters): {}\n",
          seconds_between(start_, now), to_string(options_.variant), w.completed,
          static_cast<double>(w.completed) / seconds, w.failed, w.rejected,
          w.latency.quantile_ms(0.50), w.latency.quantile_ms(0.99), inflight_.load(),
          stalls.empty() ? "none" : stalls);
      std::fflush(stdout);
      before = std::move(after);
      since = now;
    }
  }

  // ---- shutdown ----

  void begin_shutdown(const std::string& reason) {
    if (shutting_down_) return;
    shutting_down_ = true;
    deadline_.cancel();
    // A second signal while shutting down: stop waiting.
    signals_.async_wait([](boost::system::error_code ec, int s) {
      if (ec) return;
      std::fprintf(stderr, "stallscope-demo: %s again, exiting now\n", signal_name(s).c_str());
      std::_Exit(1);
    });
    // Bound to a scope of its own that nothing cancels. (Without a token, GCC 12 -O2 reports a
    // false -Wmaybe-uninitialized in stallscope::spawn's optional<CancellationToken>.)
    stallscope::spawn(
        control_, "shutdown", shutdown_token_,
        [this, reason]() -> asio::awaitable<void> { return shutdown(reason); },
        [this](std::exception_ptr e) {
          report_failure("shutdown", e);
          if (e) io_.stop();
        });
  }

  // The cancellation order: cancel, stop new input, let in-flight requests finish and join them
  // within a grace period, then give optional cleanup (the writer's flush) a short deadline and
  // report whoever lingers instead of hanging.
  asio::awaitable<void> shutdown(std::string reason) {
    using namespace asio::experimental::awaitable_operators;
    end_ = Clock::now();
    end_waits_ = read_wait_totals();
    const int inflight = inflight_.load();
    // 1. Cancel: every request, the load generator and the summaries wake from what they await.
    root_.cancel();
    fmt::print("stallscope-demo: {}: shutting down (requests in flight: {})\n", reason, inflight);
    std::fflush(stdout);
    // 2. Stop new input: nothing more is admitted, even an arrival already on its way.
    input_.close();
    for (auto& g : requests_) g->close();
    // 3, 4. In-flight requests unwind (a parse already running finishes first) and are joined,
    // all within one grace period.
    const Clock::time_point grace_end = Clock::now() + kRequestGrace;
    std::vector<std::string> lingering;
    auto join = [&](Group& g) -> asio::awaitable<void> {
      const auto left = std::max(Clock::duration::zero(), grace_end - Clock::now());
      const stallscope::ShutdownReport r = co_await g.shutdown(left);
      lingering.insert(lingering.end(), r.lingering.begin(), r.lingering.end());
    };
    co_await join(input_);
    for (auto& g : requests_) co_await join(*g);
    co_await join(monitor_);
    const double joined_s = seconds_between(end_, Clock::now());
    // 5. Optional cleanup, with a deadline: the stop message on the control lane overtakes the
    // queued records; the writer closes the channel, writes what is queued and syncs.
    const Clock::time_point flush_start = Clock::now();
    if (!records_.send_control(Record::stop()).accepted()) {
      // A full control lane or a closed channel: the flush deadline below bounds the wait.
      fmt::print(stderr, "stallscope-demo: the writer's stop message was refused\n");
    }
    asio::steady_timer flush_deadline(co_await asio::this_coro::executor, kFlushDeadline);
    co_await (storage_.async_join(asio::use_awaitable) ||
              flush_deadline.async_wait(asio::use_awaitable));
    bool flushed = storage_.active() == 0;
    if (!flushed) {
      const stallscope::ShutdownReport r = co_await storage_.shutdown(kGiveUpGrace);
      lingering.insert(lingering.end(), r.lingering.begin(), r.lingering.end());
    }
    clean_ = lingering.empty();
    fmt::print(
        "stallscope-demo: requests joined in {:.3f} s; writer {} {} records ({} syncs) in {:.3f} "
        "s; {}\n",
        joined_s, flushed ? "flushed, wrote" : "gave up after", written_.load(), syncs_.load(),
        seconds_between(flush_start, Clock::now()),
        clean_ ? std::string("clean") : fmt::format("lingering: {}", fmt::join(lingering, ", ")));
    std::fflush(stdout);
    signals_.cancel();
    io_.stop();  // lingering tasks, if any, are abandoned here
  }

  const DemoOptions& options_;
  const std::string& template_;
  asio::io_context& io_;
  RequestStats stats_;
  std::atomic<int> inflight_{0};
  std::atomic<std::uint64_t> written_{0};  // by the writer; read at shutdown
  std::atomic<std::uint64_t> syncs_{0};

  // The slow variant's lock, or the fixed variant's lock, budget, semaphore and pools.
  std::unordered_map<std::uint32_t, CacheEntry> cache_;
  std::optional<stallscope::AsyncMutex> cache_async_;
  std::optional<stallscope::Mutex> cache_mutex_;
  std::optional<stallscope::BlockingPool> parse_pool_;
  std::optional<stallscope::Semaphore> parse_cpu_;
  std::optional<stallscope::BlockingPool> storage_pool_;

  asio::signal_set signals_;
  asio::steady_timer deadline_;
  Strand control_;              // signals, the deadline and the shutdown sequence
  bool shutting_down_ = false;  // on control_
  bool clean_ = true;
  Clock::time_point start_;
  Clock::time_point end_;
  WaitTotals start_waits_;
  WaitTotals end_waits_;

  // Requests, the load generator and the summaries descend from root_; the writer has its own
  // scope, since it must outlive the requests to store what they sent.
  stallscope::CancellationToken root_;
  stallscope::CancellationToken storage_token_;
  stallscope::CancellationToken shutdown_token_;
  stallscope::Channel<Record> records_;
  stallscope::RetryBudget retry_budget_;
  stallscope::RetryPolicy<std::string> retry_policy_;
  std::vector<std::unique_ptr<Group>> requests_;
  Group input_;
  Group monitor_;
  Group storage_;
};

}  // namespace

namespace {

// stallscope::run(io) (io.run(), also counting the executor threads' idle time) until the
// context stops. An exception that a completion handler throws leaves run() (Asio's rule; run()
// may then be called again): it is reported and the thread runs on, instead of terminating the
// process. (Seen rarely at shutdown under load, before stallscope::spawn shielded its tasks:
// "co_await: Operation canceled" from Boost 1.81's co_spawn entry point; examples/demo/README.md.)
void run_executor_thread(asio::io_context& io) {
  for (;;) {
    try {
      stallscope::run(io);
      return;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "stallscope-demo: a completion handler threw out of run(): %s\n",
                   e.what());
    } catch (...) {
      std::fprintf(stderr, "stallscope-demo: a completion handler threw out of run()\n");
    }
  }
}

}  // namespace

RunReport run_service(const DemoOptions& options, const std::string& payload_template) {
  asio::io_context io(options.threads);
  RunReport report;
  {
    Service service(options, payload_template, io);
    service.start();
    std::vector<std::jthread> threads;
    for (int i = 1; i < options.threads; ++i) {
      threads.emplace_back([&io] { run_executor_thread(io); });
    }
    run_executor_thread(io);
    for (auto& t : threads) t.join();
    report = service.report();
  }  // destroyed while `io` still exists: what they complete is posted there, never run
  return report;
}

}  // namespace demo
