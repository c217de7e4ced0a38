// /stallz/map and /stallz/map.json: the live map of the service (service_map.hpp), drawn from
// the agent's map snapshot (detail/service_map.hpp) and, for the depths, one collect().
#include <algorithm>
#include <cstdint>
#include <iterator>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "json_string.hpp"
#include "stallscope/detail/markup_escape.hpp"
#include "stallscope/detail/service_map.hpp"
#include "stallscope/registry.hpp"
#include "stallscope/service_map.hpp"
#include "stallz_style.hpp"

namespace stallscope {

namespace {

using detail::MapGroup;
using detail::MapResource;
using detail::MapUsers;
using detail::UserRole;

// The sections of the map, in page order, and which resource kinds each holds.
enum class Section { kChannels, kSemaphores, kPools, kLocks, kNone };
constexpr std::string_view kSectionNames[] = {"channels", "semaphores", "pools", "locks"};

Section section_of(ResourceKind kind) {
  switch (kind) {
    case ResourceKind::kChannel:
      return Section::kChannels;
    case ResourceKind::kSemaphore:
      return Section::kSemaphores;
    case ResourceKind::kPool:
      return Section::kPools;
    case ResourceKind::kLock:
    case ResourceKind::kRwLock:
    case ResourceKind::kAsyncLock:
      return Section::kLocks;
    default:
      return Section::kNone;
  }
}

struct Group {
  const MapGroup* g;
  std::vector<std::string> parents;  // labels, sorted, distinct
  std::string state;
};

struct Map {
  detail::MapSnapshot snap;
  std::vector<Group> groups;
  std::vector<const MapResource*> sections[4];
  std::map<std::string, double> channel_depth;  // by name
  std::map<std::string, double> pool_queued;
};

std::string group_state(const MapGroup& g) {
  if (!g.shutdown_seqs.empty()) return "shutting_down";
  if (g.cancelled == g.objects) return "cancelled";
  if (g.closed == g.objects) return "closed";
  return "open";
}

Map build() {
  Map m;
  m.snap = detail::take_map_snapshot();
  // Scope labels: a group's own scope is "group:NAME"; others are numbered in group order.
  std::map<const void*, std::string> labels;
  for (const MapGroup& g : m.snap.groups) {
    for (const void* t : g.tokens) labels.emplace(t, "group:" + g.name);
  }
  std::size_t scopes = 0;
  for (const MapGroup& g : m.snap.groups) {
    Group out{&g, {}, group_state(g)};
    for (const void* p : g.parent_tokens) {
      auto it = labels.find(p);
      if (it == labels.end()) it = labels.emplace(p, fmt::format("scope-{}", ++scopes)).first;
      out.parents.push_back(it->second);
    }
    std::sort(out.parents.begin(), out.parents.end());
    out.parents.erase(std::unique(out.parents.begin(), out.parents.end()), out.parents.end());
    m.groups.push_back(std::move(out));
  }
  for (const MapResource& r : m.snap.resources) {
    const Section s = section_of(r.kind);
    if (s != Section::kNone) m.sections[static_cast<int>(s)].push_back(&r);
  }
  for (const FamilySnapshot& f : Registry::global().collect()) {
    std::map<std::string, double>* into = f.name == "stallscope_channel_depth" ? &m.channel_depth
                                          : f.name == "stallscope_pool_queue_depth" ? &m.pool_queued
                                                                                    : nullptr;
    if (into == nullptr) continue;
    for (const SampleSnapshot& s : f.samples) {
      for (const auto& [k, v] : s.labels) {
        if (k == "resource") (*into)[v] += s.value;
      }
    }
  }
  return m;
}

const std::vector<std::uint64_t>& numbers(const MapResource& r, const std::string& key) {
  static const std::vector<std::uint64_t> kNone;
  auto it = r.numbers.find(key);
  return it != r.numbers.end() ? it->second : kNone;
}
const std::vector<std::string>& texts(const MapResource& r, const std::string& key) {
  static const std::vector<std::string> kNone;
  auto it = r.texts.find(key);
  return it != r.texts.end() ? it->second : kNone;
}
const MapUsers& users(const MapResource& r, UserRole role) {
  static const MapUsers kNone;
  auto it = r.users.find(role);
  return it != r.users.end() ? it->second : kNone;
}
// A channel is unbounded when an object's capacity is the largest size (nothing can fill it);
// a pool when an object has no queue limit (0).
bool unbounded(const MapResource& r) {
  if (r.kind == ResourceKind::kChannel) {
    const auto& c = numbers(r, "capacity");
    return !c.empty() && c.back() == std::numeric_limits<std::size_t>::max();
  }
  const auto& q = numbers(r, "max_queue");
  return !q.empty() && q.front() == 0;
}
double lookup(const std::map<std::string, double>& m, const std::string& name) {
  auto it = m.find(name);
  return it != m.end() ? it->second : 0;
}

// ---- JSON ----

class Json {
 public:
  explicit Json(std::string& out) : out_(out) {}
  Json& key(std::string_view k) {
    comma();
    detail::json_string(out_, k);
    out_ += ':';
    first_ = true;  // the value that follows needs no comma
    return *this;
  }
  Json& str(std::string_view s) {
    comma();
    detail::json_string(out_, s);
    return *this;
  }
  Json& num(double v) {
    comma();
    fmt::format_to(std::back_inserter(out_), "{}", v);
    return *this;
  }
  Json& num(std::uint64_t v) {
    comma();
    fmt::format_to(std::back_inserter(out_), "{}", v);
    return *this;
  }
  Json& boolean(bool v) {
    comma();
    out_ += v ? "true" : "false";
    return *this;
  }
  Json& open(char c) {
    comma();
    out_ += c;
    first_ = true;
    return *this;
  }
  Json& close(char c) {
    out_ += c;
    first_ = false;
    return *this;
  }
  template <class T>
  Json& list(const std::vector<T>& values) {
    open('[');
    for (const T& v : values) {
      if constexpr (std::is_same_v<T, std::string>) {
        str(v);
      } else {
        num(static_cast<std::uint64_t>(v));
      }
    }
    return close(']');
  }

