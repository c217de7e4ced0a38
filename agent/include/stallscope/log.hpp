#pragma once
/// Where stallscope reports problems that must not throw (a port that could not be bound from
/// the environment, a bad environment variable, a detector event). Default: one line on stderr.

#include <functional>
#include <string_view>

namespace stallscope {

enum class LogLevel { kInfo, kWarning, kError };

using LogSink = std::function<void(LogLevel, std::string_view message)>;

/// Replaces the sink; an empty function restores the default (stderr). Thread-safe. The sink is
/// called without any stallscope lock held that user code could hold, and must not throw.
void set_log_sink(LogSink sink);

/// Sends one message to the current sink. Thread-safe, noexcept (a throwing sink is ignored).
void log(LogLevel level, std::string_view message) noexcept;

}  // namespace stallscope
