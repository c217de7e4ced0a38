#include "stallscope/log.hpp"

#include <cstdio>
#include <mutex>
#include <string>

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

const char* level_name(LogLevel level) {
  switch (level) {
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "?";
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
  std::fprintf(stderr, "stallscope %s: %.*s\n", level_name(level), static_cast<int>(message.size()),
               message.data());
}

}  // namespace stallscope
