#include "stallscope/registry.hpp"

#include <algorithm>
#include <cctype>
#include <iterator>
#include <stdexcept>

#include <fmt/format.h>

#include "cells_alloc.hpp"
#include "families.hpp"
#include "stallscope/clock.hpp"
#include "stallscope/detail/cells.hpp"
#include "stallscope/detail/enum_names.hpp"
#include "stallscope/detail/series.hpp"
#include "stallscope/detail/task_recorder.hpp"
#include "stallscope/detectors.hpp"

namespace stallscope {

std::string_view to_string(ResourceKind kind) noexcept {
  // In ResourceKind's order.
  static constexpr std::string_view kNames[] = {
      "lock", "rwlock", "async_lock", "semaphore", "channel", "executor", "pool", "task", "retry"};
  static_assert(std::size(kNames) == kResourceKinds);
  return detail::enum_name(kind, kNames);
}

namespace {

bool name_char_ok(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '-' || c == '.' ||
         c == ':' || c == '/' || c == '@';
}

std::string printable(std::string_view s) {
  std::string out;
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7f || c == '"' || c == '\\') {
      out += fmt::format("\\x{:02x}", u);
    } else {
      out += c;
    }
  }
  return out;
}

const detail::FamilyDesc kResources{"stallscope_resources",
                                    "Distinct resource names registered, by kind (the overflow "
                                    "series included).",
                                    MetricType::kGauge};
const detail::FamilyDesc kOverflow{
    "stallscope_resource_overflow_total",
    "Resource registrations sent to the __overflow__ series because the kind already had "
    "max_resources_per_kind names.",
    MetricType::kCounter};
const detail::FamilyDesc kThreads{"stallscope_recording_threads",
                                  "Threads that own a recording shard now.", MetricType::kGauge};
const detail::FamilyDesc kMemory{"stallscope_shard_memory_bytes",
                                 "Bytes of per-thread counter memory allocated.",
                                 MetricType::kGauge};

}  // namespace

namespace detail {
const FamilyDesc kWaitSeconds{
    metric_names::kWaitSeconds,
    "Time work was ready but blocked by the resource (a lock acquisition, a full channel, a "
    "queue); zero-wait operations count in the first bucket. rate(_sum) is the average number of "
    "waiters: the stall score.",
    MetricType::kHistogram};
const FamilyDesc kWaiters{metric_names::kWaiters, "Threads or tasks waiting on the resource now.",
                          MetricType::kGauge};
const FamilyDesc kOldestWaitAge{
    metric_names::kOldestWaitAge,
    "How long the longest current waiter on the resource has waited so far (0: none).",
    MetricType::kGauge};
const FamilyDesc kIdleSeconds{
    "stallscope_idle_seconds",
    "Time a consumer waited for work (e.g. a receive on an empty channel); zero-wait operations "
    "count in the first bucket. Idle, not a stall: never part of the stall ranking.",
    MetricType::kHistogram};
}  // namespace detail

void validate_resource_name(std::string_view name) {
  if (name.empty()) throw std::invalid_argument("stallscope: resource name must not be empty");
  if (name.size() > 128) {
    throw std::invalid_argument(fmt::format(
        "stallscope: resource name \"{}...\" is {} characters long, at most 128 allowed",
        printable(name.substr(0, 32)), name.size()));
  }
  if (name.starts_with("__")) {
    throw std::invalid_argument(fmt::format(
        "stallscope: resource name \"{}\" starts with \"__\", which is reserved", printable(name)));
  }
  for (std::size_t i = 0; i < name.size(); ++i) {
    if (!name_char_ok(name[i])) {
      throw std::invalid_argument(fmt::format(
          "stallscope: resource name \"{}\" has character '{}' at position {}; use letters, "
          "digits and _ - . : / @",
          printable(name), printable(name.substr(i, 1)), i));
    }
  }
}

Registry& Registry::global() noexcept {
  // Leaked on purpose: wrappers in static storage may register or record during static
  // destruction, after any function-local static would be gone.
  static Registry* const r = new Registry;
  return *r;
}

Registry::Registry() {
  detail::calibrate_clock();
  config_ = Config::from_env();  // logs a bad variable and keeps its default
  detail::apply_task_config(config_);
  set_profile_rate(config_.profile_rate);
}

Registry::~Registry() = default;

void Registry::configure(const Config& config) {
  if (config.max_resources_per_kind == 0) {
    throw std::invalid_argument("stallscope: max_resources_per_kind is 0; it must be at least 1");
  }
  if (config.slow_slice.count() < 0) {
    throw std::invalid_argument(fmt::format(
        "stallscope: slow_slice is {} ns; it must not be negative", config.slow_slice.count()));
  }
  if (config.cancel_grace.count() < 0) {
    throw std::invalid_argument(fmt::format(
        "stallscope: cancel_grace is {} ns; it must not be negative", config.cancel_grace.count()));
  }
  std::lock_guard lock(mu_);
  config_ = config;
  // The task thresholds apply to every name at once, those that exist included.
  detail::apply_task_config(config_);
  set_profile_rate(config_.profile_rate);
}

Config Registry::config() const {
  std::lock_guard lock(mu_);
  return config_;
}

