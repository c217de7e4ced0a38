#pragma once
/// The contention profiles (stallscope/profile.hpp) in pprof's format, for `go tool pprof`.

#include <chrono>
#include <string>

#include "stallscope/profile.hpp"

namespace stallscope {

/// The profile of `type` as pprof writes it: a gzip-compressed profile.proto with sample types
/// contentions/count and delay/nanoseconds (scaled by the sampling rate, like Go's), the labels
/// kind, resource, op and (inside a task) task, each stack symbolized in this process (function,
/// file, line: the profile reads without the binary) and starting at the caller of stallscope's
/// frames. The same bytes the Agent serves at /debug/pprof/mutex and /debug/pprof/block: an
/// application with an Exposer of its own serves them from any handler it has.
///
/// With `delta` > 0 (Go's `?seconds=N`): the events of the next `delta` only, taken by sleeping
/// that long on the calling thread. Waits still in progress are in the block profile either way.
/// Thread-safe; takes no lock that user code can hold. Throws std::bad_alloc when out of memory.
std::string pprof_profile(ProfileType type, std::chrono::seconds delta = std::chrono::seconds(0));

}  // namespace stallscope
