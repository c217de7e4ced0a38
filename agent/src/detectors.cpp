#include "stallscope/detectors.hpp"

#include <algorithm>
#include <array>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "stallscope/clock.hpp"
#include "stallscope/detail/enum_names.hpp"
#include "stallscope/detail/lock_recorder.hpp"
#include "stallscope/detail/slice.hpp"
#include "stallscope/detail/suspend_detector.hpp"
#include "stallscope/detail/task_recorder.hpp"
#include "stallscope/detail/waitfor.hpp"
#include "stallscope/log.hpp"
#include "stallscope/registry.hpp"

namespace stallscope::detail {

namespace {

struct EventRing {
  static constexpr std::size_t kSize = 64;
  std::array<DetectorEvent, kSize> events{};
  std::array<std::int64_t, kSize> at_ns{};
  std::uint64_t next_seq = 1;
};

// What the detectors keep, under one mutex that user code never holds.
struct DetectorState {
  std::mutex mu;
  EventRing ring;
  // Held-across-suspend detections: lock series id -> task name -> count.
  std::map<std::uint32_t, std::map<std::string, std::uint64_t, std::less<>>> held_across;
};

DetectorState& state() {
  static auto* const s = new DetectorState;  // leaked: detectors may fire during exit
  return *s;
}

// Caller holds state().mu.
std::uint64_t push_event(DetectorEvent e, std::int64_t at) {
  EventRing& r = state().ring;
  e.seq = r.next_seq++;
  const std::size_t i = e.seq % EventRing::kSize;
  r.events[i] = std::move(e);
  r.at_ns[i] = at;
  return r.events[i].seq;
}

}  // namespace

void on_suspended_holding(SliceContext& ctx, std::int64_t now) noexcept {
  try {
    DetectorState& st = state();
    std::lock_guard lock(st.mu);
    const std::uint32_t n = std::min(ctx.held_n, SliceContext::kMaxHeld);
    for (std::uint32_t i = 0; i < n; ++i) {
      auto* site = static_cast<LockSite*>(ctx.held[i]);  // stored by LockSite (slice.hpp)
      const LockSeries* ls = site->series_.load(std::memory_order_relaxed);
      auto& per_task = st.held_across[ls->id()];
      auto it = per_task.find(ctx.series->name());
      if (it == per_task.end()) it = per_task.emplace(ctx.series->name(), 0).first;
      ++it->second;
      DetectorEvent e;
      e.type = DetectorEvent::Type::kLockHeldAcrossSuspend;
      e.lock = ls->name();
      e.task = ctx.series->name();
      e.duration_seconds = -1;
      site->held_across_seq_.store(push_event(std::move(e), now), std::memory_order_relaxed);
    }
  } catch (...) {
    // Out of memory while recording a detection: drop the event, never the application.
  }
  // A lock taken in this slice by a task whose identity is not known stays held while the thread
  // moves on: this thread no longer holds it in the wait-for graph (waitfor.hpp).
  const auto thread = reinterpret_cast<std::uintptr_t>(tls_shard);
  for (std::uint32_t i = 0; i < std::min(ctx.held_n, SliceContext::kMaxHeld); ++i) {
    auto* site = static_cast<LockSite*>(ctx.held[i]);
    if (site->owner_.load(std::memory_order_relaxed) == thread) {
      site->owner_.store(kUnknownHolder, std::memory_order_relaxed);
    }
  }
  ctx.held_n = 0;
}

void on_held_across_released(std::uint64_t event_seq) noexcept {
  const std::int64_t now = now_ns();
  DetectorState& st = state();
  std::lock_guard lock(st.mu);
  const std::size_t i = event_seq % EventRing::kSize;
  if (st.ring.events[i].seq == event_seq) {
    st.ring.events[i].duration_seconds = static_cast<double>(now - st.ring.at_ns[i]) * 1e-9;
  }
}

void on_long_slice(std::uint32_t task_series_id, std::int64_t ran_ns) noexcept {
  try {
    std::string task = Registry::global().series_name(task_series_id);
    {
      std::lock_guard lock(state().mu);
      DetectorEvent e;
      e.type = DetectorEvent::Type::kLongSlice;
      e.task = task;
      e.duration_seconds = static_cast<double>(ran_ns) * 1e-9;
      push_event(std::move(e), now_ns());
    }
    log(LogLevel::kWarning,
        fmt::format("stallscope: task \"{}\" has been running for {:.3f} s without yielding its "
                    "executor thread",
                    task, static_cast<double>(ran_ns) * 1e-9));
  } catch (...) {
  }
}

std::vector<std::pair<std::string, std::uint64_t>> held_across_counts(
    std::uint32_t lock_series_id) {
  DetectorState& st = state();
  std::lock_guard lock(st.mu);
  std::vector<std::pair<std::string, std::uint64_t>> out;
  if (auto it = st.held_across.find(lock_series_id); it != st.held_across.end()) {
    out.assign(it->second.begin(), it->second.end());
  }
  return out;
}

}  // namespace stallscope::detail

namespace stallscope {

std::vector<DetectorEvent> recent_detector_events() {
  std::vector<DetectorEvent> out;
  const std::int64_t now = now_ns();
  detail::DetectorState& st = detail::state();
  std::lock_guard lock(st.mu);
  const detail::EventRing& r = st.ring;
  for (std::size_t k = 0; k < detail::EventRing::kSize; ++k) {
    const std::uint64_t seq = r.next_seq - 1 - k;
    if (seq == 0 || seq >= r.next_seq) break;
    const std::size_t i = seq % detail::EventRing::kSize;
    if (r.events[i].seq != seq) break;
    DetectorEvent e = r.events[i];
    e.age_seconds = static_cast<double>(now - r.at_ns[i]) * 1e-9;
    out.push_back(std::move(e));
  }
  return out;
}

std::string_view to_string(DetectorEvent::Type type) noexcept {
  static constexpr std::string_view kNames[] = {"lock_held_across_suspend", "long_slice"};
  return detail::enum_name(type, kNames);
}

}  // namespace stallscope
