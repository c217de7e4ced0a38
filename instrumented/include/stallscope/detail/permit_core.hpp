#pragma once
// The machinery behind stallscope::Semaphore and stallscope::AsyncMutex (semaphore.hpp): the
// shared permit core with its FIFO of waiters, and the lease a held permit is. Not API.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/system_executor.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>

#include "stallscope/config.hpp"
#include "stallscope/detail/async_support.hpp"
#include "stallscope/detail/semaphore_recorder.hpp"
#include "stallscope/detail/waitfor_async.hpp"
#include "stallscope/registry.hpp"

namespace stallscope {

namespace detail {

class PermitCore;

// Ownership of one permit of a PermitCore: movable, released on destruction. The shared core
// keeps a permit valid after its Semaphore is gone.
class Lease {
 public:
  Lease() noexcept = default;
  Lease(std::shared_ptr<PermitCore> core, std::int64_t since_ns) noexcept
      : core_(std::move(core)), since_ns_(since_ns) {}
  Lease(Lease&& other) noexcept = default;
  Lease& operator=(Lease&& other) noexcept {
    if (this != &other) {
      release();
      core_ = std::move(other.core_);
      since_ns_ = other.since_ns_;
    }
    return *this;
  }
  ~Lease() { release(); }

  inline void release() noexcept;
  bool held() const noexcept { return core_ != nullptr; }

 private:
  std::shared_ptr<PermitCore> core_;
  std::int64_t since_ns_ = 0;
};

// Builds the public Permit/Guard types out of a Lease (their constructors are private).
struct LeaseAccess {
  template <class Result>
  static Result make(Lease lease) noexcept {
    return Result(std::move(lease));
  }
};

// How a blocking acquisition ended.
enum class AcquireOutcome : std::uint8_t { kGranted, kTimedOut, kAborted };
struct Acquired {
  AcquireOutcome outcome = AcquireOutcome::kAborted;
  Lease lease;  // when granted and asked for
};

// The shared state of a Semaphore or AsyncMutex: a count of free permits and a FIFO of waiters
// (threads and async operations alike), under one internal mutex.
//
// Why a mutex and not a lock-free count: an uncontended std::mutex lock + unlock is two atomic
// read-modify-writes, the same as a CAS acquire plus a fetch_add release, and the waiter queue
// needs the mutex anyway; the critical sections are a few loads and stores and never run user
// code (completions are posted after unlocking). Clocks are read before locking.
//
// Invariant (under mu_): waiters_ is non-empty only while available_ == 0. A release hands its
// permit straight to the oldest waiter, so nobody overtakes a queued waiter (FIFO, no barging).
class PermitCore final : public std::enable_shared_from_this<PermitCore>, public WaitforSource {
 public:
  PermitCore(ResourceKind kind, std::string_view name, std::size_t permits)
      : rec_(kind, name, permits), permits_(permits), available_(permits), kind_(kind) {
    holders_.reserve(std::min<std::size_t>(permits, kMaxHolders));
    track();
  }
  ~PermitCore() { untrack(); }

  // A free permit's grant time, or nullopt. Never overtakes a queued waiter.
  std::optional<std::int64_t> try_acquire() {
    const std::int64_t now = async_now();
    const Participant who = sync_participant();
    std::lock_guard lock(mu_);
    const bool ok = available_ > 0;
    rec_.tried(ok, now);
    if (!ok) return std::nullopt;
    take(now, who);
    return now;
  }

  // Blocks the calling thread; nullopt deadline: no limit. With `lease`, a granted permit comes
  // back as a Lease, made before the thread leaves: once it has left, a destructor running
  // shut_down() may already have destroyed the owner, so the caller must not touch it again.
  Acquired acquire(std::optional<std::chrono::steady_clock::time_point> deadline, bool lease) {
    const std::int64_t now = async_now();
    const Participant who = sync_participant();
    std::unique_lock lock(mu_);
    if (available_ > 0) {
      rec_.acquired(now);
      take(now, who);
      return {AcquireOutcome::kGranted, lease ? Lease(shared_from_this(), now) : Lease()};
    }
    Waiter w;
    w.who = who;
    w.task_series = current_task_series();
    enqueue(w, now);
    Acquired out;
    std::int64_t end = w.since_ns;
    if (!threads_.wait(lock, w, deadline)) {
      unlink(w);
      end = std::max(async_now(), w.since_ns);
      rec_.abandoned(WaitEnd::kTimedOut, w.since_ns, end);
      out.outcome = AcquireOutcome::kTimedOut;
    } else if (w.granted) {
      out.outcome = AcquireOutcome::kGranted;
      end = w.granted_ns;
      if (lease) out.lease = Lease(shared_from_this(), w.granted_ns);
    }
    // Read before leaving: once left, the owner may be gone (the series lives on).
    const Series* series = rec_.series();
    const std::uint32_t op = rec_.op();
    threads_.leave();
    lock.unlock();
    thread_waited(series, op, end - w.since_ns);  // the block profile, with this thread's stack
    return out;
  }

