#pragma once
/// The live map of the service: its task groups, channels, semaphores, blocking pools and locks,
/// and which task names (or threads) use each. The Agent serves it as /stallz/map (HTML) and
/// /stallz/map.json; an application with its own HTTP server serves these two strings.
///
/// Thread-safe. Takes only stallscope's internal mutexes (never one user code can hold), so it
/// answers while the application is deadlocked. Cost: one Registry::collect() (for the depths)
/// plus a walk over the resources and groups.
///
/// What the user lists can miss is in stallscope/detail/service_map.hpp and the README ("The
/// live map"). stallscope::compare_maps (stallscope/map_diff.hpp, in stallscope::check) compares
/// two maps for review.

#include <string>

namespace stallscope {

/// The map as one JSON object:
///
///   {"schema": "stallscope-map/1",
///    "groups": [{"name": "requests", "objects": 2, "parents": ["scope-1"],
///                "state": "open", "cancelled": 0, "closed": 0, "shutdown_order": [],
///                "tasks": [{"name": "request", "live": 3, "spawned": 120}], "more_tasks": 0}],
///    "channels": [{"name": "records", "objects": 1, "capacity": [256], "unbounded": false,
///                  "policy": ["wait"], "control_capacity": [16], "depth": 3,
///                  "senders": {"tasks": ["request"], "threads": [], "more": 0},
///                  "receivers": {"tasks": ["writer"], "threads": [], "more": 0}}],
///    "semaphores": [{"name", "objects", "permits": [4], "users": {...}}],
///    "pools": [{"name", "objects", "threads": [2], "max_queue": [0], "unbounded": true,
///               "queued": 0, "users": {...}}],
///    "locks": [{"kind": "lock", "name": "cache", "users": {...}}]}
///
/// Lists of values ("capacity", "permits") hold the distinct values of the name's objects.
/// "parents": the scope each group descends from, "group:NAME" when it is another group's,
/// else "scope-N" (numbered in the order of first appearance). "more": distinct users beyond the
/// named ones. Every string is escaped, `<`, `>`, `&` and `'` included. Sorted by name.
std::string service_map_json();

/// The map as one self-contained HTML page: a graph (groups, their tasks, the resources they
/// use) drawn as SVG on the server, then the same data in tables. No script, no external
/// resources; every string is HTML-escaped.
std::string service_map_html();

}  // namespace stallscope