std::string Registry::series_name(std::uint32_t id) const {
  std::lock_guard lock(mu_);
  return id >= 1 && id <= series_.size() ? series_[id - 1]->name() : std::string();
}

ResourceKind Registry::series_kind(const detail::Series& s) noexcept { return s.kind(); }

std::size_t Registry::series_count(ResourceKind kind) const {
  std::lock_guard lock(mu_);
  return per_kind_[static_cast<std::size_t>(kind)];
}

detail::Series& Registry::series(ResourceKind kind, std::string_view name, SeriesFactory make) {
  validate_resource_name(name);
  const auto k = static_cast<std::size_t>(kind);
  // Key: one byte of kind, then the name, built on the stack: a lookup of a known name (every
  // spawn of a named task) allocates nothing.
  char buf[1 + 128];
  buf[0] = static_cast<char>('0' + k);
  name.copy(buf + 1, name.size());
  std::string_view key(buf, 1 + name.size());
  std::lock_guard lock(mu_);
  if (auto it = by_key_.find(key); it != by_key_.end()) return *it->second;

  std::string series_name(name);
  std::string owned_key(key);
  if (per_kind_[k] >= config_.max_resources_per_kind) {
    ++overflowed_[k];
    owned_key = std::string(1, buf[0]) + std::string(kOverflowName);
    if (auto it = by_key_.find(owned_key); it != by_key_.end()) return *it->second;
    series_name = std::string(kOverflowName);
  }
  const auto id = static_cast<std::uint32_t>(series_.size() + 1);
  series_.push_back(make(kind, std::move(series_name), id, config_));
  detail::Series* s = series_.back().get();
  by_key_.emplace(std::move(owned_key), s);
  ++per_kind_[k];
  return *s;
}

std::vector<FamilySnapshot> Registry::collect() const {
  const std::int64_t now = now_ns();
  std::lock_guard lock(mu_);
  // Who is blocked where, from every thread's wait slot.
  std::vector<detail::WaitersNow> waiters(series_.size() + 1);
  detail::for_each_shard([&](detail::ThreadShard& s) {
    const std::uint32_t id = s.wait.series.load(std::memory_order_acquire);
    if (id == 0 || id >= waiters.size()) return;
    const std::uint32_t op = s.wait.op.load(std::memory_order_relaxed) & 1u;
    const std::int64_t since = s.wait.since_ns.load(std::memory_order_relaxed);
    auto& w = waiters[id];
    ++w.count[op];
    if (w.oldest_since_ns[op] == 0 || since < w.oldest_since_ns[op]) w.oldest_since_ns[op] = since;
  });
  // Which task slices run now, from every thread's slice slot.
  detail::for_each_shard([&](detail::ThreadShard& s) {
    const std::uint32_t id = s.slice.series.load(std::memory_order_acquire);
    if (id == 0 || id >= waiters.size()) return;
    const std::int64_t start = s.slice.start_ns.load(std::memory_order_relaxed);
    auto& w = waiters[id];
    if (w.running_since_ns == 0 || start < w.running_since_ns) w.running_since_ns = start;
  });

  detail::Collector out(now, std::move(waiters));
  for (const auto& s : series_) s->collect(out);

  out.family(kResources);
  out.family(kOverflow);
  for (std::size_t k = 0; k < kResourceKinds; ++k) {
    if (per_kind_[k] == 0 && overflowed_[k] == 0) continue;
    Labels l{{"kind", std::string(to_string(static_cast<ResourceKind>(k)))}};
    out.add(kResources, l, static_cast<double>(per_kind_[k]));
    out.add(kOverflow, l, static_cast<double>(overflowed_[k]));
  }
  out.add(detail::families::deadlock::kDeadlocks, {}, static_cast<double>(deadlocks_total()));
  const detail::ShardStats st = detail::shard_stats();
  out.add(kThreads, {}, static_cast<double>(st.owned));
  out.add(kMemory, {},
          static_cast<double>(st.chunk_bytes + st.shards * sizeof(detail::ThreadShard)));
  return out.take();
}

namespace detail {

FamilySnapshot& Collector::family(const FamilyDesc& desc) {
  for (std::size_t i = 0; i < descs_.size(); ++i) {
    if (descs_[i] == &desc) return families_[i];
  }
  descs_.push_back(&desc);
  families_.push_back(FamilySnapshot{desc.name, desc.help, desc.type, {}});
  return families_.back();
}

void Collector::add(const FamilyDesc& desc, Labels labels, double value) {
  SampleSnapshot s;
  s.labels = std::move(labels);
  s.value = value;
  family(desc).samples.push_back(std::move(s));
}

void Collector::add(const FamilyDesc& desc, Labels labels, HistogramSnapshot histogram) {
  SampleSnapshot s;
  s.labels = std::move(labels);
  s.histogram = std::move(histogram);
  family(desc).samples.push_back(std::move(s));
}

void Collector::add_wait(const Labels& labels, HistogramSnapshot waits, double waiters,
                         std::int64_t oldest_since_ns) {
  add(kWaitSeconds, labels, std::move(waits));
  add(kWaiters, labels, waiters);
  add(kOldestWaitAge, labels, age_seconds(oldest_since_ns));
}

}  // namespace detail
}  // namespace stallscope
