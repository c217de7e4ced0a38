#pragma once
// Test helpers shared by the suites: unique resource names and bounded polling.
#include <atomic>
#include <chrono>
#include <string>
#include <string_view>
#include <thread>

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

}  // namespace stallscope::testing
