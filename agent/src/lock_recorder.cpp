#include "stallscope/detail/lock_recorder.hpp"

#include <algorithm>
#include <string>
#include <thread>

#include <fmt/format.h>

#include "families.hpp"
#include "series_support.hpp"
#include "stallscope/detail/suspend_detector.hpp"
#include "stallscope/log.hpp"

namespace stallscope::detail {

using namespace families::lock;

void lock_name_is_invalid_see_validate_resource_name() noexcept {}

namespace {

constexpr const char* kOpNames[2] = {"exclusive", "shared"};

// Per-thread timestamps of shared holds (several readers may hold one lock, so the start time
// cannot live in the object). Only used with hold timing on; overflow beyond 8 nested shared
// holds goes unrecorded rather than allocating.
struct SharedHold {
  const LockSite* site;
  std::int64_t since_ns;
};
constinit thread_local SharedHold tls_shared[8] = {};
constinit thread_local std::uint32_t tls_shared_n = 0;

LockSeries* lock_series(ResourceKind kind, std::string_view name) {
  return &series_of<LockSeries>(kind, name);
}

std::string site_name(std::string_view file, std::uint32_t line) {
  if (auto slash = file.find_last_of('/'); slash != std::string_view::npos) {
    file.remove_prefix(slash + 1);
  }
  std::string out;
  for (char c : file) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-' || c == '.';
    out += ok ? c : '_';
  }
  if (out.size() > 100) out.resize(100);
  // "f" in front of a name that would be empty or reserved ("__"); formatted, not inserted:
  // GCC 12 warns (-Wrestrict, falsely) on std::string::insert of a literal at -O2.
  const bool prefix = out.empty() || out.starts_with("__");
  return fmt::format("{}{}:{}", prefix ? "f" : "", out, line);
}

}  // namespace

LockSeries::LockSeries(ResourceKind kind, std::string name, std::uint32_t id, const Config& config)
    : Series(kind, std::move(name), id),
      wait_layout_(shared_layout(config.wait_buckets)),
      hold_layout_(shared_layout(config.hold_buckets)),
      hold_time_default_(config.hold_time),
      has_shared_(kind == ResourceKind::kRwLock) {
  for (int o = 0; o < (has_shared_ ? 2 : 1); ++o) {
    LockOpCells& c = ops_[o];
    c.base = allocate_series_cells(LockOpCells::kCounters, wait_layout_, {&c.wait});
    c.hold.layout = &hold_layout_;
  }
  map_users(*this, UserRole::kUse, users);
}

void LockSeries::ensure_hold_cells() noexcept {
  if (hold_cells_.load(std::memory_order_acquire)) return;
  std::lock_guard lock(hold_mu_);
  if (hold_cells_.load(std::memory_order_relaxed)) return;
  for (int o = 0; o < (has_shared_ ? 2 : 1); ++o) {
    ops_[o].hold.base = cell_allocator().allocate(hold_layout_.cells());
  }
  hold_cells_.store(true, std::memory_order_release);
}

void LockSeries::ensure_idle_cells() noexcept {
  if (idle_cells_.load(std::memory_order_acquire)) return;
  std::lock_guard lock(hold_mu_);
  if (idle_cells_.load(std::memory_order_relaxed)) return;
  ops_[0].idle.layout = &wait_layout_;
  ops_[0].idle.base = cell_allocator().allocate(wait_layout_.cells());
  idle_cells_.store(true, std::memory_order_release);
}

