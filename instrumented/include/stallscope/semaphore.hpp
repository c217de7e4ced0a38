#pragma once
/// stallscope::Semaphore and stallscope::AsyncMutex: FIFO permits for coroutines and threads.
///
///   stallscope::Semaphore cpu{"image-resize", 4};          // at most 4 resizes at once
///   auto permit = co_await cpu.async_acquire();            // released when `permit` dies
///
///   stallscope::AsyncMutex session{"session"};
///   auto guard = co_await session.async_lock();            // may be held across co_await
///
/// Both record under their name: waits (stallscope_wait_seconds, a stall), waiters now and the
/// oldest waiter's age, acquisitions, contended / timed-out / cancelled waits, failed tries and
/// hold time (always timed: one clock read per acquisition and one per release, small next to a
/// coroutine suspension). Semaphore also records permits in use and in total.

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
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
#include "stallscope/detail/semaphore_recorder.hpp"
#endif

namespace stallscope {

namespace detail {

#if STALLSCOPE_ENABLED
using PermitRecorder = SemaphoreSite;
inline std::int64_t permit_now() noexcept { return now_ns(); }
#else
enum class WaitEnd : std::uint8_t { kTimedOut, kCancelled };
// Compiled out: the same calls, doing nothing, reading no clock.
class PermitRecorder {
 public:
  PermitRecorder(ResourceKind, std::string_view, std::size_t) {}
  std::string_view name() const noexcept { return {}; }
  void acquired(std::int64_t) noexcept {}
  void tried(bool, std::int64_t) noexcept {}
  void granted(std::int64_t, std::int64_t) noexcept {}
  void abandoned(WaitEnd, std::int64_t, std::int64_t) noexcept {}
  void released(std::int64_t, std::int64_t) noexcept {}
  void waiters(std::size_t, std::int64_t) noexcept {}
};
inline std::int64_t permit_now() noexcept { return 0; }
#endif

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
class PermitCore final : public std::enable_shared_from_this<PermitCore> {
 public:
  PermitCore(ResourceKind kind, std::string_view name, std::size_t permits)
      : rec_(kind, name, permits), permits_(permits), available_(permits) {}

  // A free permit's grant time, or nullopt. Never overtakes a queued waiter.
  std::optional<std::int64_t> try_acquire() {
    const std::int64_t now = permit_now();
    std::lock_guard lock(mu_);
    const bool ok = available_ > 0;
    rec_.tried(ok, now);
    if (!ok) return std::nullopt;
    take(now);
    return now;
  }

  // Blocks the calling thread; nullopt deadline: no limit. With `lease`, a granted permit comes
  // back as a Lease, made before the thread leaves: once it has left, a destructor running
  // shut_down() may already have destroyed the owner, so the caller must not touch it again.
  Acquired acquire(std::optional<std::chrono::steady_clock::time_point> deadline, bool lease) {
    const std::int64_t now = permit_now();
    std::unique_lock lock(mu_);
    if (available_ > 0) {
      rec_.acquired(now);
      take(now);
      return {AcquireOutcome::kGranted, lease ? Lease(shared_from_this(), now) : Lease()};
    }
    std::condition_variable cv;
    Waiter w;
    w.cv = &cv;
    enqueue(w, now);
    ++thread_waiters_;
    if (deadline) {
      cv.wait_until(lock, *deadline, [&] { return w.done; });
    } else {
      cv.wait(lock, [&] { return w.done; });
    }
    Acquired out;
    if (!w.done) {
      unlink(w);
      rec_.abandoned(WaitEnd::kTimedOut, w.since_ns, std::max(permit_now(), w.since_ns));
      out.outcome = AcquireOutcome::kTimedOut;
    } else if (w.granted) {
      out.outcome = AcquireOutcome::kGranted;
      if (lease) out.lease = Lease(shared_from_this(), w.granted_ns);
    }
    if (--thread_waiters_ == 0 && shut_down_) threads_out_.notify_all();
    return out;
  }

  // Completes `handler` with (error_code, Result) on its associated executor, never inline.
  template <class Result, class Handler>
  void async_acquire(Handler handler) {
    auto slot = boost::asio::get_associated_cancellation_slot(handler);
    const std::int64_t now = permit_now();
    std::unique_lock lock(mu_);
    if (available_ > 0) {
      rec_.acquired(now);
      take(now);
      lock.unlock();
      post_result<Result>(
          boost::asio::get_associated_executor(handler, boost::asio::system_executor()),
          std::move(handler), {}, Lease(shared_from_this(), now));
      return;
    }
    auto w = std::make_shared<HandlerWaiter<Handler, Result>>(std::move(handler));
    w->self = w;
    enqueue(*w, now);
    // Under the lock: the operation cannot complete (and its coroutine start another operation
    // on the same slot) before the cancellation handler is in place.
    if (slot.is_connected()) {
      slot.template emplace<CancelWait>(weak_from_this(), std::weak_ptr<AsyncWaiter>(w));
    }
  }

