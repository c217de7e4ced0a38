#pragma once
// Recording for RetryBudget (kind "retry", stallscope_retry_*): one RetrySeries per budget name,
// one RetrySite per budget object. Every record is one per-thread cell add (cells.hpp): no lock,
// no shared cache line, exact under any concurrency. Nothing here is live state, so a site keeps
// no list of objects: budgets sharing a name add up.
//
// With STALLSCOPE_ENABLED=0 the budget gets a RetrySite from the end of this file instead: the
// same interface, recording nothing. The budget itself still decides (that is behaviour, not
// measurement), and the name is still validated, so a bad one fails the same way in both builds.
#include <cstdint>
#include <string_view>

#include "stallscope/config.hpp"
#if STALLSCOPE_ENABLED
#include <atomic>
#include <string>

#include "stallscope/detail/cells.hpp"
#include "stallscope/detail/series.hpp"
#else
#include "stallscope/registry.hpp"
#endif

namespace stallscope::detail {

#if STALLSCOPE_ENABLED

class RetrySeries final : public Series {
 public:
  RetrySeries(ResourceKind kind, std::string name, std::uint32_t id, const Config& config);
  void collect(Collector& out) override;

  static constexpr std::uint32_t kRequests = 0;   // deposits: original requests
  static constexpr std::uint32_t kAttempted = 1;  // retries granted and started
  static constexpr std::uint32_t kDenied = 2;     // retries the budget refused
  static constexpr std::uint32_t kAbandoned = 3;  // retries dropped because of cancellation
  static constexpr std::uint32_t kBackoffNs = 4;  // time slept in backoff, nanoseconds
  static constexpr std::uint32_t kCounters = 5;

  std::uint32_t base = kNoCell;
  std::atomic<std::int64_t> unlimited{0};  // live unlimited budgets with this name
};

// The per-budget part. Every member is thread-safe and wait-free after a thread's first record.
class RetrySite {
 public:
  // Throws std::invalid_argument on a bad name. `unlimited`: the budget allows every retry.
  RetrySite(std::string_view name, bool unlimited);
  ~RetrySite();
  RetrySite(const RetrySite&) = delete;
  RetrySite& operator=(const RetrySite&) = delete;

  const std::string& name() const noexcept { return series_->name(); }

  void requested() noexcept { add(series_->base + RetrySeries::kRequests); }
  void attempted() noexcept { add(series_->base + RetrySeries::kAttempted); }
  void denied() noexcept { add(series_->base + RetrySeries::kDenied); }
  void abandoned() noexcept { add(series_->base + RetrySeries::kAbandoned); }
  void backed_off(std::int64_t ns) noexcept {
    if (ns > 0) add(series_->base + RetrySeries::kBackoffNs, static_cast<std::uint64_t>(ns));
  }

 private:
  RetrySeries* series_;
  bool unlimited_;
};

#else  // Compiled out: the same calls, doing nothing (see lock_recorder.hpp).
inline namespace off {

class RetrySite {
 public:
  RetrySite(std::string_view name, bool) { validate_resource_name(name); }
  std::string_view name() const noexcept { return {}; }
  void requested() noexcept {}
  void attempted() noexcept {}
  void denied() noexcept {}
  void abandoned() noexcept {}
  void backed_off(std::int64_t) noexcept {}
};

}  // namespace off
#endif

}  // namespace stallscope::detail
