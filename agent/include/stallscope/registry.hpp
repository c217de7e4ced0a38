#pragma once
/// The process registry: every named resource and its recorders.
///
/// Wrappers register themselves at construction (by kind and name; objects with the same kind
/// and name share one series) and record without touching the registry again. Exporters call
/// collect() at scrape time. The registry is created on first use and never destroyed, so
/// wrappers may live in static storage and be used during static destruction.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "stallscope/options.hpp"
#include "stallscope/snapshot.hpp"

namespace stallscope {

/// What kind of place a wait happens at. The label value is to_string(kind).
enum class ResourceKind : std::uint8_t {
  kLock,
  kRwLock,
  kAsyncLock,
  kSemaphore,
  kChannel,
  kExecutor,
  kPool,
  kTask,   ///< per task name: scheduling delay, run slices, lifetimes (instrumented executor)
  kRetry,  ///< a RetryBudget: requests, retries attempted, denied and abandoned, backoff time
};
inline constexpr std::size_t kResourceKinds = 9;

std::string_view to_string(ResourceKind kind) noexcept;

/// Name of the series that collects resources beyond Config::max_resources_per_kind.
inline constexpr std::string_view kOverflowName = "__overflow__";

/// Throws std::invalid_argument naming `name` unless it is 1-128 characters of letters, digits
/// and `_ - . : / @`, and does not start with "__" (reserved).
void validate_resource_name(std::string_view name);

namespace detail {
class Series;
class Collector;
}  // namespace detail

class Registry final {
 public:
  /// The process registry. Thread-safe; never destroyed.
  static Registry& global() noexcept;

  /// Validates (std::invalid_argument naming the bad value) and installs `config`. Bucket bounds
  /// and max_resources_per_kind apply to series created from now on; slow_slice and
  /// cancel_grace apply at once to every task name, those that exist included. Thread-safe.
  void configure(const Config& config);
  Config config() const;

  /// Every metric now. Thread-safe; takes only registry-internal locks (never one that user code
  /// can hold), so it answers while the application is deadlocked on its own locks.
  std::vector<FamilySnapshot> collect() const;

  /// Distinct series of `kind`, the overflow series included.
  std::size_t series_count(ResourceKind kind) const;

  // --- for wrappers (detail) ---
  using SeriesFactory = std::unique_ptr<detail::Series> (*)(ResourceKind, std::string name,
                                                            std::uint32_t id, const Config& config);
  /// The series for (kind, name), created with `make` if new; beyond the cap, the kind's
  /// overflow series. Throws std::invalid_argument on a bad name.
  detail::Series& series(ResourceKind kind, std::string_view name, SeriesFactory make);
  /// The name of series `id` ("" when unknown). Thread-safe.
  std::string series_name(std::uint32_t id) const;
  /// Calls fn(detail::Series&) for every series of `kind`, under live_mutex().
  template <class Fn>
  void for_each_series(ResourceKind kind, Fn&& fn) const;
  /// Guards the live-object lists that series keep for scrape-time gauges.
  std::mutex& live_mutex() const noexcept { return mu_; }

  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

 private:
  Registry();
  ~Registry();
  static ResourceKind series_kind(const detail::Series& s) noexcept;

  mutable std::mutex mu_;
  Config config_;
  struct KeyHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
      return std::hash<std::string_view>{}(s);
    }
  };
  std::unordered_map<std::string, detail::Series*, KeyHash, std::equal_to<>> by_key_;
  std::vector<std::unique_ptr<detail::Series>> series_;  // index + 1 == id
  std::size_t per_kind_[kResourceKinds] = {};
  std::uint64_t overflowed_[kResourceKinds] = {};
};

template <class Fn>
void Registry::for_each_series(ResourceKind kind, Fn&& fn) const {
  std::lock_guard lock(mu_);
  for (const auto& s : series_) {
    if (series_kind(*s) == kind) fn(*s);
  }
}

}  // namespace stallscope
