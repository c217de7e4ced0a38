#include "stallscope/detail/cells.hpp"

#include <unistd.h>

#include <mutex>
#include <new>

#include "cells_alloc.hpp"

namespace stallscope::detail {

constinit thread_local ThreadShard* tls_shard = nullptr;

namespace {

// 0: no shard yet, 1: owns tls_shard, 2: shard released (thread is exiting).
constinit thread_local std::uint8_t tls_state = 0;

std::atomic<ThreadShard*> g_head{nullptr};
std::atomic<std::uint64_t> g_chunk_bytes{0};

void push(ThreadShard* s) noexcept {
  ThreadShard* head = g_head.load(std::memory_order_relaxed);
  do {
    s->next = head;
  } while (
      !g_head.compare_exchange_weak(head, s, std::memory_order_release, std::memory_order_relaxed));
}

ThreadShard* fallback_shard() noexcept {
  // Leaked on purpose: wrappers may record during static destruction.
  static ThreadShard* const fb = [] {
    auto* s = new (std::nothrow) ThreadShard;
    if (s != nullptr) {
      s->fallback = true;
      s->owned.store(true, std::memory_order_relaxed);
      push(s);
    }
    return s;
  }();
  return fb;
}

struct ShardRelease {
  ~ShardRelease() {
    if (ThreadShard* s = tls_shard) {
      s->wait.series.store(0, std::memory_order_relaxed);
      tls_shard = nullptr;
      s->owned.store(false, std::memory_order_release);
    }
    tls_state = 2;
  }
};

ThreadShard* claim() noexcept {
  for (ThreadShard* s = g_head.load(std::memory_order_acquire); s != nullptr; s = s->next) {
    if (s->fallback) continue;
    bool expected = false;
    if (!s->owned.load(std::memory_order_relaxed) &&
        s->owned.compare_exchange_strong(expected, true, std::memory_order_acquire)) {
      return s;
    }
  }
  auto* s = new (std::nothrow) ThreadShard;
  if (s == nullptr) return nullptr;
  s->owned.store(true, std::memory_order_relaxed);
  push(s);
  return s;
}

Cell* new_chunk() noexcept {
  auto* c = new (std::nothrow) Cell[kChunkCells];
  if (c == nullptr) return nullptr;
  for (std::uint32_t i = 0; i < kChunkCells; ++i) c[i].store(0, std::memory_order_relaxed);
  g_chunk_bytes.fetch_add(sizeof(Cell) * kChunkCells, std::memory_order_relaxed);
  return c;
}

void add_fallback(std::uint32_t cell, std::uint64_t delta) noexcept {
  ThreadShard* fb = fallback_shard();
  if (fb == nullptr) return;  // out of memory at exit: nothing else can be done
  std::atomic<Cell*>& slot = fb->chunks[cell >> kChunkBits];
  Cell* c = slot.load(std::memory_order_acquire);
  if (c == nullptr) {
    Cell* fresh = new_chunk();
    if (fresh == nullptr) return;
    if (slot.compare_exchange_strong(c, fresh, std::memory_order_acq_rel)) {
      c = fresh;
    } else {
      delete[] fresh;  // another thread published first; c holds its chunk
      g_chunk_bytes.fetch_sub(sizeof(Cell) * kChunkCells, std::memory_order_relaxed);
    }
  }
  c[cell & (kChunkCells - 1)].fetch_add(delta, std::memory_order_relaxed);
}

}  // namespace

ThreadShard* own_shard_slow() noexcept {
  if (tls_state != 0) return tls_shard;  // 1: set; 2: released for good
  ThreadShard* s = claim();
  if (s == nullptr) return nullptr;
  s->tid.store(static_cast<int>(::gettid()), std::memory_order_relaxed);
  tls_shard = s;
  tls_state = 1;
  // Registers the release at thread exit; constructed on first use only.
  static thread_local ShardRelease release;
  (void)release;
  return s;
}

void add_slow(std::uint32_t cell, std::uint64_t delta) noexcept {
  if (cell == kNoCell || (cell >> kChunkBits) >= kMaxChunks) return;
  ThreadShard* s = own_shard_slow();
  if (s == nullptr) {
    add_fallback(cell, delta);
    return;
  }
  std::atomic<Cell*>& slot = s->chunks[cell >> kChunkBits];
  Cell* c = slot.load(std::memory_order_relaxed);
  if (c == nullptr) {
    c = new_chunk();
    if (c == nullptr) {
      add_fallback(cell, delta);
      return;
    }
    slot.store(c, std::memory_order_release);
  }
  Cell& x = c[cell & (kChunkCells - 1)];
  x.store(x.load(std::memory_order_relaxed) + delta, std::memory_order_relaxed);
}

ThreadShard* shard_list_head() noexcept {
  fallback_shard();  // make sure it is listed before anyone sums
  return g_head.load(std::memory_order_acquire);
}

void sum_cells(std::uint32_t base, std::uint32_t n, std::uint64_t* out) noexcept {
  for (std::uint32_t i = 0; i < n; ++i) out[i] = 0;
  if (base == kNoCell) return;
  for (ThreadShard* s = shard_list_head(); s != nullptr; s = s->next) {
    // A block never straddles a chunk (see CellAllocator), so one chunk holds all of it.
    Cell* c = s->chunks[base >> kChunkBits].load(std::memory_order_acquire);
    if (c == nullptr) continue;
    const std::uint32_t off = base & (kChunkCells - 1);
    for (std::uint32_t i = 0; i < n; ++i) out[i] += c[off + i].load(std::memory_order_relaxed);
  }
}

ShardStats shard_stats() noexcept {
  ShardStats st;
  for (ThreadShard* s = shard_list_head(); s != nullptr; s = s->next) {
    if (s->fallback) continue;
    ++st.shards;
    if (s->owned.load(std::memory_order_relaxed)) ++st.owned;
  }
  st.chunk_bytes = g_chunk_bytes.load(std::memory_order_relaxed);
  return st;
}

std::uint32_t CellAllocator::allocate(std::uint32_t n) noexcept {
  if (n == 0 || n > kChunkCells) return kNoCell;
  std::lock_guard lock(mu_);
  std::uint32_t start = next_;
  if ((start & (kChunkCells - 1)) + n > kChunkCells) {
    start = (start + kChunkCells - 1) & ~(kChunkCells - 1);  // next chunk: never straddle
  }
  if (static_cast<std::uint64_t>(start) + n >
      static_cast<std::uint64_t>(kChunkCells) * kMaxChunks) {
    return kNoCell;
  }
  next_ = start + n;
  return start;
}

std::uint32_t CellAllocator::used() const noexcept {
  std::lock_guard lock(mu_);
  return next_;
}

CellAllocator& cell_allocator() noexcept {
  static auto* const a = new CellAllocator;  // leaked: used during static destruction
  return *a;
}

}  // namespace stallscope::detail