  // Returns a permit taken at `since` (for one permit, the holder's own grant time is used, so
  // AsyncMutex::unlock() needs no Lease). Hands it to the oldest waiter if there is one.
  void release(std::int64_t since) noexcept {
    const std::int64_t now = permit_now();
    std::shared_ptr<AsyncWaiter> wake;
    std::int64_t granted_ns = 0;
    {
      std::lock_guard lock(mu_);
      if (available_ == permits_) return;  // unlock() without holding: nothing to release
      if (permits_ == 1) since = last_grant_ns_;
      rec_.released(since, std::max(now, since));
      Waiter* w = waiters_.front();
      if (w == nullptr) {
        ++available_;
        return;
      }
      unlink(*w);
      granted_ns = std::max(now, w->since_ns);
      rec_.granted(w->since_ns, granted_ns);
      last_grant_ns_ = granted_ns;
      w->granted = true;
      w->granted_ns = granted_ns;
      w->done = true;
      if (w->cv != nullptr) {
        w->cv->notify_one();  // under the lock: the waiter cannot return (and free cv) first
        return;
      }
      wake = std::move(static_cast<AsyncWaiter*>(w)->self);
    }
    wake->complete({}, Lease(shared_from_this(), granted_ns));
  }

  // The owner is being destroyed: queued async operations complete with operation_aborted,
  // blocked threads wake without a permit. Then waits until those threads have left.
  void shut_down() {
    const std::int64_t now = permit_now();
    std::vector<std::shared_ptr<AsyncWaiter>> aborted;
    std::unique_lock lock(mu_);
    shut_down_ = true;
    while (Waiter* w = waiters_.front()) {
      unlink(*w);
      rec_.abandoned(WaitEnd::kCancelled, w->since_ns, std::max(now, w->since_ns));
      w->done = true;
      if (w->cv != nullptr) {
        w->cv->notify_one();
      } else {
        aborted.push_back(std::move(static_cast<AsyncWaiter*>(w)->self));
      }
    }
    threads_out_.wait(lock, [&] { return thread_waiters_ == 0; });
    lock.unlock();
    for (auto& a : aborted) a->complete(boost::asio::error::operation_aborted, Lease());
  }

  std::size_t permits() const noexcept { return permits_; }
  std::size_t available() const {
    std::lock_guard lock(mu_);
    return available_;
  }
  std::string_view name() const noexcept { return rec_.name(); }

 private:
  struct Waiter {
    Waiter* prev = nullptr;
    Waiter* next = nullptr;
    bool linked = false;
    bool done = false;     // left the queue (granted, or aborted by shut_down)
    bool granted = false;  // ... with a permit
    std::int64_t since_ns = 0;
    std::int64_t granted_ns = 0;
    std::condition_variable* cv = nullptr;  // a blocked thread; nullptr: an AsyncWaiter
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
      post_result<Result>(work_.get_executor(), std::move(handler_), ec, std::move(lease));
      work_.reset();
    }

   private:
    WorkGuard<Handler> work_;
    Handler handler_;
  };

  // A constructor, not an aggregate: emplace() initializes it with parentheses, which clang
  // before 16 does not accept for aggregates (P0960).
  struct CancelWait {
    CancelWait(std::weak_ptr<PermitCore> c, std::weak_ptr<AsyncWaiter> w)
        : core(std::move(c)), waiter(std::move(w)) {}
    std::weak_ptr<PermitCore> core;
    std::weak_ptr<AsyncWaiter> waiter;
    void operator()(boost::asio::cancellation_type type) {
      if (!is_cancellation(type)) return;
      auto c = core.lock();
      auto w = waiter.lock();
      if (c && w) c->cancel(*w);
    }
  };

  using WaitList = IntrusiveFifo<Waiter>;

  template <class Result, class Executor, class Handler>
  static void post_result(const Executor& ex, Handler&& handler, boost::system::error_code ec,
                          Lease lease) {
    boost::asio::post(ex, [h = std::forward<Handler>(handler), ec, l = std::move(lease)]() mutable {
      std::move(h)(ec, LeaseAccess::make<Result>(std::move(l)));
    });
  }

