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
/// std::condition_variable_any, exactly like the primitive it wraps; stallscope::Mutex also with
/// stallscope::ConditionVariable (condition_variable.hpp), the drop-in for std::condition_variable.

#include <chrono>
#include <concepts>
#include <cstddef>
#include <mutex>
#include <shared_mutex>
#include <string_view>
#include <type_traits>

#include "stallscope/config.hpp"
#include "stallscope/detail/lock_name.hpp"
#include "stallscope/detail/lock_recorder.hpp"
#include "stallscope/options.hpp"
#include "stallscope/registry.hpp"

namespace stallscope {

class ConditionVariable;

namespace detail {
// A const char array: what a string literal is (the deferred-name constructor takes those).
template <class T>
inline constexpr bool kConstCharArray = false;
template <std::size_t N>
inline constexpr bool kConstCharArray<const char[N]> = true;

// native_handle_type where the wrapped lock has one (std::mutex and friends do).
template <class L>
struct NativeHandleOf {};
template <class L>
requires requires { typename L::native_handle_type; }
struct NativeHandleOf<L> {
  using native_handle_type = typename L::native_handle_type;
};
}  // namespace detail

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
/// STALLSCOPE_HOLD_TIME=1) adds two clock reads per acquisition. Constructed from a literal name or
/// unnamed, it is constexpr and noexcept like L's constructor (constant-initialized as a global);
/// it registers on its first use, once. Thread-safe like L; lock()/unlock() throw only what L
/// throws. A name built at run time registers at construction and throws std::invalid_argument if
/// bad. Not copyable or movable, like L. Not final: deriving (a lock with extra members) is
/// allowed, as for the std types; nothing is virtual, so it costs nothing.
template <class L>
class STALLSCOPE_CAPABILITY("mutex") Instrumented : public detail::NativeHandleOf<L> {
 public:
  using inner_type = L;
  static constexpr ResourceKind kind =
      SharedLockable<L> ? ResourceKind::kRwLock : ResourceKind::kLock;

  /// Unnamed lock: named after the line that initializes it, e.g. "server.cpp:42" (for a class
  /// member without a name: the line of the constructor that initializes it).
  constexpr Instrumented(detail::SourceSite where = detail::SourceSite::current()) noexcept
      : site_(kind, where) {}

  /// Named by a string literal: registers on first use, never throws. The lock keeps a pointer
  /// to the literal (any other const char array must outlive the lock). A bad name (see
  /// validate_resource_name) does not compile where the lock is constant-initialized; elsewhere it
  /// is logged at first use and the lock records nothing.
  template <std::size_t N>
  constexpr explicit Instrumented(const char (&name)[N], LockOptions options = {}) noexcept
      : site_(kind, literal(name), options) {
    // Not guarded by std::is_constant_evaluated(): with it GCC 12 stops constant-initializing
    // globals that are not constinit (it gives up on its trial constant evaluation). At run
    // time the check costs a scan of the name.
    if (!detail::valid_resource_name(literal(name))) {
      detail::lock_name_is_invalid_see_validate_resource_name();
    }
  }

  /// Named at run time (a std::string, a string_view, a char pointer or a writable char buffer):
  /// registers now. Throws std::invalid_argument on a bad name (see validate_resource_name).
  template <class S>
  requires(!detail::kConstCharArray<std::remove_reference_t<S>> &&
           std::is_convertible_v<const S&,
                                 std::string_view>) explicit Instrumented(S&& name,
                                                                          LockOptions options = {})
      : site_(detail::LockSite::RegisterNow{}, kind, std::string_view(name), options) {}

  Instrumented(const Instrumented&) = delete;
  Instrumented& operator=(const Instrumented&) = delete;

  void lock() STALLSCOPE_ACQUIRE() { acquire<detail::LockOp::kExclusive>(); }

  [[nodiscard]] bool try_lock() STALLSCOPE_TRY_ACQUIRE(true) {
    const bool ok = inner_.try_lock();
    site_.tried(detail::LockOp::kExclusive, ok);
    return ok;
  }

  void unlock() STALLSCOPE_RELEASE() {
    site_.releasing(detail::LockOp::kExclusive);
    inner_.unlock();
  }

