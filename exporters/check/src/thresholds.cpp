#include <charconv>
#include <cmath>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "stallscope/check.hpp"

namespace stallscope::check {

namespace {

struct Key {
  std::string_view name;
  double Thresholds::*member;
};

constexpr Key kKeys[] = {
    {"held_across_suspend", &Thresholds::held_across_suspend},
    {"async_lock_waiters", &Thresholds::async_lock_waiters},
    {"async_lock_hold_seconds", &Thresholds::async_lock_hold_seconds},
    {"channel_full_share", &Thresholds::channel_full_share},
    {"channel_send_waiters", &Thresholds::channel_send_waiters},
    {"cancel_exit_seconds", &Thresholds::cancel_exit_seconds},
    {"long_slice_seconds", &Thresholds::long_slice_seconds},
    {"long_slice_share", &Thresholds::long_slice_share},
    {"long_slice_min", &Thresholds::long_slice_min},
    {"lock_blocked_threads", &Thresholds::lock_blocked_threads},
    {"pool_queue_per_thread", &Thresholds::pool_queue_per_thread},
    {"retry_amplification", &Thresholds::retry_amplification},
    {"tiny_task_seconds", &Thresholds::tiny_task_seconds},
    {"tiny_task_min", &Thresholds::tiny_task_min},
    {"channel_queued_bytes", &Thresholds::channel_queued_bytes},
    {"channel_item_bytes", &Thresholds::channel_item_bytes},
    {"channel_sender_tasks", &Thresholds::channel_sender_tasks},
};

std::invalid_argument bad(std::string_view origin, std::string_view what) {
  return std::invalid_argument(fmt::format("{}: {}", origin, what));
}

std::string known_keys() {
  std::string out;
  for (const Key& k : kKeys) {
    if (!out.empty()) out += ", ";
    out += k.name;
  }
  return out;
}

}  // namespace

Thresholds parse_thresholds(std::string_view yaml, std::string_view origin) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    throw bad(origin, fmt::format("is not valid YAML: {}", e.what()));
  }
  Thresholds t;
  if (root.IsNull()) return t;  // an empty file: every default
  if (!root.IsMap()) throw bad(origin, "the top level must be a mapping of threshold names");
  for (const auto& kv : root) {
    const std::string key = kv.first.as<std::string>();
    const Key* k = nullptr;
    for (const Key& candidate : kKeys) {
      if (candidate.name == key) k = &candidate;
    }
    if (k == nullptr) {
      throw bad(origin, fmt::format("unknown key \"{}\" (known: {})", key, known_keys()));
    }
    if (!kv.second.IsScalar()) throw bad(origin, fmt::format("{} must be a number", key));
    const std::string text = kv.second.as<std::string>();
    double v = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc{} || end != text.data() + text.size() || !std::isfinite(v) || v < 0) {
      throw bad(origin, fmt::format("{}: \"{}\" is not a finite number of at least 0", key, text));
    }
    t.*(k->member) = v;
  }
  return t;
}

Thresholds load_thresholds(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw bad(path, "cannot be read");
  std::ostringstream text;
  text << in.rdbuf();
  return parse_thresholds(text.str(), path);
}

}  // namespace stallscope::check