  void cancel(AsyncWaiter& w) {
    const std::int64_t now = permit_now();
    std::unique_lock lock(mu_);
    if (!w.linked) return;  // already granted (its permit is on the way) or aborted
    unlink(w);
    rec_.abandoned(WaitEnd::kCancelled, w.since_ns, std::max(now, w.since_ns));
    std::shared_ptr<AsyncWaiter> self = std::move(w.self);
    lock.unlock();
    self->complete(boost::asio::error::operation_aborted, Lease());
  }

  // Caller holds mu_ and available_ > 0.
  void take(std::int64_t now) noexcept {
    --available_;
    last_grant_ns_ = now;
  }
  void enqueue(Waiter& w, std::int64_t now) {
    w.since_ns = now;
    waiters_.push(w);
    publish_waiters();
  }
  void unlink(Waiter& w) {
    waiters_.erase(w);
    publish_waiters();
  }
  void publish_waiters() noexcept {
    const Waiter* f = waiters_.front();
    rec_.waiters(waiters_.size, f != nullptr ? f->since_ns : 0);
  }

  mutable std::mutex mu_;
  PermitRecorder rec_;
  const std::size_t permits_;
  std::size_t available_;
  std::int64_t last_grant_ns_ = 0;  // the holder's grant time when permits_ == 1
  WaitList waiters_;
  std::size_t thread_waiters_ = 0;
  bool shut_down_ = false;
  std::condition_variable threads_out_;
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

}  // namespace detail

/// A FIFO counting semaphore for coroutines and threads, e.g. to cap CPU-heavy work on an I/O
/// executor. Records under `name` (kind "semaphore"). Thread-safe; threads and coroutines share
/// one queue and nobody overtakes a waiter. Cost: one internal mutex and one clock read per
/// acquisition and per release; async_acquire() always completes through the handler's executor
/// (posted, never inline), so calling try_acquire() first skips that suspension when a permit is
/// free. Destruction completes queued async_acquire()s with operation_aborted and makes threads
/// blocked in acquire() throw; permits still held stay valid. Construction throws
/// std::invalid_argument on a bad name or permit count.
class Semaphore final {
 public:
  /// One permit: movable, released on destruction or by release(). Empty when default
  /// constructed, moved from, released, or returned by a try that failed.
  class [[nodiscard]] Permit final {
   public:
    Permit() noexcept = default;
    /// Gives the permit back now (to the oldest waiter, if any). No-op when empty.
    void release() noexcept { lease_.release(); }
    explicit operator bool() const noexcept { return lease_.held(); }

   private:
    friend struct detail::LeaseAccess;
    explicit Permit(detail::Lease lease) noexcept : lease_(std::move(lease)) {}
    detail::Lease lease_;
  };

  /// Throws std::invalid_argument naming the value unless 1 <= permits <= PTRDIFF_MAX.
  Semaphore(std::string_view name, std::size_t permits)
      : core_(std::make_shared<detail::PermitCore>(ResourceKind::kSemaphore, name,
                                                   detail::validate_permits(name, permits))) {}
  ~Semaphore() { core_->shut_down(); }
  Semaphore(const Semaphore&) = delete;
  Semaphore& operator=(const Semaphore&) = delete;

  /// Completion signature void(error_code, Permit). operation_aborted when cancelled (through
  /// the handler's cancellation slot, any cancellation type) or when the semaphore is
  /// destroyed; a cancelled wait takes no permit.
  template <class Token = boost::asio::use_awaitable_t<>>
  auto async_acquire(Token&& token = {}) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, Permit)>(
        [core = core_](auto handler) { core->async_acquire<Permit>(std::move(handler)); }, token);
  }

  /// A free permit now, or an empty one. Never waits and never overtakes a queued waiter.
  Permit try_acquire() {
    const std::optional<std::int64_t> since = core_->try_acquire();
    return detail::LeaseAccess::make<Permit>(since ? detail::Lease(core_, *since)
                                                   : detail::Lease());
  }

  /// Blocks the calling thread until a permit is free. Throws boost::system::system_error
  /// (operation_aborted) if the semaphore is destroyed meanwhile.
  Permit acquire() {
    detail::Acquired a = core_->acquire(std::nullopt, true);
    if (a.outcome != detail::AcquireOutcome::kGranted) detail::throw_destroyed("semaphore");
    return detail::LeaseAccess::make<Permit>(std::move(a.lease));
  }
  /// Blocks at most `timeout`; an empty Permit when it ran out (or the semaphore was destroyed).
  template <class Rep, class Period>
  Permit acquire_for(const std::chrono::duration<Rep, Period>& timeout) {
    return acquire_until(std::chrono::steady_clock::now() + timeout);
  }
  template <class Clock, class Duration>
  Permit acquire_until(const std::chrono::time_point<Clock, Duration>& deadline) {
    return detail::LeaseAccess::make<Permit>(
        core_->acquire(detail::to_steady(deadline), true).lease);
  }

  /// The permit count given at construction.
  std::size_t permits() const noexcept { return core_->permits(); }
  /// Free permits now (a snapshot: may be stale as soon as it returns).
  std::size_t available() const { return core_->available(); }
  /// The resource name this semaphore records under ("" when compiled out).
  std::string_view name() const noexcept { return core_->name(); }

 private:
  std::shared_ptr<detail::PermitCore> core_;
};

