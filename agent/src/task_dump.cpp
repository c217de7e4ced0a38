#include "stallscope/task_dump.hpp"

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <unordered_map>

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

// The dump's view of one raw task: its state, since when, and what it waits on.
void describe(const detail::RawTask& raw, std::int64_t now, const WaitTargets& targets,
              TaskInfo& t) {
  using detail::TaskPhase;
  auto age = [now](std::int64_t since) {
    return since < now ? static_cast<double>(now - since) * 1e-9 : 0.0;
  };
  const auto phase = static_cast<TaskPhase>(raw.status & 3u);
  std::int64_t since = static_cast<std::int64_t>(raw.status >> 2);
  if (raw.status == 0) {  // no slot
    t.state = TaskRunState::kSuspended;
    since = raw.spawned_ns;
  } else if (phase == TaskPhase::kRunning) {
    t.state = TaskRunState::kRunning;
    // A running slice blocked in a stallscope lock: the thread's wait slot names it, while the
    // thread still runs this slice (its slice slot has the same start).
    const auto* shard = static_cast<const detail::ThreadShard*>(raw.running_on);
    if (shard != nullptr && shard->slice.start_ns.load(std::memory_order_relaxed) == since) {
      const std::uint32_t id = shard->wait.series.load(std::memory_order_acquire);
      const std::uint32_t op = shard->wait.op.load(std::memory_order_relaxed) & 1u;
      const std::int64_t wait_since = shard->wait.since_ns.load(std::memory_order_relaxed);
      if (auto it = targets.locks.find(id); id != 0 && it != targets.locks.end()) {
        t.state = TaskRunState::kWaiting;
        t.blocks_thread = true;
        t.wait_kind = to_string(it->second->kind());
        t.wait_resource = it->second->name();
        t.wait_op = op == 0 ? "exclusive" : "shared";
        since = wait_since;
      }
    }
  } else if (phase == TaskPhase::kQueued) {
    t.state = TaskRunState::kQueued;
  } else if (phase == TaskPhase::kSuspended) {
    t.state = TaskRunState::kSuspended;
    if (raw.asio != nullptr) t.asio_op = fmt::format("{} {}", raw.asio->object, raw.asio->op);
  } else {
    t.state = TaskRunState::kWaiting;
    const auto it = targets.by_name.find(raw.wait_name);
    const ResourceKind kind = it != targets.by_name.end() ? it->second : ResourceKind::kChannel;
    t.wait_kind = it != targets.by_name.end() ? std::string(to_string(kind)) : "?";
    if (raw.wait_name != nullptr) t.wait_resource.assign(raw.wait_name, raw.wait_len);
    t.wait_op = op_name(raw.wait_op, kind);
  }
  t.state_seconds = age(since);
  t.age_seconds = age(raw.spawned_ns);
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
  std::vector<detail::RawTask> raw;
  detail::snapshot_live_tasks(raw);
  const std::int64_t now = now_ns();
  const WaitTargets targets;
  out.live = raw.size();
  out.asio_tracking = detail::asio_tracking();
  out.tasks.reserve(raw.size());
  for (const detail::RawTask& r : raw) {
    TaskInfo t;
    describe(r, now, targets, t);
    ++out.by_state[static_cast<std::size_t>(t.state)];
    t.cancel_requested = r.cancel_ns != 0;
    if (t.cancel_requested) {
      ++out.cancel_requested;
      t.cancelled_seconds_ago =
          r.cancel_ns < now ? static_cast<double>(now - r.cancel_ns) * 1e-9 : 0;
    }
    const std::string& name = r.series->name();
    if (!filter.name.empty() && name != filter.name) continue;
    if (filter.state && *filter.state != t.state) continue;
    if (filter.cancel_requested && *filter.cancel_requested != t.cancel_requested) continue;
    t.id = r.id;
    t.name = name;
    if (r.binding.group) {
      t.group_id = r.binding.group->id;
      t.group = r.binding.group->name;
    }
    if (r.binding.scope) t.token_path = r.binding.scope->path();
    out.tasks.push_back(std::move(t));
  }
  // Sorted through an index: swapping whole TaskInfos (seven strings each) cost more than the
  // rest of a 10,000-task dump (callgrind, bench/tasks.cpp's task_dump).
  std::vector<std::uint32_t> order(out.tasks.size());
  for (std::uint32_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](std::uint32_t x, std::uint32_t y) {
    const TaskInfo& a = out.tasks[x];
    const TaskInfo& b = out.tasks[y];
    return a.state_seconds != b.state_seconds ? a.state_seconds > b.state_seconds : a.id < b.id;
  });
  std::vector<TaskInfo> sorted;
  sorted.reserve(order.size());
  for (const std::uint32_t i : order) sorted.push_back(std::move(out.tasks[i]));
  out.tasks = std::move(sorted);
  out.dump_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return out;
}

}  // namespace stallscope
