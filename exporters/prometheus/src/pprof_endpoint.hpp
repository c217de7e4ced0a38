#pragma once
// /debug/pprof/mutex and /debug/pprof/block on the Agent's endpoint (pprof.hpp's profiles).
#include <string>
#include <string_view>
#include <vector>

#include "http_server.hpp"

namespace stallscope::detail {

// The paths served.
std::vector<std::string> pprof_paths();
// Whether `path` is one of them.
bool is_pprof_path(std::string_view path) noexcept;
// The profile for one of pprof_paths(); a 500 naming the error if it cannot be made. Takes no
// lock that user code can hold.
HttpReply render_pprof(std::string_view path);

}  // namespace stallscope::detail
