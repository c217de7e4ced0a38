#pragma once
// What each live task is doing now, for the task dump (task_dump.hpp): the per-task slot that the
// executor and the async wait points write, and the names a task is bound under (its
// cancellation scope's path, its TaskGroup).
//
// Every spawned task owns a TaskSlot from a table that is never freed: the instrumented executor
// holds a handle to it (slot index and generation), so an executor copy that outlives its task
// (a coroutine co_spawned on a task's executor) finds the generation changed and writes nothing,
// instead of writing into freed memory. Writes are a few relaxed stores and one release store on
// the slot's own cache line; the dump reads them under the registry shard lock of the task that
// owns the slot (task_recorder.cpp).
//
// Ordering argument: a writer stores the wait target (relaxed), then the status word (release);
// the dump loads the status (acquire), then the target, then the status again, and keeps the
// read only when both loads agree. Each status word carries the time it was entered, so two
// writes of one state almost never agree by accident. A handle checked against the generation
// just before its slot is freed and reused can still write one stale status into the next task
// of that slot; the next transition of that task overwrites it (see README, "Task dump").
// The Asio operation fields follow the same pattern: asio_what (relaxed), then asio_op
// (release); the dump loads asio_op (acquire), then asio_what, and keeps them only when asio_op
// reads the same again. Its completion compare-exchanges asio_op back to null only while it
// still names that operation, so a later operation's names are never cleared by an earlier one.
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "stallscope/config.hpp"

namespace stallscope::detail {

// One scope of a CancellationToken tree, as the task dump names it: immutable, shared by the
// token's State and the tasks bound to it. An unnamed scope has an empty name.
struct ScopeName {
  std::string name;
  std::shared_ptr<const ScopeName> parent;