 private:
  void comma() {
    if (!first_) out_ += ',';
    first_ = false;
  }
  std::string& out_;
  bool first_ = true;
};

void json_users(Json& j, std::string_view key, const MapUsers& u) {
  j.key(key).open('{');
  j.key("tasks").list(u.tasks).key("threads").list(u.threads).key("more").num(u.more);
  j.close('}');
}

void json_objects(Json& j, const MapResource& r) {
  if (r.objects >= 0) j.key("objects").num(static_cast<std::uint64_t>(r.objects));
}

std::string to_json(const Map& m) {
  std::string out;
  Json j(out);
  j.open('{').key("schema").str("stallscope-map/1");
  j.key("groups").open('[');
  for (const Group& g : m.groups) {
    j.open('{').key("name").str(g.g->name).key("objects").num(std::uint64_t{g.g->objects});
    j.key("parents").list(g.parents).key("state").str(g.state);
    j.key("cancelled")
        .num(std::uint64_t{g.g->cancelled})
        .key("closed")
        .num(std::uint64_t{g.g->closed});
    j.key("shutdown_order").list(g.g->shutdown_seqs);
    j.key("tasks").open('[');
    for (const auto& t : g.g->tasks) {
      j.open('{').key("name").str(t.name).key("live").num(t.live).key("spawned").num(t.spawned);
      j.close('}');
    }
    j.close(']').key("more_tasks").num(g.g->more_tasks).close('}');
  }
  j.close(']');
  for (int s = 0; s < 4; ++s) {
    j.key(kSectionNames[s]).open('[');
    for (const MapResource* r : m.sections[s]) {
      j.open('{');
      if (static_cast<Section>(s) == Section::kLocks) j.key("kind").str(to_string(r->kind));
      j.key("name").str(r->name);
      json_objects(j, *r);
      switch (static_cast<Section>(s)) {
        case Section::kChannels:
          j.key("capacity").list(numbers(*r, "capacity")).key("unbounded").boolean(unbounded(*r));
          j.key("policy").list(texts(*r, "policy"));
          j.key("control_capacity").list(numbers(*r, "control_capacity"));
          j.key("depth").num(lookup(m.channel_depth, r->name));
          json_users(j, "senders", users(*r, UserRole::kSend));
          json_users(j, "receivers", users(*r, UserRole::kReceive));
          break;
        case Section::kSemaphores:
          j.key("permits").list(numbers(*r, "permits"));
          json_users(j, "users", users(*r, UserRole::kUse));
          break;
        case Section::kPools:
          j.key("threads").list(numbers(*r, "threads"));
          j.key("max_queue").list(numbers(*r, "max_queue")).key("unbounded").boolean(unbounded(*r));
          j.key("queued").num(lookup(m.pool_queued, r->name));
          json_users(j, "users", users(*r, UserRole::kUse));
          break;
        default:
          json_users(j, "users", users(*r, UserRole::kUse));
      }
      j.close('}');
    }
    j.close(']');
  }
  j.close('}');
  out += '\n';
  return out;
}

// ---- HTML ----

std::string esc(std::string_view s) {
  std::string out;
  detail::markup_escape(out, s);
  return out;
}

std::string joined(const std::vector<std::uint64_t>& v) {
  std::string out;
  for (const std::uint64_t x : v) {
    if (!out.empty()) out += ", ";
    out += x == std::numeric_limits<std::uint64_t>::max() ? "unbounded" : std::to_string(x);
  }
  return out.empty() ? "?" : out;
}
std::string joined(const std::vector<std::string>& v) {
  std::string out;
  for (const std::string& x : v) {
    if (!out.empty()) out += ", ";
    out += x;
  }
  return out;
}

// "a, b, thread +2 more" (unescaped).
std::string users_text(const MapUsers& u) {
  std::vector<std::string> all = u.tasks;
  all.insert(all.end(), u.threads.begin(), u.threads.end());
  std::string out = all.empty() ? std::string("none seen") : joined(all);
  if (u.more > 0) out += fmt::format(" +{} more", u.more);
  return out;
}

// One line describing a resource's shape (unescaped).
std::string facts_text(const Map& m, const MapResource& r) {
  switch (section_of(r.kind)) {
    case Section::kChannels:
      return fmt::format("capacity {} ({}), control {}, depth {}", joined(numbers(r, "capacity")),
                         joined(texts(r, "policy")), joined(numbers(r, "control_capacity")),
                         lookup(m.channel_depth, r.name));
    case Section::kSemaphores:
      return fmt::format("permits {}", joined(numbers(r, "permits")));
    case Section::kPools: {
      const auto& q = numbers(r, "max_queue");
      return fmt::format("threads {}, queue limit {}, queued {}", joined(numbers(r, "threads")),
                         unbounded(r) ? std::string("none") : joined(q),
                         lookup(m.pool_queued, r.name));
    }
    default:
      return std::string(to_string(r.kind));
  }
}

// The graph: groups (left), users (middle), resources (right); a line from a group to each of
// its task names and from each user to each resource it uses (arrows show a channel's flow).
std::string svg(const Map& m) {
  constexpr int kW = 1000, kColX[3] = {10, 340, 640}, kColW[3] = {250, 200, 350};
  constexpr int kRow = 24, kTop = 30;
  std::map<std::string, int> user_y;  // user name -> row centre
  std::vector<std::string> user_order;
  auto add_user = [&](const std::string& u) {
    if (user_y.emplace(u, 0).second) user_order.push_back(u);
  };
  for (const Group& g : m.groups) {
    for (const auto& t : g.g->tasks) add_user(t.name);
  }
  std::vector<const MapResource*> resources;
  for (const auto& s : m.sections) resources.insert(resources.end(), s.begin(), s.end());
  for (const MapResource* r : resources) {
    for (const auto& [role, u] : r->users) {
      for (const auto& n : u.tasks) add_user(n);
      for (const auto& n : u.threads) add_user(n);
    }
  }
  std::string body;
  // Groups: a box each, its task names inside.
  int y = kTop;
  std::vector<std::pair<int, std::string>> memberships;  // (y of the task line, task name)
  for (const Group& g : m.groups) {
    const int h = kRow * (1 + static_cast<int>(g.g->tasks.size())) + 8;
    fmt::format_to(
        std::back_inserter(body),
        "<g class=\"group\"><rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"6\"/>"
        "<text x=\"{}\" y=\"{}\" class=\"title\">group {} \u00d7{} \u2013 {}</text>",
        kColX[0], y, kColW[0], h, kColX[0] + 8, y + 17, esc(g.g->name), g.g->objects, esc(g.state));
    int ty = y + kRow;
    for (const auto& t : g.g->tasks) {
      fmt::format_to(std::back_inserter(body), "<text x=\"{}\" y=\"{}\">{} ({} live)</text>",
                     kColX[0] + 16, ty + 17, esc(t.name), t.live);
      memberships.emplace_back(ty + 12, t.name);
      ty += kRow;
    }
    body += "</g>";
    y += h + 10;
  }
  const int groups_h = y;
  y = kTop;
  for (const std::string& u : user_order) {
    user_y[u] = y + 11;
    fmt::format_to(
        std::back_inserter(body),
        "<g class=\"user\"><rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"22\" rx=\"11\"/>"
        "<text x=\"{}\" y=\"{}\">{}</text></g>",
        kColX[1], y, kColW[1], kColX[1] + 10, y + 16, esc(u));
    y += kRow + 6;
  }
  const int users_h = y;
  std::string edges;
  for (const auto& [ty, name] : memberships) {
    fmt::format_to(std::back_inserter(edges),
                   "<line class=\"member\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/>",
                   kColX[0] + kColW[0], ty, kColX[1], user_y[name]);
  }
  y = kTop;
  for (const MapResource* r : resources) {
    const int cy = y + 20;
    fmt::format_to(
        std::back_inserter(body),
        "<g class=\"res {}\"><rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"40\" rx=\"4\"/>"
        "<text x=\"{}\" y=\"{}\" class=\"title\">{} {}</text>"
        "<text x=\"{}\" y=\"{}\">{}</text></g>",
        to_string(r->kind), kColX[2], y, kColW[2], kColX[2] + 8, y + 16, to_string(r->kind),
        esc(r->name), kColX[2] + 8, y + 33, esc(facts_text(m, *r)));
    for (const auto& [role, u] : r->users) {
      // Senders and users point at the resource; receivers are pointed at.
      const char* cls = role == UserRole::kReceive ? "recv"
                        : role == UserRole::kSend  ? "send"
                                                   : "use";
      for (const auto* names : {&u.tasks, &u.threads}) {
        for (const std::string& n : *names) {
          const int uy = user_y[n];
          if (role == UserRole::kReceive) {
            fmt::format_to(std::back_inserter(edges),
                           "<line class=\"{}\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/>", cls,
                           kColX[2], cy, kColX[1] + kColW[1] + 4, uy);
          } else {
            fmt::format_to(std::back_inserter(edges),
                           "<line class=\"{}\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/>", cls,
                           kColX[1] + kColW[1], uy, kColX[2] - 4, cy);
          }
        }
      }
    }
    y += 50;
  }
  const int h = std::max({groups_h, users_h, y, kTop + 40});
  return fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {0} {1}\" width=\"{0}\" "
      "height=\"{1}\" role=\"img\" aria-label=\"service map\"><defs><marker id=\"arrow\" "
      "viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" "
      "orient=\"auto-start-reverse\"><path d=\"M0 0L10 5L0 10z\"/></marker></defs>"
      "<text x=\"{2}\" y=\"18\" class=\"col\">task groups</text>"
      "<text x=\"{3}\" y=\"18\" class=\"col\">task names and threads</text>"
      "<text x=\"{4}\" y=\"18\" class=\"col\">resources</text>{5}{6}</svg>",
      kW, h, kColX[0], kColX[1], kColX[2], edges, body);
}

constexpr std::string_view kMapStyle =
    "svg{max-width:100%;height:auto;font:12px system-ui,sans-serif}"
    "svg text{fill:var(--fg)}svg .col{fill:var(--muted);font-weight:600}"
    "svg .title{font-weight:600}"
    "svg rect{fill:var(--chip);stroke:var(--line)}svg .group rect{fill:none;stroke:var(--muted)}"
    "svg .res.channel rect{stroke:var(--ok)}svg .res.lock rect,svg .res.rwlock rect,"
    "svg .res.async_lock rect{stroke:var(--bar)}"
    "svg line{stroke:var(--muted);stroke-width:1.2;fill:none}"
    "svg line.send,svg line.recv{stroke:var(--ok);marker-end:url(#arrow)}"
    "svg line.member{stroke-dasharray:3 3}svg marker path{fill:var(--muted)}";

std::string to_html(const Map& m) {
  std::string out;
  auto w = [&out]<class... A>(fmt::format_string<A...> f, A&&... args) {
    fmt::format_to(std::back_inserter(out), f, std::forward<A>(args)...);
  };
  w("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>stallscope: service "
    "map</title><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><style>"
    "{}{}</style></head><body><header><h1>Service map <small>stallscope</small></h1>"
    "<nav class=\"meta\"><a href=\"/stallz\">/stallz</a> \u00b7 <a href=\"/stallz/tasks\">tasks"
    "</a> \u00b7 <a href=\"/stallz/map.json\">map.json</a></nav></header><main>",
    detail::kStallzStyle, kMapStyle);
  w("<p class=\"note\">Task groups and their task names; channels, semaphores, pools and locks "
    "with the task names (or threads) that use them. Dashed: a group's tasks; arrows: a "
    "channel's flow. Save <code>/stallz/map.json</code> and compare with "
    "<code>stallscope-check map-diff</code>.</p>");
  out += svg(m);
  w("<h2>Task groups</h2><table><thead><tr><th>group</th><th class=\"n\">objects</th>"
    "<th>parent scope</th><th>state</th><th>shutdown order</th><th>tasks (live / spawned)</th>"
    "</tr></thead><tbody>");
  for (const Group& g : m.groups) {
    std::string tasks;
    for (const auto& t : g.g->tasks) {
      if (!tasks.empty()) tasks += ", ";
      tasks += fmt::format("{} ({} / {})", t.name, t.live, t.spawned);
    }
    if (g.g->more_tasks > 0) tasks += fmt::format(" +{} more spawns", g.g->more_tasks);
    w("<tr><td class=\"name\">{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td>"
      "<td>{}</td></tr>",
      esc(g.g->name), g.g->objects, esc(joined(g.parents)), esc(g.state),
      g.g->shutdown_seqs.empty() ? std::string("\u2013") : joined(g.g->shutdown_seqs), esc(tasks));
  }
  if (m.groups.empty()) out += "<tr class=\"empty\"><td colspan=\"6\">no task groups</td></tr>";
  out += "</tbody></table>";
  w("<h2>Resources</h2><table><thead><tr><th>kind</th><th>resource</th><th>shape</th>"
    "<th>used by</th></tr></thead><tbody>");
  bool any = false;
  for (const auto& s : m.sections) {
    for (const MapResource* r : s) {
      any = true;
      std::string used;
      for (const auto& [role, u] : r->users) {
        if (!used.empty()) used += "; ";
        if (role == UserRole::kSend) used += "send: ";
        if (role == UserRole::kReceive) used += "receive: ";
        used += users_text(u);
      }
      w("<tr><td class=\"kind\"><span>{}</span></td><td class=\"name\">{}</td><td>{}</td>"
        "<td>{}</td></tr>",
        to_string(r->kind), esc(r->name), esc(facts_text(m, *r)), esc(used));
    }
  }
  if (!any) out += "<tr class=\"empty\"><td colspan=\"4\">no resources</td></tr>";
  out += "</tbody></table></main></body></html>\n";
  return out;
}

}  // namespace

std::string service_map_json() { return to_json(build()); }

std::string service_map_html() { return to_html(build()); }

}  // namespace stallscope
