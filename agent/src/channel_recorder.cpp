#include "stallscope/detail/channel_recorder.hpp"

#include <algorithm>

#include "families.hpp"
#include "series_support.hpp"
#include "stallscope/detail/task_recorder.hpp"

namespace stallscope::detail {

using namespace families::channel;

namespace {

constexpr const char* kFateNames[kItemFates] = {"delivered", "dropped",   "merged",    "shed",
                                                "closed",    "cancelled", "timed_out", "drained"};
constexpr const char* kLaneNames[2] = {"data", "control"};

}  // namespace

ChannelSeries::ChannelSeries(ResourceKind kind, std::string name, std::uint32_t id,
                             const Config& config)
    : Series(kind, std::move(name), id), layout_(shared_layout(config.wait_buckets)) {
  base_ = cell_allocator().allocate(cells());
  map_users(*this, UserRole::kSend, send_users);
  map_users(*this, UserRole::kReceive, receive_users);
}

void ChannelSeries::collect(Collector& out) {
  // What destroyed sites recorded, plus every live site's own cells.
  std::vector<std::uint64_t> c(cells(), 0);
  sum_cells(base_, cells(), c.data());
  sites_.for_each([&](const ChannelSite& site) {
    for (std::uint32_t i = 0; i < cells(); ++i) {
      c[i] += site.cells_[i].load(std::memory_order_relaxed);
    }
  });
  // Fold the combined fast-path cells into the counters they stand for (see kHandoff).
  for (std::uint32_t lane = 0; lane < 2; ++lane) {
    c[kSent + lane] += c[kHandoff + lane] + c[kQueued + lane];
    c[kFates + lane * kItemFates + static_cast<std::uint32_t>(ItemFate::kDelivered)] +=
        c[kHandoff + lane] + c[kTaken + lane];
    c[kFastRecv] += c[kTaken + lane];
  }
  c[kFastSend] += c[kHandoff] + c[kQueued];  // data lane only: control sends never wait

  const Labels res = resource_labels(*this);
  auto with = [&](const char* k, const char* v) { return with_label(res, k, v); };
  // A histogram from its cells; `zero_waits` more observations of 0 (the fast paths).
  auto snap = [&](std::uint32_t first, std::uint64_t zero_waits) {
    return plus_zero_waits(to_snapshot(layout_, c.data() + first), zero_waits);
  };

  std::size_t depth = 0, capacity = 0, high = 0, send_waiters = 0, idle = 0;
  std::int64_t oldest = 0, queued_bytes = 0;
  std::vector<const TaskSeries*> senders;
  double full_ns = static_cast<double>(c[kFullNs]);
  sites_.for_each([&](const ChannelSite& site) {
    const ChannelSite* s = &site;
    depth += s->depth_.load(std::memory_order_relaxed);
    capacity += s->capacity_;
    high = std::max(high, s->high_water_.load(std::memory_order_relaxed));
    const std::size_t w = s->send_waiters_.load(std::memory_order_relaxed);
    send_waiters += w;
    if (w > 0) keep_oldest(oldest, s->oldest_send_since_.load(std::memory_order_relaxed));
    idle += s->recv_waiters_.load(std::memory_order_relaxed);
    const std::int64_t full = s->full_since_.load(std::memory_order_relaxed);
    if (full != 0) full_ns += static_cast<double>(out.age_ns(full));
    queued_bytes += s->queued_bytes_.load(std::memory_order_relaxed);
    s->add_senders_to(senders);
  });

  out.add_wait(with("op", "send"), snap(send_wait_cell(), c[kFastSend]),
               static_cast<double>(send_waiters), oldest);
  out.add(kIdleSeconds, with("op", "receive"), snap(recv_idle_cell(), c[kFastRecv]));
  out.add(kIdleReceivers, res, static_cast<double>(idle));
  out.add(kDepth, res, static_cast<double>(depth));
  out.add(kCapacity, res, static_cast<double>(capacity));
  out.add(kHighWater, res, static_cast<double>(high));
  // The closed intervals (cells) and the open ones (sites) are read without a common lock, so
  // one scrape can count an interval that is just closing twice; never report less than before.
  full_reported_ns_ = std::max(full_reported_ns_, full_ns);
  out.add(kFullSeconds, res, full_reported_ns_ * 1e-9);
  out.add(kQueueTime, res, snap(queue_time_cell(), c[kHandoff] + c[kHandoff + 1]));
  out.add(kMergeErrorsFamily, res, static_cast<double>(c[kMergeErrors]));
  out.add(kQueuedBytes, res, static_cast<double>(queued_bytes));
  out.add(kSentBytesFamily, res, static_cast<double>(c[kSentBytes]));
  out.add(kSenderTasks, res, static_cast<double>(senders.size()));
  for (std::uint32_t lane = 0; lane < 2; ++lane) {
    const Labels on_lane = with("lane", kLaneNames[lane]);
    out.add(kSentFamily, on_lane, static_cast<double>(c[kSent + lane]));
    for (std::uint32_t f = 0; f < kItemFates; ++f) {
      out.add(kItems, with_label(on_lane, "outcome", kFateNames[f]),
              static_cast<double>(c[kFates + lane * kItemFates + f]));
    }
  }
}

ChannelSite::ChannelSite(std::string_view name, std::size_t capacity)
    : series_(&series_of<ChannelSeries>(ResourceKind::kChannel, name)),
      layout_(&series_->layout()),
      cells_(new Cell[series_->cells()]()),
      recv_idle_cell_(series_->recv_idle_cell()),
      queue_time_cell_(series_->queue_time_cell()),
      sum_offset_(layout_->bucket_count()),
      capacity_(capacity) {
  series_->sites_.link(this);
  map_object(*series_, 1);
  map_fact(*series_, "capacity", capacity);
}

void ChannelSite::describe(std::string_view policy, std::size_t control_capacity) noexcept {
  map_fact(*series_, "policy", policy);
  map_fact(*series_, "control_capacity", control_capacity);
}

void ChannelSite::note_sender_cold(Lane lane) noexcept {
  if (lane != Lane::kData) return;
  last_send_user_ = current_user_key();
  if (const SliceContext* sc = tls_slice) note_sender(sc->series);
  series_->send_users.note(current_user());
}

void ChannelSite::note_receiver_cold() noexcept {
  last_recv_user_ = current_user_key();
  series_->receive_users.note(current_user());
}

void ChannelSite::note_sender(const TaskSeries* task) noexcept {
  const std::uint32_t n = sender_count_.load(std::memory_order_relaxed);
  for (std::uint32_t i = 0; i < n; ++i) {
    if (senders_[i].load(std::memory_order_relaxed) == task) return;
  }
  if (n == ChannelSeries::kMaxSenderTasks) return;  // the cap: later names are not told apart
  senders_[n].store(task, std::memory_order_relaxed);
  sender_count_.store(n + 1, std::memory_order_release);
}

void ChannelSite::add_senders_to(std::vector<const TaskSeries*>& set) const {
  const std::uint32_t n = sender_count_.load(std::memory_order_acquire);
  for (std::uint32_t i = 0; i < n && set.size() < ChannelSeries::kMaxSenderTasks; ++i) {
    const TaskSeries* t = senders_[i].load(std::memory_order_relaxed);
    if (std::find(set.begin(), set.end(), t) == set.end()) set.push_back(t);
  }
}

ChannelSite::~ChannelSite() {
  map_object(*series_, -1);
  depth(0, now_ns());  // closes an open "full" interval into its cell
  series_->sites_.unlink(this, [&] {
    if (series_->base_ == kNoCell) return;  // cell space used up: counts end with the object
    for (std::uint32_t i = 0; i < series_->cells(); ++i) {
      if (const std::uint64_t v = cells_[i].load(std::memory_order_relaxed)) {
        add(series_->base_ + i, v);
      }
    }
  });
}

}  // namespace stallscope::detail