  // "root/requests/conn-7", "~" for each unnamed scope.
  std::string path() const {
    std::string out = name.empty() ? std::string("~") : name;
    for (const ScopeName* p = parent.get(); p != nullptr; p = p->parent.get()) {
      out.insert(0, (p->name.empty() ? std::string("~") : p->name) + "/");
    }
    return out;
  }
};

// A TaskGroup, as the tasks it spawned name it.
struct TaskGroupInfo {
  std::uint64_t id = 0;  // process-unique, from 1
  std::string name;      // "" when the group was not named
};

// A new TaskGroupInfo::id.
inline std::uint64_t next_task_group_id() noexcept {
  static constinit std::atomic<std::uint64_t> next{0};
  return next.fetch_add(1, std::memory_order_relaxed) + 1;
}

// What a task waits for at a stallscope async wait point.
enum class TaskWaitOp : std::uint8_t {
  kNone = 0,
  kAcquire,  // Semaphore::async_acquire, AsyncMutex::async_lock
  kSend,     // Channel::async_send on a full channel
  kReceive,  // Channel::async_receive / async_next on an empty channel
  kJob,      // BlockingPool::async_run: the job queued or running
};

// An Asio operation a task started (Asio's own names for it, as its handler tracking prints them:
// "deadline_timer" and "async_wait", "socket" and "async_receive"): interned by asio_op_name(),
// never freed, so a slot can point at one for ever.
struct AsioOpName {
  const char* object;
  const char* op;
};

// A task's state, in the low 2 bits of TaskSlot::status (the time it was entered above them).
enum class TaskPhase : std::uint8_t { kQueued = 0, kRunning = 1, kWaiting = 2, kSuspended = 3 };

struct alignas(64) TaskSlot {
  std::atomic<std::uint32_t> gen{0};            // odd while a task owns the slot
  std::atomic<std::uint64_t> status{0};         // (since_ns << 2) | TaskPhase
  std::atomic<const char*> wait_name{nullptr};  // a series name: lives as long as the process
  std::atomic<std::uint32_t> wait_len{0};
  std::atomic<TaskWaitOp> wait_op{TaskWaitOp::kNone};
  std::atomic<const void*> running_on{nullptr};  // the ThreadShard of the thread running it
  std::uint32_t next_free = 0;  // index + 1 of the next free slot; the owning shard's lock
  // The last Asio operation the task started and that has not completed (asio_tracking.hpp):
  // the operation object (an identity only, never dereferenced) and its names. Null without the
  // opt-in.
  std::atomic<const void*> asio_op{nullptr};
  std::atomic<const AsioOpName*> asio_what{nullptr};
};
static_assert(sizeof(TaskSlot) == 64, "a slot is one cache line");

inline constexpr std::uint32_t kTaskSlotBits = 10;  // 1,024 slots (64 KiB) a chunk
inline constexpr std::uint32_t kTaskSlotChunks = 16384;
extern constinit std::atomic<TaskSlot*> g_task_slot_chunks[kTaskSlotChunks];

// The task whose slice runs on this thread (its handle), 0 outside task slices.
extern constinit thread_local std::uint64_t tls_task;
// Set while a task's cancellation signal is emitted: co_spawn hands the signal to the coroutine
// through one execution on its executor, which resumes nothing, so the next execute() on this
// thread leaves the task's state (a wait it keeps ignoring the cancel in) as it is, and clears
// the flag.
extern constinit thread_local bool tls_cancel_delivery;

inline std::uint64_t phase_word(TaskPhase p, std::int64_t since_ns) noexcept {
  return (static_cast<std::uint64_t>(since_ns < 0 ? 0 : since_ns) << 2) |
         static_cast<std::uint64_t>(p);
}

// The slot of `handle` (not 0) while its task is alive; null once the slot was freed.
inline TaskSlot* live_task_slot(std::uint64_t handle) noexcept {
  const auto index = static_cast<std::uint32_t>(handle) - 1;
  TaskSlot* chunk = g_task_slot_chunks[index >> kTaskSlotBits].load(std::memory_order_acquire);
  TaskSlot* s = chunk + (index & ((1u << kTaskSlotBits) - 1));
  return s->gen.load(std::memory_order_relaxed) == static_cast<std::uint32_t>(handle >> 32)
             ? s
             : nullptr;
}

// The task of `handle` (0: none) was handed to its executor to run at `since_ns`.
inline void task_queued(std::uint64_t handle, std::int64_t since_ns) noexcept {
  if (handle == 0) return;
  if (TaskSlot* s = live_task_slot(handle)) {
    s->status.store(phase_word(TaskPhase::kQueued, since_ns), std::memory_order_release);
  }
}

#if STALLSCOPE_ENABLED
// An async wait point: the task running on this thread (if any) now waits on the resource of
// `site` (a recorder site, whose name() is its series' name, which lives as long as the process)
// since `since_ns`. Call it before the waiter is queued (under the primitive's lock), so that its
// completion's "queued" comes after. Outside tasks it costs a thread-local load.
template <class Site>
void task_waits(TaskWaitOp op, const Site& site, std::int64_t since_ns) noexcept {
  const std::uint64_t t = tls_task;
  if (t == 0) return;
  if (TaskSlot* s = live_task_slot(t)) {
    const std::string& name = site.name();
    s->wait_name.store(name.data(), std::memory_order_relaxed);
    s->wait_len.store(static_cast<std::uint32_t>(name.size()), std::memory_order_relaxed);
    s->wait_op.store(op, std::memory_order_relaxed);
    s->status.store(phase_word(TaskPhase::kWaiting, since_ns), std::memory_order_release);
  }
}
#else
inline namespace off {
template <class Site>
void task_waits(TaskWaitOp, const Site&, std::int64_t) noexcept {}
}  // namespace off
#endif

// --- the Asio operation a suspended task awaits (opt-in: asio_tracking.hpp) ---
// The interned names of `object`'s operation `op` (string literals from Asio's headers);
// a few pointer compares when seen before. Past 256 distinct pairs, one "asio operation" entry.
const AsioOpName* asio_op_name(const char* object, const char* op) noexcept;
// Whether any translation unit of the program was built with asio_tracking.hpp (set before
// main() by the header's static initializer): the task dump says how to turn it on otherwise.
void note_asio_tracking() noexcept;
bool asio_tracking() noexcept;

#if STALLSCOPE_ENABLED
// Asio created operation `op` (any object whose address identifies it until it completes) of
// `object`: when the calling thread runs a task's slice, that task now awaits it. Executor
// hand-offs (post, dispatch, defer, execute) are not operations a task awaits and are skipped.
// Outside tasks it costs a thread-local load.
inline std::uint64_t asio_op_started(const void* op_id, const char* object,
                                     const char* op) noexcept {
  const std::uint64_t t = tls_task;
  if (t == 0) return 0;
  if (op[0] != 'a' || op[1] != 's' || op[2] != 'y' || op[3] != 'n' || op[4] != 'c' ||
      op[5] != '_') {
    return 0;
  }
  TaskSlot* s = live_task_slot(t);
  if (s == nullptr) return 0;
  s->asio_what.store(asio_op_name(object, op), std::memory_order_relaxed);
  s->asio_op.store(op_id, std::memory_order_release);
  return t;
}
// The operation `op_id` that task `task` (asio_op_started's result; 0: none) started completed
// (or was destroyed): the task no longer awaits it, unless it started another since.
inline void asio_op_done(std::uint64_t task, const void* op_id) noexcept {
  if (task == 0) return;
  if (TaskSlot* s = live_task_slot(task)) {
    s->asio_op.compare_exchange_strong(op_id, nullptr, std::memory_order_relaxed);
  }
}
#else
inline namespace off {
inline std::uint64_t asio_op_started(const void*, const char*, const char*) noexcept { return 0; }
inline void asio_op_done(std::uint64_t, const void*) noexcept {}
}  // namespace off
#endif

}  // namespace stallscope::detail
