#pragma once
/// stallscope::ConditionVariable: the drop-in for std::condition_variable next to a
/// stallscope::Mutex.
///
///   stallscope::Mutex mu{"jobs"};
///   stallscope::ConditionVariable cv;
///   std::unique_lock lock(mu);
///   cv.wait(lock, [&] { return !jobs.empty(); });

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <utility>

#include "stallscope/config.hpp"
#include "stallscope/mutex.hpp"

namespace stallscope {

/// Drop-in for std::condition_variable, waited on with std::unique_lock<stallscope::Mutex>
/// (std::condition_variable_any keeps working with every stallscope lock too). It waits on the
/// Mutex's own std::mutex through a std::condition_variable: no extra mutex, one futex wait.
/// Records, under the Mutex's name, each wait's time until the notify as idle
/// (stallscope_idle_seconds: waiting for work, never ranked as a stall) and the re-acquisition
/// after the notify as a lock wait (ranked) when another thread held the mutex meanwhile.
/// Cost: two clock reads per wait; a notify reads the clock only while a thread waits.
/// Thread-safe like std::condition_variable; waits throw only what std::condition_variable throws.
class ConditionVariable {
 public:
  using native_handle_type = std::condition_variable::native_handle_type;

  ConditionVariable() noexcept = default;
  ConditionVariable(const ConditionVariable&) = delete;
  ConditionVariable& operator=(const ConditionVariable&) = delete;

  void notify_one() noexcept {
    stamp_notify();
    cv_.notify_one();
  }
  void notify_all() noexcept {
    stamp_notify();
    cv_.notify_all();
  }

  void wait(std::unique_lock<Mutex>& lock) {
    Waiting w(*this, lock);
    cv_.wait(w.inner);
  }
  template <class Predicate>
  void wait(std::unique_lock<Mutex>& lock, Predicate pred) {
    while (!pred()) wait(lock);
  }

  template <class Rep, class Period>
  std::cv_status wait_for(std::unique_lock<Mutex>& lock,
                          const std::chrono::duration<Rep, Period>& rel_time) {
    Waiting w(*this, lock);
    return cv_.wait_for(w.inner, rel_time);
  }
  template <class Rep, class Period, class Predicate>
  bool wait_for(std::unique_lock<Mutex>& lock, const std::chrono::duration<Rep, Period>& rel_time,
                Predicate pred) {
    return wait_until(lock, std::chrono::steady_clock::now() + rel_time, std::move(pred));
  }

  template <class Clock, class Duration>
  std::cv_status wait_until(std::unique_lock<Mutex>& lock,
                            const std::chrono::time_point<Clock, Duration>& abs_time) {
    Waiting w(*this, lock);
    return cv_.wait_until(w.inner, abs_time);
  }
  template <class Clock, class Duration, class Predicate>
  bool wait_until(std::unique_lock<Mutex>& lock,
                  const std::chrono::time_point<Clock, Duration>& abs_time, Predicate pred) {
    while (!pred()) {
      if (wait_until(lock, abs_time) == std::cv_status::timeout) return pred();
    }
    return true;
  }

  native_handle_type native_handle() { return cv_.native_handle(); }

 private:
  friend void notify_all_at_thread_exit(ConditionVariable& cv, std::unique_lock<Mutex> lock);
  void notify_all_at_thread_exit(std::unique_lock<Mutex> lock) {
    Mutex& m = *lock.release();
#if STALLSCOPE_ENABLED
    m.site_.releasing(detail::LockOp::kExclusive);
#endif
    std::notify_all_at_thread_exit(cv_, std::unique_lock<std::mutex>(m.inner_, std::adopt_lock));
  }

  // One wait: the Mutex's std::mutex lent to cv_ through a unique_lock that adopts it, recorded
  // around it. Restores the caller's lock on every exit, exceptions included.
  struct Waiting {
    Waiting(ConditionVariable& cv, std::unique_lock<Mutex>& lock)
        : mutex(*lock.mutex()), inner(mutex.inner_, std::adopt_lock) {
#if STALLSCOPE_ENABLED
      self = &cv;
      cv.site_.store(&mutex.site_, std::memory_order_relaxed);
      cv.waiters_.fetch_add(1, std::memory_order_relaxed);
      started_ns = mutex.site_.cv_wait_begin();
#else
      (void)cv;
#endif
    }
    ~Waiting() {
      inner.release();  // the caller's unique_lock<Mutex> owns the mutex again
#if STALLSCOPE_ENABLED
      const std::int64_t notified = self->notified_ns_.load(std::memory_order_relaxed);
      const bool contended = detail::LockSite::held_or_taken_since(
          self->notified_state_.load(std::memory_order_relaxed), mutex.site_.state_word());
      self->waiters_.fetch_sub(1, std::memory_order_relaxed);
      mutex.site_.cv_wait_end(started_ns, notified, contended);
#endif
    }
    Waiting(const Waiting&) = delete;
    Waiting& operator=(const Waiting&) = delete;

    Mutex& mutex;
    std::unique_lock<std::mutex> inner;
#if STALLSCOPE_ENABLED
    ConditionVariable* self = nullptr;
    std::int64_t started_ns = 0;
#endif
  };

  // The notify's time and the mutex's state then, read by the waiters it wakes to split their
  // wait into idle and re-acquisition. Only while someone waits: a notify with no waiter reads no
  // clock. All relaxed: the values are timestamps for an estimate, and cv_'s own wake-up orders
  // a notify before the wait it ends; a notify that races a waiter's start is seen as none.
  // site_ points at a Mutex that a thread waits with; a Mutex outlives the waits on it.
  void stamp_notify() noexcept {
#if STALLSCOPE_ENABLED
    if (waiters_.load(std::memory_order_relaxed) == 0) return;
    if (const detail::LockSite* s = site_.load(std::memory_order_relaxed)) {
      notified_state_.store(s->state_word(), std::memory_order_relaxed);
    }
    notified_ns_.store(now_ns(), std::memory_order_relaxed);
#endif
  }

  std::condition_variable cv_;
#if STALLSCOPE_ENABLED
  std::atomic<std::uint32_t> waiters_{0};
  std::atomic<const detail::LockSite*> site_{nullptr};
  std::atomic<std::uint64_t> notified_state_{0};
  std::atomic<std::int64_t> notified_ns_{0};
#endif
};

/// Like std::notify_all_at_thread_exit: `lock`'s mutex stays locked until this thread exits,
/// then is unlocked and every waiter of `cv` notified. The hold is recorded as ending now (the
/// lock is handed to the thread's exit), and the waiters' whole wait counts as idle.
inline void notify_all_at_thread_exit(ConditionVariable& cv, std::unique_lock<Mutex> lock) {
  cv.notify_all_at_thread_exit(std::move(lock));
}

}  // namespace stallscope
