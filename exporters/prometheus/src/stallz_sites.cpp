// /stallz/sites: one resource's holder and waiter sites from the contention profiles
// (stallz_sites.hpp).
#include "stallz_sites.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <iterator>
#include <map>
#include <stdexcept>
#include <tuple>
#include <utility>

#include <fmt/format.h>

#include "json_string.hpp"
#include "query_string.hpp"
#include "stallscope/config.hpp"
#include "stallscope/detail/markup_escape.hpp"
#include "stallscope/detail/series.hpp"
#include "stallz_style.hpp"

namespace stallscope::detail {

namespace {

constexpr std::array<ResourceKind, kResourceKinds> kKinds = {
    ResourceKind::kLock,      ResourceKind::kRwLock,  ResourceKind::kAsyncLock,
    ResourceKind::kSemaphore, ResourceKind::kChannel, ResourceKind::kExecutor,
    ResourceKind::kPool,      ResourceKind::kTask,    ResourceKind::kRetry};

// The kinds whose releases are charged in the mutex profile (profile.hpp).
bool has_holders(std::string_view kind) {
  return kind == "lock" || kind == "rwlock" || kind == "async_lock" || kind == "semaphore";
}

bool matches(const SitesQuery& q, std::string_view kind, std::string_view resource) {
  return resource == q.resource && (!q.kind || *q.kind == kind);
}

SiteTable table_of(const SitesQuery& q, ProfileType type) {
  // Sites by their innermost user frame; each keeps its heaviest stack.
  using Key = std::tuple<std::string, std::string, std::int64_t>;
  struct Acc {
    Site site;
    double heaviest = -1;
  };
  std::map<Key, Acc> by_site;
  SiteTable t;
  for (const ProfileSample& s : profile_samples(type)) {
    if (!matches(q, s.kind, s.resource)) continue;
    t.count += s.count;
    t.delay_ns += s.delay_ns;
    std::vector<SourceFrame> frames = user_frames(s.pcs);
    SourceFrame top =
        frames.empty()
            ? SourceFrame{s.in_progress ? "(waiting now; stack not read)" : "(no stack)", {}, 0}
            : frames.front();
    Acc& a = by_site[Key{top.function, top.file, top.line}];
    a.site.frame = std::move(top);
    a.site.count += s.count;
    a.site.delay_ns += s.delay_ns;
    if (s.in_progress) ++a.site.in_progress;
    if (s.delay_ns > a.heaviest) {
      a.heaviest = s.delay_ns;
      if (frames.size() > kStallzSiteStackFrames) frames.resize(kStallzSiteStackFrames);
      a.site.stack = std::move(frames);
    }
  }
  for (auto& [key, a] : by_site) {
    Site& s = a.site;
    s.share = t.delay_ns > 0 ? s.delay_ns / t.delay_ns : t.count > 0 ? s.count / t.count : 0;
    t.sites.push_back(std::move(s));
  }
  std::stable_sort(t.sites.begin(), t.sites.end(), [](const Site& a, const Site& b) {
    return std::tie(a.delay_ns, a.count) > std::tie(b.delay_ns, b.count);
  });
  if (t.sites.size() > kStallzSiteRows) t.sites.resize(kStallzSiteRows);
  return t;
}

std::string kind_text(const SitesReport& r) {
  return r.query.kind ? *r.query.kind : std::string("resource");
}

// Why a table is empty; "" when it is not.
std::string empty_reason(const SitesReport& r, const SiteTable& t, ProfileType type) {
  if (!t.sites.empty()) return {};
  if (r.rate_off) {
    return "No samples: profiling is off (STALLSCOPE_PROFILE_RATE=off). Set a rate "
           "(stallscope::set_profile_rate, Config::profile_rate) to sample contended waits.";
  }
  if (type == ProfileType::kMutex && r.query.kind && !has_holders(*r.query.kind)) {
    return fmt::format(
        "A {} has no holders: the mutex profile charges the releases of locks, "
        "rwlocks, async locks and semaphores.",
        *r.query.kind);
  }
  return fmt::format(
      "No samples yet: no contended {} on {} {} has been sampled (sampling rate {}). Waits "
      "that found it free are never sampled; a wait shorter than the rate's delay is drawn "
      "with probability delay/rate.",
      type == ProfileType::kMutex ? "release" : "wait", kind_text(r), r.query.resource, r.rate);
}

std::string location(const SourceFrame& f) {
  if (f.file.empty()) return {};
  return f.line > 0 ? fmt::format("{}:{}", f.file, f.line) : f.file;
}

std::string fmt_delay(double ns) {
  const double s = ns / 1e9;
  if (s == 0) return "0";
  if (s < 1e-3) return fmt::format("{:.0f} \u00b5s", s * 1e6);
  if (s < 1) return fmt::format("{:.1f} ms", s * 1e3);
  return fmt::format("{:.2f} s", s);
}

using Html = MarkupWriter;

void site_table(Html& h, const SitesReport& r, const SiteTable& t, ProfileType type) {
  const bool block = type == ProfileType::kBlock;
  h.raw("<section><h2>")
      .text(block ? "Waiter sites (block profile)" : "Holder sites (mutex profile)")
      .raw("</h2><p class=\"note\">")
      .text(block ? "Where the waiters waited, waits still in progress included (their age so "
                    "far)."
                  : "Where it was held while others waited: each release is charged with the "
                    "waiting it caused (Go's semantics: blame the holder).")
      .text(fmt::format(" Total: {:.0f} contentions, {}.", t.count, fmt_delay(t.delay_ns)))
      .raw("</p><pre><code>")
      .text(sites_pprof_command(r, type))
      .raw("</code></pre>");
  h.raw(
      "<table><thead><tr><th class=\"n\">#</th><th>site</th><th>file:line</th><th>stack</th>"
      "<th class=\"n\">contentions</th><th class=\"n\">delay</th><th class=\"n\">share</th>");
  if (block) h.raw("<th class=\"n\">waiting now</th>");
  h.raw("</tr></thead><tbody id=\"").raw(block ? "waiters" : "holders").raw("\">");
  for (std::size_t i = 0; i < t.sites.size(); ++i) {
    const Site& s = t.sites[i];
    h.raw(fmt::format("<tr data-rank=\"{}\"><td class=\"n\">{}</td><td class=\"name\">", i + 1,
                      i + 1))
        .text(s.frame.function)
        .raw("</td><td class=\"name\">")
        .text(location(s.frame))
        .raw("</td><td class=\"stack\"><details><summary>")
        .text(fmt::format("{} frames", s.stack.size()))
        .raw("</summary><ol>");
    for (const SourceFrame& f : s.stack) {
      h.raw("<li>").text(f.function);
      if (!f.file.empty()) h.raw(" <span>").text(location(f)).raw("</span>");
      h.raw("</li>");
    }
    h.raw("</ol></details></td>")
        .raw(fmt::format("<td class=\"n\">{:.0f}</td><td class=\"n\">", s.count))
        .text(fmt_delay(s.delay_ns))
        .raw(fmt::format("</td><td class=\"n\">{:.1f}%</td>", s.share * 100));
    if (block) h.raw(fmt::format("<td class=\"n\">{}</td>", s.in_progress));
    h.raw("</tr>");
  }
  const std::string why = empty_reason(r, t, type);
  if (!why.empty()) {
    h.raw(fmt::format("<tr class=\"empty\"><td colspan=\"{}\">", block ? 8 : 7))
        .text(why)
        .raw("</td></tr>");
  }
  h.raw("</tbody></table></section>");
}

void json_frame(std::string& out, const SourceFrame& f) {
  out += "{\"function\": ";
  json_string(out, f.function);
  out += ", \"file\": ";
  json_string(out, f.file);
  fmt::format_to(std::back_inserter(out), ", \"line\": {}}}", f.line);
}

void json_table(std::string& out, const SitesReport& r, const SiteTable& t, ProfileType type) {
  fmt::format_to(std::back_inserter(out), "{{\"count\": {:.0f}, \"delay_seconds\": {:.9g}, ",
                 t.count, t.delay_ns / 1e9);
  out += "\"empty_reason\": ";
  const std::string why = empty_reason(r, t, type);
  if (why.empty()) {
    out += "null";
  } else {
    json_string(out, why);
  }
  out += ", \"sites\": [";
  for (std::size_t i = 0; i < t.sites.size(); ++i) {
    const Site& s = t.sites[i];
    if (i > 0) out += ", ";
    out += "{\"function\": ";
    json_string(out, s.frame.function);
    out += ", \"file\": ";
    json_string(out, s.frame.file);
    fmt::format_to(std::back_inserter(out),
                   ", \"line\": {}, \"count\": {:.0f}, \"delay_seconds\": {:.9g}, \"share\": "
                   "{:.6g}, \"in_progress\": {}, \"stack\": [",
                   s.frame.line, s.count, s.delay_ns / 1e9, s.share, s.in_progress);
    for (std::size_t j = 0; j < s.stack.size(); ++j) {
      if (j > 0) out += ", ";
      json_frame(out, s.stack[j]);
    }
    out += "]}";
  }
  out += "]}";
}

constexpr std::string_view kSitesStyle =
    "td.stack{white-space:normal}td.stack ol{margin:4px 0 0;padding-left:18px;"
    "font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}"
    "td.stack li span{color:var(--muted)}pre{overflow-x:auto;margin:4px 0 10px}"
    "tbody tr[data-rank=\"1\"] td.name{font-weight:700}";

}  // namespace

SitesQuery parse_sites_query(std::string_view query) {
  SitesQuery q;
  bool has_resource = false;
  for (auto& field : query_fields(query)) {
    const std::string& key = field.first;
    std::string& value = field.second;  // not a binding: clang 14 cannot capture those
    if (key == "resource") {
      try {
        validate_resource_name(value);
      } catch (const std::invalid_argument&) {
        throw std::invalid_argument(fmt::format(
            "stallscope: /stallz/sites: resource = {}: not a resource name (1-128 letters, "
            "digits and _ - . : / @)",
            quoted_value(value)));
      }
      q.resource = std::move(value);
      has_resource = true;
    } else if (key == "kind") {
      const bool known = std::any_of(kKinds.begin(), kKinds.end(),
                                     [&](ResourceKind k) { return to_string(k) == value; });
      if (!known) {
        std::string kinds;
        for (const ResourceKind k : kKinds)
          kinds += (kinds.empty() ? "" : ", ") + std::string(to_string(k));
        throw std::invalid_argument(
            fmt::format("stallscope: /stallz/sites: kind = {}: not a resource kind ({})",
                        quoted_value(value), kinds));
      }
      q.kind = std::move(value);
    }
  }
  if (!has_resource) {
    throw std::invalid_argument(
        "stallscope: /stallz/sites: no resource: ask for /stallz/sites?kind=KIND&resource=NAME");
  }
  return q;
}

bool sites_resource_known(const Registry& registry, const SitesQuery& q) {
  bool found = false;
  for (const ResourceKind k : kKinds) {
    if (q.kind && *q.kind != to_string(k)) continue;
    registry.for_each_series(k, [&](const Series& s) { found = found || s.name() == q.resource; });
    if (found) return true;
  }
  return false;
}

SitesReport make_sites_report(const SitesQuery& q, std::string origin) {
  SitesReport r;
  r.query = q;
  const ProfileRate rate = profile_rate();
  r.rate = rate.to_string();
  r.rate_off = rate.mode == ProfileRate::Mode::kOff;
  r.origin = std::move(origin);
  r.holders = table_of(q, ProfileType::kMutex);
  r.waiters = table_of(q, ProfileType::kBlock);
  return r;
}

std::string sites_pprof_command(const SitesReport& r, ProfileType type) {
  // pprof reads the tag's value as a regular expression: anchored, with the dots escaped (the
  // other characters a name may hold are not special).
  std::string re = "^";
  for (const char c : r.query.resource) {
    if (c == '.') re += '\\';
    re += c;
  }
  re += '$';
  return fmt::format("go tool pprof -top -tagfocus 'resource={}' {}/debug/pprof/{}", re,
                     r.origin.empty() ? "http://HOST:PORT" : r.origin,
                     type == ProfileType::kMutex ? "mutex" : "block");
}

std::string stallz_sites_html(const SitesReport& r) {
  Html h;
  h.out().reserve(16384);
  h.raw(
      "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>");
  h.text(r.query.resource).raw(" \u00b7 /stallz/sites \u00b7 stallscope</title><style>\n");
  h.raw(kStallzStyle).raw(kSitesStyle);
  h.raw(
       "</style></head><body><header><h1>stallscope <small>/stallz/sites: who holds and who "
       "waits on ")
      .text(kind_text(r))
      .raw(" <code>")
      .text(r.query.resource)
      .raw("</code></small></h1><p class=\"meta\"><a href=\"sites.json?");
  std::string q;
  if (r.query.kind) q = "kind=" + query_encode(*r.query.kind) + "&";
  q += "resource=" + query_encode(r.query.resource);
  h.text(q).raw("\">sites.json</a> \u00b7 <a href=\"../stallz\">/stallz</a></p></header><main>");
  h.raw("<p class=\"note\">From the contention profiles since the process started, sampling rate ")
      .raw("<code>")
      .text(r.rate)
      .raw(
          "</code> (counts and delays scaled by it). Sites are the innermost frame of the "
          "application's code; open a stack for the frames around it. For a window, add "
          "<code>?seconds=N</code> to the profile's URL.</p>");
  site_table(h, r, r.holders, ProfileType::kMutex);
  site_table(h, r, r.waiters, ProfileType::kBlock);
  h.raw("</main><footer>stallscope " STALLSCOPE_VERSION_STRING "</footer></body></html>\n");
  return std::move(h.out());
}

std::string stallz_sites_json(const SitesReport& r) {
  std::string out = "{\"version\": \"" STALLSCOPE_VERSION_STRING "\", \"kind\": ";
  if (r.query.kind) {
    json_string(out, *r.query.kind);
  } else {
    out += "null";
  }
  out += ", \"resource\": ";
  json_string(out, r.query.resource);
  out += ", \"profile_rate\": ";
  json_string(out, r.rate);
  out += ", \"pprof\": {\"mutex\": ";
  json_string(out, sites_pprof_command(r, ProfileType::kMutex));
  out += ", \"block\": ";
  json_string(out, sites_pprof_command(r, ProfileType::kBlock));
  out += "}, \"holders\": ";
  json_table(out, r, r.holders, ProfileType::kMutex);
  out += ", \"waiters\": ";
  json_table(out, r, r.waiters, ProfileType::kBlock);
  out += "}\n";
  return out;
}

}  // namespace stallscope::detail
