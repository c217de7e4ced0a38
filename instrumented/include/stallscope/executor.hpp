#pragma once
/// The executor as a resource: its scheduling delay, its lag probe and its threads' time.
///
///   asio::io_context io;
///   stallscope::monitor_executor(io, "io");              // optional: names it (else "io_context")
///   std::jthread t([&] { stallscope::run(io); });        // drop-in for io.run(): also counts the
///                                                        // thread's idle and other-handler time
///
/// Every io_context that runs a stallscope task is a resource of kind "executor". Its stall
/// score, rate(stallscope_wait_seconds_sum{kind="executor"}), is by Little's law the average
/// number of task resumptions that were ready but waiting for one of its threads, whatever made
/// them ready: a post (measured from submission), a timer or an I/O completion (estimated from
/// the lag probe, see below). Its thread time is split by cause in
/// stallscope_executor_thread_seconds_total{state="task|lock|other|idle"}.
///
/// The lag probe, as Node's event-loop-delay monitor: timers on a fixed 1 ms grid, each armed
/// 64 ms ahead (started by monitor_executor(), run(), or the first task resumption a timer or
/// I/O completion delivers; never in an application that only posts, where its timers would
/// add a reactor turn per handler), whose lateness (stallscope_executor_lag_seconds) is what any
/// completion on the executor waits for a thread. Asio does not expose when a timer or socket
/// completion became ready, so a resumption the reactor dispatched is given an estimate: the
/// lateness of the probe tick delivered just before it when both ran in one late batch (a timer's
/// is then exact within 1 ms), or half the time a tick has been overdue when it runs ahead of the
/// probe's batch (the mean for a ready time uncorrelated with the stall, such as a socket's data
/// arriving). The probe's timers do not count as work: io.run() still returns when the
/// application's work is done. It costs one timer handler per millisecond per io_context.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/execution_context.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "stallscope/clock.hpp"
#include "stallscope/config.hpp"
#include "stallscope/detail/executor_recorder.hpp"
#include "stallscope/detail/slice.hpp"

namespace stallscope {

namespace detail {

/// The io_context service that owns an executor's site and its lag probe. Created by
/// monitor_executor() or by the first task slice that runs on the io_context; destroyed with the
/// io_context (so its timers never outlive their service).
class ExecutorProbe final : public boost::asio::execution_context::service {
 public:
  static inline boost::asio::execution_context::id id;

  static constexpr std::int64_t kPeriodNs = 1'000'000;
  static constexpr std::size_t kInFlight = 64;

  ExecutorProbe(boost::asio::execution_context& ctx, std::string_view name)
      : service(ctx),
        io_(static_cast<boost::asio::io_context&>(ctx)),
        site_(executor_series(name), kPeriodNs) {}
  explicit ExecutorProbe(boost::asio::execution_context& ctx) : ExecutorProbe(ctx, "io_context") {}

  ExecutorSite& site() noexcept { return site_; }

  // Starts the lag probe, once. Not at creation: its timers make the io_context run its reactor
  // between handlers (an epoll_wait per turn of the queue, about 1 us), which an application
  // that only posts would not otherwise pay. So it starts when the application uses the reactor
  // itself (a task resumed by a timer or I/O completion), or when asked (monitor_executor(),
  // run()). Thread-safe.
  void start_once() {
    if (!site_.begin_probing()) return;
    // Started from a posted handler: inside it the io_context's work count is at least one, so
    // untracking the probe's timers there can never stop an io_context that has other work.
    boost::asio::post(io_, [this] { start(); });
  }

 private:
  struct Tick {
    explicit Tick(boost::asio::io_context& io) : timer(io) {}
    boost::asio::steady_timer timer;
    std::int64_t expiry_ns = 0;
  };

  void shutdown() override { ticks_.clear(); }

  // The grid is kept on steady_clock, the timers' own clock; lateness is handed to the site on
  // stallscope's clock (which may drift from steady_clock over hours).
  void start() {
    const std::int64_t now = detail::steady_ns();
    const std::int64_t first = now - now % kPeriodNs + kPeriodNs;
    for (std::size_t i = 0; i < kInFlight; ++i) {
      ticks_.push_back(std::make_unique<Tick>(io_));
      arm(*ticks_.back(), first + static_cast<std::int64_t>(i) * kPeriodNs);
    }
  }

  // Arms `t` for `expiry_ns` (steady_clock) and takes its pending wait out of the io_context's
  // work count, so that the probe never keeps io.run() from returning.
  void arm(Tick& t, std::int64_t expiry_ns) {
    t.expiry_ns = expiry_ns;
    t.timer.expires_at(std::chrono::steady_clock::time_point(std::chrono::nanoseconds(expiry_ns)));
    // Work count: scheduling the wait adds one and this call takes it away; when the wait
    // completes, the handler gives it back before the scheduler takes it away after the handler
    // returns. So the count never includes a pending tick and never drops below the work that
    // exists, and inside the handler (which holds one) re-arming cannot bring it to zero.
    t.timer.async_wait([this, &t](const boost::system::error_code& ec) {
      io_.get_executor().on_work_started();
      if (!ec) fired(t);
    });
    io_.get_executor().on_work_finished();
  }

