#pragma once
// Recording for channels: one ChannelSeries per name, one ChannelSite per channel object.
//
// The channel updates its site under its own internal mutex; the site keeps what scrapes need
// (depth, waiters, when the channel became full) in atomics, so a scrape never takes the
// channel's mutex, which runs user code (a merge function) while held.
//
// With STALLSCOPE_ENABLED=0 the channel gets a ChannelSite from the end of this file instead: an
// empty class with the same interface whose members do nothing.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "stallscope/config.hpp"
#include "stallscope/detail/profile_hooks.hpp"
#if STALLSCOPE_ENABLED
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "stallscope/clock.hpp"
#include "stallscope/detail/cells.hpp"
#include "stallscope/detail/histogram.hpp"
#include "stallscope/detail/series.hpp"
#include "stallscope/detail/service_map.hpp"
#include "stallscope/detail/slice.hpp"
#endif

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

#if STALLSCOPE_ENABLED

class ChannelSite;

class ChannelSeries final : public Series {
 public:
  ChannelSeries(ResourceKind kind, std::string name, std::uint32_t id, const Config& config);
  void collect(Collector& out) override;

  // Cell layout, the same in a site's own cells and in the series' retired cells. The two common
  // paths each touch one counter cell, and scrapes derive the rest from it:
  //   kHandoff + lane:  sent, handed straight to a waiting receiver (a fast send, delivered,
  //                     queue time 0)
  //   kQueued + lane:   sent and queued without waiting (a fast send on the data lane)
  //   kTaken + lane:    taken from the queue by a receiver (a fast receive, delivered)
  // kSent, kFastSend and kFates count every other path; kFastRecv is derived from kTaken.
  static constexpr std::uint32_t kFastSend = 0;  // sends that did not wait
  static constexpr std::uint32_t kFastRecv = 1;  // receives that found an item
  static constexpr std::uint32_t kSent = 2;      // + lane
  static constexpr std::uint32_t kHandoff = 4;   // + lane
  static constexpr std::uint32_t kQueued = 6;    // + lane
  static constexpr std::uint32_t kTaken = 8;     // + lane
  static constexpr std::uint32_t kFates = 10;    // + lane * kItemFates + fate
  static constexpr std::uint32_t kMergeErrors = kFates + 2 * kItemFates;
  static constexpr std::uint32_t kFullNs = kMergeErrors + 1;
  static constexpr std::uint32_t kSentBytes = kFullNs + 1;  // ChannelOptions::size_of, data lane
  static constexpr std::uint32_t kCounters = kSentBytes + 1;
  // Distinct task names kept per channel object as data-lane senders (and reported per name,
  // over the live objects).
  static constexpr std::uint32_t kMaxSenderTasks = 16;
  // Then three histograms of layout().cells() each: send wait, receive idle, queue time.
  std::uint32_t send_wait_cell() const noexcept { return kCounters; }
  std::uint32_t recv_idle_cell() const noexcept { return kCounters + layout_.cells(); }
  std::uint32_t queue_time_cell() const noexcept { return kCounters + 2 * layout_.cells(); }
  std::uint32_t cells() const noexcept { return kCounters + 3 * layout_.cells(); }
  const BucketLayout& layout() const noexcept { return layout_; }
  UserSet send_users;  // data-lane senders (the live map)
  UserSet receive_users;

 private:
  friend class ChannelSite;
  const BucketLayout& layout_;    // shared_layout()
  std::uint32_t base_ = kNoCell;  // per-thread cells: what destroyed sites recorded
  LiveList<ChannelSite> sites_;
  double full_reported_ns_ = 0;  // scrape-owned: keeps the counter monotonic
};

// The recorder of one channel object.
//
// Every call happens under the channel's own mutex, so the site keeps its counts in cells of its
// own instead of the recording thread's shard: the lock holder is their only writer (a relaxed
// load + store, as in a shard), the lines are the ones the channel's lock and queue already
// bring into the writer's cache, and the address is one pointer away instead of a per-thread
// directory lookup. Measured on the ping-pong benchmark (bench/README.md) this is what brought
// recording within budget. Scrapes add the live sites' cells to the series' own; a destroyed site
// folds its cells into the series (under the registry's live mutex, so a scrape sees each count
// exactly once).
class ChannelSite {
 public:
  ChannelSite(std::string_view name, std::size_t capacity);
  ~ChannelSite();
  ChannelSite(const ChannelSite&) = delete;
  ChannelSite& operator=(const ChannelSite&) = delete;

