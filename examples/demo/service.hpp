#pragma once
// The demo service: an open-loop load generator feeding request tasks that share a cache, call a
// slow external API, parse its payload and hand a record to one storage writer. Two variants of
// the same service: `slow` (the mistakes) and `fixed` (the repairs).

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "stats.hpp"

namespace demo {

enum class Variant { kSlow, kFixed };
std::string_view to_string(Variant variant);

struct DemoOptions {
  Variant variant = Variant::kSlow;
  int duration_s = 0;          // 0: until SIGINT/SIGTERM
  int threads = 2;             // executor threads
  double rate = 100;           // request arrivals per second (open loop)
  int summary_interval_s = 5;  // 0: no periodic summary
  int max_inflight = 256;      // admission limit; arrivals beyond it are rejected
  int clients = 0;             // >0: closed loop, this many clients back to back (no --rate)
  std::string data_dir;        // the writer's directory (exists)
  int cores = 0;               // CPUs the fixed variant sizes its parse pool for; 0: this machine's
};

/// What one run did, for the final line.
struct RunReport {
  RequestStats::Window requests;   // the whole run, shutdown included
  double seconds = 0;              // from start to the beginning of shutdown
  std::vector<StallScore> stalls;  // ranked over the same span
  bool clean_shutdown = true;      // everything exited within its grace period
};

/// Runs the service on `options.threads` threads until --duration passes or SIGINT/SIGTERM
/// arrives, printing a summary every interval; then shuts down in order (cancel, stop input,
/// join in-flight requests with a grace period, flush the writer within a deadline).
RunReport run_service(const DemoOptions& options, const std::string& payload_template);

}  // namespace demo
