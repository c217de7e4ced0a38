#pragma once
/// stallscope::BlockingPool: CPU-heavy or blocking work off the Asio executor, with its queue in
/// plain sight.
///
///   stallscope::BlockingPool pool{"image-resize", 4};
///   Thumbnail t = co_await pool.run([&] { return resize(image); });  // rethrows what fn threw
///   pool.run([] { fsync_all(); }, asio::bind_executor(io, [](std::exception_ptr e) { ... }));
///
/// A job waits in the pool's FIFO queue until one of the pool's threads is free (the queue wait:
/// stallscope_wait_seconds{kind="pool",op="queue"}, ranked as a stall like a lock wait), runs
/// there, and its result goes back to the caller's own executor.

#include <concepts>
#include <cstddef>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <boost/asio/async_result.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "stallscope/detail/pool_core.hpp"
#include "stallscope/pool_errc.hpp"

namespace stallscope {

/// A fixed set of threads for CPU-heavy or blocking work, recording under `name` (kind "pool"):
/// queue wait (stallscope_wait_seconds{op="queue"}, a stall), queued jobs and the oldest one's
/// age, run time, threads and busy threads, and what became of every job.
///
/// Thread-safe: any thread or coroutine may call run(). Cost per job: one allocation, the pool's
/// mutex twice, a post back to the caller's executor, three clock reads. Construction throws
/// std::invalid_argument for 0 threads or a bad name, std::system_error when a thread cannot
/// start. Destruction refuses new jobs (PoolErrc::kStopped), completes every queued job with
/// operation_aborted without running it, waits for running jobs to return, and joins the threads.
class BlockingPool final {
 public:
  /// `threads` (at least 1) run jobs; at most `max_queue` jobs wait for a busy pool (0:
  /// unbounded), beyond that run() fails fast with PoolErrc::kQueueFull (counted as shed).
  BlockingPool(std::string_view name, std::size_t threads, std::size_t max_queue = 0)
      : core_(make_core(name, threads, max_queue)) {
    threads_.reserve(threads);
    try {
      for (std::size_t i = 0; i < threads; ++i) {
        threads_.emplace_back([core = core_, i] { core->work(i); });
      }
    } catch (...) {
      core_->stop();
      for (std::thread& t : threads_) t.join();
      throw;
    }
  }

  /// Blocks until running jobs return; queued ones complete with operation_aborted. Safe from a
  /// job of this pool (its own thread is detached and exits after the job).
  ~BlockingPool() {
    core_->stop();
    const std::thread::id me = std::this_thread::get_id();
    for (std::thread& t : threads_) {
      if (t.get_id() == me) {
        t.detach();
      } else {
        t.join();
      }
    }
  }
  BlockingPool(const BlockingPool&) = delete;
  BlockingPool& operator=(const BlockingPool&) = delete;

  /// Runs `fn()` on a pool thread. Completion signature void(std::exception_ptr, R), or
  /// void(std::exception_ptr) when fn returns void; R (fn's return type without cv/ref) must be
  /// default constructible (as for co_spawn; wrap it in std::optional otherwise). With
  /// use_awaitable (the default) the result is returned and any error thrown: fn's own
  /// exception, or boost::system::system_error with asio::error::operation_aborted (cancelled
  /// while queued, or the pool was destroyed), PoolErrc::kQueueFull, PoolErrc::kStopped.
  ///
  /// The handler runs on its associated executor (system_executor for a bare callback), posted,
  /// never inline and never on a pool thread; that executor keeps outstanding work until then.
  /// Cancellation through the handler's slot (any type) removes a job that is still queued; a
  /// job that has started runs to the end and completes normally. fn is destroyed after it runs,
  /// on the pool thread, or unrun where it was cancelled.
  template <class Fn, class Token = boost::asio::use_awaitable_t<>>
  requires std::invocable<std::decay_t<Fn>>
  auto run(Fn&& fn, Token&& token = {}) {
    using R = detail::PoolResult<Fn>;
    static_assert(std::is_void_v<R> ||
                      (std::is_default_constructible_v<R> && std::is_move_constructible_v<R>),
                  "BlockingPool::run: fn must return void or a default constructible, movable "
                  "type (wrap it in std::optional)");
    using Signature = typename detail::CompletionSignature<std::exception_ptr, R>::type;
    // The block profile draws here, in the caller's frames, when the job may queue.
    detail::WaitTicket ticket;
    if (core_->may_queue()) [[unlikely]]
      ticket = core_->draw();
    return boost::asio::async_initiate<Token, Signature>(
        [core = core_, t = std::move(ticket)](auto handler, std::decay_t<Fn> f) mutable {
          detail::submit_job<R>(core, std::move(handler), std::move(f), std::move(t));
        },
        token, std::forward<Fn>(fn));
  }

  /// Jobs waiting for a thread now. Takes the pool's mutex.
  std::size_t queued() const { return core_->queued(); }
  const std::string& name() const noexcept { return core_->name(); }
  std::size_t threads() const noexcept { return core_->threads(); }
  std::size_t max_queue() const noexcept { return core_->max_queue(); }

 private:
  static std::shared_ptr<detail::PoolCore> make_core(std::string_view name, std::size_t threads,
                                                     std::size_t max_queue) {
    if (threads == 0) {
      throw std::invalid_argument("stallscope: pool \"" + std::string(name) +
                                  "\": threads 0 is not allowed (a pool runs at least 1 thread)");
    }
    return std::make_shared<detail::PoolCore>(name, threads, max_queue);
  }

  std::shared_ptr<detail::PoolCore> core_;
  std::vector<std::thread> threads_;
};

}  // namespace stallscope
