// The wait-for graph and the deadlock detector (detail/waitfor.hpp).
//
// Build: under Registry::live_mutex() (no user code holds it) every thread's wait slot names the
// lock it waits on; the lock's exclusive holder is its owner word, its shared holders the shards'
// shared-hold slots. Then, under the sources' mutex (no user code holds it either), each
// Semaphore, AsyncMutex and Channel core describes its holders and queued waiters under its own
// mutex, for a few microseconds. Nothing here waits for the application.
//
// Analysis: a waiter needs all holders of a lock to go, or any one holder of a semaphore or of a
// channel's other side. Participants that can still move are removed until nothing changes (a
// participant not waiting moves; an unknown holder is assumed to); the cycles among those left
// are the strongly connected components of their wait-for edges.
//
// Reporting: the reads are not one atomic snapshot, so a cycle counts only when two builds in a
// row (200 ms apart) find the same edges: the participants of a real deadlock cannot change what
// they hold or wait for in between. It is forgotten after two builds without it, so a cycle that
// a timed wait breaks and re-forms at once is still one cycle.
#include "stallscope/detail/waitfor.hpp"

#include <algorithm>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "stallscope/clock.hpp"
#include "stallscope/detail/lock_recorder.hpp"
#include "stallscope/detail/task_recorder.hpp"
#include "stallscope/detectors.hpp"
#include "stallscope/log.hpp"
#include "stallscope/registry.hpp"

namespace stallscope::detail {

std::uint32_t current_task_series() noexcept {
  const SliceContext* sc = tls_slice;
  return sc != nullptr && sc->series != nullptr ? sc->series->id() : 0;
}

std::uint32_t WaitforBuilder::node(Participant who, std::uint32_t task_series) {
  auto [it, fresh] = index_.try_emplace(who, static_cast<std::uint32_t>(nodes.size()));
  if (fresh) nodes.push_back(Node{who, task_series, 0, {}, {}});
  Node& n = nodes[it->second];
  if (n.task_series == 0) n.task_series = task_series;
  return it->second;
}

std::uint32_t WaitforBuilder::resource(ResourceKind kind, std::string_view name,
                                       std::string_view side, bool any) {
  resources.push_back(Resource{kind, std::string(name), std::string(side), any, {}});
  return static_cast<std::uint32_t>(resources.size() - 1);
}

void WaitforBuilder::holder(std::uint32_t res, Participant who, std::uint32_t task_series) {
  if (who == kNoParticipant) who = kUnknownHolder;
  const std::uint32_t n = node(who, task_series);
  auto& h = resources[res].holders;
  if (std::find(h.begin(), h.end(), n) != h.end()) return;
  h.push_back(n);
  nodes[n].holds.push_back(res);
}

void WaitforBuilder::waiter(std::uint32_t res, Participant who, std::uint32_t task_series,
                            std::int64_t since_ns, std::string_view op,
                            std::span<const std::uintptr_t> pcs) {
  if (who == kNoParticipant || who == kUnknownHolder) return;  // cannot be part of a cycle
  nodes[node(who, task_series)].waits.push_back(
      Wait{res, since_ns, std::string(op), {pcs.begin(), pcs.end()}});
}

struct WaitforSources {
  std::mutex mu;
  WaitforSource* head = nullptr;
};

namespace {

WaitforSources& sources() {
  static auto* const s = new WaitforSources;  // leaked: cores may die during exit
  return *s;
}

constexpr const char* kLockOps[2] = {"lock", "lock_shared"};

// Every thread's lock wait, with the holders of the lock it waits for.
void describe_lock_waits(WaitforBuilder& g) {
  std::lock_guard lock(Registry::global().live_mutex());
  std::unordered_map<const void*, std::vector<Participant>> shared;
  for_each_shard([&](ThreadShard& s) {
    for (const SharedHoldSlot& slot : s.shared) {
      if (const void* site = slot.site.load(std::memory_order_relaxed)) {
        shared[site].push_back(slot.who.load(std::memory_order_relaxed));
      }
    }
  });
  std::map<std::pair<const void*, std::uint32_t>, std::uint32_t> res_of;
  for_each_shard([&](ThreadShard& s) {
    const std::uint32_t series = s.wait.series.load(std::memory_order_acquire);
    if (series == 0) return;
    const auto* site = static_cast<const LockSite*>(s.wait.object.load(std::memory_order_relaxed));
    const std::uint32_t op = s.wait.op.load(std::memory_order_relaxed) & 1u;
    const std::int64_t since = s.wait.since_ns.load(std::memory_order_relaxed);
    const Participant task = s.wait.task.load(std::memory_order_relaxed);
    if (site == nullptr) return;
    const LockSeries* ls = site->registered();
    if (ls == nullptr || ls->id() != series) return;  // the slot moved on meanwhile
    auto [it, fresh] = res_of.try_emplace({site, op}, 0);
    if (fresh) {
      it->second = g.resource(ls->kind(), ls->name(), "", false);
      if (const Participant x = site->exclusive_holder()) g.holder(it->second, x, 0);
      if (op == 0) {  // an exclusive waiter also waits for every shared holder
        if (auto sh = shared.find(site); sh != shared.end()) {
          for (Participant p : sh->second) g.holder(it->second, p, 0);
        }
        if (site->untracked_shared() != 0) g.holder(it->second, kUnknownHolder, 0);
      }
    }
    const Participant thread = reinterpret_cast<Participant>(&s);
    const Participant who = task != 0 ? task : thread;
    const std::uint32_t slice_series = s.slice.series.load(std::memory_order_relaxed);
    g.waiter(it->second, who, slice_series, since, kLockOps[op]);
  });
}

// Tarjan's strongly connected components over the stuck nodes.
struct Scc {
  const std::vector<std::vector<std::uint32_t>>& edges;
  std::vector<int> index, low;
  std::vector<bool> on;
  std::vector<std::uint32_t> stack;
  std::vector<std::vector<std::uint32_t>> out;
  int next = 0;

