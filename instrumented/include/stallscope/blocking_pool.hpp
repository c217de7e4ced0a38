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
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/system_executor.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>

#include "stallscope/clock.hpp"
#include "stallscope/config.hpp"
#include "stallscope/detail/async_support.hpp"
#include "stallscope/registry.hpp"
#if STALLSCOPE_ENABLED
#include "stallscope/detail/pool_recorder.hpp"
#endif

namespace stallscope {

/// Why BlockingPool::run() refused a job (the job never ran). Category "stallscope.pool".
enum class PoolErrc {
  kQueueFull = 1,  ///< max_queue jobs were already waiting: shed
  kStopped = 2,    ///< the pool is being destroyed
};
inline const boost::system::error_category& pool_category() noexcept {
  struct Category final : boost::system::error_category {
    const char* name() const noexcept override { return "stallscope.pool"; }
    std::string message(int ev) const override {
      switch (static_cast<PoolErrc>(ev)) {
        case PoolErrc::kQueueFull:
          return "pool queue full";
        case PoolErrc::kStopped:
          return "pool stopped";
      }
      return "unknown";
    }
  };
  static const Category category;
  return category;
}
inline boost::system::error_code make_error_code(PoolErrc e) noexcept {
  return {static_cast<int>(e), pool_category()};
}

namespace detail {

#if STALLSCOPE_ENABLED
using PoolRecorder = PoolSite;
inline std::int64_t pool_now() noexcept { return now_ns(); }
#else
// Compiled out: the same calls, doing nothing, reading no clock.
class PoolRecorder {
 public:
  PoolRecorder(std::string_view, std::size_t) {}
  void submitted() noexcept {}
  void shed() noexcept {}
  void queue(std::size_t, std::int64_t) noexcept {}
  void cancelled(std::int64_t) noexcept {}
  void started(std::size_t, std::int64_t, std::int64_t) noexcept {}
  void finished(std::size_t, std::int64_t, bool) noexcept {}
};
inline std::int64_t pool_now() noexcept { return 0; }
#endif

enum class PoolAbort : std::uint8_t { kCancelled, kQueueFull, kStopped };

inline boost::system::error_code abort_code(PoolAbort reason) noexcept {
  switch (reason) {
    case PoolAbort::kCancelled:
      return boost::asio::error::operation_aborted;
    case PoolAbort::kQueueFull:
      return make_error_code(PoolErrc::kQueueFull);
    case PoolAbort::kStopped:
      return make_error_code(PoolErrc::kStopped);
  }
  return boost::asio::error::operation_aborted;
}

// One run() call, type-erased so the queue and the workers are not templates. Completes exactly
// once: complete() after execute(), or abort() instead of both.
class PoolJob {
 public:
  virtual ~PoolJob() = default;
  // Runs fn on the calling (pool) thread and keeps the result; false when fn threw.
  virtual bool execute() noexcept = 0;
  // Posts the kept result or exception to the handler's executor.
  virtual void complete() noexcept = 0;
  // Destroys fn unrun and posts an error to the handler's executor.
  virtual void abort(PoolAbort reason, std::string_view pool) noexcept = 0;

 private:
  friend class PoolCore;
  // Guarded by PoolCore::mu_. `self` owns the job while it is queued.
  PoolJob* prev_ = nullptr;
  PoolJob* next_ = nullptr;
  bool queued_ = false;
  std::int64_t submitted_ns_ = 0;
  std::shared_ptr<PoolJob> self_;
};

template <class R, class Fn, class Handler>
class PoolJobImpl final : public PoolJob {
 public:
  PoolJobImpl(Handler handler, Fn fn)
      : work_(make_work_guard_for(handler)),
        handler_(std::move(handler)),
        fn_(std::in_place, std::move(fn)) {}

  bool execute() noexcept override {
    try {
      if constexpr (std::is_void_v<R>) {
        std::invoke(std::move(*fn_));
      } else {
        result_.emplace(std::invoke(std::move(*fn_)));
      }
    } catch (...) {
      error_ = std::current_exception();
    }
    fn_.reset();  // what fn captured is released before the caller resumes
    return !error_;
  }