void LockSeries::collect(Collector& out) {
  const Labels res = resource_labels(*this);
  for (int o = 0; o < (has_shared_ ? 2 : 1); ++o) {
    const LockOpCells& c = ops_[o];
    std::uint64_t counters[LockOpCells::kCounters];
    sum_cells(c.base, LockOpCells::kCounters, counters);
    HistogramSnapshot wait = snapshot(c.wait);
    // Before the first hold-timing object set them up, the hold cells do not exist (kNoCell).
    HistogramCells hold_cells{c.hold.layout, kNoCell};
    if (hold_cells_.load(std::memory_order_acquire)) hold_cells.base = c.hold.base;
    HistogramSnapshot hold = snapshot(hold_cells);
    const std::uint64_t fast = counters[LockOpCells::kFast];
    const std::uint64_t contended = wait.count;
    const std::uint64_t timeouts = counters[LockOpCells::kTimeout];

    const Labels labels = with_label(res, "op", kOpNames[o]);
    const WaitersNow& now = out.waiters(id());
    out.add_wait(labels, plus_zero_waits(std::move(wait), fast), now.count[o],
                 now.oldest_since_ns[o]);
    out.add(kLockAcquisitions, labels,
            static_cast<double>(fast + counters[LockOpCells::kTryOk] + contended - timeouts));
    out.add(kLockContended, labels, static_cast<double>(contended));
    out.add(kLockTimeouts, labels, static_cast<double>(timeouts));
    out.add(kLockTryFailures, labels, static_cast<double>(counters[LockOpCells::kTryFail]));
    out.add(kExecutorBlocked, labels,
            static_cast<double>(counters[LockOpCells::kExecutorBlockedNs]) * 1e-9);
    // A lock that never timed a hold exports no hold histogram rather than 27 lines of zeros:
    // half the /metrics text of a service with many locks (bench/README.md, "Scrape").
    out.family(kLockHold);
    if (hold.count != 0) out.add(kLockHold, labels, std::move(hold));
    // Only locks that a ConditionVariable waited on have idle time.
    if (o == 0 && idle_cells_.load(std::memory_order_acquire) && c.idle.base != kNoCell) {
      out.add(kIdleSeconds, labels, snapshot(c.idle));
    }
  }

  std::int64_t oldest_hold = 0;
  sites_.for_each([&](LockSite& site) {
    LockSite* s = &site;
    const std::uint64_t state = s->state_.load(std::memory_order_relaxed);
    if ((state & LockSite::kDepthMask) == 0) return;
    std::int64_t since;
    if (s->held_since_state_.load(std::memory_order_relaxed) == state) {
      since = s->held_since_ns_.load(std::memory_order_relaxed);
    } else {
      if (s->seen_state_ != state) {
        s->seen_state_ = state;
        s->seen_at_ns_ = out.now_ns();
      }
      since = s->seen_at_ns_;
    }
    oldest_hold = std::max(oldest_hold, out.age_ns(since));
  });
  out.family(kHeldAcross);
  for (const auto& [task, n] : held_across_counts(id())) {
    out.add(kHeldAcross, with_label(res, "task", task.c_str()), static_cast<double>(n));
  }
  out.add(kLockHolderAge, res, static_cast<double>(oldest_hold) * 1e-9);
  out.add(kLockObjects, res, static_cast<double>(sites_.size()));
}

LockSite::LockSite(RegisterNow, ResourceKind kind, std::string_view name,
                   const LockOptions& options)
    : kind_(kind), hold_option_(options.hold_time) {
  LockSeries* s = lock_series(kind, name);  // throws on a bad name, before anything is linked
  attach(s);
  series_.store(s, std::memory_order_release);
}

LockSite::~LockSite() {
  LockSeries* s = series_.load(std::memory_order_acquire);
  if (ready(s)) s->sites_.unlink(this);
}

std::size_t LockSite::attach(LockSeries* s) {
  time_holds_ = hold_option_.value_or(s->hold_time_default());
  if (time_holds_) s->ensure_hold_cells();
  return s->sites_.link(this);
}

