#pragma once
/// /stallz/tasks: the task dump (task_dump.hpp) as a page and as JSON, with no HTTP in it.
///
/// The Agent serves `GET /stallz/tasks` (one self-contained HTML page that refreshes itself
/// every 2 s, the first 200 tasks) and `GET /stallz/tasks.json` (every task). Both take the
/// query parameters `name` (an exact task name), `state` (running, queued, waiting, suspended),
/// `cancelled` (true or false) and `limit` (at most that many tasks, the longest in their state);
/// anything else is answered with 400 naming the bad value.
/// An application with its own server renders the same with these functions:
///
///   const stallscope::TaskFilter f = stallscope::parse_task_filter(query);  // may throw
///   body = stallscope::stallz_tasks_json(stallscope::dump_tasks(f), f);

#include <cstddef>
#include <string>
#include <string_view>

#include "stallscope/task_dump.hpp"

namespace stallscope {

/// Tasks the HTML page lists (the JSON carries every one).
inline constexpr std::size_t kStallzTaskRows = 200;

/// The filter a query string asks for: `name=parse&state=waiting&cancelled=true&limit=50` (each
/// optional, percent-encoding and `+` decoded). Throws std::invalid_argument naming the bad
/// parameter or value: an unknown parameter, a state that is none of the four, a cancelled
/// value other than true or false, a name that is not a valid resource name, a limit that is
/// not a whole number from 1.
TaskFilter parse_task_filter(std::string_view query);

/// The dump as one JSON object:
///
///   {"version": "0.1.0", "unix_time": 1764134137.5, "dump_seconds": 0.0011,
///    "max_lock_hold_seconds": 0.000002, "live": 3, "matched": 3, "asio_tracking": false,
///    "by_state": {"running": 0, "queued": 1, "waiting": 1, "suspended": 1},
///    "cancel_requested": 1,
///    "filter": {"name": null, "state": null, "cancelled": null, "limit": null},
///    "tasks": [{"id": 17, "name": "worker", "group": {"id": 2, "name": "workers"},
///               "token_path": "server/workers", "age_seconds": 12.5, "state": "waiting",
///               "state_seconds": 12.4,
///               "waiting_on": {"kind": "async_lock", "resource": "ledger", "op": "exclusive",
///                              "blocks_thread": false},
///               "asio_op": null, "cancel_requested": true, "cancelled_seconds_ago": 3.1}]}
///
/// `group`, `token_path` and `waiting_on` are null when there is none; `asio_op` names the Asio
/// operation a suspended task awaits ("socket async_receive") when `asio_tracking` is true
/// (STALLSCOPE_ASIO_TRACKING=ON), null otherwise; tasks come longest in their state first;
/// `matched` counts the tasks the filter matched before its limit, and `max_lock_hold_seconds`
/// is the longest the dump held one registry shard's lock. Every string is escaped, `<`, `>`,
/// `&` and `'` included.
std::string stallz_tasks_json(const TaskDump& dump, const TaskFilter& filter);

/// The dump as one self-contained HTML page (inline CSS and script, no external resources,
/// every string escaped): counts per state that link to the filtered page, then the first
/// kStallzTaskRows tasks. Task names link to the page filtered by that name.
std::string stallz_tasks_html(const TaskDump& dump, const TaskFilter& filter);

}  // namespace stallscope
