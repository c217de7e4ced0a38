#pragma once
/// A thread that reports task handlers running longer than a threshold while they still run.
///
/// It polls every thread's slice slot (two stores per slice on the hot path, nothing else) and,
/// for each slice that has run longer than `threshold`, reports once: a DetectorEvent of type
/// kLongSlice and a warning through the log sink (see set_log_sink), naming the task and how
/// long it has run so far. Reports are rate-limited to `max_reports_per_second`.
/// Every 200 ms it also builds the wait-for graph of stallscope locks, semaphores and channels
/// and reports deadlocks (current_deadlocks() in detectors.hpp, stallscope_deadlocks_total, an
/// error through the log sink).
/// The Agent starts one by default; create your own when you run without an Agent.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

namespace stallscope {

struct WatchdogOptions {
  /// Report slices running longer than this. Must be at least 1 ms.
  std::chrono::nanoseconds threshold = std::chrono::milliseconds(100);
  /// How often to look (0: threshold / 4, at least 1 ms).
  std::chrono::nanoseconds poll_interval{0};
  /// At most this many reports per second (at least 1).
  int max_reports_per_second = 10;
};

/// Thread-safe. Construction validates the options (std::invalid_argument naming the bad
/// value) and starts the thread; destruction stops and joins it promptly.
class Watchdog final {
 public:
  explicit Watchdog(WatchdogOptions options = {});
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  /// Long slices reported so far (rate-limited ones not included).
  std::uint64_t reports() const noexcept;
  /// Long slices seen but not reported because of the rate limit.
  std::uint64_t suppressed() const noexcept;

 private:
  void run();

  WatchdogOptions options_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::uint64_t reports_ = 0;
  std::uint64_t suppressed_ = 0;
  std::thread thread_;
};

}  // namespace stallscope
