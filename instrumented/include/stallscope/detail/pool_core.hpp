#pragma once
// The machinery behind stallscope::BlockingPool (blocking_pool.hpp): the type-erased job, the
// queue and the worker loop. Not API.

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>

#include "stallscope/config.hpp"
#include "stallscope/detail/async_support.hpp"
#include "stallscope/detail/pool_recorder.hpp"
#include "stallscope/pool_errc.hpp"

namespace stallscope {

namespace detail {

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
  friend struct IntrusiveFifo<PoolJob>;
  // Guarded by PoolCore::mu_: the queue's links (`linked` while queued), and `self` owns the
  // job while it is queued.
  PoolJob* prev = nullptr;
  PoolJob* next = nullptr;
  bool linked = false;
  std::int64_t submitted_ns_ = 0;
  std::shared_ptr<PoolJob> self_;
  // The block profile's draw: kept only by a job that queued behind busy workers.
  [[no_unique_address]] WaitTicket profile_;
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
      : name_(name), threads_(threads), max_queue_(max_queue), rec_(name, threads) {
    rec_.queue_limit(max_queue);
  }
  PoolCore(const PoolCore&) = delete;
  PoolCore& operator=(const PoolCore&) = delete;

  // Whether a job submitted now would likely queue behind busy workers (a hint, no mutex), and
  // the block profile's draw for it, made by the caller (profile_hooks.hpp).
  bool may_queue() const noexcept { return rec_.busy(); }
  WaitTicket draw() const noexcept {
    WaitTicket t;
    t.draw(rec_.hint());
    return t;
  }

  // Queues `job`, or refuses it (shed) and completes it with the reason.
  void submit(std::shared_ptr<PoolJob> job, WaitTicket ticket = {}) {
    rec_.submitted();
    std::unique_lock lock(mu_);
    std::optional<PoolAbort> refused;
    if (stopping_) {
      refused = PoolAbort::kStopped;
    } else if (max_queue_ != 0 && (queue_.size > idle_ ? queue_.size - idle_ : 0) >= max_queue_) {
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
    j.submitted_ns_ = async_now();  // under the lock: the queue stays ordered by submit time
    if (queue_.size >= idle_) {     // no idle worker left for it: a wait the block profile samples
      j.profile_ = std::move(ticket);
      j.profile_.draw(rec_.hint());
    }
    task_waits(TaskWaitOp::kJob, rec_, j.submitted_ns_);
    j.self_ = std::move(job);
    queue_.push(j);
    publish();
    lock.unlock();
    cv_.notify_one();
  }

  // Removes `job` if it is still queued and completes it with operation_aborted.
  void cancel(PoolJob& job) {
    std::unique_lock lock(mu_);
    if (!job.linked) return;  // running, done, or already aborted: nothing to do
    std::shared_ptr<PoolJob> owned = unlink(job);
    lock.unlock();
    const std::int64_t waited = async_now() - owned->submitted_ns_;
    rec_.cancelled(waited);
    if (owned->profile_.drawn()) rec_.queue_waited(owned->profile_, waited);
    owned->abort(PoolAbort::kCancelled, name_);
  }

  // The loop of worker `index`; returns once the pool stops.
  void work(std::size_t index) {
    std::unique_lock lock(mu_);
    for (;;) {
      rec_.idle(++idle_);
      cv_.wait(lock, [&] { return stopping_ || queue_.front() != nullptr; });
      rec_.idle(--idle_);
      if (stopping_) return;  // stop() emptied the queue
      std::shared_ptr<PoolJob> job = unlink(*queue_.front());
      lock.unlock();
      const std::int64_t t0 = async_now();
      rec_.started(index, t0, t0 - job->submitted_ns_);
      if (job->profile_.drawn()) rec_.queue_waited(job->profile_, t0 - job->submitted_ns_);
      const bool ok = job->execute();
      // Recorded before the completion is posted, so a caller that resumed sees it counted.
      rec_.finished(index, async_now() - t0, ok);
      job->complete();
      job.reset();
      lock.lock();
    }
  }

  // Refuses new jobs, cancels every queued one and tells the workers to exit once idle. Never
  // allocates (it runs in a destructor).
  void stop() noexcept {
    IntrusiveFifo<PoolJob> taken;
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
      stopping_ = true;
      std::swap(taken, queue_);
      for (PoolJob* j = taken.front(); j != nullptr; j = j->next) j->linked = false;
      publish();
    }
    cv_.notify_all();
    // The detached chain is ours alone: cancel() sees `linked` false and leaves it.
    const std::int64_t now = async_now();
    for (PoolJob* j = taken.front(); j != nullptr;) {
      PoolJob* next = j->next;
      std::shared_ptr<PoolJob> owned = std::move(j->self_);
      rec_.cancelled(now - owned->submitted_ns_);
      if (owned->profile_.drawn()) rec_.queue_waited(owned->profile_, now - owned->submitted_ns_);
      owned->abort(PoolAbort::kCancelled, name_);
      j = next;
    }
  }

  std::size_t queued() const {
    std::lock_guard lock(mu_);
    return queue_.size;
  }
  const std::string& name() const noexcept { return name_; }
  std::size_t threads() const noexcept { return threads_; }
  std::size_t max_queue() const noexcept { return max_queue_; }

 private:
  std::shared_ptr<PoolJob> unlink(PoolJob& j) {
    queue_.erase(j);
    publish();
    return std::move(j.self_);
  }
  void publish() noexcept {
    const PoolJob* f = queue_.front();
    rec_.queue(queue_.size, f != nullptr ? f->submitted_ns_ : 0);
  }

  const std::string name_;
  const std::size_t threads_;
  const std::size_t max_queue_;
  PoolSite rec_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  IntrusiveFifo<PoolJob> queue_;
  std::size_t idle_ = 0;  // workers waiting for a job
  bool stopping_ = false;
};

template <class R, class Handler, class Fn>
void submit_job(const std::shared_ptr<PoolCore>& core, Handler handler, Fn fn,
                WaitTicket ticket = {}) {
  auto slot = boost::asio::get_associated_cancellation_slot(handler);
  auto job = std::make_shared<PoolJobImpl<R, Fn, Handler>>(std::move(handler), std::move(fn));
  // Before the job is visible to the workers: once queued it may complete at any moment, and
  // the caller may reuse the slot for its next operation.
  if (slot.is_connected()) {
    slot.template emplace<CancelWaiter<PoolCore, PoolJob>>(core, std::weak_ptr<PoolJob>(job));
  }
  core->submit(std::move(job), std::move(ticket));
}

template <class Fn>
using PoolResult = std::remove_cvref_t<std::invoke_result_t<std::decay_t<Fn>>>;

}  // namespace detail

}  // namespace stallscope
