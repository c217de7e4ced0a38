#include "stallscope/task_dump.hpp"

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>

#include "stallscope/clock.hpp"
#include "stallscope/detail/cells.hpp"
#include "stallscope/detail/enum_names.hpp"
#include "stallscope/detail/series.hpp"
#include "stallscope/detail/task_recorder.hpp"
#include "stallscope/registry.hpp"

namespace stallscope {

namespace {

// In TaskRunState's order.
constexpr std::string_view kStateNames[] = {"running", "queued", "waiting", "suspended"};
static_assert(std::size(kStateNames) == kTaskRunStates);

// The series a wait point named, by the address of its name (series names never move).
struct WaitTargets {
  std::unordered_map<const char*, ResourceKind> by_name;
  std::unordered_map<std::uint32_t, const detail::Series*> locks;  // lock and rwlock, by id

  WaitTargets() {
    const Registry& r = Registry::global();
    for (ResourceKind k : {ResourceKind::kAsyncLock, ResourceKind::kSemaphore,
                           ResourceKind::kChannel, ResourceKind::kPool}) {
      r.for_each_series(k, [&](const detail::Series& s) { by_name.emplace(s.name().data(), k); });
    }
    for (ResourceKind k : {ResourceKind::kLock, ResourceKind::kRwLock}) {
      r.for_each_series(k, [&](const detail::Series& s) { locks.emplace(s.id(), &s); });
    }
  }
};

std::string_view op_name(detail::TaskWaitOp op, ResourceKind kind) noexcept {
  using detail::TaskWaitOp;
  switch (op) {
    case TaskWaitOp::kAcquire:
      return kind == ResourceKind::kAsyncLock ? "exclusive" : "acquire";
    case TaskWaitOp::kSend:
      return "send";
    case TaskWaitOp::kReceive:
      return "receive";
    case TaskWaitOp::kJob:
      return "job";
    case TaskWaitOp::kNone:
      break;
  }
  return "?";
}

// What the first pass makes of a task that matches the filter: enough to sort it and to fill
// its TaskInfo after.
struct Entry {
  std::int64_t since = 0;  // in its state since; `now` at most, so the order is the seconds'
  std::uint64_t id = 0;
  const detail::Series* lock = nullptr;  // a lock the task's executor thread is blocked on
  std::uint32_t index = 0;               // in the snapshot
  TaskRunState state = TaskRunState::kQueued;
  bool shared = false;  // `lock` wanted shared
};

// The snapshot's buffers, reused from dump to dump so that a steady population's dump neither
// allocates nor touches fresh pages: one set for the process, taken with try_lock (a second
// dump at the same time brings its own). Leaked: a dump may run during static destruction.
struct Scratch {
  detail::TaskSnapshot snapshot;
  std::vector<Entry> entries;
};
struct ScratchPool {
  std::mutex mu;
  Scratch scratch;
};
ScratchPool& scratch_pool() {
  static ScratchPool* const p = new ScratchPool;
  return *p;
}

// A buffer more than four times (and 64 KiB) larger than this dump needed gives its memory back.
template <class T>
void trim(std::vector<T>& v) {
  if (v.capacity() * sizeof(T) > 65536 && v.capacity() > 4 * v.size()) std::vector<T>().swap(v);
  v.clear();
}

// What the dump's group and token_path views point into.
struct DumpStrings {
  std::vector<std::shared_ptr<const detail::TaskGroupInfo>> groups;
  std::deque<std::string> paths;  // a deque: adding a path never moves the others
};

// The state a raw task is in, since when, and (running a slice blocked in a stallscope lock) the
// lock. `targets` is built on first need.
void classify(const detail::RawTask& raw, std::optional<WaitTargets>& targets, Entry& e) {
  using detail::TaskPhase;
  const auto phase = static_cast<TaskPhase>(raw.status & 3u);
  e.since = static_cast<std::int64_t>(raw.status >> 2);
  if (raw.status == 0) {  // no slot
    e.state = TaskRunState::kSuspended;
    e.since = raw.spawned_ns;
  } else if (phase == TaskPhase::kRunning) {
    e.state = TaskRunState::kRunning;
    // A running slice blocked in a stallscope lock: the thread's wait slot names it, while the
    // thread still runs this slice (its slice slot has the same start).
    const auto* shard = static_cast<const detail::ThreadShard*>(raw.running_on);
    if (shard != nullptr && shard->slice.start_ns.load(std::memory_order_relaxed) == e.since) {
      const std::uint32_t id = shard->wait.series.load(std::memory_order_acquire);
      const std::uint32_t op = shard->wait.op.load(std::memory_order_relaxed) & 1u;
      const std::int64_t wait_since = shard->wait.since_ns.load(std::memory_order_relaxed);
      if (id != 0) {
        if (!targets) targets.emplace();
        if (auto it = targets->locks.find(id); it != targets->locks.end()) {
          e.state = TaskRunState::kWaiting;
          e.lock = it->second;
          e.shared = op != 0;
          e.since = wait_since;
        }
      }
    }
  } else if (phase == TaskPhase::kQueued) {
    e.state = TaskRunState::kQueued;
  } else if (phase == TaskPhase::kSuspended) {
    e.state = TaskRunState::kSuspended;
  } else {
    e.state = TaskRunState::kWaiting;
  }
}

// Seconds from `since` to `now`, 0 when `since` is not before it.
double seconds_since(std::int64_t since, std::int64_t now) noexcept {
  return since < now ? static_cast<double>(now - since) * 1e-9 : 0.0;
}

}  // namespace

std::string_view to_string(TaskRunState state) noexcept {
  return detail::enum_name(state, kStateNames);
}

TaskRunState parse_task_run_state(std::string_view text) {
  for (std::size_t i = 0; i < kTaskRunStates; ++i) {
    if (kStateNames[i] == text) return static_cast<TaskRunState>(i);
  }
  throw std::invalid_argument(
      fmt::format("stallscope: task state \"{}\" is not one of running, queued, waiting, suspended",
                  text.substr(0, 64)));
}

TaskDump dump_tasks(const TaskFilter& filter) {
  const auto started = std::chrono::steady_clock::now();
  TaskDump out;
  out.unix_time =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  ScratchPool& pool = scratch_pool();
  std::unique_lock<std::mutex> pooled(pool.mu, std::try_to_lock);
  Scratch own;
  Scratch& scratch = pooled.owns_lock() ? pool.scratch : own;
  detail::TaskSnapshot& snap = scratch.snapshot;
  std::vector<Entry>& entries = scratch.entries;
  snap.clear();
  entries.clear();

  // Copy: short holds of each shard's lock, plain records only.
  detail::snapshot_live_tasks(snap);
  const std::int64_t now = now_ns();
  out.live = snap.tasks.size();
  out.asio_tracking = detail::asio_tracking();
  out.max_lock_hold_seconds = static_cast<double>(snap.max_hold_ns) * 1e-9;

  // Classify and filter: counts for every task, an Entry for each match.
  std::optional<WaitTargets> targets;
  const detail::TaskSeries* name_series = nullptr;  // the last series compared with filter.name
  bool name_matches = false;
  entries.reserve(snap.tasks.size());
  for (std::uint32_t i = 0; i < snap.tasks.size(); ++i) {
    const detail::RawTask& r = snap.tasks[i];
    Entry e;
    classify(r, targets, e);
    ++out.by_state[static_cast<std::size_t>(e.state)];
    const bool cancelled = r.cancel_ns != 0;
    out.cancel_requested += cancelled ? 1 : 0;
    if (!filter.name.empty()) {
      if (r.series != name_series) {
        name_series = r.series;
        name_matches = r.series->name() == filter.name;
      }
      if (!name_matches) continue;
    }
    if (filter.state && *filter.state != e.state) continue;
    if (filter.cancel_requested && *filter.cancel_requested != cancelled) continue;
    e.since = std::min(e.since, now);
    e.id = r.id;
    e.index = i;
    entries.push_back(e);
  }
  out.matched = entries.size();

  // Longest in its state first: the oldest `since`, then the lowest id. With a limit, only the
  // first `limit` are put in order.
  auto longer = [](const Entry& a, const Entry& b) {
    return a.since != b.since ? a.since < b.since : a.id < b.id;
  };
  std::size_t n = entries.size();
  if (filter.limit != 0 && filter.limit < n) {
    n = filter.limit;
    std::partial_sort(entries.begin(), entries.begin() + static_cast<std::ptrdiff_t>(n),
                      entries.end(), longer);
  } else {
    std::sort(entries.begin(), entries.end(), longer);
  }

  // Fill: views into names that live as long as the process, and into `strings` for the groups
  // and token paths, each made once per scope or group the snapshot kept.
  auto strings = std::make_shared<DumpStrings>();
  std::vector<std::string_view> paths(snap.keep_scopes.size());
  std::vector<bool> path_made(snap.keep_scopes.size(), false);
  std::vector<bool> group_kept(snap.keep_groups.size(), false);
  out.tasks.resize(n);
  for (std::size_t k = 0; k < n; ++k) {
    const Entry& e = entries[k];
    const detail::RawTask& r = snap.tasks[e.index];
    TaskInfo& t = out.tasks[k];
    t.id = r.id;
    t.name = r.series->name();
    t.state = e.state;
    t.state_seconds = seconds_since(e.since, now);
    t.age_seconds = seconds_since(r.spawned_ns, now);
    t.cancel_requested = r.cancel_ns != 0;
    if (t.cancel_requested) t.cancelled_seconds_ago = seconds_since(r.cancel_ns, now);
    if (e.lock != nullptr) {
      t.blocks_thread = true;
      t.wait_kind = to_string(e.lock->kind());
      t.wait_resource = e.lock->name();
      t.wait_op = e.shared ? "shared" : "exclusive";
    } else if (e.state == TaskRunState::kWaiting) {
      if (!targets) targets.emplace();
      const auto it = targets->by_name.find(r.wait_name);
      const ResourceKind kind = it != targets->by_name.end() ? it->second : ResourceKind::kChannel;
      t.wait_kind = it != targets->by_name.end() ? to_string(kind) : "?";
      if (r.wait_name != nullptr) t.wait_resource = std::string_view(r.wait_name, r.wait_len);
      t.wait_op = op_name(r.wait_op, kind);
    } else if (e.state == TaskRunState::kSuspended && r.asio != nullptr) {
      t.asio_op = fmt::format("{} {}", r.asio->object, r.asio->op);
    }
    if (r.group != 0) {
      const auto& g = snap.keep_groups[r.group - 1];
      if (!group_kept[r.group - 1]) {
        group_kept[r.group - 1] = true;
        strings->groups.push_back(g);
      }
      t.group_id = g->id;
      t.group = g->name;
    }
    if (r.scope != 0) {
      const std::size_t s = r.scope - 1;
      if (!path_made[s]) {
        path_made[s] = true;
        paths[s] = strings->paths.emplace_back(snap.keep_scopes[s]->path());
      }
      t.token_path = paths[s];
    }
  }
  out.strings = std::move(strings);

  // Let go of the scopes and groups now, and of memory a much larger population needed.
  trim(snap.tasks);
  trim(snap.keep_scopes);
  trim(snap.keep_groups);
  trim(entries);
  out.dump_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return out;
}

}  // namespace stallscope
