#pragma once
// The pieces of pprof.cpp that the endpoint uses beyond pprof_profile(): symbolized stacks (for
// /stallz/sites), delta profiles taken without sleeping (for ?seconds=N, whose wait is a timer of
// the HTTP server's I/O thread) and Go's debug=1 text form.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "stallscope/profile.hpp"

namespace stallscope::detail {

// One frame of a symbolized stack.
struct SourceFrame {
  std::string function;
  std::string file;
  std::int64_t line = 0;
  // In the C library's, the C++ runtime's or a sanitizer runtime's shared object: a frame that
  // may sit between stallscope's own ones (a lock's futex wait, an interceptor).
  bool runtime = false;
};

// The index of the first of `frames` (innermost first) after stallscope's own, the runtime and
// system frames among them and the standard library's right after them; 0 when nothing else is
// left. Each stack is cut there.
std::size_t first_user_frame(const std::vector<SourceFrame>& frames);

// The stack `pcs` (innermost first) symbolized, inlined frames expanded, starting at the user's
// frame (stallscope's own frames trimmed, as in the profiles). Thread-safe.
std::vector<SourceFrame> user_frames(const std::vector<std::uintptr_t>& pcs);

// The cumulative totals of a profile at one instant, the start of a delta profile.
struct ProfileBaseline {
  using Key =
      std::tuple<std::vector<std::uintptr_t>, std::string, std::string, std::string, std::string>;
  ProfileType type = ProfileType::kMutex;
  std::chrono::steady_clock::time_point taken{};
  std::map<Key, std::pair<double, double>> totals;  // (count, delay_ns) by stack and labels
};
ProfileBaseline profile_baseline(ProfileType type);

// The samples since `base`: each stack whose count grew, by how much it grew, then (block) the
// waits in progress now, as in the cumulative profile.
std::vector<ProfileSample> samples_since(const ProfileBaseline& base);

// `samples` as pprof bytes (gzip-compressed profile.proto); `duration`: the span they cover (0:
// since the process started).
std::string encode_pprof(const std::vector<ProfileSample>& samples,
                         std::chrono::nanoseconds duration);

// `samples` as text, in the form of Go's /debug/pprof/{mutex,block}?debug=1: a header, then per
// sample "<delay_ns> <count> @ <pcs>", its labels, and a "#" line per symbolized frame.
std::string pprof_text(const std::vector<ProfileSample>& samples, ProfileType type);

}  // namespace stallscope::detail
