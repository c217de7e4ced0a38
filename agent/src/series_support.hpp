#pragma once
// What every recorder's series does the same way: lay out its cells (counters, then histograms
// of one bucket layout), and at collect time label its metrics and snapshot its histograms.
#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>

#include "cells_alloc.hpp"
#include "stallscope/detail/histogram.hpp"
#include "stallscope/detail/series.hpp"
#include "stallscope/snapshot.hpp"

namespace stallscope::detail {

// Allocates `counters` counter cells followed by one histogram of `layout` per entry of `hists`,
// points each histogram at its cells, and returns the block's first cell. Out of cells: kNoCell,
// and the histograms record nothing.
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

// A histogram's cells summed over threads, as the collector takes them.
inline HistogramSnapshot snapshot(const HistogramCells& h) {
  HistogramData d = read(h);
  return HistogramSnapshot{std::move(d.bounds), std::move(d.counts), d.count, d.sum_seconds};
}

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
