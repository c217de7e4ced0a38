#pragma once
// What several wrapper tests check or set up the same way.
#include <cstdint>
#include <mutex>
#include <thread>

#include <catch2/catch.hpp>

#include "stallscope/snapshot.hpp"

namespace stallscope::testing {

// The exact-accounting checks of a primitive whose acquisitions are all waits (zero ones in the
// first bucket): `n` acquisitions made one wait observation each, the buckets add up to the
// count, and the `contended` count lies in [0, n] with every uncontended wait in bucket 0.
inline void check_wait_accounting(const HistogramSnapshot& wait, double n, double contended) {
  CHECK(static_cast<double>(wait.count) == n);
  std::uint64_t buckets = 0;
  for (auto c : wait.counts) buckets += c;
  CHECK(buckets == wait.count);
  CHECK(contended >= 0);
  CHECK(contended <= n);
  CHECK(static_cast<double>(wait.counts[0]) >= n - contended);
}

// A producer thread sets a flag under `mu` and calls notify(cv); this thread waits on `cv` with
// a std::unique_lock of `mu` until it sees the flag.
template <class Mutex, class Cv, class Notify>
void wait_for_producer(Mutex& mu, Cv& cv, Notify notify) {
  bool ready = false;
  std::thread producer([&] {
    std::lock_guard g(mu);
    ready = true;
    notify(cv);
  });
  {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return ready; });
    CHECK(ready);
  }
  producer.join();
}

}  // namespace stallscope::testing
