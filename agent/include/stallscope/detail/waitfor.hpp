#pragma once
// The wait-for graph behind deadlock detection (agent/src/waitfor.cpp): who holds which
// stallscope resource and who waits for it, threads and tasks alike.
//
// A participant is a 64-bit identity: a thread is its ThreadShard's address (even), a task the
// identity of its coroutine's cancellation state, tagged with the low bit (odd). Holders are
// recorded where an acquisition happens (one relaxed store for a stallscope lock), waiters where
// a wait begins (the thread's wait slot for a lock, the primitive's queue for the rest).
// Sources other than the locks (Semaphore, AsyncMutex, Channel cores) register themselves as a
// WaitforSource and describe their holders and waiters when the graph is built.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "stallscope/config.hpp"
#include "stallscope/registry.hpp"
#if STALLSCOPE_ENABLED
#include "stallscope/detail/cells.hpp"
#include "stallscope/detail/slice.hpp"
#endif

namespace stallscope::detail {

using Participant = std::uintptr_t;
inline constexpr Participant kNoParticipant = 0;  // not known: never part of a cycle
// A hold whose holder is not known (a task suspended holding a lock it took without a known
// identity): its waiters are assumed able to proceed, so it never closes a cycle.
inline constexpr Participant kUnknownHolder = 1;

#if STALLSCOPE_ENABLED

// The thread calling, as a participant (0 once its shard is gone at thread exit).
inline Participant thread_participant() noexcept {
  return reinterpret_cast<Participant>(own_shard());
}
// The caller: the task whose slice runs here when known, else the thread.
inline Participant current_participant() noexcept {
  if (const SliceContext* sc = tls_slice; sc != nullptr && sc->task != 0) return sc->task;
  return thread_participant();
}
// The task series id of the slice running here (0: none). Out of line: slow paths only.
std::uint32_t current_task_series() noexcept;

// What sources report while the graph is built.
class WaitforBuilder {
 public:
  // A resource; `any`: a waiter needs any one of the holders to move (semaphore permits, a
  // channel's peers), otherwise all of them (a lock's holders). `side` qualifies a channel's
  // end ("send", "receive"); empty otherwise.
  std::uint32_t resource(ResourceKind kind, std::string_view name, std::string_view side, bool any);
  void holder(std::uint32_t res, Participant who, std::uint32_t task_series);
  // `who` waits for `res` since `since_ns`; `op` says how ("lock", "lock_shared", "send", ...).
  // `pcs`: the waiter's stack when the block profile captured one at its start (profile.cpp).
  void waiter(std::uint32_t res, Participant who, std::uint32_t task_series, std::int64_t since_ns,
              std::string_view op, std::span<const std::uintptr_t> pcs = {});

  struct Resource {
    ResourceKind kind;
    std::string name;
    std::string side;
    bool any;
    std::vector<std::uint32_t> holders;  // indexes into participants
  };
  struct Wait {
    std::uint32_t res;
    std::int64_t since_ns;
    std::string op;
    std::vector<std::uintptr_t> pcs;
  };
  struct Node {
    Participant id;
    std::uint32_t task_series = 0;  // 0: a thread (or a task whose name is not known)
    int tid = 0;                    // threads: the OS thread id
    std::vector<std::uint32_t> holds;
    std::vector<Wait> waits;
  };
  std::uint32_t node(Participant who, std::uint32_t task_series);
  std::vector<Resource> resources;
  std::vector<Node> nodes;

 private:
  std::unordered_map<Participant, std::uint32_t> index_;
};

// A primitive that holds waiters of its own (a queue under its own mutex). The most-derived
// class calls track() at the end of its constructor and untrack() first in its destructor, so
// that describe() never runs on a half-built or half-destroyed object. describe() runs under the
// registry of sources' mutex, which no user code holds; it may take the source's own mutex for a
// few microseconds (that mutex must never be held while calling track/untrack).
class WaitforSource {
 public:
  WaitforSource(const WaitforSource&) = delete;
  WaitforSource& operator=(const WaitforSource&) = delete;
  virtual void describe(WaitforBuilder& out) = 0;

 protected:
  WaitforSource() noexcept = default;
  ~WaitforSource() = default;
  void track() noexcept;
  void untrack() noexcept;

 private:
  friend struct WaitforSources;
  friend WaitforBuilder build_waitfor_graph();
  WaitforSource* prev_ = nullptr;
  WaitforSource* next_ = nullptr;
  bool linked_ = false;
};

// Builds the graph now (the Watchdog calls it every few hundred ms); finds the cycles, counts and
// logs each new one once. Returns how long the build took.
std::int64_t scan_deadlocks() noexcept;
// Builds the graph without the detection (benchmarks).
WaitforBuilder build_waitfor_graph();
// Cycles found by analysing `graph`: each a list of node indexes.
std::vector<std::vector<std::uint32_t>> find_cycles(const WaitforBuilder& graph);

#else

inline namespace off {
class WaitforSource {
 protected:
  void track() noexcept {}
  void untrack() noexcept {}
};
}  // namespace off

#endif

}  // namespace stallscope::detail