  explicit Scc(const std::vector<std::vector<std::uint32_t>>& e)
      : edges(e), index(e.size(), -1), low(e.size(), 0), on(e.size(), false) {}

  void visit(std::uint32_t v) {
    // Iterative: a long chain of waiters must not overflow the stack.
    std::vector<std::pair<std::uint32_t, std::size_t>> frames{{v, 0}};
    index[v] = low[v] = next++;
    stack.push_back(v);
    on[v] = true;
    while (!frames.empty()) {
      auto& [u, i] = frames.back();
      if (i < edges[u].size()) {
        const std::uint32_t w = edges[u][i++];
        if (index[w] < 0) {
          index[w] = low[w] = next++;
          stack.push_back(w);
          on[w] = true;
          frames.emplace_back(w, 0);
        } else if (on[w]) {
          low[u] = std::min(low[u], index[w]);
        }
        continue;
      }
      if (low[u] == index[u]) {
        std::vector<std::uint32_t> comp;
        std::uint32_t w;
        do {
          w = stack.back();
          stack.pop_back();
          on[w] = false;
          comp.push_back(w);
        } while (w != u);
        const bool self = std::find(edges[u].begin(), edges[u].end(), u) != edges[u].end();
        if (comp.size() > 1 || self) out.push_back(std::move(comp));
      }
      const std::uint32_t done = u;
      frames.pop_back();
      if (!frames.empty()) {
        const std::uint32_t parent = frames.back().first;
        low[parent] = std::min(low[parent], low[done]);
      }
    }
  }
};

// ---- detection state ----

struct Tracked {
  int seen = 0;
  int missing = 0;
  bool reported = false;
  DeadlockReport report;
  std::vector<std::int64_t> since;  // per participant: its wait's start
  std::int64_t reported_ns = 0;
};

struct DetectionState {
  std::mutex mu;
  std::map<std::string, Tracked> cycles;
  std::uint64_t total = 0;
  std::uint64_t next_seq = 1;
};

DetectionState& detection() {
  static auto* const s = new DetectionState;
  return *s;
}

std::string resource_label(const WaitforBuilder::Resource& r) {
  std::string s = fmt::format("{}/{}", to_string(r.kind), r.name);
  if (r.side == "send") s += " (its receivers)";
  if (r.side == "receive") s += " (its senders)";
  return s;
}
std::string held_label(const WaitforBuilder::Resource& r) {
  const std::string s = fmt::format("{}/{}", to_string(r.kind), r.name);
  if (r.side == "send") return "receives from " + s;
  if (r.side == "receive") return "sends to " + s;
  return s;
}

std::string participant_name(const WaitforBuilder::Node& n, const std::string& task) {
  if ((n.id & 1u) == 0 && n.id > kUnknownHolder) return fmt::format("thread {}", n.tid);
  return fmt::format("task {}#{:04x}", task.empty() ? std::string("?") : task,
                     (n.id >> 4) & 0xffffu);
}

}  // namespace

void WaitforSource::track() noexcept {
  WaitforSources& s = sources();
  std::lock_guard lock(s.mu);
  prev_ = nullptr;
  next_ = s.head;
  if (s.head != nullptr) s.head->prev_ = this;
  s.head = this;
  linked_ = true;
}

void WaitforSource::untrack() noexcept {
  WaitforSources& s = sources();
  std::lock_guard lock(s.mu);
  if (!linked_) return;
  (prev_ != nullptr ? prev_->next_ : s.head) = next_;
  if (next_ != nullptr) next_->prev_ = prev_;
  prev_ = next_ = nullptr;
  linked_ = false;
}

WaitforBuilder build_waitfor_graph() {
  WaitforBuilder g;
  describe_lock_waits(g);
  WaitforSources& s = sources();
  std::lock_guard lock(s.mu);
  for (WaitforSource* src = s.head; src != nullptr; src = src->next_) src->describe(g);
  // Threads named by their id wherever they appear (as holders too).
  std::unordered_map<Participant, int> tids;
  for_each_shard([&](ThreadShard& t) {
    tids[reinterpret_cast<Participant>(&t)] = t.tid.load(std::memory_order_relaxed);
  });
  for (WaitforBuilder::Node& n : g.nodes) {
    if (auto it = tids.find(n.id); it != tids.end()) n.tid = it->second;
  }
  return g;
}

std::vector<std::vector<std::uint32_t>> find_cycles(const WaitforBuilder& g) {
  const std::size_t n = g.nodes.size();
  std::vector<bool> free(n);
  for (std::size_t i = 0; i < n; ++i) free[i] = g.nodes[i].waits.empty();
  // A wait is satisfiable when the resource has no holder, or any (all, for a lock) of its
  // holders can move.
  auto satisfiable = [&](const WaitforBuilder::Wait& w, std::size_t self) {
    const auto& r = g.resources[w.res];
    if (r.holders.empty()) return true;
    if (r.any) {
      return std::any_of(r.holders.begin(), r.holders.end(),
                         [&](std::uint32_t h) { return h != self && free[h]; });
    }
    return std::all_of(r.holders.begin(), r.holders.end(),
                       [&](std::uint32_t h) { return h != self && free[h]; });
  };
  for (bool changed = true; changed;) {
    changed = false;
    for (std::size_t i = 0; i < n; ++i) {
      if (free[i]) continue;
      const auto& waits = g.nodes[i].waits;
      if (std::any_of(waits.begin(), waits.end(),
                      [&](const WaitforBuilder::Wait& w) { return satisfiable(w, i); })) {
        free[i] = true;
        changed = true;
      }
    }
  }
  std::vector<std::vector<std::uint32_t>> edges(n);
  for (std::size_t i = 0; i < n; ++i) {
    if (free[i]) continue;
    for (const auto& w : g.nodes[i].waits) {
      for (std::uint32_t h : g.resources[w.res].holders) {
        if (!free[h]) edges[i].push_back(h);
      }
    }
  }
  Scc scc(edges);
  for (std::uint32_t i = 0; i < n; ++i) {
    if (!free[i] && scc.index[i] < 0) scc.visit(i);
  }
  return std::move(scc.out);
}

std::int64_t scan_deadlocks() noexcept {
  const std::int64_t t0 = now_ns();
  try {
    const WaitforBuilder g = build_waitfor_graph();
    const std::int64_t built = now_ns();
    std::vector<std::vector<std::uint32_t>> cycles = find_cycles(g);
    // Described before the detection's mutex is taken: naming a task takes the registry's mutex,
    // which a scrape holds while it reads deadlocks_total().
    struct Found {
      std::string key;
      DeadlockReport report;
      std::vector<std::int64_t> since;
    };
    std::vector<Found> found;
    for (std::vector<std::uint32_t>& cycle : cycles) {
      std::sort(cycle.begin(), cycle.end(),
                [&](std::uint32_t a, std::uint32_t b) { return g.nodes[a].id < g.nodes[b].id; });
      const std::vector<bool> in = [&] {
        std::vector<bool> v(g.nodes.size());
        for (std::uint32_t i : cycle) v[i] = true;
        return v;
      }();
      // The key: each participant with the resources it waits for inside the cycle.
      std::string key;
      DeadlockReport report;
      std::vector<std::int64_t> since;
      for (std::uint32_t i : cycle) {
        const auto& node = g.nodes[i];
        const std::string task =
            node.task_series != 0 ? Registry::global().series_name(node.task_series) : "";
        DeadlockParticipant p;
        p.name = participant_name(node, task);
        p.task = (node.id & 1u) != 0 ? task : "";
        std::int64_t wait_since = 0;
        for (const auto& w : node.waits) {
          const auto& r = g.resources[w.res];
          const bool inside = std::any_of(r.holders.begin(), r.holders.end(),
                                          [&](std::uint32_t h) { return in[h]; });
          if (!inside) continue;
          key += fmt::format("{:x}>{}:{}/{};", node.id, static_cast<int>(r.kind), r.name, r.side);
          if (p.waits_for.empty()) {
            p.waits_for = resource_label(r);
            p.op = w.op;
            wait_since = w.since_ns;
          }
        }
        for (std::uint32_t res : node.holds) {
          const auto& r = g.resources[res];
          const bool wanted = std::any_of(cycle.begin(), cycle.end(), [&](std::uint32_t j) {
            return std::any_of(g.nodes[j].waits.begin(), g.nodes[j].waits.end(),
                               [&](const WaitforBuilder::Wait& w) { return w.res == res; });
          });
          if (wanted) p.holds.push_back(held_label(r));
        }
        report.participants.push_back(std::move(p));
        since.push_back(wait_since);
      }
      found.push_back(Found{std::move(key), std::move(report), std::move(since)});
    }
    std::vector<std::string> logs;
    {
      DetectionState& st = detection();
      std::lock_guard lock(st.mu);
      for (auto& [key, t] : st.cycles) ++t.missing;
      for (Found& f : found) {
        Tracked& t = st.cycles[f.key];
        t.missing = 0;
        ++t.seen;
        t.since = std::move(f.since);
        if (!t.reported) t.report = std::move(f.report);
        if (t.seen >= 2 && !t.reported) {
          t.reported = true;
          t.reported_ns = built;
          t.report.seq = st.next_seq++;
          ++st.total;
          std::string line = "stallscope: deadlock:";
          for (std::size_t k = 0; k < t.report.participants.size(); ++k) {
            const DeadlockParticipant& p = t.report.participants[k];
            line += fmt::format(
                "{} {} holds {} and waits for {} ({}, {:.3f} s)", k == 0 ? "" : ";", p.name,
                p.holds.empty() ? std::string("nothing named") : fmt::format("{}", p.holds[0]),
                p.waits_for, p.op, static_cast<double>(built - t.since[k]) * 1e-9);
            for (std::size_t h = 1; h < p.holds.size(); ++h) line += ", also " + p.holds[h];
          }
          logs.push_back(std::move(line));
        }
      }
      for (auto it = st.cycles.begin(); it != st.cycles.end();) {
        it = it->second.missing >= 2 ? st.cycles.erase(it) : std::next(it);
      }
    }
    for (const std::string& line : logs) log(LogLevel::kError, line);
  } catch (...) {
    // Out of memory while building: try again next time, never fail the application.
  }
  return now_ns() - t0;
}

}  // namespace stallscope::detail

namespace stallscope {

std::vector<DeadlockReport> current_deadlocks() {
  const std::int64_t now = now_ns();
  detail::DetectionState& st = detail::detection();
  std::lock_guard lock(st.mu);
  std::vector<DeadlockReport> out;
  for (const auto& [key, t] : st.cycles) {
    if (!t.reported || t.missing != 0) continue;
    DeadlockReport r = t.report;
    r.age_seconds = static_cast<double>(now - t.reported_ns) * 1e-9;
    for (std::size_t k = 0; k < r.participants.size() && k < t.since.size(); ++k) {
      r.participants[k].waited_seconds = static_cast<double>(now - t.since[k]) * 1e-9;
    }
    out.push_back(std::move(r));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.seq < b.seq; });
  return out;
}

std::uint64_t deadlocks_total() noexcept {
  detail::DetectionState& st = detail::detection();
  std::lock_guard lock(st.mu);
  return st.total;
}

}  // namespace stallscope
