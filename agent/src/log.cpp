#include "stallscope/log.hpp"

#include <cstdio>
#include <mutex>
#include <string>
#include <string_view>

#include "stallscope/detail/enum_names.hpp"

namespace stallscope {

namespace {

struct SinkHolder {
  std::mutex mu;
  LogSink sink;
};

SinkHolder& holder() {
  static auto* const h = new SinkHolder;  // leaked: logging may happen during exit
  return *h;
}

std::string_view level_name(LogLevel level) {
  static constexpr std::string_view kNames[] = {"info", "warning", "error"};  // LogLevel's order
  return detail::enum_name(level, kNames, "?");
}

}  // namespace

void set_log_sink(LogSink sink) {
  auto& h = holder();
  std::lock_guard lock(h.mu);
  h.sink = std::move(sink);
}

void log(LogLevel level, std::string_view message) noexcept {
  LogSink sink;
  try {
    {
      auto& h = holder();
      std::lock_guard lock(h.mu);
      sink = h.sink;  // called outside the lock, so a sink may itself log or set a sink
    }
    if (sink) {
      sink(level, message);
      return;
    }
  } catch (...) {
    return;
  }
  // Messages usually start with "stallscope: " (they double as exception texts); say it once.
  if (message.starts_with("stallscope: ")) message.remove_prefix(12);
  const std::string_view level_word = level_name(level);
  std::fprintf(stderr, "stallscope %.*s: %.*s\n", static_cast<int>(level_word.size()),
               level_word.data(), static_cast<int>(message.size()), message.data());
}

}  // namespace stallscope