  const std::string& name() const noexcept { return series_->name(); }
  const ChannelSeries& series() const noexcept { return *series_; }

  // --- called by the channel under its own mutex ---
  // The item was handed to a receiver that had waited `idle_ns` on an empty channel.
  void handed_off(Lane lane, std::int64_t idle_ns) noexcept {
    bump(ChannelSeries::kHandoff + lane_index(lane));
    record(recv_idle_cell_, idle_ns);
  }
  // The item was queued without waiting.
  void queued(Lane lane) noexcept { bump(ChannelSeries::kQueued + lane_index(lane)); }
  // The calling thread (or task) took an item that had been queued for `ns`; noted as a
  // receiver when it is not the object's last one.
  void taken(Lane lane, std::int64_t ns) noexcept {
    bump(ChannelSeries::kTaken + lane_index(lane));
    if (current_user_key() != last_recv_user_) [[unlikely]]
      note_receiver_cold();
    record(queue_time_cell_, ns);
  }
  // Any other send (refused, dropped, merged, waiting): counted here, its fate separately.
  void sent(Lane lane) noexcept { bump(ChannelSeries::kSent + lane_index(lane)); }
  void fate(Lane lane, ItemFate f, std::uint64_t n = 1) noexcept {
    bump(ChannelSeries::kFates + lane_index(lane) * kItemFates + static_cast<std::uint32_t>(f), n);
  }
  void merge_error() noexcept { bump(ChannelSeries::kMergeErrors); }
  void send_no_wait() noexcept { bump(ChannelSeries::kFastSend); }
  void send_waited(std::int64_t ns) noexcept { record(series_->send_wait_cell(), ns); }
  // A send that queued ended after `ns`: recorded, and the block profile's ticket settled (an
  // async send's; a thread's send samples its own stack after the mutex: thread_waited).
  void send_waited(WaitTicket& ticket, std::int64_t ns) noexcept {
    send_waited(ns);
    ticket.end(hint_, series_, kOpSend, ns);
  }
  // Whether the data lane is full now (a relaxed load, may be stale), and the hint a send's
  // ticket is drawn with.
  bool full() const noexcept { return depth_.load(std::memory_order_relaxed) >= capacity_; }
  const WaitHint& hint() const noexcept { return hint_; }
  const Series* profile_series() const noexcept { return series_; }
  void recv_idled(std::int64_t ns) noexcept { record(recv_idle_cell_, ns); }
  // The data depth changed to `depth` at `now` (the caller's clock read, used only when the
  // channel becomes full or stops being full).
  void depth(std::size_t depth, std::int64_t now) noexcept {
    depth_.store(depth, std::memory_order_relaxed);
    if (depth > high_water_.load(std::memory_order_relaxed)) {
      high_water_.store(depth, std::memory_order_relaxed);
    }
    if ((depth >= capacity_) != (full_since_.load(std::memory_order_relaxed) != 0)) {
      fullness_changed(depth, now);
    }
  }
  void send_waiters(std::size_t n, std::int64_t oldest_since_ns) noexcept {
    send_waiters_.store(n, std::memory_order_relaxed);
    oldest_send_since_.store(oldest_since_ns, std::memory_order_relaxed);
  }
  void recv_waiters(std::size_t n) noexcept { recv_waiters_.store(n, std::memory_order_relaxed); }
  // A data-lane send: notes the sender (the task whose slice runs, or else the thread) when it is
  // not the object's last one. The common case, the same sender as last time, is a thread-local
  // load and two compares.
  void data_sender() noexcept {
    if (current_user_key() != last_send_user_) [[unlikely]]
      note_sender_cold(Lane::kData);
  }
  // The live map's users besides the senders and takers above (service_map.hpp): a sender or
  // receiver that waits is always noted.
  void waiting_sender() noexcept { note_sender_cold(Lane::kData); }
  void waiting_receiver() noexcept { note_receiver_cold(); }
  // The options the live map shows: the overflow policy and the control lane's capacity.
  void describe(std::string_view policy, std::size_t control_capacity) noexcept;
  // ChannelOptions::size_of only: bytes given to a data-lane send, and the change of the bytes
  // queued on the data lane (+ queued, - taken, dropped, drained; a merge's size change).
  void bytes_sent(std::size_t n) noexcept { bump(ChannelSeries::kSentBytes, n); }
  void bytes_queued(std::int64_t delta) noexcept {
    queued_bytes_.store(queued_bytes_.load(std::memory_order_relaxed) + delta,
                        std::memory_order_relaxed);
  }