// Registers a deferred lock, once, whichever threads call it at the same time.
//
// Ordering argument: exactly one caller wins the CAS from nullptr to kBusy (acq_rel: it also
// sees a previous owner's writes, though there are none). The winner alone writes time_holds_,
// links the site and then publishes the series with a release store. Every other caller, and
// every later fast path, reads series_ with acquire: once it sees the series pointer it also
// sees time_holds_ and the series' cells. A loser that sees kBusy yields until the winner
// publishes; registration takes a microsecond or so, and the winner holds no lock that user code
// can hold while it runs, so it cannot wait on the loser. The winner logs only after publishing,
// so a log sink that locks this same lock does not find it busy.
LockSeries* LockSite::resolve() noexcept {
  LockSeries* expected = nullptr;
  auto* const busy = reinterpret_cast<LockSeries*>(kBusy);
  if (series_.compare_exchange_strong(expected, busy, std::memory_order_acq_rel,
                                      std::memory_order_acquire)) {
    LockSeries* s = nullptr;
    std::string failure;
    bool merged = false;
    try {
      s = unnamed_ ? lock_series(kind_, site_name(pending_, pending_n_))
                   : lock_series(kind_, std::string_view(pending_, pending_n_));
      const std::size_t live = attach(s);
      merged = unnamed_ && live > 1 && !s->merge_warned_.exchange(true, std::memory_order_relaxed);
    } catch (const std::exception& e) {
      failure = e.what();
      s = nullptr;
    } catch (...) {
      s = nullptr;
    }
    series_.store(s != nullptr ? s : reinterpret_cast<LockSeries*>(kFailed),
                  std::memory_order_release);
    if (s == nullptr) {
      log(LogLevel::kError,
          "stallscope: a lock could not be registered and records nothing: " + failure);
    } else if (merged) {
      log(LogLevel::kWarning,
          fmt::format("stallscope: several unnamed locks record under \"{}\", the line that "
                      "initializes them (for a class member: its constructor); give them names "
                      "to tell them apart",
                      s->name()));
    }
    return s;
  }
  while (expected == busy) {
    std::this_thread::yield();
    expected = series_.load(std::memory_order_acquire);
  }
  return ready(expected) ? expected : nullptr;
}

std::int64_t LockSite::wait_begin(LockOp op) noexcept {
  const std::int64_t t0 = now_ns();
  LockSeries* series = this->series();
  if (series == nullptr) return t0;
  // The profile's waiter count first: a reader who sees this wait (stallscope_waiters, the task
  // dump) and then lets the holder release has the release charged to the holder's stack.
  profile_wait_begin(&blame_, series, static_cast<std::uint32_t>(op), t0);
  if (ThreadShard* s = own_shard()) {
    s->wait.since_ns.store(t0, std::memory_order_relaxed);
    s->wait.object.store(this, std::memory_order_relaxed);
    const SliceContext* sc = tls_slice;
    s->wait.task.store(sc != nullptr ? sc->task : 0, std::memory_order_relaxed);
    s->wait.op.store(static_cast<std::uint32_t>(op), std::memory_order_relaxed);
    s->wait.series.store(series->id(), std::memory_order_release);
  }
  return t0;
}

void LockSite::note_user_cold() noexcept {
  if (LockSeries* s = series_.load(std::memory_order_acquire); ready(s)) {
    note_user(s->users, last_user_);
  }
}

void LockSite::wait_end(LockOp op, std::int64_t started_ns, bool acquired) noexcept {
  const std::int64_t t1 = now_ns();
  LockSeries* series = this->series();
  if (series == nullptr) {  // registration failed: nothing recorded, the state kept all the same
    if (acquired && op == LockOp::kExclusive) enter_exclusive();
    return;
  }
  if (ThreadShard* s = tls_shard) s->wait.series.store(0, std::memory_order_relaxed);
  profile_wait_end(&blame_, series, static_cast<std::uint32_t>(op), started_ns, t1);
  const LockOpCells& c = series->op(op);
  c.wait.record_wait(t1 - started_ns, t1);  // and its bucket's exemplar
  note_user_cold();
  if (SliceContext* sc = tls_slice) {
    add(c.base + LockOpCells::kExecutorBlockedNs, static_cast<std::uint64_t>(t1 - started_ns));
    sc->blocked_ns += t1 - started_ns;  // the executor's thread time by cause
  }
  if (!acquired) {
    add(c.base + LockOpCells::kTimeout);
    return;
  }
  if (op == LockOp::kExclusive) {
    enter_exclusive();
    // The wait's end is the hold's start: the holder age is exact for free.
    held_since_ns_.store(t1, std::memory_order_relaxed);
    held_since_state_.store(state_.load(std::memory_order_relaxed), std::memory_order_relaxed);
  }
  if (op == LockOp::kShared) shared_hold(true);
  if (time_holds_) hold_begin(op, t1);
}

// Declared in waitfor_async.hpp (instrumented): the slice learns its task at an async operation.
void adopt_task(SliceContext& slice, std::uintptr_t task) noexcept {
  if (slice.task == 0) {
    const auto thread = reinterpret_cast<std::uintptr_t>(tls_shard);
    for (std::uint32_t i = 0; i < std::min(slice.held_n, SliceContext::kMaxHeld); ++i) {
      auto* site = static_cast<LockSite*>(slice.held[i]);
      if (site->owner_.load(std::memory_order_relaxed) == thread) {
        site->owner_.store(task, std::memory_order_relaxed);
      }
    }
  }
  slice.task = task;
}

