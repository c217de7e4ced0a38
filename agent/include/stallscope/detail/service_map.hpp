#pragma once
// What the live map (/stallz/map) knows: who uses each resource (task names, threads), the facts
// of its objects (capacities, policies), and the task groups.
//
// Users are recorded per resource name into a UserSet: the first UserSet::kNamed distinct users
// by name, and beyond them an exact count of the other distinct users. Noting is kept off the fast
// paths' instruction budget (scripts/icount.sh): a lock or semaphore object keeps the last user
// it noted (note_user: a thread-local load and a compare when it repeats); a lock notes a plain
// thread only on its first uncontended acquisition of the name (add_first: its counter cell was
// zero) and on contended ones; a channel notes every sending task, every waiter, and one fast
// send and one fast receive in 64 per object. Only a new user takes the slow path, which scans
// the named users without a lock (a mutex once more than kNamed distinct users were seen).
//
// What the map can miss is listed in the README ("The live map"): users that only take those
// unnoted fast paths.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "stallscope/detail/cells.hpp"
#include "stallscope/detail/slice.hpp"
#include "stallscope/registry.hpp"

namespace stallscope::detail {

class Series;

// A user id: a task name's series id, or kThreadUser | an index into the known thread names.
inline constexpr std::uint32_t kThreadUser = 0x80000000u;

// The distinct users of one resource (one role of it: a channel's senders, its receivers).
class UserSet {
 public:
  static constexpr std::uint32_t kNamed = 16;
  // Notes `user` (non-zero). Lock-free while it is among the first kNamed; beyond them, under
  // an internal mutex that user code never holds. Out of memory: the extra user is not counted.
  void note(std::uint32_t user) noexcept;
  // The named users (in the order first seen) and how many other distinct users there were.
  std::vector<std::uint32_t> named() const;
  std::uint64_t more() const;

 private:
  std::atomic<std::uint32_t> named_[kNamed] = {};
  mutable std::mutex mu_;
  std::unordered_set<std::uint32_t> more_;
};

// This thread's user id (kThreadUser | the index of its name) once looked up; 0 before.
extern constinit thread_local std::uint32_t tls_thread_user;
// Looks this thread's user id up (once per thread: its name, under the names' mutex).
std::uint32_t thread_user() noexcept;
// The key of the calling user for a site's last-user cache: the running task's series, or this
// thread's user id, made odd so that it is never a series' address. The id, not the thread's
// identity: a thread that reuses an exited thread's thread-local storage is still told apart,
// and the numbered threads of one pool (one name in the map) share a key.
[[gnu::always_inline]] inline const void* current_user_key() noexcept {
  if (const SliceContext* sc = tls_slice) return sc->series;
  std::uint32_t u = tls_thread_user;
  if (u == 0) [[unlikely]]
    u = thread_user();
  return reinterpret_cast<const void*>((static_cast<std::uintptr_t>(u) << 1) | 1u);
}
void note_user_slow(UserSet& set, std::atomic<const void*>& last, const void* key) noexcept;

// Notes the caller as a user of `set` unless it was the last one noted through `last`.
[[gnu::always_inline]] inline void note_user(UserSet& set,
                                             std::atomic<const void*>& last) noexcept {
  const void* key = current_user_key();
  if (last.load(std::memory_order_relaxed) != key) [[unlikely]]
    note_user_slow(set, last, key);
}

// add(cell) that also says whether the cell held 0 before (this thread's first count in it), or
// that it cannot tell (the slow path): the cheap trigger for noting a thread's use of a lock.
[[gnu::always_inline]] inline bool add_first(std::uint32_t cell) noexcept {
  if (ThreadShard* s = tls_shard) [[likely]] {
    if (Cell* c = s->chunks[cell >> kChunkBits].load(std::memory_order_relaxed)) [[likely]] {
      Cell& x = c[cell & (kChunkCells - 1)];
      const std::uint64_t v = x.load(std::memory_order_relaxed);
      x.store(v + 1, std::memory_order_relaxed);
      return v == 0;
    }
  }
  add_slow(cell, 1);
  return true;
}

// The calling user's id (see kThreadUser): its task's series, or its thread's name.
std::uint32_t current_user() noexcept;
// The name of a user id: the task name, or the thread's name ("thread" when it has none of its
// own, i.e. it still has the process's name).
std::string user_name(std::uint32_t user);

// --- what the map shows per resource name, registered by recorders (rare paths only) ---
enum class UserRole : std::uint8_t { kUse, kSend, kReceive };
// `set` holds the users of `series` in `role`; both live as long as the process.
void map_users(const Series& series, UserRole role, const UserSet& set);
// A fact of one object of `series` ("capacity" 256, "policy" "wait"); the map shows the distinct
// values per name.
void map_fact(const Series& series, std::string_view key, std::uint64_t value) noexcept;
void map_fact(const Series& series, std::string_view key, std::string_view value) noexcept;
// A live object of `series` was created (+1) or destroyed (-1).
void map_object(const Series& series, int delta) noexcept;

// --- task groups ---
// One TaskGroup (instrumented/task.hpp implements it): it links itself while it lives.
class GroupEntry {
 public:
  struct Task {
    std::string name;
    std::uint64_t live = 0;
    std::uint64_t spawned = 0;
  };
  struct Info {
    std::string name;
    const void* token = nullptr;         // the group's scope (an identity only)
    const void* parent_token = nullptr;  // the scope it descends from; nullptr: none
    bool cancelled = false;
    bool closed = false;
    std::uint64_t shutdown_seq = 0;  // 0: not shut down; else its place in shutdown order
    std::vector<Task> tasks;         // by name
    std::uint64_t more_tasks = 0;    // spawns of task names beyond the first kMaxTaskNames
  };
  // Task names kept per group; later names are counted in more_tasks.
  static constexpr std::size_t kMaxTaskNames = 64;
  virtual Info describe() const = 0;

