#pragma once
// /debug/pprof/mutex and /debug/pprof/block on the Agent's endpoint (pprof.hpp's profiles).
//
// Query parameters, as Go's net/http/pprof reads them:
//   seconds=N  a delta profile: the events of the next N seconds (1 to kMaxProfileSeconds), plus
//              the waits in progress at the end. The reply is deferred (HttpReply::then): the wait
//              is the server's timer, no thread sleeps.
//   debug=1    text (Go's debug=1 form: delays, counts, addresses, labels, symbolized frames)
//              instead of gzip-compressed protobuf; debug=0 is the default.
// Anything else in the query is ignored, as Go does; a bad seconds or debug value is a 400
// naming it.
#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "http_server.hpp"

namespace stallscope::detail {

// The longest delta profile: the endpoint's write timeout (HttpServerOptions::write_timeout, 60 s),
// the analogue of Go refusing N at or beyond its server's WriteTimeout. Also the server's
// max_defer.
inline constexpr std::chrono::seconds kMaxProfileSeconds{60};

// The paths served.
std::vector<std::string> pprof_paths();
// Whether `path` is one of them.
bool is_pprof_path(std::string_view path) noexcept;
// The profile for `target`: one of pprof_paths() with its query string, if any; a 400 naming a
// bad parameter value, a 500 naming the error if the profile cannot be made. With seconds=N, a
// reply deferred by N seconds. Takes no lock that user code can hold.
HttpReply render_pprof(std::string_view target);

}  // namespace stallscope::detail