void LockSite::shared_hold(bool begin) noexcept {
  if (ThreadShard* shard = tls_shard) {
    const SliceContext* sc = tls_slice;
    // Inside a slice whose task is not known the hold may outlive the slice (held across a
    // suspension): not attributed to this thread, only counted below.
    const bool attributable = !begin || sc == nullptr || sc->task != 0;
    const void* const match = begin ? nullptr : this;
    for (SharedHoldSlot& slot : shard->shared) {
      if (!attributable || slot.site.load(std::memory_order_relaxed) != match) continue;
      const std::uintptr_t who =
          sc != nullptr && sc->task != 0 ? sc->task : reinterpret_cast<std::uintptr_t>(shard);
      slot.who.store(begin ? who : 0, std::memory_order_relaxed);
      slot.site.store(begin ? this : nullptr, std::memory_order_relaxed);
      return;
    }
  }
  if (begin) {
    untracked_shared_.fetch_add(1, std::memory_order_relaxed);
  } else if (untracked_shared_.load(std::memory_order_relaxed) != 0) {
    untracked_shared_.fetch_sub(1, std::memory_order_relaxed);
  }
}

std::int64_t LockSite::cv_wait_begin() noexcept {
  if (LockSeries* s = series()) s->ensure_idle_cells();
  releasing(LockOp::kExclusive);
  return now_ns();
}

void LockSite::cv_wait_end(std::int64_t started_ns, std::int64_t notified_ns,
                           bool contended) noexcept {
  const std::int64_t t1 = now_ns();
  LockSeries* series = this->series();
  if (series == nullptr) {  // registration failed: cv_wait_begin's releasing() is undone
    enter_exclusive();
    return;
  }
  const LockOpCells& c = series->op(LockOp::kExclusive);
  if (!contended || notified_ns <= started_ns || notified_ns > t1) {
    // Woken without a notify seen during the wait (spurious, a timeout, or a notify that raced
    // the start), or with the mutex free since the notify: all of it was waiting for work (the
    // wake-up latency included), and the mutex came back without a wait.
    c.idle.record(t1 - started_ns);
    acquired_fast(LockOp::kExclusive);
    return;
  }
  c.idle.record(notified_ns - started_ns);
  wait_end(LockOp::kExclusive, notified_ns, true);
}

void LockSite::held_across_released() noexcept {
  const std::uint64_t seq = held_across_seq_.exchange(0, std::memory_order_relaxed);
  if (seq != 0) on_held_across_released(seq);
}

void LockSite::hold_begin(LockOp op, std::int64_t t) noexcept {
  if (op == LockOp::kExclusive) {
    const std::uint64_t state = state_.load(std::memory_order_relaxed);
    if ((state & kDepthMask) != 1) return;  // a nested recursive acquisition: outer hold counts
    held_since_ns_.store(t, std::memory_order_relaxed);
    held_since_state_.store(state, std::memory_order_relaxed);
    return;
  }
  if (tls_shared_n < std::size(tls_shared)) tls_shared[tls_shared_n] = {this, t};
  ++tls_shared_n;
}

void LockSite::hold_end(LockOp op) noexcept {
  const std::int64_t t = now_ns();
  const LockOpCells& c = series_.load(std::memory_order_relaxed)->op(op);
  if (op == LockOp::kExclusive) {
    c.hold.record(t - held_since_ns_.load(std::memory_order_relaxed));
    return;
  }
  if (tls_shared_n == 0) return;
  const std::uint32_t n = tls_shared_n < std::size(tls_shared) ? tls_shared_n : 8;
  for (std::uint32_t i = n; i-- > 0;) {
    if (tls_shared[i].site == this) {
      c.hold.record(t - tls_shared[i].since_ns);
      for (std::uint32_t j = i; j + 1 < n; ++j) tls_shared[j] = tls_shared[j + 1];
      break;
    }
  }
  --tls_shared_n;
}

}  // namespace stallscope::detail