  template <class Rep, class Period>
  requires TimedLockable<L>
  [[nodiscard]] bool try_lock_for(const std::chrono::duration<Rep, Period>& d)
      STALLSCOPE_TRY_ACQUIRE(true) {
    return timed(detail::LockOp::kExclusive, [&] { return inner_.try_lock_for(d); });
  }
  template <class Clock, class Duration>
  requires TimedLockable<L>
  [[nodiscard]] bool try_lock_until(const std::chrono::time_point<Clock, Duration>& t)
      STALLSCOPE_TRY_ACQUIRE(true) {
    return timed(detail::LockOp::kExclusive, [&] { return inner_.try_lock_until(t); });
  }

  STALLSCOPE_ACQUIRE_SHARED() void lock_shared() requires SharedLockable<L> {
    acquire<detail::LockOp::kShared>();
  }

  [[nodiscard]] STALLSCOPE_TRY_ACQUIRE_SHARED(true) bool try_lock_shared() requires
      SharedLockable<L> {
    const bool ok = inner_.try_lock_shared();
    site_.tried(detail::LockOp::kShared, ok);
    return ok;
  }

  STALLSCOPE_RELEASE_SHARED() void unlock_shared() requires SharedLockable<L> {
    site_.releasing(detail::LockOp::kShared);
    inner_.unlock_shared();
  }

  template <class Rep, class Period>
  requires SharedTimedLockable<L>
  [[nodiscard]] bool try_lock_shared_for(const std::chrono::duration<Rep, Period>& d)
      STALLSCOPE_TRY_ACQUIRE_SHARED(true) {
    return timed(detail::LockOp::kShared, [&] { return inner_.try_lock_shared_for(d); });
  }
  template <class Clock, class Duration>
  requires SharedTimedLockable<L>
  [[nodiscard]] bool try_lock_shared_until(const std::chrono::time_point<Clock, Duration>& t)
      STALLSCOPE_TRY_ACQUIRE_SHARED(true) {
    return timed(detail::LockOp::kShared, [&] { return inner_.try_lock_shared_until(t); });
  }

  /// L's native handle (e.g. a pthread_mutex_t*), where L has one. Locking through it bypasses
  /// the recording.
  auto native_handle() requires requires(L& l) { l.native_handle(); }
  { return inner_.native_handle(); }

  /// The resource name this lock records under ("" when compiled out). Registers the lock if it
  /// was not yet.
  std::string_view name() const noexcept { return site_.name(); }

 private:
  friend class ConditionVariable;
  // The name in a char array: up to its first NUL (a literal's is its last element).
  template <std::size_t N>
  static constexpr std::string_view literal(const char (&name)[N]) noexcept {
    std::size_t n = 0;
    while (n < N && name[n] != '\0') ++n;
    return {name, n};
  }
  // One try first: the uncontended acquisition reads no clock; a contended one is timed.
  template <detail::LockOp Op>
  void acquire() {
    if (try_inner<Op>()) [[likely]] {
      site_.acquired_fast(Op);
      return;
    }
    const std::int64_t t0 = site_.wait_begin(Op);
    if constexpr (Op == detail::LockOp::kShared) {
      inner_.lock_shared();
    } else {
      inner_.lock();
    }
    site_.wait_end(Op, t0, true);
  }
  template <class Attempt>
  bool timed(detail::LockOp op, Attempt&& attempt) {
    const bool fast =
        op == detail::LockOp::kShared ? try_inner<detail::LockOp::kShared>() : inner_.try_lock();
    if (fast) {
      site_.acquired_fast(op);
      return true;
    }
    const std::int64_t t0 = site_.wait_begin(op);
    const bool ok = attempt();
    site_.wait_end(op, t0, ok);
    return ok;
  }
  template <detail::LockOp Op>
  bool try_inner() {
    if constexpr (Op == detail::LockOp::kExclusive) {
      return inner_.try_lock();
    } else if constexpr (SharedLockable<L>) {
      return inner_.try_lock_shared();
    } else {
      return false;
    }
  }

  L inner_;
  // mutable: name() registers a deferred lock, which changes nothing a caller can observe. With
  // recording compiled out an empty class that takes no room: the wrapper is L's size.
  [[no_unique_address]] mutable detail::LockSite site_;
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