/// A FIFO mutex that coroutines may hold across co_await (the Guard owns the lock, not the
/// thread). Records under `name` (kind "async_lock", in the stallscope_lock_* families).
/// Thread-safe; also Lockable and TimedLockable, so threads can use std::unique_lock and share
/// the queue with coroutines. Cost as Semaphore: one internal mutex and one clock read per lock
/// and per unlock; async_lock() always completes through the handler's executor. Destruction
/// completes queued async_lock()s with operation_aborted and makes threads blocked in lock()
/// throw. Construction throws std::invalid_argument on a bad name.
class STALLSCOPE_CAPABILITY("mutex") AsyncMutex final {
 public:
  /// Holds the lock: movable, unlocks on destruction or by unlock(). Empty when default
  /// constructed, moved from or unlocked.
  class [[nodiscard]] Guard final {
   public:
    Guard() noexcept = default;
    void unlock() noexcept { lease_.release(); }
    bool owns_lock() const noexcept { return lease_.held(); }
    explicit operator bool() const noexcept { return lease_.held(); }

   private:
    friend struct detail::LeaseAccess;
    explicit Guard(detail::Lease lease) noexcept : lease_(std::move(lease)) {}
    detail::Lease lease_;
  };

  explicit AsyncMutex(std::string_view name)
      : core_(std::make_shared<detail::PermitCore>(ResourceKind::kAsyncLock, name, 1)) {}
  ~AsyncMutex() { core_->shut_down(); }
  AsyncMutex(const AsyncMutex&) = delete;
  AsyncMutex& operator=(const AsyncMutex&) = delete;

  /// Completion signature void(error_code, Guard). operation_aborted when cancelled (a
  /// cancelled wait never gets the lock) or when the mutex is destroyed.
  template <class Token = boost::asio::use_awaitable_t<>>
  auto async_lock(Token&& token = {}) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, Guard)>(
        [core = core_](auto handler) { core->async_acquire<Guard>(std::move(handler)); }, token);
  }

  /// Blocks the calling thread. Throws boost::system::system_error (operation_aborted) if the
  /// mutex is destroyed meanwhile.
  void lock() STALLSCOPE_ACQUIRE() {
    if (core_->acquire(std::nullopt, false).outcome != detail::AcquireOutcome::kGranted) {
      detail::throw_destroyed("async mutex");
    }
  }
  /// Never waits and never overtakes a queued waiter.
  bool try_lock() STALLSCOPE_TRY_ACQUIRE(true) { return core_->try_acquire().has_value(); }
  template <class Rep, class Period>
  bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout)
      STALLSCOPE_TRY_ACQUIRE(true) {
    return try_lock_until(std::chrono::steady_clock::now() + timeout);
  }
  template <class Clock, class Duration>
  bool try_lock_until(const std::chrono::time_point<Clock, Duration>& deadline)
      STALLSCOPE_TRY_ACQUIRE(true) {
    return core_->acquire(detail::to_steady(deadline), false).outcome ==
           detail::AcquireOutcome::kGranted;
  }
  /// Releases a lock taken by lock()/try_lock*(), from any thread or coroutine (the lock is not
  /// owned by a thread); the oldest waiter gets it next. Undefined if not locked, as for
  /// std::mutex (here: ignored when the mutex is free).
  void unlock() STALLSCOPE_RELEASE() { core_->release(0); }

  /// The resource name this mutex records under ("" when compiled out).
  std::string_view name() const noexcept { return core_->name(); }

 private:
  std::shared_ptr<detail::PermitCore> core_;
};

}  // namespace stallscope