  void complete() noexcept override {
    auto ex = work_.get_executor();
    if constexpr (std::is_void_v<R>) {
      boost::asio::post(ex, [h = std::move(handler_), e = std::move(error_)]() mutable {
        std::move(h)(std::move(e));
      });
    } else {
      boost::asio::post(ex, [h = std::move(handler_), e = std::move(error_),
                             r = result_ ? std::move(*result_) : R{}]() mutable {
        std::move(h)(std::move(e), std::move(r));
      });
    }
    work_.reset();
  }

  void abort(PoolAbort reason, std::string_view pool) noexcept override {
    error_ = std::make_exception_ptr(boost::system::system_error(
        abort_code(reason), "stallscope: pool \"" + std::string(pool) + "\""));
    fn_.reset();
    complete();
  }

 private:
  WorkGuard<Handler> work_;
  Handler handler_;
  std::optional<Fn> fn_;
  std::conditional_t<std::is_void_v<R>, bool, std::optional<R>> result_{};
  std::exception_ptr error_;
};

// The queue and the worker loop, shared by the pool's threads (and, weakly, by cancellation
// handlers, which may outlive the pool).
class PoolCore final : public std::enable_shared_from_this<PoolCore> {
 public:
  PoolCore(std::string_view name, std::size_t threads, std::size_t max_queue)
      : name_(name), threads_(threads), max_queue_(max_queue), rec_(name, threads) {}
  PoolCore(const PoolCore&) = delete;
  PoolCore& operator=(const PoolCore&) = delete;

  // Queues `job`, or refuses it (shed) and completes it with the reason.
  void submit(std::shared_ptr<PoolJob> job) {
    rec_.submitted();
    std::unique_lock lock(mu_);
    std::optional<PoolAbort> refused;
    if (stopping_) {
      refused = PoolAbort::kStopped;
    } else if (max_queue_ != 0 && (size_ > idle_ ? size_ - idle_ : 0) >= max_queue_) {
      // Idle workers are about to take a queued job each; only the rest wait.
      refused = PoolAbort::kQueueFull;
    }
    if (refused) {
      lock.unlock();
      rec_.shed();
      job->abort(*refused, name_);
      return;
    }
    PoolJob& j = *job;
    j.submitted_ns_ = pool_now();  // under the lock: the queue stays ordered by submit time
    j.self_ = std::move(job);
    j.prev_ = tail_;
    j.next_ = nullptr;
    (tail_ != nullptr ? tail_->next_ : head_) = &j;
    tail_ = &j;
    j.queued_ = true;
    ++size_;
    publish();
    lock.unlock();
    cv_.notify_one();
  }

  // Removes `job` if it is still queued and completes it with operation_aborted.
  void cancel(PoolJob& job) {
    std::unique_lock lock(mu_);
    if (!job.queued_) return;  // running, done, or already aborted: nothing to do
    std::shared_ptr<PoolJob> owned = unlink(job);
    lock.unlock();
    rec_.cancelled(pool_now() - owned->submitted_ns_);
    owned->abort(PoolAbort::kCancelled, name_);
  }

  // The loop of worker `index`; returns once the pool stops.
  void work(std::size_t index) {
    std::unique_lock lock(mu_);
    for (;;) {
      ++idle_;
      cv_.wait(lock, [&] { return stopping_ || head_ != nullptr; });
      --idle_;
      if (stopping_) return;  // stop() emptied the queue
      std::shared_ptr<PoolJob> job = unlink(*head_);
      lock.unlock();
      const std::int64_t t0 = pool_now();
      rec_.started(index, t0, t0 - job->submitted_ns_);
      const bool ok = job->execute();
      // Recorded before the completion is posted, so a caller that resumed sees it counted.
      rec_.finished(index, pool_now() - t0, ok);
      job->complete();
      job.reset();
      lock.lock();
    }
  }