 private:
  friend class ChannelSeries;
  void note_sender(const TaskSeries* task) noexcept;
  // A data-lane sender (control-lane sends are not senders: those are ignored here).
  [[gnu::cold]] void note_sender_cold(Lane lane) noexcept;
  [[gnu::cold]] void note_receiver_cold() noexcept;
  // Adds this site's sender tasks not in `set` yet, keeping it at most kMaxSenderTasks long.
  void add_senders_to(std::vector<const TaskSeries*>& set) const;
  static std::uint32_t lane_index(Lane l) noexcept { return static_cast<std::uint32_t>(l); }
  void bump(std::uint32_t i, std::uint64_t delta = 1) noexcept {
    Cell& c = cells_[i];
    c.store(c.load(std::memory_order_relaxed) + delta, std::memory_order_relaxed);
  }
  void record(std::uint32_t histogram, std::int64_t ns) noexcept {
    if (ns < 0) ns = 0;
    bump(histogram + layout_->index(ns));
    bump(histogram + sum_offset_, static_cast<std::uint64_t>(ns));
  }
  void fullness_changed(std::size_t depth, std::int64_t now) noexcept {
    if (depth >= capacity_) {
      full_since_.store(now == 0 ? 1 : now, std::memory_order_relaxed);  // 0 means "not full"
    } else {
      const std::int64_t ns = now - full_since_.load(std::memory_order_relaxed);
      bump(ChannelSeries::kFullNs, static_cast<std::uint64_t>(ns > 0 ? ns : 0));
      full_since_.store(0, std::memory_order_relaxed);
    }
  }

  ChannelSeries* series_;
  const BucketLayout* layout_;
  std::unique_ptr<Cell[]> cells_;  // series_->cells() of them
  // Offsets precomputed so the hot path does not reach into the series.
  const std::uint32_t recv_idle_cell_;
  const std::uint32_t queue_time_cell_;
  const std::uint32_t sum_offset_;  // within a histogram: its sum cell
  const std::size_t capacity_;
  std::atomic<std::size_t> depth_{0};
  WaitHint hint_;
  std::atomic<std::size_t> high_water_{0};
  std::atomic<std::int64_t> full_since_{0};  // 0: not full
  std::atomic<std::size_t> send_waiters_{0};
  std::atomic<std::int64_t> oldest_send_since_{0};
  std::atomic<std::size_t> recv_waiters_{0};
  std::atomic<std::int64_t> queued_bytes_{0};
  // Data-lane sender tasks: [0, sender_count_) are set (each before the count that covers it).
  std::atomic<std::uint32_t> sender_count_{0};
  std::atomic<const TaskSeries*> senders_[ChannelSeries::kMaxSenderTasks] = {};
  // The last sender and receiver noted (current_user_key(): a task's series or a thread), under
  // the channel's mutex like every call.
  const void* last_send_user_ = nullptr;
  const void* last_recv_user_ = nullptr;
  friend class LiveList<ChannelSite>;
  LiveLink<ChannelSite> link_;
};

#else  // Compiled out: the same calls, doing nothing, reading no clock (see lock_recorder.hpp).
inline namespace off {

class ChannelSite {
 public:
  ChannelSite(std::string_view, std::size_t) noexcept {}

  std::string_view name() const noexcept { return {}; }
  void handed_off(Lane, std::int64_t) noexcept {}
  void queued(Lane) noexcept {}
  void taken(Lane, std::int64_t) noexcept {}
  void sent(Lane) noexcept {}
  void fate(Lane, ItemFate, std::uint64_t = 1) noexcept {}
  void merge_error() noexcept {}
  void send_no_wait() noexcept {}
  void send_waited(std::int64_t) noexcept {}
  void send_waited(WaitTicket&, std::int64_t) noexcept {}
  bool full() const noexcept { return false; }
  int hint() const noexcept { return 0; }
  const Series* profile_series() const noexcept { return nullptr; }
  void recv_idled(std::int64_t) noexcept {}
  void depth(std::size_t, std::int64_t) noexcept {}
  void send_waiters(std::size_t, std::int64_t) noexcept {}
  void recv_waiters(std::size_t) noexcept {}
  void data_sender() noexcept {}
  void waiting_sender() noexcept {}
  void waiting_receiver() noexcept {}
  void describe(std::string_view, std::size_t) noexcept {}
  void bytes_sent(std::size_t) noexcept {}
  void bytes_queued(std::int64_t) noexcept {}
};

}  // namespace off
#endif

}  // namespace stallscope::detail
