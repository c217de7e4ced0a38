// The naive instrumentation a user without stallscope writes: time every acquisition of `Inner`
// with steady_clock and observe the wait in a prometheus-cpp histogram. The peer of the lock
// benchmarks (bench/locks.cpp, over std::mutex) and of the contended instruction count
// (bench/icount.cpp, over a lock that is always contended).
#pragma once

#include <chrono>

#include <prometheus/histogram.h>

namespace stallscope_bench {

template <class Inner>
class HandTimed {
 public:
  explicit HandTimed(prometheus::Histogram& wait) : wait_(wait) {}

  void lock() {
    const auto t0 = std::chrono::steady_clock::now();
    inner_.lock();
    const auto t1 = std::chrono::steady_clock::now();
    wait_.Observe(std::chrono::duration<double>(t1 - t0).count());
  }
  void unlock() { inner_.unlock(); }

 private:
  Inner inner_;
  prometheus::Histogram& wait_;
};

}  // namespace stallscope_bench