  // Refuses new jobs, cancels every queued one and tells the workers to exit once idle. Never
  // allocates (it runs in a destructor).
  void stop() noexcept {
    PoolJob* first = nullptr;
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
      stopping_ = true;
      first = head_;
      for (PoolJob* j = head_; j != nullptr; j = j->next_) j->queued_ = false;
      head_ = tail_ = nullptr;
      size_ = 0;
      publish();
    }
    cv_.notify_all();
    // The detached chain is ours alone: cancel() sees queued_ false and leaves it.
    const std::int64_t now = pool_now();
    for (PoolJob* j = first; j != nullptr;) {
      PoolJob* next = j->next_;
      std::shared_ptr<PoolJob> owned = std::move(j->self_);
      rec_.cancelled(now - owned->submitted_ns_);
      owned->abort(PoolAbort::kCancelled, name_);
      j = next;
    }
  }

  std::size_t queued() const {
    std::lock_guard lock(mu_);
    return size_;
  }
  const std::string& name() const noexcept { return name_; }
  std::size_t threads() const noexcept { return threads_; }
  std::size_t max_queue() const noexcept { return max_queue_; }

 private:
  std::shared_ptr<PoolJob> unlink(PoolJob& j) {
    (j.prev_ != nullptr ? j.prev_->next_ : head_) = j.next_;
    (j.next_ != nullptr ? j.next_->prev_ : tail_) = j.prev_;
    j.prev_ = j.next_ = nullptr;
    j.queued_ = false;
    --size_;
    publish();
    return std::move(j.self_);
  }
  void publish() noexcept { rec_.queue(size_, head_ != nullptr ? head_->submitted_ns_ : 0); }

  const std::string name_;
  const std::size_t threads_;
  const std::size_t max_queue_;
  PoolRecorder rec_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  PoolJob* head_ = nullptr;
  PoolJob* tail_ = nullptr;
  std::size_t size_ = 0;
  std::size_t idle_ = 0;  // workers waiting for a job
  bool stopping_ = false;
};

// Installed in the handler's cancellation slot. Holds both weakly: the slot may fire after the
// job completed or the pool is gone, and then does nothing.
struct PoolCancel {
  std::weak_ptr<PoolCore> core;
  std::weak_ptr<PoolJob> job;
  void operator()(boost::asio::cancellation_type type) const {
    using boost::asio::cancellation_type;
    constexpr auto kAny =
        cancellation_type::terminal | cancellation_type::partial | cancellation_type::total;
    if ((type & kAny) == cancellation_type::none) return;
    auto c = core.lock();
    auto j = job.lock();
    if (c && j) c->cancel(*j);
  }
};

template <class R, class Handler, class Fn>
void submit_job(const std::shared_ptr<PoolCore>& core, Handler handler, Fn fn) {
  auto slot = boost::asio::get_associated_cancellation_slot(handler);
  auto job = std::make_shared<PoolJobImpl<R, Fn, Handler>>(std::move(handler), std::move(fn));
  // Before the job is visible to the workers: once queued it may complete at any moment, and
  // the caller may reuse the slot for its next operation.
  if (slot.is_connected()) {
    slot.template emplace<PoolCancel>(PoolCancel{core, std::weak_ptr<PoolJob>(job)});
  }
  core->submit(std::move(job));
}

template <class Fn>
using PoolResult = std::remove_cvref_t<std::invoke_result_t<std::decay_t<Fn>>>;

template <class R>
struct PoolSignature {
  using type = void(std::exception_ptr, R);
};
template <>
struct PoolSignature<void> {
  using type = void(std::exception_ptr);
};

}  // namespace detail

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
    using Signature = typename detail::PoolSignature<R>::type;
    return boost::asio::async_initiate<Token, Signature>(
        [core = core_](auto handler, std::decay_t<Fn> f) {
          detail::submit_job<R>(core, std::move(handler), std::move(f));
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
