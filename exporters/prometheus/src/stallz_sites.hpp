#pragma once
// /stallz/sites?kind=lock&resource=cache (and /stallz/sites.json): one resource's top holder
// sites (the mutex profile: where it was held while others waited) and top waiter sites (the
// block profile: where they waited), symbolized, each with its count, delay and share of the
// resource's total, and the `go tool pprof` command lines that show the same profiles. Each
// ranked row of /stallz links here.
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pprof_detail.hpp"
#include "stallscope/profile.hpp"
#include "stallscope/registry.hpp"

namespace stallscope::detail {

struct SitesQuery {
  std::optional<std::string> kind;  // to_string(ResourceKind); nullopt: every kind of that name
  std::string resource;
};

// Reads `query` (resource=NAME required, kind=KIND optional; other keys ignored). Throws
// std::invalid_argument naming the bad value.
SitesQuery parse_sites_query(std::string_view query);

// Whether the registry has a resource the query names.
bool sites_resource_known(const Registry& registry, const SitesQuery& q);

// One site: the innermost user frame that a set of stacks share.
struct Site {
  SourceFrame frame;
  std::vector<SourceFrame> stack;  // the heaviest of its stacks, innermost first, cut short
  double count = 0;
  double delay_ns = 0;
  double share = 0;             // of the resource's delay in this profile (of its count at 0 ns)
  std::size_t in_progress = 0;  // waits still in progress among them (block)
};

struct SiteTable {
  std::vector<Site> sites;  // most delay first
  double count = 0;         // the resource's totals in this profile
  double delay_ns = 0;
};

struct SitesReport {
  SitesQuery query;
  std::string rate;  // ProfileRate::to_string() now
  bool rate_off = false;
  std::string origin;  // "http://127.0.0.1:9464", for the pprof command lines; "" if unknown
  SiteTable holders;   // mutex profile
  SiteTable waiters;   // block profile
};

// Stacks beyond the top kStallzSiteRows sites are summed into the totals, not listed.
inline constexpr std::size_t kStallzSiteRows = 20;
inline constexpr std::size_t kStallzSiteStackFrames = 8;

// The report for `q` from profile_samples() now. Takes no lock that user code can hold.
SitesReport make_sites_report(const SitesQuery& q, std::string origin);

// The command lines: go tool pprof -top -tagfocus 'resource=^NAME$' ORIGIN/debug/pprof/PROFILE.
std::string sites_pprof_command(const SitesReport& r, ProfileType type);

std::string stallz_sites_html(const SitesReport& r);
// {"version", "kind" (null: every kind), "resource", "profile_rate", "pprof": {"mutex", "block"}
//  (the command lines), "holders" and "waiters": {"count", "delay_seconds", "empty_reason" (null
//  when there are sites), "sites": [{"function", "file", "line", "count", "delay_seconds",
//  "share", "in_progress", "stack": [{"function", "file", "line"}]}]}}
std::string stallz_sites_json(const SitesReport& r);

}  // namespace stallscope::detail
