#pragma once
/// Comparing two live maps (stallscope/service_map.hpp's /stallz/map.json), so that a map saved
/// from a test run can be checked in and a later run compared against it in review:
///
///   for (const std::string& d : stallscope::compare_maps(expected, actual)) std::puts(d.c_str());
///
/// `stallscope-check map-diff EXPECTED ACTUAL` is the same as a command.

#include <string>
#include <string_view>
#include <vector>

namespace stallscope {

/// The structural differences between two maps, one readable line each, in map order (groups,
/// channels, semaphores, pools, locks; by name), e.g.
///   "channel `jobs`: capacity changed from 8 to 16"
///   "channel `events` added: capacity unbounded, policy wait"
///   "lock `ledger`: taken by a new task name `flusher`"
/// Empty when they match. Compared: which groups and resources exist, a group's parent scopes
/// and task names, a channel's capacity, policy, control capacity and boundedness, a semaphore's
/// permits, a pool's threads and queue limit, a lock's kind, and every named user (task names
/// and threads, per role). Not compared (they change from run to run): objects, depth, queued,
/// state, counts, shutdown order, live and spawned tasks, "more" counts.
/// Throws std::invalid_argument naming the input ("expected map" or "actual map") that is not
/// JSON or not a map (its "schema" is not "stallscope-map/1", or a section is missing or of the
/// wrong type).
std::vector<std::string> compare_maps(std::string_view expected_json, std::string_view actual_json);

}  // namespace stallscope