  // Whether an acquisition now would likely queue (a hint, read without the mutex).
  bool may_queue() const noexcept { return rec_.full(); }
  // The block profile's draw for an acquisition that may queue, made by the caller (whose
  // frames are on the stack only then: profile_hooks.hpp).
  WaitTicket draw() const noexcept {
    WaitTicket t;
    t.draw(rec_.hint());
    return t;
  }

  // Completes `handler` with (error_code, Result) on its associated executor, never inline.
  // `ticket`: the caller's draw for the block profile, if it made one.
  template <class Result, class Handler>
  void async_acquire(Handler handler, WaitTicket ticket = {}) {
    auto slot = boost::asio::get_associated_cancellation_slot(handler);
    const std::int64_t now = async_now();
    const Participant task = task_of(handler);
    in_task(task);
    std::unique_lock lock(mu_);
    if (available_ > 0) {
      rec_.acquired(now);
      take(now, task);
      lock.unlock();
      post_result<Result>(
          boost::asio::get_associated_executor(handler, boost::asio::system_executor()),
          std::move(handler), {}, Lease(shared_from_this(), now), task);
      return;
    }
    auto w = std::make_shared<HandlerWaiter<Handler, Result>>(std::move(handler));
    w->self = w;
    w->who = task;
    w->task_series = current_task_series();
    w->profile = std::move(ticket);
    w->profile.draw(rec_.hint());  // not drawn by the caller: the hint said a permit was free
    task_waits(TaskWaitOp::kAcquire, rec_, now);
    enqueue(*w, now);
    // Under the lock: the operation cannot complete (and its coroutine start another operation
    // on the same slot) before the cancellation handler is in place.
    if (slot.is_connected()) {
      slot.template emplace<CancelWaiter<PermitCore, AsyncWaiter>>(weak_from_this(),
                                                                   std::weak_ptr<AsyncWaiter>(w));
    }
  }

  // Returns a permit taken at `since` (for one permit, the holder's own grant time is used, so
  // AsyncMutex::unlock() needs no Lease). Hands it to the oldest waiter if there is one.
  void release(std::int64_t since) noexcept {
    const std::int64_t now = async_now();
    std::shared_ptr<AsyncWaiter> wake;
    std::int64_t granted_ns = 0;
    WaitTicket ticket;
    std::int64_t waited_ns = 0;
    {
      std::lock_guard lock(mu_);
      if (available_ == permits_) return;  // unlock() without holding: nothing to release
      if (permits_ == 1) since = last_grant_ns_;
      rec_.released(since, std::max(now, since));
      drop_holder(since);
      WaitNode* w = waiters_.front();
      if (w == nullptr) {
        ++available_;
        return;
      }
      unlink(*w);
      granted_ns = std::max(now, w->since_ns);
      rec_.granted(w->since_ns, granted_ns);
      last_grant_ns_ = granted_ns;
      note_holder(w->who, w->task_series, granted_ns);
      auto& waiter = static_cast<Waiter&>(*w);
      waiter.granted = true;
      waiter.granted_ns = granted_ns;
      if (waiter.cv != nullptr) {
        ThreadWaits::notify_done(waiter);
        return;
      }
      waiter.done = true;
      ticket = std::move(waiter.profile);
      waited_ns = granted_ns - w->since_ns;
      wake = std::move(static_cast<AsyncWaiter&>(waiter).self);
    }
    rec_.wait_ended(ticket, waited_ns);  // outside the mutex: a sampled wait records
    wake->complete({}, Lease(shared_from_this(), granted_ns));
  }

