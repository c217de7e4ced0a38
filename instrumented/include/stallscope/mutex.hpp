#pragma once
/// Drop-in lock wrappers that record contention under a resource name.
///
///   stallscope::Mutex         for std::mutex            (kind "lock")
///   stallscope::SharedMutex   for std::shared_mutex     (kind "rwlock"; exclusive and shared
///                                                        waits recorded as
///                                                        op="exclusive"/"shared")
///   stallscope::RecursiveMutex, TimedMutex, RecursiveTimedMutex, SharedTimedMutex
///   stallscope::Instrumented<L> for any other Lockable (kind "lock", or "rwlock" when L is
///                               SharedLockable)
///
/// Each works with std::lock_guard, std::unique_lock, std::scoped_lock, std::shared_lock and
/// std::condition_variable_any, exactly like the primitive it wraps.

#include <chrono>
#include <concepts>
#include <mutex>
#include <shared_mutex>
#include <source_location>
#include <string_view>

#include "stallscope/config.hpp"
#include "stallscope/options.hpp"
#include "stallscope/registry.hpp"
#if STALLSCOPE_ENABLED
#include "stallscope/detail/lock_recorder.hpp"
#endif

namespace stallscope {

template <class L>
concept SharedLockable = requires(L& l) {
  l.lock_shared();
  { l.try_lock_shared() } -> std::convertible_to<bool>;
  l.unlock_shared();
};

template <class L>
concept TimedLockable = requires(L& l, std::chrono::milliseconds d,
                                 std::chrono::steady_clock::time_point t) {
  { l.try_lock_for(d) } -> std::convertible_to<bool>;
  { l.try_lock_until(t) } -> std::convertible_to<bool>;
};

template <class L>
concept SharedTimedLockable = requires(L& l, std::chrono::milliseconds d,
                                       std::chrono::steady_clock::time_point t) {
  { l.try_lock_shared_for(d) } -> std::convertible_to<bool>;
  { l.try_lock_shared_until(t) } -> std::convertible_to<bool>;
};

/// Wraps the Lockable `L` and records, per name: acquisitions, contended acquisitions and their
/// wait time (stallscope_wait_seconds), try_lock failures, timeouts, waiters now, the oldest
/// waiter's age and the current holder's age; hold time when hold timing is on.
///
/// Cost: an uncontended lock() is one try_lock() plus one per-thread counter add; it reads no
/// clock. A contended lock() reads the clock twice. Hold timing (LockOptions::hold_time,
/// STALLSCOPE_HOLD_TIME=1) adds two clock reads per acquisition.
/// Thread-safe like L. lock()/unlock() never throw beyond what L throws. Construction registers
/// the name and throws std::invalid_argument on a bad one. Not copyable or movable, like L.
template <class L>
class STALLSCOPE_CAPABILITY("mutex") Instrumented final {
 public:
  using inner_type = L;
  static constexpr ResourceKind kind =
      SharedLockable<L> ? ResourceKind::kRwLock : ResourceKind::kLock;

  /// Named lock. Throws std::invalid_argument on a bad name (see validate_resource_name).
  explicit Instrumented(std::string_view name, LockOptions options = {})
#if STALLSCOPE_ENABLED
      : site_(kind, name, options)
#endif
  {
    (void)name;
    (void)options;
  }

  /// Unnamed lock: named after the line that declares it, e.g. "server.cpp:42".
  explicit Instrumented(std::source_location where = std::source_location::current())
#if STALLSCOPE_ENABLED
      : site_(kind, where, LockOptions{})
#endif
  {
    (void)where;
  }

  Instrumented(const Instrumented&) = delete;
  Instrumented& operator=(const Instrumented&) = delete;

  void lock() STALLSCOPE_ACQUIRE() {
#if STALLSCOPE_ENABLED
    if (inner_.try_lock()) [[likely]] {
      site_.acquired_fast(detail::LockOp::kExclusive);
      return;
    }
    const std::int64_t t0 = site_.wait_begin(detail::LockOp::kExclusive);
    inner_.lock();
    site_.wait_end(detail::LockOp::kExclusive, t0, true);
#else
    inner_.lock();
#endif
  }

  bool try_lock() STALLSCOPE_TRY_ACQUIRE(true) {
    const bool ok = inner_.try_lock();
#if STALLSCOPE_ENABLED
    site_.tried(detail::LockOp::kExclusive, ok);
#endif
    return ok;
  }

  void unlock() STALLSCOPE_RELEASE() {
#if STALLSCOPE_ENABLED
    site_.releasing(detail::LockOp::kExclusive);
#endif
    inner_.unlock();
  }

