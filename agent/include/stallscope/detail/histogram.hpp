#pragma once
// A duration histogram over per-thread cells (see cells.hpp).
//
// Cell block layout: [bucket 0 .. bucket n] (n+1 cells, the last is +Inf), then the sum in
// nanoseconds. The count is the sum of the buckets, so _count and the +Inf bucket always agree.
// Recording is two cell adds and a bucket lookup: O(1) via a table indexed by the value's bit
// width, then at most a few compares within that power of two.
//
// A wait histogram (WaitHistogramCells) also keeps exemplars (exemplars.cpp): the newest
// contended wait of each bucket, with the task that waited and the application's trace id, in
// slots allocated by the first wait that has one to keep.
#include <array>
#include <atomic>
#include <bit>
#include <cstdint>

#include "stallscope/buckets.hpp"
#include "stallscope/detail/cells.hpp"
#include "stallscope/snapshot.hpp"

namespace stallscope::detail {

class BucketLayout {
 public:
  explicit BucketLayout(const Buckets& buckets);

  std::uint32_t index(std::int64_t ns) const noexcept {
    const auto v = static_cast<std::uint64_t>(ns < 0 ? 0 : ns);
    std::uint32_t i = first_[static_cast<std::uint32_t>(std::bit_width(v))];
    while (static_cast<std::int64_t>(v) > bounds_ns_[i]) ++i;  // sentinel at n stops it
    return i;
  }
  std::uint32_t bucket_count() const noexcept { return n_ + 1; }  // including +Inf
  std::uint32_t cells() const noexcept { return n_ + 2; }         // buckets + sum
  const Buckets& buckets() const noexcept { return buckets_; }

 private:
  Buckets buckets_;
  std::uint32_t n_;
  std::array<std::int64_t, Buckets::kMaxBounds + 1> bounds_ns_{};
  std::array<std::uint8_t, 65> first_{};
};

struct HistogramCells {
  const BucketLayout* layout = nullptr;
  std::uint32_t base = kNoCell;

  [[gnu::always_inline]] void record(std::int64_t ns) const noexcept {
    if (ns < 0) ns = 0;
    add(base + layout->index(ns));
    add(base + layout->bucket_count(), static_cast<std::uint64_t>(ns));
  }
  // A zero-duration observation without reading the value: the first bucket.
  void record_zero() const noexcept { add(base); }
  // Records `ns` here and in `other` (one bucket lookup when both share a layout, as series made
  // with the same bounds do).
  [[gnu::always_inline]] void record_with(const HistogramCells& other,
                                          std::int64_t ns) const noexcept {
    if (ns < 0) ns = 0;
    if (other.layout != layout) [[unlikely]] {
      record(ns);
      other.record(ns);
      return;
    }
    const std::uint32_t i = layout->index(ns);
    const std::uint32_t sum = layout->bucket_count();
    add(base + i);
    add(base + sum, static_cast<std::uint64_t>(ns));
    add(other.base + i);
    add(other.base + sum, static_cast<std::uint64_t>(ns));
  }
};

struct ExemplarSlot;  // exemplars.cpp

// The histogram of a kind's contended waits: HistogramCells plus the newest exemplar of each
// bucket. A type of its own so that every other histogram (and record()) stays as it is.
struct WaitHistogramCells : HistogramCells {
  // One slot per bucket (bucket_count()), or null until record_wait() has an exemplar to keep.
  mutable std::atomic<ExemplarSlot*> exemplars{nullptr};

  WaitHistogramCells() = default;
  ~WaitHistogramCells();
  WaitHistogramCells(const WaitHistogramCells&) = delete;
  WaitHistogramCells& operator=(const WaitHistogramCells&) = delete;

  // A contended wait of `ns` that ended at `end_ns` (a now_ns() value): recorded as record()
  // does, and kept as its bucket's exemplar when there is a task name (the thread runs a task
  // slice) or a trace id (set_trace_id_provider) to keep with it. For the waits' slow path
  // only: it reads a thread-local, calls the trace id provider, writes the slot under its
  // sequence counter and, once per histogram, allocates the slots.
  void record_wait(std::int64_t ns, std::int64_t end_ns) const noexcept {
    record(ns);
    keep_exemplar(ns, end_ns);
  }
  void keep_exemplar(std::int64_t ns, std::int64_t end_ns) const noexcept;
};

// A histogram of `layout` from its cells already summed over threads (layout.cells() of them).
HistogramSnapshot to_snapshot(const BucketLayout& layout, const std::uint64_t* cells);
// A histogram's cells summed over threads; base kNoCell reads as empty.
HistogramSnapshot read(const HistogramCells& h);
// The same with the exemplars (HistogramSnapshot::exemplars, Unix timestamps) when an
// ExemplarsWanted lives on this thread (exemplars.cpp).
HistogramSnapshot read(const WaitHistogramCells& h);

// While one lives, reading a wait histogram on this thread copies its exemplars too:
// Registry::collect() called in its scope gives them (the OpenMetrics output). Without one, no
// scrape (the text format, the /stallz sampler) pays for their strings.
class ExemplarsWanted {
 public:
  ExemplarsWanted() noexcept : previous_(wanted_) { wanted_ = true; }
  ~ExemplarsWanted() { wanted_ = previous_; }
  ExemplarsWanted(const ExemplarsWanted&) = delete;
  ExemplarsWanted& operator=(const ExemplarsWanted&) = delete;
  static bool now() noexcept { return wanted_; }

 private:
  static thread_local bool wanted_;
  bool previous_;
};

// The one layout for these bounds, shared by every series that uses them (series are created
// with the registry's configured buckets, so there are a handful at most). Lives as long as the
// process. Thread-safe; for series construction, not the hot path.
const BucketLayout& shared_layout(const Buckets& buckets);

}  // namespace stallscope::detail