  // The owner is being destroyed: queued async operations complete with operation_aborted,
  // blocked threads wake without a permit. Then waits until those threads have left.
  void shut_down() {
    const std::int64_t now = async_now();
    std::vector<std::shared_ptr<AsyncWaiter>> aborted;
    std::unique_lock lock(mu_);
    while (WaitNode* w = waiters_.front()) {
      unlink(*w);
      rec_.abandoned(WaitEnd::kCancelled, w->since_ns, std::max(now, w->since_ns));
      rec_.wait_ended(w->profile, std::max(now, w->since_ns) - w->since_ns);
      if (w->cv != nullptr) {
        ThreadWaits::notify_done(*w);
      } else {
        w->done = true;
        aborted.push_back(std::move(static_cast<AsyncWaiter*>(w)->self));
      }
    }
    threads_.wait_all_out(lock);
    lock.unlock();
    for (auto& a : aborted) a->complete(boost::asio::error::operation_aborted, Lease());
  }

  std::size_t permits() const noexcept { return permits_; }
  std::size_t available() const {
    std::lock_guard lock(mu_);
    return available_;
  }
  std::string_view name() const noexcept { return rec_.name(); }

  struct Waiter : WaitNode {
    bool granted = false;  // done with a permit (not aborted by shut_down)
    std::int64_t granted_ns = 0;
  };
  struct AsyncWaiter : Waiter {
    virtual ~AsyncWaiter() = default;
    virtual void complete(boost::system::error_code ec, Lease lease) = 0;
    std::shared_ptr<AsyncWaiter> self;  // keeps the waiter alive while queued
  };

  template <class Handler, class Result>
  class HandlerWaiter final : public AsyncWaiter {
   public:
    explicit HandlerWaiter(Handler h) : work_(make_work_guard_for(h)), handler_(std::move(h)) {}
    void complete(boost::system::error_code ec, Lease lease) override {
      post_result<Result>(work_.get_executor(), std::move(handler_), ec, std::move(lease),
                          this->who);
      work_.reset();
    }

   private:
    WorkGuard<Handler> work_;
    Handler handler_;
  };

  // A queued async_acquire is cancelled (through CancelWaiter): it leaves the queue and completes
  // with operation_aborted. No-op once granted (its permit is on the way) or aborted.
  void cancel(AsyncWaiter& w) {
    const std::int64_t now = async_now();
    std::unique_lock lock(mu_);
    if (!w.linked) return;
    unlink(w);
    rec_.abandoned(WaitEnd::kCancelled, w.since_ns, std::max(now, w.since_ns));
    rec_.wait_ended(w.profile, std::max(now, w.since_ns) - w.since_ns);
    std::shared_ptr<AsyncWaiter> self = std::move(w.self);
    lock.unlock();
    self->complete(boost::asio::error::operation_aborted, Lease());
  }

 private:
  using WaitList = IntrusiveFifo<WaitNode>;

  template <class Result, class Executor, class Handler>
  static void post_result(const Executor& ex, Handler&& handler, boost::system::error_code ec,
                          Lease lease, Participant task) {
    boost::asio::post(
        ex, [h = std::forward<Handler>(handler), ec, l = std::move(lease), task]() mutable {
          in_task(task);  // the task resumes knowing who it is (wait-for graph)
          std::move(h)(ec, LeaseAccess::make<Result>(std::move(l)));
        });
  }

  // Caller holds mu_ and available_ > 0.
  void take(std::int64_t now, Participant who) noexcept {
    --available_;
    last_grant_ns_ = now;
    note_holder(who, 0, now);
  }

