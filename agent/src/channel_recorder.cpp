#include "stallscope/detail/channel_recorder.hpp"

#include <algorithm>

#include "cells_alloc.hpp"

namespace stallscope::detail {

namespace {

const FamilyDesc kDepth{"stallscope_channel_depth", "Items queued now (data lane), all objects.",
                        MetricType::kGauge};
const FamilyDesc kCapacity{"stallscope_channel_capacity",
                           "Capacity of the data lane, summed over live objects.",
                           MetricType::kGauge};
const FamilyDesc kHighWater{"stallscope_channel_high_water",
                            "Largest data-lane depth any live object has reached.",
                            MetricType::kGauge};
const FamilyDesc kFullSeconds{"stallscope_channel_full_seconds_total",
                              "Time the channel spent at capacity (summed over objects).",
                              MetricType::kCounter};
const FamilyDesc kQueueTime{"stallscope_channel_queue_seconds",
                            "Time items sat in the channel, from send to receive.",
                            MetricType::kHistogram};
const FamilyDesc kSentFamily{"stallscope_channel_sent_total", "Items given to send calls, by lane.",
                             MetricType::kCounter};
const FamilyDesc kItems{"stallscope_channel_items_total",
                        "What became of sent items, by lane and outcome. sent_total == "
                        "sum(items_total) + depth.",
                        MetricType::kCounter};
const FamilyDesc kMergeErrorsFamily{"stallscope_channel_merge_errors_total",
                                    "Merge functions that threw; the item was shed and returned.",
                                    MetricType::kCounter};
const FamilyDesc kIdleReceivers{"stallscope_channel_idle_receivers",
                                "Receivers waiting on an empty channel now.", MetricType::kGauge};

constexpr const char* kFateNames[kItemFates] = {"delivered", "dropped",   "merged",    "shed",
                                                "closed",    "cancelled", "timed_out", "drained"};
constexpr const char* kLaneNames[2] = {"data", "control"};

ChannelSeries* channel_series(std::string_view name) {
  auto make = [](ResourceKind k, std::string n, std::uint32_t id,
                 const Config& c) -> std::unique_ptr<Series> {
    return std::make_unique<ChannelSeries>(k, std::move(n), id, c);
  };
  return static_cast<ChannelSeries*>(
      &Registry::global().series(ResourceKind::kChannel, name, make));
}

}  // namespace

ChannelSeries::ChannelSeries(ResourceKind kind, std::string name, std::uint32_t id,
                             const Config& config)
    : Series(kind, std::move(name), id), layout_(config.wait_buckets) {
  base = cell_allocator().allocate(kCounters + 3 * layout_.cells());
  for (HistogramCells* h : {&send_wait, &recv_idle, &queue_time}) h->layout = &layout_;
  if (base != kNoCell) {
    send_wait.base = base + kCounters;
    recv_idle.base = send_wait.base + layout_.cells();
    queue_time.base = recv_idle.base + layout_.cells();
  }
}

void ChannelSeries::collect(Collector& out) {
  std::uint64_t c[kCounters];
  sum_cells(base, kCounters, c);
  const std::string kind(to_string(this->kind()));
  const Labels res{{"kind", kind}, {"resource", name()}};
  auto with = [&](std::initializer_list<std::pair<std::string, std::string>> more) {
    Labels l = res;
    l.insert(l.end(), more.begin(), more.end());
    return l;
  };
  auto snap = [](const HistogramCells& h, std::uint64_t zero_waits) {
    HistogramData d = read(h);
    HistogramSnapshot s{std::move(d.bounds), std::move(d.counts), d.count + zero_waits,
                        d.sum_seconds};
    s.counts[0] += zero_waits;
    return s;
  };

  std::size_t depth = 0, capacity = 0, high = 0, send_waiters = 0, idle = 0;
  std::int64_t oldest = 0;
  double full_ns = static_cast<double>(c[kFullNs]);
  sites_.for_each([&](const ChannelSite& site) {
    const ChannelSite* s = &site;
    depth += s->depth_.load(std::memory_order_relaxed);
    capacity += s->capacity_;
    high = std::max(high, s->high_water_.load(std::memory_order_relaxed));
    const std::size_t w = s->send_waiters_.load(std::memory_order_relaxed);
    send_waiters += w;
    const std::int64_t since = s->oldest_send_since_.load(std::memory_order_relaxed);
    if (w > 0 && since != 0 && (oldest == 0 || since < oldest)) oldest = since;
    idle += s->recv_waiters_.load(std::memory_order_relaxed);
    const std::int64_t full = s->full_since_.load(std::memory_order_relaxed);
    if (full != 0) full_ns += static_cast<double>(out.age_ns(full));
  });

  const Labels send = with({{"op", "send"}});
  out.add(kWaitSeconds, send, snap(send_wait, c[kFastSend]));
  out.add(kWaiters, send, static_cast<double>(send_waiters));
  out.add(kOldestWaitAge, send, oldest == 0 ? 0.0 : static_cast<double>(out.age_ns(oldest)) * 1e-9);
  out.add(kIdleSeconds, with({{"op", "receive"}}), snap(recv_idle, c[kFastRecv]));
  out.add(kIdleReceivers, res, static_cast<double>(idle));
  out.add(kDepth, res, static_cast<double>(depth));
  out.add(kCapacity, res, static_cast<double>(capacity));
  out.add(kHighWater, res, static_cast<double>(high));
  // The closed intervals (cells) and the open ones (sites) are read without a common lock, so
  // one scrape can count an interval that is just closing twice; never report less than before.
  full_reported_ns_ = std::max(full_reported_ns_, full_ns);
  out.add(kFullSeconds, res, full_reported_ns_ * 1e-9);
  out.add(kQueueTime, res, snap(queue_time, 0));
  out.add(kMergeErrorsFamily, res, static_cast<double>(c[kMergeErrors]));
  for (std::uint32_t lane = 0; lane < 2; ++lane) {
    out.add(kSentFamily, with({{"lane", kLaneNames[lane]}}), static_cast<double>(c[kSent + lane]));
    for (std::uint32_t f = 0; f < kItemFates; ++f) {
      out.add(kItems, with({{"lane", kLaneNames[lane]}, {"outcome", kFateNames[f]}}),
              static_cast<double>(c[kFates + lane * kItemFates + f]));
    }
  }
}

ChannelSite::ChannelSite(std::string_view name, std::size_t capacity)
    : series_(channel_series(name)), capacity_(capacity) {
  series_->sites_.link(this);
}

ChannelSite::~ChannelSite() {
  depth(0);  // closes an open "full" interval into the counter
  series_->sites_.unlink(this);
}

void ChannelSite::depth(std::size_t d) noexcept {
  depth_.store(d, std::memory_order_relaxed);
  if (d > high_water_.load(std::memory_order_relaxed)) {
    high_water_.store(d, std::memory_order_relaxed);
  }
  const std::int64_t full = full_since_.load(std::memory_order_relaxed);
  if (d >= capacity_ && full == 0) {
    full_since_.store(now_ns(), std::memory_order_relaxed);
  } else if (d < capacity_ && full != 0) {
    add(series_->base + ChannelSeries::kFullNs, static_cast<std::uint64_t>(now_ns() - full));
    full_since_.store(0, std::memory_order_relaxed);
  }
}

}  // namespace stallscope::detail
