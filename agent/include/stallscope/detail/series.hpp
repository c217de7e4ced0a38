#pragma once
// Base of every per-name series, and the Collector that series write their samples into.
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "stallscope/detail/metric_names.hpp"
#include "stallscope/registry.hpp"
#include "stallscope/snapshot.hpp"

namespace stallscope::detail {

struct FamilyDesc {
  const char* name;
  const char* help;
  MetricType type;
};

// The unified wait model: every kind records its waits into these families, so one query
// (rate of stallscope_wait_seconds_sum by kind, resource) ranks every resource.
extern const FamilyDesc kWaitSeconds;
extern const FamilyDesc kWaiters;
extern const FamilyDesc kOldestWaitAge;
// Idle time (a consumer waiting on an empty channel): recorded, never ranked as a stall.
extern const FamilyDesc kIdleSeconds;

// Per series id: who waits on it now (from the threads' wait slots), by op.
struct WaitersNow {
  std::uint32_t count[2] = {0, 0};
  std::int64_t oldest_since_ns[2] = {0, 0};  // 0: none
  std::int64_t running_since_ns = 0;         // tasks: the oldest slice running now; 0: none
};

class Collector {
 public:
  Collector(std::int64_t now_ns, std::vector<WaitersNow> waiters)
      : now_ns_(now_ns), waiters_(std::move(waiters)) {}

  void add(const FamilyDesc& desc, Labels labels, double value);
  void add(const FamilyDesc& desc, Labels labels, HistogramSnapshot histogram);
  // Declares the family even if no sample follows, so HELP/TYPE are stable.
  FamilySnapshot& family(const FamilyDesc& desc);
  // The unified wait rows of one (resource, op): kWaitSeconds, kWaiters (`waiters` now) and
  // kOldestWaitAge (the age of the wait queued since `oldest_since_ns`; 0: none waits).
  void add_wait(const Labels& labels, HistogramSnapshot waits, double waiters,
                std::int64_t oldest_since_ns);

  std::int64_t now_ns() const noexcept { return now_ns_; }
  // now - since, never negative: live state is read after the scrape's one clock read, so a wait
  // or hold that began during the scrape has age 0, not a negative one.
  std::int64_t age_ns(std::int64_t since_ns) const noexcept {
    return since_ns < now_ns_ ? now_ns_ - since_ns : 0;
  }
  // age_ns(since) in seconds; 0 for since 0 (nothing there).
  double age_seconds(std::int64_t since_ns) const noexcept {
    return since_ns == 0 ? 0.0 : static_cast<double>(age_ns(since_ns)) * 1e-9;
  }
  const WaitersNow& waiters(std::uint32_t series_id) const noexcept {
    static const WaitersNow kNone;
    return series_id < waiters_.size() ? waiters_[series_id] : kNone;
  }
  std::int64_t running_since(std::uint32_t series_id) const noexcept {
    return waiters(series_id).running_since_ns;
  }
  std::vector<FamilySnapshot> take() { return std::move(families_); }

 private:
  std::int64_t now_ns_;
  std::vector<WaitersNow> waiters_;
  std::vector<FamilySnapshot> families_;
  std::vector<const FamilyDesc*> descs_;
};

// The live objects of one series, for gauges computed at scrape time. Sites embed a
// LiveLink<Site> named `link_` and register in their constructor, unregister in their destructor.
// Link, unlink and iteration happen under Registry::live_mutex(), which user code never holds.
template <class Site>
struct LiveLink {
  Site* prev = nullptr;
  Site* next = nullptr;
};

template <class Site>
class LiveList {
 public:
  // Returns how many objects the list holds with `s`, counted under the same lock.
  std::size_t link(Site* s) {
    std::lock_guard lock(Registry::global().live_mutex());
    s->link_.next = head_;
    if (head_ != nullptr) head_->link_.prev = s;
    head_ = s;
    return ++count_;
  }
  void unlink(Site* s) {
    unlink(s, [] {});
  }
  // Runs `last()` under the same lock, just before unlinking: a site that keeps counts of its own
  // folds them into its series there, so every scrape sees them exactly once.
  template <class Fn>
  void unlink(Site* s, Fn&& last) {
    std::lock_guard lock(Registry::global().live_mutex());
    last();
    (s->link_.prev != nullptr ? s->link_.prev->link_.next : head_) = s->link_.next;
    if (s->link_.next != nullptr) s->link_.next->link_.prev = s->link_.prev;
    s->link_ = {};
    --count_;
  }
  // Caller holds Registry::live_mutex() (Series::collect runs under it).
  template <class Fn>
  void for_each(Fn&& fn) const {
    for (Site* s = head_; s != nullptr; s = s->link_.next) fn(*s);
  }
  std::size_t size() const noexcept { return count_; }

 private:
  Site* head_ = nullptr;
  std::size_t count_ = 0;
};

class Series {
 public:
  Series(ResourceKind kind, std::string name, std::uint32_t id)
      : kind_(kind), name_(std::move(name)), id_(id) {}
  virtual ~Series() = default;
  Series(const Series&) = delete;
  Series& operator=(const Series&) = delete;

  // Called with Registry::live_mutex() held.
  virtual void collect(Collector& out) = 0;

  ResourceKind kind() const noexcept { return kind_; }
  const std::string& name() const noexcept { return name_; }
  std::uint32_t id() const noexcept { return id_; }

 private:
  ResourceKind kind_;
  std::string name_;
  std::uint32_t id_;
};

}  // namespace stallscope::detail