  template <class Rep, class Period>
  requires TimedLockable<L>
  bool try_lock_for(const std::chrono::duration<Rep, Period>& d) STALLSCOPE_TRY_ACQUIRE(true) {
    return timed(detail_op_exclusive(), [&] { return inner_.try_lock_for(d); });
  }
  template <class Clock, class Duration>
  requires TimedLockable<L>
  bool try_lock_until(const std::chrono::time_point<Clock, Duration>& t)
      STALLSCOPE_TRY_ACQUIRE(true) {
    return timed(detail_op_exclusive(), [&] { return inner_.try_lock_until(t); });
  }

  void lock_shared() STALLSCOPE_ACQUIRE_SHARED() requires SharedLockable<L> {
#if STALLSCOPE_ENABLED
    if (inner_.try_lock_shared()) [[likely]] {
      site_.acquired_fast(detail::LockOp::kShared);
      return;
    }
    const std::int64_t t0 = site_.wait_begin(detail::LockOp::kShared);
    inner_.lock_shared();
    site_.wait_end(detail::LockOp::kShared, t0, true);
#else
    inner_.lock_shared();
#endif
  }

  bool try_lock_shared() STALLSCOPE_TRY_ACQUIRE_SHARED(true) requires SharedLockable<L> {
    const bool ok = inner_.try_lock_shared();
#if STALLSCOPE_ENABLED
    site_.tried(detail::LockOp::kShared, ok);
#endif
    return ok;
  }

  void unlock_shared() STALLSCOPE_RELEASE_SHARED() requires SharedLockable<L> {
#if STALLSCOPE_ENABLED
    site_.releasing(detail::LockOp::kShared);
#endif
    inner_.unlock_shared();
  }

  template <class Rep, class Period>
  requires SharedTimedLockable<L>
  bool try_lock_shared_for(const std::chrono::duration<Rep, Period>& d)
      STALLSCOPE_TRY_ACQUIRE_SHARED(true) {
    return timed(detail_op_shared(), [&] { return inner_.try_lock_shared_for(d); });
  }
  template <class Clock, class Duration>
  requires SharedTimedLockable<L>
  bool try_lock_shared_until(const std::chrono::time_point<Clock, Duration>& t)
      STALLSCOPE_TRY_ACQUIRE_SHARED(true) {
    return timed(detail_op_shared(), [&] { return inner_.try_lock_shared_until(t); });
  }

  auto native_handle() requires requires(L& l) { l.native_handle(); }
  { return inner_.native_handle(); }

  /// The resource name this lock records under ("" when compiled out).
  std::string_view name() const noexcept {
#if STALLSCOPE_ENABLED
    return site_.name();
#else
    return {};
#endif
  }

 private:
#if STALLSCOPE_ENABLED
  static constexpr detail::LockOp detail_op_exclusive() { return detail::LockOp::kExclusive; }
  static constexpr detail::LockOp detail_op_shared() { return detail::LockOp::kShared; }
  template <class Attempt>
  bool timed(detail::LockOp op, Attempt&& attempt) {
    const bool fast = op == detail::LockOp::kShared ? try_shared_inner() : inner_.try_lock();
    if (fast) {
      site_.acquired_fast(op);
      return true;
    }
    const std::int64_t t0 = site_.wait_begin(op);
    const bool ok = attempt();
    site_.wait_end(op, t0, ok);
    return ok;
  }
  bool try_shared_inner() {
    if constexpr (SharedLockable<L>) {
      return inner_.try_lock_shared();
    } else {
      return false;
    }
  }
#else
  static constexpr int detail_op_exclusive() { return 0; }
  static constexpr int detail_op_shared() { return 1; }
  template <class Attempt>
  bool timed(int, Attempt&& attempt) {
    return attempt();
  }
#endif

  L inner_;
#if STALLSCOPE_ENABLED
  detail::LockSite site_;
#endif
};

/// Drop-in for std::mutex.
using Mutex = Instrumented<std::mutex>;
/// Drop-in for std::shared_mutex; exclusive and shared acquisitions are recorded separately.
using SharedMutex = Instrumented<std::shared_mutex>;
using RecursiveMutex = Instrumented<std::recursive_mutex>;
using TimedMutex = Instrumented<std::timed_mutex>;
using RecursiveTimedMutex = Instrumented<std::recursive_timed_mutex>;
using SharedTimedMutex = Instrumented<std::shared_timed_mutex>;

}  // namespace stallscope
