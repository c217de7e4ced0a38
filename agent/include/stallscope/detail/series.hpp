#pragma once
// Base of every per-name series, and the Collector that series write their samples into.
#include <cstdint>
#include <string>
#include <vector>

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
};

class Collector {
 public:
  Collector(std::int64_t now_ns, std::vector<WaitersNow> waiters)
      : now_ns_(now_ns), waiters_(std::move(waiters)) {}

  void add(const FamilyDesc& desc, Labels labels, double value);
  void add(const FamilyDesc& desc, Labels labels, HistogramSnapshot histogram);
  // Declares the family even if no sample follows, so HELP/TYPE are stable.
  FamilySnapshot& family(const FamilyDesc& desc);

  std::int64_t now_ns() const noexcept { return now_ns_; }
  const WaitersNow& waiters(std::uint32_t series_id) const noexcept {
    static const WaitersNow kNone;
    return series_id < waiters_.size() ? waiters_[series_id] : kNone;
  }
  std::vector<FamilySnapshot> take() { return std::move(families_); }

 private:
  std::int64_t now_ns_;
  std::vector<WaitersNow> waiters_;
  std::vector<FamilySnapshot> families_;
  std::vector<const FamilyDesc*> descs_;
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
