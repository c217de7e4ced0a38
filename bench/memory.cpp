// Memory per resource and per thread, printed as a markdown table (scripts/bench.sh copies it into
// the results). Sizes come from sizeof and the cell layout; heap costs are measured with glibc's
// mallinfo2() around the operation, and shard memory with the agent's own
// stallscope_shard_memory_bytes gauge read from a collect before and after.
#include <malloc.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <latch>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <string_view>
#include <thread>

#include <fmt/format.h>

#include "cells_alloc.hpp"
#include "stallscope/detail/cells.hpp"
#include "stallscope/detail/histogram.hpp"
#include "stallscope/detail/lock_recorder.hpp"
#include "stallscope/mutex.hpp"
#include "stallscope/options.hpp"
#include "stallscope/registry.hpp"

namespace {

namespace sd = stallscope::detail;

constexpr std::size_t kN = 1000;

std::size_t heap_in_use() {
  const struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

double shard_memory_bytes() {
  for (const auto& f : stallscope::Registry::global().collect()) {
    if (f.name == "stallscope_shard_memory_bytes" && !f.samples.empty()) {
      return f.samples.front().value;
    }
  }
  return -1;
}

// kN Mutex objects in storage allocated up front, so heap deltas show only what the library
// allocates, not the objects themselves.
class MutexArray {
 public:
  MutexArray() : storage_(new std::byte[kN * sizeof(stallscope::Mutex)]) {}
  ~MutexArray() {
    for (std::size_t i = 0; i < built_; ++i) std::destroy_at(&at(i));
  }
  MutexArray(const MutexArray&) = delete;
  MutexArray& operator=(const MutexArray&) = delete;

  template <class NameFn>
  void build(NameFn name) {
    for (; built_ < kN; ++built_) {
      new (storage_.get() + built_ * sizeof(stallscope::Mutex)) stallscope::Mutex(name(built_));
    }
  }
  stallscope::Mutex& at(std::size_t i) {
    return *std::launder(
        reinterpret_cast<stallscope::Mutex*>(storage_.get() + i * sizeof(stallscope::Mutex)));
  }
  void lock_all() {
    for (std::size_t i = 0; i < built_; ++i) {
      at(i).lock();
      at(i).unlock();
    }
  }

 private:
  std::unique_ptr<std::byte[]> storage_;
  std::size_t built_ = 0;
};

void row(std::string_view what, double bytes, std::string_view how) {
  std::printf("| %s | %s | %s |\n", std::string(what).c_str(), fmt::format("{:.0f}", bytes).c_str(),
              std::string(how).c_str());
}

}  // namespace

int main() {
  // Warm up the registry, the main thread's shard and the fallback shard, so that one-time
  // allocations are not charged to the first measurement.
  {
    stallscope::Mutex warm("memory-warmup");
    warm.lock();
    warm.unlock();
    (void)shard_memory_bytes();
  }

  const stallscope::Config config = stallscope::Registry::global().config();
  // Hold cells only once an object of the series times its holds (off by default).
  const std::uint32_t cells_per_series =
      sd::LockOpCells::kCounters + sd::BucketLayout(config.wait_buckets).cells();

  // 1000 distinct names: one series each.
  MutexArray named;
  const std::uint32_t cells_before = sd::cell_allocator().used();
  const std::size_t heap_before_named = heap_in_use();
  named.build([](std::size_t i) { return fmt::format("mem-named-{:04}", i); });
  const std::size_t heap_named = heap_in_use() - heap_before_named;
  const std::uint32_t cells_used = sd::cell_allocator().used() - cells_before;

  // 1000 more objects sharing one name: one series for all.
  MutexArray shared;
  shared.build([](std::size_t) { return std::string("mem-shared"); });
  const std::size_t heap_before_shared = heap_in_use();
  MutexArray shared2;
  shared2.build([](std::size_t) { return std::string("mem-shared"); });
  const std::size_t heap_shared = heap_in_use() - heap_before_shared;
  // MutexArray's own storage is part of the delta above; take it out.
  const double heap_per_shared_object =
      (static_cast<double>(heap_shared) - static_cast<double>(kN * sizeof(stallscope::Mutex))) / kN;

  // Shard memory: the main thread records into every named lock...
  const double shard_before_main = shard_memory_bytes();
  named.lock_all();
  const double shard_main = shard_memory_bytes() - shard_before_main;

  // ...a new thread records into all 1000 (main is alive, so it claims a fresh shard)...
  std::latch all_done(1);
  std::latch one_done(1);
  const double shard_before_all = shard_memory_bytes();
  std::thread all([&] {
    named.lock_all();
    all_done.count_down();
    one_done.wait();  // stay alive: the next thread must not reuse this shard
  });
  all_done.wait();
  const double shard_all = shard_memory_bytes() - shard_before_all;

  // ...and another new thread records into one lock.
  const double shard_before_one = shard_memory_bytes();
  std::thread([&] {
    named.at(0).lock();
    named.at(0).unlock();
  }).join();
  const double shard_one = shard_memory_bytes() - shard_before_one;
  one_done.count_down();
  all.join();

  const double chunk = sd::kChunkCells * sizeof(sd::Cell);
  std::printf("| What | Bytes | How it is obtained |\n|---|---:|---|\n");
  row("`std::mutex` object", sizeof(std::mutex), "sizeof");
  row("`stallscope::Mutex` object", sizeof(stallscope::Mutex),
      fmt::format("sizeof: +{} B over std::mutex (the per-object LockSite)",
                  sizeof(stallscope::Mutex) - sizeof(std::mutex)));
  row("heap per new lock name (series + registry entry)", static_cast<double>(heap_named) / kN,
      "mallinfo2() delta over 1000 distinct names / 1000 (malloc overhead included)");
  row("heap per further object sharing a name", heap_per_shared_object,
      "mallinfo2() delta over 1000 objects of one existing name / 1000");
  row("cells per lock series", cells_per_series,
      fmt::format("LockOpCells::kCounters {} + wait {} (bounds + Inf + sum); hold timing adds "
                  "{} once an object of the name times its holds",
                  sd::LockOpCells::kCounters, sd::BucketLayout(config.wait_buckets).cells(),
                  sd::BucketLayout(config.hold_buckets).cells()));
  row("counter bytes per lock series, per recording thread",
      static_cast<double>(cells_used) / kN * sizeof(sd::Cell),
      fmt::format("cell allocator: {} cells for 1000 series (blocks never straddle a chunk) x 8 B "
                  "/ 1000",
                  cells_used));
  row("`ThreadShard` (per thread that records, reused after it exits)", sizeof(sd::ThreadShard),
      "sizeof: chunk directory of 1024 pointers + wait and slice slots");
  row("chunk (allocated per thread on first touch)", chunk, "kChunkCells (1024) x 8 B");
  row("main thread, first record into each of 1000 lock series", shard_main,
      fmt::format("stallscope_shard_memory_bytes delta: {:.0f} chunks", shard_main / chunk));
  row("new thread recording into 1 lock", shard_one,
      "stallscope_shard_memory_bytes delta: shard + 1 chunk");
  row("new thread recording into all 1000 locks", shard_all,
      fmt::format("stallscope_shard_memory_bytes delta: shard + {:.0f} chunks = {:.0f} B per lock",
                  (shard_all - static_cast<double>(sizeof(sd::ThreadShard))) / chunk,
                  shard_all / kN));
  return 0;
}