  void fired(Tick& t) {
    const std::int64_t steady = detail::steady_ns();
    const std::int64_t now = now_ns();
    site_.tick(now - (steady - t.expiry_ns), now);
    constexpr std::int64_t kSpan = kPeriodNs * static_cast<std::int64_t>(kInFlight);
    std::int64_t next = t.expiry_ns + kSpan;
    if (next <= steady) next += (steady - next) / kSpan * kSpan + kSpan;  // keep the tick's phase
    arm(t, next);
  }

  boost::asio::io_context& io_;
  ExecutorSite site_;
  std::vector<std::unique_ptr<Tick>> ticks_;
};

// The site of the execution context `ctx` (a task slice's), cached per thread: its probe's,
// started here when `io` (the same context, when the executor's type says it is an io_context)
// is given; null for a context without a probe.
inline ExecutorSite* executor_site(boost::asio::execution_context& ctx,
                                   boost::asio::io_context* io) noexcept {
  ExecutorSite* site;
  if (cached_executor(&ctx, site)) [[likely]]
    return site;
  site = nullptr;
  try {
    if (io != nullptr) {
      site = &boost::asio::use_service<ExecutorProbe>(*io).site();
    } else if (boost::asio::has_service<ExecutorProbe>(ctx)) {
      site = &boost::asio::use_service<ExecutorProbe>(ctx).site();
    }
  } catch (...) {
    // Out of memory: record without an executor, never fail the handler.
  }
  cache_executor(&ctx, site);
  return site;
}

// A task was resumed by a reactor completion on `io`: the application uses the reactor, so the
// probe costs it nothing more than its ticks. Slow path, once per io_context.
inline void start_probe(boost::asio::io_context& io) noexcept {
  try {
    boost::asio::use_service<ExecutorProbe>(io).start_once();
  } catch (...) {
  }
}

}  // namespace detail

/// Names `io` as executor `name` (kind "executor") and starts its lag probe, if no task has
/// run on it yet: the first task slice on an io_context that was not named starts it as
/// "io_context". Later calls keep the first name. Thread-safe. Throws std::invalid_argument on
/// a bad name.
inline void monitor_executor(boost::asio::io_context& io, std::string_view name) {
  if constexpr (!detail::kRecordsExecutors) return;  // recording compiled out: nothing to name
  validate_resource_name(name);
  if (!boost::asio::has_service<detail::ExecutorProbe>(io)) {
    try {
      boost::asio::make_service<detail::ExecutorProbe>(io, name);
    } catch (const boost::asio::service_already_exists&) {
      // Another thread (or a task slice) got there first.
    }
  }
  boost::asio::use_service<detail::ExecutorProbe>(io).start_once();
}

/// Drop-in for io.run() (same return value and exceptions) that also counts this thread's time
/// as the executor's: running handlers that are not task slices ("other"), and waiting for work
/// ("idle"); slices and lock waits are counted on any thread. Costs a poll_one() and one clock
/// read per handler over io.run(). The handler a thread runs right after waiting is counted as
/// idle time unless it is a task slice (it cannot be told apart from the wait).
inline std::size_t run(boost::asio::io_context& io) {
  if constexpr (!detail::kRecordsExecutors) return io.run();  // recording compiled out
  detail::ExecutorSeries* series = nullptr;
  try {
    auto& probe = boost::asio::use_service<detail::ExecutorProbe>(io);
    probe.start_once();
    series = probe.site().series();
  } catch (...) {
    return io.run();
  }
  series->threads.fetch_add(1, std::memory_order_relaxed);
  struct Leave {
    detail::ExecutorSeries* s;
    ~Leave() { s->threads.fetch_sub(1, std::memory_order_relaxed); }
  } leave{series};
  const std::uint32_t base = series->base;
  std::size_t n = 0;
  std::int64_t t = now_ns();
  for (;;) {
    if (io.poll_one() != 0) {
      const std::int64_t t2 = now_ns();
      detail::add(base + detail::ExecutorSeries::kHandlerNs, static_cast<std::uint64_t>(t2 - t));
      t = t2;
      ++n;
      continue;
    }
    const std::int64_t slices_before = detail::tls_slice_ns;
    const std::size_t k = io.run_one();
    const std::int64_t t2 = now_ns();
    const std::int64_t in_slice = detail::tls_slice_ns - slices_before;
    const std::int64_t waited = t2 - t - in_slice;
    detail::add(base + detail::ExecutorSeries::kIdleNs,
                static_cast<std::uint64_t>(waited > 0 ? waited : 0));
    detail::add(base + detail::ExecutorSeries::kHandlerNs, static_cast<std::uint64_t>(in_slice));
    t = t2;
    if (k == 0) break;
    ++n;
  }
  return n;
}

}  // namespace stallscope
