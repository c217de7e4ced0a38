#pragma once
/// Process-wide recording configuration, and per-lock options.

#include <chrono>
#include <cstddef>
#include <optional>

#include "stallscope/buckets.hpp"
#include "stallscope/profile.hpp"

namespace stallscope {

/// Recording configuration of the process registry. The bounds and the resource cap apply to
/// series created after Registry::configure() (series that exist keep the bounds they were
/// created with); slow_slice and cancel_grace apply at once to every task name.
struct Config {
  Buckets wait_buckets = Buckets::latency();
  Buckets hold_buckets = Buckets::latency();
  /// Distinct names per kind before further names go to the "__overflow__" series.
  std::size_t max_resources_per_kind = 1000;
  /// Time every lock hold (two clock reads per acquisition, ~+40 ns) by default. Off by default:
  /// then only locks created with LockOptions{.hold_time = true} time their holds.
  bool hold_time = false;
  /// A task run slice longer than this counts in stallscope_task_slow_slices_total.
  std::chrono::nanoseconds slow_slice = std::chrono::milliseconds(10);
  /// A task still alive this long after its cancellation counts as lingering.
  std::chrono::nanoseconds cancel_grace = std::chrono::seconds(1);
  /// Sampling of the contention profiles (profile.hpp); applies at once, to every lock.
  ProfileRate profile_rate;

  /// Defaults overridden from the environment:
  ///   STALLSCOPE_HOLD_TIME=0|1, STALLSCOPE_MAX_RESOURCES=<1..1000000>,
  ///   STALLSCOPE_SLOW_SLICE=<duration>, STALLSCOPE_CANCEL_GRACE=<duration>,
  ///   STALLSCOPE_PROFILE_RATE=off|<N>|<duration> (ProfileRate::parse)
  /// (a duration: a whole number with a unit, ns us ms s, e.g. 50ms; at most one hour).
  /// Each variable is read on its own: a bad value is logged (see set_log_sink) naming the
  /// variable and the value, and that field keeps its default. Never throws.
  static Config from_env();
};

/// Per-object options of the lock wrappers.
struct LockOptions {
  /// Time holds of this object; unset: Config::hold_time.
  std::optional<bool> hold_time;
};

}  // namespace stallscope
