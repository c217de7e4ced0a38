#pragma once
/// stallscope::ConditionVariable: the drop-in for std::condition_variable next to a
/// stallscope::Mutex.
///
///   stallscope::Mutex mu{"jobs"};
///   stallscope::ConditionVariable cv;
///   std::unique_lock lock(mu);
///   cv.wait(lock, [&] { return !jobs.empty(); });

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <utility>

#include "stallscope/config.hpp"
#include "stallscope/detail/lock_recorder.hpp"
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
    rec_.notifying();
    cv_.notify_one();
  }
  void notify_all() noexcept {
    rec_.notifying();
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
  /// As the standard specifies: wait_until(lock, steady_clock::now() + rel_time[, pred]), so a
  /// cv_status without a predicate and pred()'s last value with one.
  template <class Rep, class Period, class... Predicate>  // no predicate or one
  auto wait_for(std::unique_lock<Mutex>& lock, const std::chrono::duration<Rep, Period>& rel_time,
                Predicate... pred) {
    return wait_until(lock, std::chrono::steady_clock::now() + rel_time, std::move(pred)...);
  }

  native_handle_type native_handle() { return cv_.native_handle(); }

 private:
  friend void notify_all_at_thread_exit(ConditionVariable& cv, std::unique_lock<Mutex> lock);
  void notify_all_at_thread_exit(std::unique_lock<Mutex> lock) {
    Mutex& m = *lock.release();
    m.site_.releasing(detail::LockOp::kExclusive);
    std::notify_all_at_thread_exit(cv_, std::unique_lock<std::mutex>(m.inner_, std::adopt_lock));
  }

  // One wait: the Mutex's std::mutex lent to cv_ through a unique_lock that adopts it, recorded
  // around it. Restores the caller's lock on every exit, exceptions included.
  struct Waiting {
    Waiting(ConditionVariable& cv, std::unique_lock<Mutex>& lock)
        : rec(cv.rec_),
          mutex(*lock.mutex()),
          inner(mutex.inner_, std::adopt_lock),
          started_ns(rec.wait_begin(mutex.site_)) {}
    ~Waiting() {
      inner.release();  // the caller's unique_lock<Mutex> owns the mutex again
      rec.wait_end(mutex.site_, started_ns);
    }
    Waiting(const Waiting&) = delete;
    Waiting& operator=(const Waiting&) = delete;

    detail::CvRecorder& rec;
    Mutex& mutex;
    std::unique_lock<std::mutex> inner;
    std::int64_t started_ns;
  };

  std::condition_variable cv_;
  // The notify's time, for the waiters it wakes. An empty class with recording compiled out.
  [[no_unique_address]] detail::CvRecorder rec_;
};

/// Like std::notify_all_at_thread_exit: `lock`'s mutex stays locked until this thread exits,
/// then is unlocked and every waiter of `cv` notified. The hold is recorded as ending now (the
/// lock is handed to the thread's exit), and the waiters' whole wait counts as idle.
inline void notify_all_at_thread_exit(ConditionVariable& cv, std::unique_lock<Mutex> lock) {
  cv.notify_all_at_thread_exit(std::move(lock));
}

}  // namespace stallscope
