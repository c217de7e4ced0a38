#pragma once
// What every recorder's series does the same way: find or create its series in the registry, lay
// out its cells (counters, then histograms of one bucket layout), and at collect time label its
// metrics, snapshot its histograms and find the oldest of its live objects' waits.
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "cells_alloc.hpp"
#include "stallscope/detail/histogram.hpp"
#include "stallscope/detail/series.hpp"
#include "stallscope/snapshot.hpp"

namespace stallscope::detail {

// The series of type S for (kind, name), created if new (S's constructor takes the arguments of
// Registry::SeriesFactory). Throws std::invalid_argument on a bad name.
template <class S>
S& series_of(ResourceKind kind, std::string_view name) {
  auto make = [](ResourceKind k, std::string n, std::uint32_t id,
                 const Config& c) -> std::unique_ptr<Series> {
    return std::make_unique<S>(k, std::move(n), id, c);
  };
  return static_cast<S&>(Registry::global().series(kind, name, make));
}

// Allocates `counters` counter cells followed by one histogram per entry of `hists` (its cells
// and its layout), points each histogram at its cells, and returns the block's first cell. Out of
// cells: kNoCell, and the histograms record nothing.
inline std::uint32_t allocate_series_cells(
    std::uint32_t counters,
    std::initializer_list<std::pair<HistogramCells*, const BucketLayout*>> hists) noexcept {
  std::uint32_t n = counters;
  for (const auto& [h, layout] : hists) n += layout->cells();
  const std::uint32_t base = cell_allocator().allocate(n);
  std::uint32_t next = base == kNoCell ? kNoCell : base + counters;
  for (const auto& [h, layout] : hists) {
    h->layout = layout;
    h->base = next;
    if (next != kNoCell) next += layout->cells();
  }
  return base;
}

// The same with every histogram of one `layout`.
inline std::uint32_t allocate_series_cells(std::uint32_t counters, const BucketLayout& layout,
                                           std::initializer_list<HistogramCells*> hists) noexcept {
  const auto n = static_cast<std::uint32_t>(hists.size());
  const std::uint32_t base = cell_allocator().allocate(counters + n * layout.cells());
  std::uint32_t next = base == kNoCell ? kNoCell : base + counters;
  for (HistogramCells* h : hists) {
    h->layout = &layout;
    h->base = next;
    if (next != kNoCell) next += layout.cells();
  }
  return base;
}

// The `N` counter cells at `base` (a series' counters) summed over threads.
template <std::uint32_t N>
std::array<std::uint64_t, N> summed_counters(std::uint32_t base) noexcept {
  std::array<std::uint64_t, N> c;
  sum_cells(base, N, c.data());
  return c;
}

// A histogram's cells summed over threads, as the collector takes them.
inline HistogramSnapshot snapshot(const HistogramCells& h) { return read(h); }
// A wait histogram's, with its exemplars when the scrape wants them (ExemplarsWanted).
inline HistogramSnapshot snapshot(const WaitHistogramCells& h) { return read(h); }

// `h` with `n` more observations of 0 in its first bucket: a wait histogram records only the
// waits that queued, and its fast acquisitions (counted in one cell) are zero waits.
inline HistogramSnapshot plus_zero_waits(HistogramSnapshot h, std::uint64_t n) {
  h.counts[0] += n;
  h.count += n;
  return h;
}

// Keeps in `oldest` the earlier of it and `since` (0 in either: none).
inline void keep_oldest(std::int64_t& oldest, std::int64_t since) noexcept {
  if (since != 0 && (oldest == 0 || since < oldest)) oldest = since;
}

// The waits queued on a series' live objects now, for Collector::add_wait: how many, and since
// when the oldest of them has waited (0: none waits).
struct QueuedNow {
  std::size_t count = 0;
  std::int64_t oldest_since = 0;
  // One object's `n` queued waits, the oldest queued since `since` (read only when n > 0).
  void add(std::size_t n, const std::atomic<std::int64_t>& since) noexcept {
    count += n;
    if (n > 0) keep_oldest(oldest_since, since.load(std::memory_order_relaxed));
  }
};

// {kind, resource} of a series, the labels of every resource metric.
inline Labels resource_labels(const Series& s) {
  return Labels{{"kind", std::string(to_string(s.kind()))}, {"resource", s.name()}};
}

// `labels` with one more label.
inline Labels with_label(Labels labels, const char* key, const char* value) {
  labels.emplace_back(key, value);
  return labels;
}

}  // namespace stallscope::detail
