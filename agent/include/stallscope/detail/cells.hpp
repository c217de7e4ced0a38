#pragma once
// Per-thread counter cells: the storage under every counter and histogram bucket.
//
// Every recorder owns a block of "cells" (64-bit counters) identified by a global index. Each
// thread writes into its own ThreadShard, a directory of lazily allocated chunks indexed by
// cell index, so a write is a plain load + store on memory only that thread writes: no lock, no
// read-modify-write, no shared cache line. A scrape sums the cell over every shard.
//
// Ordering argument:
//  - A shard has exactly one writer at a time. The owner increments with relaxed load + store;
//    the scraper reads with relaxed loads. Both are atomics, so there is no data race; a scrape
//    may miss increments made while it runs, never tear or lose them.
//  - A chunk is zero-filled before its pointer is published with a release store; the scraper
//    loads the pointer with acquire, so it never reads uninitialised cells.
//  - When a thread exits its shard is marked free with a release store; a new thread claims it
//    with an acquire CAS, so the new owner sees every count the old owner wrote and continues
//    from there. Counts survive thread exit without any merging step.
//  - After a thread's shard is released (thread-local destruction, static destruction at exit)
//    writes go to one shared fallback shard with fetch_add: slower, still exact.
#include <atomic>
#include <cstdint>

namespace stallscope::detail {

inline constexpr std::uint32_t kChunkBits = 10;
inline constexpr std::uint32_t kChunkCells = 1u << kChunkBits;  // 8 KiB of counters
inline constexpr std::uint32_t kMaxChunks = 1024;               // 1 Mi cells addressable
inline constexpr std::uint32_t kNoCell = ~0u;

using Cell = std::atomic<std::uint64_t>;

// What one thread is blocked on right now, read by scrapes for "waiters now" and "oldest
// waiter age". Written only by the owning thread, on contended paths.
struct WaitSlot {
  std::atomic<std::uint32_t> series{0};  // 0: not waiting
  std::atomic<std::uint32_t> op{0};
  std::atomic<std::int64_t> since_ns{0};
  // For the wait-for graph (detail/waitfor.hpp): the LockSite waited on and the waiting task's
  // participant id (0: the thread), both written before `series`.
  std::atomic<const void*> object{nullptr};
  std::atomic<std::uintptr_t> task{0};
};

// Shared holds of stallscope locks by this thread, for the wait-for graph: the LockSite and the
// holder (the task when known, else the thread). Written only by the owning thread.
struct SharedHoldSlot {
  std::atomic<const void*> site{nullptr};
  std::atomic<std::uintptr_t> who{0};
};

// The task slice this thread runs right now, read by the watchdog and by scrapes. Written only by
// the owning thread at slice start and end (two stores each).
struct SliceSlot {
  std::atomic<std::uint32_t> series{0};   // task series id; 0: not in a slice
  std::atomic<std::int64_t> start_ns{0};  // also identifies the slice for the watchdog
};

struct ThreadShard {
  std::atomic<Cell*> chunks[kMaxChunks] = {};
  std::atomic<bool> owned{false};
  bool fallback = false;  // shared by exited threads: writes use fetch_add
  ThreadShard* next = nullptr;
  WaitSlot wait;
  SliceSlot slice;
  SharedHoldSlot shared[4];
  std::atomic<int> tid{0};  // the owning thread's id, for naming it in the wait-for graph
};

extern constinit thread_local ThreadShard* tls_shard;

void add_slow(std::uint32_t cell, std::uint64_t delta) noexcept;
ThreadShard* own_shard_slow() noexcept;  // nullptr once this thread's shard is gone

// Adds `delta` to `cell` in this thread's shard. Wait-free after the first touch of a chunk.
[[gnu::always_inline]] inline void add(std::uint32_t cell, std::uint64_t delta = 1) noexcept {
  if (ThreadShard* s = tls_shard) [[likely]] {
    if (Cell* c = s->chunks[cell >> kChunkBits].load(std::memory_order_relaxed)) [[likely]] {
      Cell& x = c[cell & (kChunkCells - 1)];
      x.store(x.load(std::memory_order_relaxed) + delta, std::memory_order_relaxed);
      return;
    }
  }
  add_slow(cell, delta);
}

inline ThreadShard* own_shard() noexcept {
  if (ThreadShard* s = tls_shard) [[likely]]
    return s;
  return own_shard_slow();
}

// Scrape side: sums cells [base, base + n) over all shards into out[0..n).
void sum_cells(std::uint32_t base, std::uint32_t n, std::uint64_t* out) noexcept;

// Calls fn(const WaitSlot&) for every shard that is currently owned or fallback.
template <class Fn>
void for_each_shard(Fn&& fn);

ThreadShard* shard_list_head() noexcept;

template <class Fn>
void for_each_shard(Fn&& fn) {
  for (ThreadShard* s = shard_list_head(); s != nullptr; s = s->next) fn(*s);
}

struct ShardStats {
  std::uint64_t shards = 0;
  std::uint64_t owned = 0;
  std::uint64_t chunk_bytes = 0;
};
ShardStats shard_stats() noexcept;

}  // namespace stallscope::detail
