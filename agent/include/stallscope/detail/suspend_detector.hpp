#pragma once
// The detectors' recording side (detectors.hpp is the reading side): the held-across-suspend
// detector and the long-slice event, and the ring of recent events they share. Slow paths only.
//
// Held across suspend: the lock wrappers note in the running slice (slice.hpp) every exclusive
// lock a task acquires and releases; a slice that ends with some still held calls
// on_suspended_holding, which counts each (lock, task) and opens an event per lock. The lock
// keeps the event's number and completes it with the hold's length when it is released.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace stallscope::detail {

struct SliceContext;

// A slice of task `ctx.series` ended at `now` holding the locks in ctx.held: counts each and
// records one event per lock; clears ctx.held_n.
void on_suspended_holding(SliceContext& ctx, std::int64_t now) noexcept;
// A lock that a task suspended holding (event `event_seq`) was released now.
void on_held_across_released(std::uint64_t event_seq) noexcept;
// The watchdog saw a slice of task series `task_series_id` run `ran_ns` without yielding.
void on_long_slice(std::uint32_t task_series_id, std::int64_t ran_ns) noexcept;

// Held-across-suspend detections of lock series `lock_series_id`, by task name (sorted).
std::vector<std::pair<std::string, std::uint64_t>> held_across_counts(std::uint32_t lock_series_id);

}  // namespace stallscope::detail
