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

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <utility>

#include <boost/asio/async_result.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/error_code.hpp>

#include "stallscope/config.hpp"
#include "stallscope/detail/permit_core.hpp"
#include "stallscope/registry.hpp"

namespace stallscope {

/// A FIFO counting semaphore for coroutines and threads, e.g. to cap CPU-heavy work on an I/O
/// executor. Records under `name` (kind "semaphore"). Thread-safe; threads and coroutines share
/// one queue and nobody overtakes a waiter. Cost: one internal mutex and one clock read per
/// acquisition and per release; async_acquire() always completes through the handler's executor
/// (posted, never inline), so calling try_acquire() first skips that suspension when a permit is
/// free. Destruction completes queued async_acquire()s with operation_aborted and makes threads
/// blocked in acquire() throw; permits still held stay valid. Construction throws
/// std::invalid_argument on a bad name or permit count.
class Semaphore final : detail::PermitOwner {
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
      : PermitOwner(std::make_shared<detail::PermitCore>(
            ResourceKind::kSemaphore, name, detail::validate_permits(name, permits))) {}

  /// Completion signature void(error_code, Permit). operation_aborted when cancelled (through
  /// the handler's cancellation slot, any cancellation type) or when the semaphore is
  /// destroyed; a cancelled wait takes no permit.
  template <class Token = boost::asio::use_awaitable_t<>>
  auto async_acquire(Token&& token = {}) {
    return async_wait<Permit>(std::forward<Token>(token));
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
};

/// A FIFO mutex that coroutines may hold across co_await (the Guard owns the lock, not the
/// thread). Records under `name` (kind "async_lock", in the stallscope_lock_* families).
/// Thread-safe; also Lockable and TimedLockable, so threads can use std::unique_lock and share
/// the queue with coroutines. Cost as Semaphore: one internal mutex and one clock read per lock
/// and per unlock; async_lock() always completes through the handler's executor. Destruction
/// completes queued async_lock()s with operation_aborted and makes threads blocked in lock()
/// throw. Construction throws std::invalid_argument on a bad name. Holding it across co_await is
/// what it is for, so the held-across-suspend detector (stallscope_lock_held_across_suspend_total)
/// does not count it: that detector covers the thread locks (the Mutex family), whose holder
/// blocks every other thread while its task is suspended.
class STALLSCOPE_CAPABILITY("mutex") AsyncMutex final : detail::PermitOwner {
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
      : PermitOwner(std::make_shared<detail::PermitCore>(ResourceKind::kAsyncLock, name, 1)) {}

  /// Completion signature void(error_code, Guard). operation_aborted when cancelled (a
  /// cancelled wait never gets the lock) or when the mutex is destroyed.
  template <class Token = boost::asio::use_awaitable_t<>>
  auto async_lock(Token&& token = {}) {
    return async_wait<Guard>(std::forward<Token>(token));
  }

  /// Blocks the calling thread. Throws boost::system::system_error (operation_aborted) if the
  /// mutex is destroyed meanwhile.
  void lock() STALLSCOPE_ACQUIRE() {
    if (core_->acquire(std::nullopt, false).outcome != detail::AcquireOutcome::kGranted) {
      detail::throw_destroyed("async mutex");
    }
  }
  /// Never waits and never overtakes a queued waiter.
  [[nodiscard]] bool try_lock() STALLSCOPE_TRY_ACQUIRE(true) {
    return core_->try_acquire().has_value();
  }
  template <class Rep, class Period>
  [[nodiscard]] bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout)
      STALLSCOPE_TRY_ACQUIRE(true) {
    return try_lock_until(std::chrono::steady_clock::now() + timeout);
  }
  template <class Clock, class Duration>
  [[nodiscard]] bool try_lock_until(const std::chrono::time_point<Clock, Duration>& deadline)
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
};

}  // namespace stallscope