  // Holders for the wait-for graph, under mu_: up to kMaxHolders, each with its grant time (what
  // a Lease gives back on release); beyond that, or when the holder is not known, describe()
  // adds an unknown holder, which no cycle goes through.
  static constexpr std::size_t kMaxHolders = 16;
  struct Holder {
    Participant who;
    std::uint32_t task_series;
    std::int64_t since_ns;
  };
  void note_holder(Participant who, std::uint32_t task_series, std::int64_t since) noexcept {
    if (holders_.size() < holders_.capacity()) holders_.push_back({who, task_series, since});
  }
  void drop_holder(std::int64_t since) noexcept {
    if (permits_ == 1) {
      holders_.clear();
      return;
    }
    for (auto it = holders_.begin(); it != holders_.end(); ++it) {
      if (it->since_ns == since) {
        *it = holders_.back();
        holders_.pop_back();
        return;
      }
    }
  }

#if STALLSCOPE_ENABLED
 public:
  // The wait-for graph: only a core someone waits on matters.
  void describe(WaitforBuilder& out) override {
    std::lock_guard lock(mu_);
    if (waiters_.size == 0) return;
    const std::uint32_t res = out.resource(kind_, rec_.name(), "", permits_ > 1);
    for (const Holder& h : holders_) out.holder(res, h.who, h.task_series);
    if (holders_.size() != permits_ - available_) out.holder(res, kUnknownHolder, 0);
    for (const WaitNode* w = waiters_.front(); w != nullptr; w = w->next) {
      out.waiter(res, w->who, w->task_series, w->since_ns, permits_ == 1 ? "lock" : "acquire",
                 w->profile.pcs());
    }
  }

 private:
#endif
  void enqueue(WaitNode& w, std::int64_t now) {
    w.since_ns = now;
    waiters_.push(w);
    publish_waiters();
    rec_.user();  // the waiting acquirer, for the live map
  }
  void unlink(WaitNode& w) {
    waiters_.erase(w);
    publish_waiters();
  }
  void publish_waiters() noexcept {
    const WaitNode* f = waiters_.front();
    rec_.waiters(waiters_.size, f != nullptr ? f->since_ns : 0);
  }

  mutable std::mutex mu_;
  SemaphoreSite rec_;
  const std::size_t permits_;
  std::size_t available_;
  std::int64_t last_grant_ns_ = 0;  // the holder's grant time when permits_ == 1
  WaitList waiters_;
  ThreadWaits threads_;
  [[maybe_unused]] const ResourceKind kind_;  // read by describe() (recording on)
  std::vector<Holder> holders_;               // capacity fixed at construction: no allocation after
};

inline void Lease::release() noexcept {
  if (std::shared_ptr<PermitCore> core = std::move(core_)) core->release(since_ns_);
}

inline std::size_t validate_permits(std::string_view name, std::size_t permits) {
  constexpr auto kMax = static_cast<std::size_t>(std::numeric_limits<std::ptrdiff_t>::max());
  if (permits == 0 || permits > kMax) {
    throw std::invalid_argument("stallscope: semaphore \"" + std::string(name) + "\": permits " +
                                std::to_string(permits) + " is out of range (1.." +
                                std::to_string(kMax) + ")");
  }
  return permits;
}

template <class Clock, class Duration>
std::chrono::steady_clock::time_point to_steady(const std::chrono::time_point<Clock, Duration>& t) {
  if constexpr (std::is_same_v<Clock, std::chrono::steady_clock>) {
    return std::chrono::time_point_cast<std::chrono::steady_clock::duration>(t);
  } else {
    return std::chrono::steady_clock::now() +
           std::chrono::duration_cast<std::chrono::steady_clock::duration>(t - Clock::now());
  }
}

[[noreturn]] inline void throw_destroyed(std::string_view what) {
  throw boost::system::system_error(
      boost::asio::error::operation_aborted,
      "stallscope: " + std::string(what) + " destroyed while a thread waited on it");
}

// What Semaphore and AsyncMutex share: the core they own (shut down when they die, so queued
// waits complete with operation_aborted) and the asynchronous wait, which completes with a Result
// (their Permit or Guard) through the handler's executor.
class PermitOwner {
 public:
  PermitOwner(const PermitOwner&) = delete;
  PermitOwner& operator=(const PermitOwner&) = delete;

 protected:
  explicit PermitOwner(std::shared_ptr<PermitCore> core) noexcept : core_(std::move(core)) {}
  ~PermitOwner() { core_->shut_down(); }

  // Draws the block profile's ticket here, in the caller's frames, when the wait may queue.
  template <class Result, class Token>
  auto async_wait(Token&& token) {
    WaitTicket ticket;
    if (core_->may_queue()) [[unlikely]]
      ticket = core_->draw();
    return boost::asio::async_initiate<Token, void(boost::system::error_code, Result)>(
        [core = core_, t = std::move(ticket)](auto handler) mutable {
          core->async_acquire<Result>(std::move(handler), std::move(t));
        },
        token);
  }

  std::shared_ptr<PermitCore> core_;
};

}  // namespace detail

}  // namespace stallscope