 protected:
  GroupEntry() = default;
  ~GroupEntry() = default;
  GroupEntry(const GroupEntry&) = delete;
  GroupEntry& operator=(const GroupEntry&) = delete;
};
void link_group(GroupEntry* group);
void unlink_group(GroupEntry* group) noexcept;
// The next place in shutdown order (1, 2, ...): the order in which groups began shutting down.
std::uint64_t next_shutdown_seq() noexcept;

// --- the snapshot the map is drawn from ---
struct MapUsers {
  std::vector<std::string> tasks;    // task names, sorted
  std::vector<std::string> threads;  // "thread" or a thread's name, sorted
  std::uint64_t more = 0;            // distinct users beyond the named ones
};
struct MapResource {
  ResourceKind kind = ResourceKind::kLock;
  std::string name;
  std::int64_t objects = -1;  // live objects; -1: not counted (locks)
  std::map<std::string, std::vector<std::uint64_t>> numbers;  // distinct values, sorted
  std::map<std::string, std::vector<std::string>> texts;      // distinct values, sorted
  std::map<UserRole, MapUsers> users;
};
struct MapGroup {
  std::string name;
  std::size_t objects = 0;  // live groups of this name
  std::vector<const void*> tokens;
  std::vector<const void*> parent_tokens;
  std::size_t cancelled = 0;  // of the objects
  std::size_t closed = 0;
  std::vector<std::uint64_t> shutdown_seqs;  // non-zero ones, sorted
  std::vector<GroupEntry::Task> tasks;       // by name, summed over the objects
  std::uint64_t more_tasks = 0;
};
struct MapSnapshot {
  std::vector<MapGroup> groups;        // by name
  std::vector<MapResource> resources;  // by kind, then name
};
// Reads everything above; takes only the map's own mutexes (never one user code can hold).
MapSnapshot take_map_snapshot();

}  // namespace stallscope::detail
