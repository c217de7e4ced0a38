#pragma once
// Test helpers shared by the suites: unique resource names, bounded polling and a
// producer/consumer hand-shake.
#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

namespace stallscope::testing {

// Every test shares the process registry: a fresh name per use keeps series apart.
inline std::string unique_name(std::string_view stem) {
  static std::atomic<int> n{0};
  return std::string(stem) + "-" + std::to_string(n.fetch_add(1));
}

// Polls `cond` until it holds or a generous deadline passes; the deadline only guards against
// a hang, it is never what a test measures.
template <class Cond>
bool eventually(Cond&& cond) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  return cond();
}

// Calls `body()` `iters` times on each of `threads` threads running at once, and joins them.
template <class Body>
void on_threads(int threads, int iters, Body body) {
  std::vector<std::thread> running;
  for (int t = 0; t < threads; ++t) {
    running.emplace_back([&] {
      for (int i = 0; i < iters; ++i) body();
    });
  }
  for (auto& th : running) th.join();
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
