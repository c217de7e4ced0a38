#include "stallscope/watchdog.hpp"

#include <stdexcept>
#include <unordered_map>

#include <fmt/format.h>

#include "stallscope/clock.hpp"
#include "stallscope/detail/cells.hpp"
#include "stallscope/detail/task_recorder.hpp"
#include "stallscope/detail/waitfor.hpp"

namespace stallscope {

Watchdog::Watchdog(WatchdogOptions options) : options_(options) {
  if (options_.threshold < std::chrono::milliseconds(1)) {
    throw std::invalid_argument(
        fmt::format("stallscope: watchdog threshold {} ns is below the 1 ms minimum",
                    options_.threshold.count()));
  }
  if (options_.poll_interval.count() < 0) {
    throw std::invalid_argument(fmt::format("stallscope: watchdog poll_interval {} ns is negative",
                                            options_.poll_interval.count()));
  }
  if (options_.max_reports_per_second < 1) {
    throw std::invalid_argument(
        fmt::format("stallscope: watchdog max_reports_per_second {} is below 1",
                    options_.max_reports_per_second));
  }
  if (options_.poll_interval.count() == 0) {
    options_.poll_interval =
        std::max<std::chrono::nanoseconds>(options_.threshold / 4, std::chrono::milliseconds(1));
  }
  thread_ = std::thread([this] { run(); });
}

Watchdog::~Watchdog() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

std::uint64_t Watchdog::reports() const noexcept {
  std::lock_guard lock(mu_);
  return reports_;
}

std::uint64_t Watchdog::suppressed() const noexcept {
  std::lock_guard lock(mu_);
  return suppressed_;
}

void Watchdog::run() {
  // Per shard: the start time of the slice already reported, so each slice is reported once.
  std::unordered_map<const detail::ThreadShard*, std::int64_t> reported;
  std::int64_t window_start = 0;
  int in_window = 0;
  // The deadlock detector's wait-for graph, every 200 ms (or every poll when polls are rarer): a
  // cycle seen by two builds in a row is reported, so within about half a second of forming.
  constexpr std::int64_t kDeadlockScanNs = 200'000'000;
  std::int64_t last_scan = 0;
  std::unique_lock lock(mu_);
  while (!cv_.wait_for(lock, options_.poll_interval, [&] { return stop_; })) {
    lock.unlock();
    const std::int64_t now = now_ns();
    if (now - window_start >= 1'000'000'000) {
      window_start = now;
      in_window = 0;
    }
    if (now - last_scan >= kDeadlockScanNs) {
      last_scan = now;
      detail::scan_deadlocks();
    }
    std::uint64_t made = 0;
    std::uint64_t skipped = 0;
    detail::for_each_shard([&](detail::ThreadShard& s) {
      const std::uint32_t id = s.slice.series.load(std::memory_order_acquire);
      if (id == 0) return;
      const std::int64_t start = s.slice.start_ns.load(std::memory_order_relaxed);
      const std::int64_t ran = now - start;
      if (ran <= options_.threshold.count()) return;
      auto [it, fresh] = reported.try_emplace(&s, 0);
      if (!fresh && it->second == start) return;
      it->second = start;
      if (in_window >= options_.max_reports_per_second) {
        ++skipped;
        return;
      }
      ++in_window;
      ++made;
      detail::on_long_slice(id, ran);
    });
    lock.lock();
    reports_ += made;
    suppressed_ += skipped;
  }
}

}  // namespace stallscope
