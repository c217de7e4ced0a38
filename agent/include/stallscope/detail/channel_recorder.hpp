#pragma once
// Recording for channels: one ChannelSeries per name, one ChannelSite per channel object.
//
// The channel updates its site under its own internal mutex; the site keeps what scrapes need
// (depth, waiters, when the channel became full) in atomics, so a scrape never takes the
// channel's mutex, which runs user code (a merge function) while held.
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

#include "stallscope/clock.hpp"
#include "stallscope/detail/cells.hpp"
#include "stallscope/detail/histogram.hpp"
#include "stallscope/detail/series.hpp"

namespace stallscope::detail {

// What finally happened to an item given to a channel. Every sent item ends in exactly one of
// these or is still queued: sent == sum(outcomes) + depth.
enum class ItemFate : std::uint8_t {
  kDelivered,  // taken by a receiver
  kDropped,    // evicted (drop_oldest), refused (drop_newest), or queued at destruction
  kMerged,     // combined into a queued item
  kShed,       // refused fast (shed policy, try_send on a full channel, merge failure)
  kClosed,     // refused because the channel was closed; returned to the sender
  kCancelled,  // the send was cancelled while waiting; returned to the sender
  kTimedOut,   // a timed send gave up; returned to the sender
  kDrained,    // taken out by drain() after close
};
inline constexpr int kItemFates = 8;
enum class Lane : std::uint8_t { kData = 0, kControl = 1 };

class ChannelSite;

class ChannelSeries final : public Series {
 public:
  ChannelSeries(ResourceKind kind, std::string name, std::uint32_t id, const Config& config);
  void collect(Collector& out) override;

  static constexpr std::uint32_t kFastSend = 0;  // sends that did not wait
  static constexpr std::uint32_t kFastRecv = 1;  // receives that found an item
  static constexpr std::uint32_t kSent = 2;      // + lane
  static constexpr std::uint32_t kFates = 4;     // + lane * kItemFates + fate
  static constexpr std::uint32_t kMergeErrors = kFates + 2 * kItemFates;
  static constexpr std::uint32_t kFullNs = kMergeErrors + 1;
  static constexpr std::uint32_t kCounters = kFullNs + 1;

  std::uint32_t base = kNoCell;
  HistogramCells send_wait;
  HistogramCells recv_idle;
  HistogramCells queue_time;

 private:
  friend class ChannelSite;
  BucketLayout layout_;
  LiveList<ChannelSite> sites_;
  double full_reported_ns_ = 0;  // scrape-owned: keeps the counter monotonic
};

class ChannelSite {
 public:
  ChannelSite(std::string_view name, std::size_t capacity);
  ~ChannelSite();
  ChannelSite(const ChannelSite&) = delete;
  ChannelSite& operator=(const ChannelSite&) = delete;

  const std::string& name() const noexcept { return series_->name(); }
  const ChannelSeries& series() const noexcept { return *series_; }

  // --- called by the channel under its own mutex ---
  void sent(Lane lane) noexcept { add(series_->base + ChannelSeries::kSent + lane_index(lane)); }
  void fate(Lane lane, ItemFate f, std::uint64_t n = 1) noexcept {
    add(series_->base + ChannelSeries::kFates + lane_index(lane) * kItemFates +
            static_cast<std::uint32_t>(f),
        n);
  }
  void merge_error() noexcept { add(series_->base + ChannelSeries::kMergeErrors); }
  void send_no_wait() noexcept { add(series_->base + ChannelSeries::kFastSend); }
  void send_waited(std::int64_t ns) noexcept { series_->send_wait.record(ns); }
  void recv_no_wait() noexcept { add(series_->base + ChannelSeries::kFastRecv); }
  void recv_idled(std::int64_t ns) noexcept { series_->recv_idle.record(ns); }
  void queued_for(std::int64_t ns) noexcept { series_->queue_time.record(ns); }
  // The data depth changed to `depth`; `now` is read only when fullness changes.
  void depth(std::size_t depth) noexcept;
  void send_waiters(std::size_t n, std::int64_t oldest_since_ns) noexcept {
    send_waiters_.store(n, std::memory_order_relaxed);
    oldest_send_since_.store(oldest_since_ns, std::memory_order_relaxed);
  }
  void recv_waiters(std::size_t n) noexcept { recv_waiters_.store(n, std::memory_order_relaxed); }

 private:
  friend class ChannelSeries;
  static std::uint32_t lane_index(Lane l) noexcept { return static_cast<std::uint32_t>(l); }

  ChannelSeries* series_;
  const std::size_t capacity_;
  std::atomic<std::size_t> depth_{0};
  std::atomic<std::size_t> high_water_{0};
  std::atomic<std::int64_t> full_since_{0};  // 0: not full
  std::atomic<std::size_t> send_waiters_{0};
  std::atomic<std::int64_t> oldest_send_since_{0};
  std::atomic<std::size_t> recv_waiters_{0};
  friend class LiveList<ChannelSite>;
  LiveLink<ChannelSite> link_;
};

}  // namespace stallscope::detail
