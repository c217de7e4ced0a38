#include "stallscope/detail/task_recorder.hpp"

#include <array>
#include <functional>
#include <mutex>
#include <new>
#include <thread>

#include "families.hpp"
#include "series_support.hpp"
#include "stallscope/detectors.hpp"

namespace stallscope::detail {

using namespace families::task;

constinit thread_local SliceContext* tls_slice = nullptr;
constinit thread_local std::uint64_t tls_task = 0;
constinit thread_local bool tls_cancel_delivery = false;
constinit std::atomic<TaskSlot*> g_task_slot_chunks[kTaskSlotChunks] = {};
// Config's defaults; the registry sets the configured values when it is created, before any
// task series exists.
constinit std::atomic<std::int64_t> g_slow_slice_ns{10'000'000};
constinit std::atomic<std::int64_t> g_cancel_grace_ns{1'000'000'000};

void apply_task_config(const Config& config) noexcept {
  g_slow_slice_ns.store(config.slow_slice.count(), std::memory_order_relaxed);
  g_cancel_grace_ns.store(config.cancel_grace.count(), std::memory_order_relaxed);
}

namespace {

// The slots handed out so far; a new one is the next index. Chunks are allocated on first use
// and never freed (executor copies may hold a handle to any slot for ever).
constinit std::atomic<std::uint32_t> g_task_slots_used{0};

// A new slot's index + 1, or 0 when the table is full.
std::uint32_t new_task_slot() noexcept {
  const std::uint32_t index = g_task_slots_used.fetch_add(1, std::memory_order_relaxed);
  const std::uint32_t c = index >> kTaskSlotBits;
  if (c >= kTaskSlotChunks) {
    g_task_slots_used.store(kTaskSlotChunks << kTaskSlotBits, std::memory_order_relaxed);
    return 0;
  }
  if (g_task_slot_chunks[c].load(std::memory_order_acquire) == nullptr) {
    auto* fresh = new (std::nothrow) TaskSlot[std::size_t{1} << kTaskSlotBits];
    if (fresh == nullptr) return 0;  // the task runs without a slot: the dump says "unknown"
    TaskSlot* expected = nullptr;
    if (!g_task_slot_chunks[c].compare_exchange_strong(expected, fresh,
                                                       std::memory_order_acq_rel)) {
      delete[] fresh;  // another thread installed the chunk first
    }
  }
  return index + 1;
}

TaskSlot& slot_at(std::uint32_t index1) noexcept {
  const std::uint32_t i = index1 - 1;
  return g_task_slot_chunks[i >> kTaskSlotBits].load(
      std::memory_order_acquire)[i & ((1u << kTaskSlotBits) - 1)];
}

}  // namespace

// The live-task registry: kShards lists of TaskStates, each under its own mutex, with the free
// slots its tasks returned. A thread spawns into one shard for its whole life (assigned round
// robin), so spawns on different threads do not share a lock; an exit goes back to the shard
// its task was spawned into. Leaked: tasks may exit during static destruction.
struct TaskRegistry {
  static constexpr std::uint32_t kShards = 16;
  static constexpr std::size_t kBatch = 16;

  // Held for a few pointer writes (spawn, exit) or one batch of a dump (about a microsecond):
  // a spin on an atomic, yielding the thread while another holds it. Measured against
  // std::mutex: about 80 fewer instructions a spawn (bench/icount.cpp's spawn path).
  class SpinLock {
   public:
    void lock() noexcept {
      while (held_.exchange(true, std::memory_order_acquire)) {
        while (held_.load(std::memory_order_relaxed)) std::this_thread::yield();
      }
    }
    void unlock() noexcept { held_.store(false, std::memory_order_release); }

   private:
    std::atomic<bool> held_{false};
  };

  struct alignas(64) Shard {
    SpinLock mu;
    TaskListNode head;            // circular: head.next is the newest task, head.prev the oldest
    std::uint32_t free_slot = 0;  // index + 1
    std::uint64_t next_id = 0;
    Shard() { head.prev = head.next = &head; }
  };
  Shard shards[kShards];

  static TaskRegistry& get() {
    static TaskRegistry* const r = new TaskRegistry;
    return *r;
  }
  static std::uint32_t thread_shard() noexcept {
    constinit thread_local std::uint32_t mine = ~0u;
    if (mine == ~0u) [[unlikely]] {
      static std::atomic<std::uint32_t> next{0};
      mine = next.fetch_add(1, std::memory_order_relaxed) % kShards;
    }
    return mine;
  }

  static void insert_after(TaskListNode* at, TaskListNode* n) noexcept {
    n->prev = at;
    n->next = at->next;
    at->next->prev = n;
    at->next = n;
  }
  static void remove(TaskListNode* n) noexcept {
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = nullptr;
  }

  void link(TaskState& t) {
    t.shard_ = thread_shard();
    Shard& sh = shards[t.shard_];
    std::lock_guard lock(sh.mu);
    std::uint32_t slot = sh.free_slot;
    if (slot != 0) {
      sh.free_slot = slot_at(slot).next_free;
    } else {
      slot = new_task_slot();
    }
    if (slot != 0) {
      TaskSlot& s = slot_at(slot);
      const std::uint32_t gen = s.gen.load(std::memory_order_relaxed) + 1;  // odd: live
      s.wait_op.store(TaskWaitOp::kNone, std::memory_order_relaxed);
      s.running_on.store(nullptr, std::memory_order_relaxed);
      s.asio_op.store(nullptr, std::memory_order_relaxed);
      s.status.store(phase_word(TaskPhase::kQueued, t.spawned_ns_), std::memory_order_relaxed);
      s.gen.store(gen, std::memory_order_release);
      t.handle_ = (std::uint64_t{gen} << 32) | slot;
    }
    t.id_ = sh.next_id++ * kShards + t.shard_ + 1;
    insert_after(&sh.head, &t);
  }
  void unlink(TaskState& t) noexcept {
    Shard& sh = shards[t.shard_];
    std::lock_guard lock(sh.mu);
    remove(&t);
    if (const auto slot = static_cast<std::uint32_t>(t.handle_)) {
      TaskSlot& s = slot_at(slot);
      s.gen.store(s.gen.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);  // even
      s.next_free = sh.free_slot;
      sh.free_slot = slot;
    }
  }

  // Copies `t` into `out` (room reserved); a scope or group unlike the previous one's gets a
  // reference in `keep` (room reserved).
  static void copy(const TaskState& t, TaskSnapshot& out) noexcept {
    RawTask& r = out.tasks.emplace_back();
    r.series = t.series_;
    r.id = t.id_;
    r.spawned_ns = t.spawned_ns_;
    r.cancel_ns = t.cancel_ns_.load(std::memory_order_relaxed);
    if (const ScopeName* s = t.binding_.scope.get()) {
      if (out.keep_scopes.empty() || out.keep_scopes.back().get() != s) {
        out.keep_scopes.push_back(t.binding_.scope);
      }
      r.scope = static_cast<std::uint32_t>(out.keep_scopes.size());
    }
    if (const TaskGroupInfo* g = t.binding_.group.get()) {
      if (out.keep_groups.empty() || out.keep_groups.back().get() != g) {
        out.keep_groups.push_back(t.binding_.group);
      }
      r.group = static_cast<std::uint32_t>(out.keep_groups.size());
    }
    if (const auto slot = static_cast<std::uint32_t>(t.handle_)) {
      const TaskSlot& s = slot_at(slot);
      // See task_state.hpp: keep the target only if the status did not change around it.
      for (int attempt = 0; attempt < 3; ++attempt) {
        r.status = s.status.load(std::memory_order_acquire);
        r.wait_name = s.wait_name.load(std::memory_order_relaxed);
        r.wait_len = s.wait_len.load(std::memory_order_relaxed);
        r.wait_op = s.wait_op.load(std::memory_order_relaxed);
        r.running_on = s.running_on.load(std::memory_order_relaxed);
        const void* op = s.asio_op.load(std::memory_order_acquire);
        r.asio = op != nullptr ? s.asio_what.load(std::memory_order_relaxed) : nullptr;
        std::atomic_thread_fence(std::memory_order_acquire);
        if (s.status.load(std::memory_order_relaxed) == r.status &&
            s.asio_op.load(std::memory_order_relaxed) == op) {
          break;
        }
      }
    }
  }

  // Room for one more batch in each of `out`'s vectors, made before the lock is taken.
  static void make_room(TaskSnapshot& out) {
    auto room = [](auto& v) {
      if (v.capacity() - v.size() < kBatch) v.reserve(v.size() * 2 + kBatch);
    };
    room(out.tasks);
    room(out.keep_scopes);
    room(out.keep_groups);
  }

  void snapshot(TaskSnapshot& out) {
    for (Shard& sh : shards) {
      TaskListNode cursor;
      cursor.cursor = true;
      {
        std::lock_guard lock(sh.mu);
        if (sh.head.next == &sh.head) continue;
        insert_after(&sh.head, &cursor);
      }
      for (bool more = true; more;) {
        make_room(out);
        std::lock_guard lock(sh.mu);
        const std::int64_t held = now_ns();
        // Two passes over the batch: the walk down the list (one cache miss after another)
        // prefetches what the copy reads next (the rest of the task, its slot), so that those
        // misses overlap instead of adding up.
        const TaskState* batch[kBatch];
        std::size_t n = 0;
        TaskListNode* at = cursor.next;
        for (; at != &sh.head && n < kBatch; at = at->next) {
          if (at->cursor) continue;  // another dump's
          const auto* t = static_cast<const TaskState*>(at);
          __builtin_prefetch(&t->binding_);
          if (const auto slot = static_cast<std::uint32_t>(t->handle_)) {
            __builtin_prefetch(&slot_at(slot));
          }
          batch[n++] = t;
        }
        for (std::size_t i = 0; i < n; ++i) copy(*batch[i], out);
        remove(&cursor);
        more = at != &sh.head;
        if (more) insert_after(at->prev, &cursor);
        const std::int64_t hold = now_ns() - held;
        if (hold > out.max_hold_ns) out.max_hold_ns = hold;
      }
    }
  }
};

void snapshot_live_tasks(TaskSnapshot& out) { TaskRegistry::get().snapshot(out); }

TaskSeries::TaskSeries(ResourceKind kind, std::string name, std::uint32_t id, const Config& config)
    : Series(kind, std::move(name), id), layout_(shared_layout(config.wait_buckets)) {
  base = allocate_series_cells(kCounters, layout_, {&sched, &slice, &lifetime, &cancel_exit});
}

void TaskSeries::collect(Collector& out) {
  const auto c = summed_counters<kCounters>(base);
  const Labels res = resource_labels(*this);
  auto with = [&](const char* k, const char* v) { return with_label(res, k, v); };
  out.add(kWaitSeconds, with("op", "schedule"), snapshot(sched));
  out.add(kSlice, res, snapshot(slice));
  out.add(kSlow, res, static_cast<double>(c[kSlowSlices]));
  out.add(kBlocked, res, static_cast<double>(c[kBlockedNs]) * 1e-9);
  out.add(kSpawnedFamily, res, static_cast<double>(c[kSpawned]));
  out.add(kFinished, with("outcome", "completed"), static_cast<double>(c[kCompleted]));
  out.add(kFinished, with("outcome", "failed"), static_cast<double>(c[kFailed]));
  out.add(kFinished, with("outcome", "cancelled"), static_cast<double>(c[kCancelled]));
  // Read without a common lock with the threads that spawn and end tasks: clamp a transient
  // negative (an exit seen before its spawn) at 0.
  out.add(kActive, res,
          c[kSpawned] > c[kDestroyed] ? static_cast<double>(c[kSpawned] - c[kDestroyed]) : 0.0);
  out.add(kLifetime, res, snapshot(lifetime));
  out.add(kCancelExit, res, snapshot(cancel_exit));
  std::size_t lingering = 0;
  const std::int64_t grace = g_cancel_grace_ns.load(std::memory_order_relaxed);
  cancelled_.for_each([&](const TaskState& t) {
    const std::int64_t c_ns = t.cancel_ns_.load(std::memory_order_relaxed);
    if (c_ns != 0 && out.age_ns(c_ns) > grace) ++lingering;
  });
  out.add(kLingering, res, static_cast<double>(lingering));
  const std::int64_t running = out.running_since(id());
  out.add(kRunning, res, running == 0 ? 0.0 : static_cast<double>(out.age_ns(running)) * 1e-9);
}

TaskSeries* task_series(std::string_view name) {
  // Every spawn names its task: remember this thread's recent names, so spawning does not take
  // the registry's mutex each time (series live as long as the process). Trivially destructible,
  // so a spawn during thread exit still finds it; a hit is confirmed against the series' name
  // (a name folded into the overflow series is never a hit).
  struct Recent {
    std::size_t hash;
    TaskSeries* series;
  };
  constinit thread_local std::array<Recent, 8> recent{};
  constinit thread_local std::uint32_t next = 0;
  const std::size_t hash = std::hash<std::string_view>{}(name);
  for (const Recent& r : recent) {
    if (r.series != nullptr && r.hash == hash && r.series->name() == name) return r.series;
  }
  auto make = [](ResourceKind k, std::string n, std::uint32_t id,
                 const Config& c) -> std::unique_ptr<Series> {
    return std::make_unique<TaskSeries>(k, std::move(n), id, c);
  };
  auto* series =
      static_cast<TaskSeries*>(&Registry::global().series(ResourceKind::kTask, name, make));
  recent[next++ % recent.size()] = Recent{hash, series};
  return series;
}

TaskState::TaskState(TaskSeries* series, TaskBinding binding)
    : series_(series), spawned_ns_(now_ns()), binding_(std::move(binding)) {
  add(series_->base + TaskSeries::kSpawned);
  TaskRegistry::get().link(*this);
}

TaskState::~TaskState() {
  TaskRegistry::get().unlink(*this);
  // A cancel_requested() that linked this task returned before the owner let go of it.
  if (cancel_ns_.load(std::memory_order_relaxed) != 0) series_->cancelled_.unlink(this);
  add(series_->base + TaskSeries::kDestroyed);
}

bool TaskState::cancel_requested() noexcept {
  std::int64_t expected = 0;
  if (!cancel_ns_.compare_exchange_strong(expected, now_ns(), std::memory_order_relaxed)) {
    return false;
  }
  series_->cancelled_.link(this);
  return true;
}

void TaskState::finished(bool failed, bool aborted) noexcept {
  const std::int64_t now = now_ns();
  series_->lifetime.record(now - spawned_ns_);
  const std::int64_t c = cancel_ns_.load(std::memory_order_relaxed);
  if (c != 0) series_->cancel_exit.record(now - c);
  const std::uint32_t outcome = (c != 0 || aborted) ? TaskSeries::kCancelled
                                : failed            ? TaskSeries::kFailed
                                                    : TaskSeries::kCompleted;
  add(series_->base + outcome);
}

void SliceScope::end_without_shard(std::int64_t now) noexcept {
  finish(now, [](std::uint32_t cell, std::uint64_t delta) { add(cell, delta); });
}

}  // namespace stallscope::detail

namespace stallscope {

std::vector<LingeringTask> lingering_tasks() {
  using namespace detail;
  std::vector<LingeringTask> out;
  const std::int64_t grace = g_cancel_grace_ns.load(std::memory_order_relaxed);
  Registry::global().for_each_series(ResourceKind::kTask, [&](Series& s) {
    auto& ts = static_cast<TaskSeries&>(s);
    const std::int64_t now = now_ns();
    ts.for_each_cancelled_task([&](const TaskState& t) {
      const std::int64_t c = t.cancel_ns();
      if (c != 0 && now - c > grace) {
        out.push_back({ts.name(), static_cast<double>(now - c) * 1e-9});
      }
    });
  });
  return out;
}

}  // namespace stallscope
