#pragma once
// One rule for every STALLSCOPE_* environment variable: each is read on its own; a bad value is
// logged naming the variable and the value, and that variable alone keeps its default. The
// application runs on: configuration from the environment never throws.

#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "stallscope/log.hpp"

namespace stallscope::detail {

/// The variable's value, or nullptr when unset or empty.
inline const char* env_value(const char* name) noexcept {
  const char* v = std::getenv(name);
  return (v != nullptr && *v != '\0') ? v : nullptr;
}

/// Sets `field` from variable `name` through `parse` (std::string_view -> std::optional<T>).
/// When `parse` gives nothing, logs `NAME="value" is not <expected>; using the default
/// (<default_text>)` and leaves `field` as it was. Returns whether the value was used.
template <class T, class Parse>
bool read_env(const char* name, T& field, Parse parse, std::string_view expected,
              std::string_view default_text) {
  const char* v = env_value(name);
  if (v == nullptr) return false;
  if (std::optional<T> parsed = parse(std::string_view(v))) {
    field = std::move(*parsed);
    return true;
  }
  log(LogLevel::kError,
      fmt::format("{}=\"{}\" is not {}; using the default ({})", name, v, expected, default_text));
  return false;
}

/// "0", "false", "off" / "1", "true", "on".
inline std::optional<bool> parse_flag(std::string_view s) {
  if (s == "1" || s == "true" || s == "on") return true;
  if (s == "0" || s == "false" || s == "off") return false;
  return std::nullopt;
}
inline constexpr std::string_view kFlagValues = "one of 0, 1, true, false, on, off";

/// A whole decimal number in [lo, hi], nothing else (no sign, no suffix, no spaces).
template <class T>
std::optional<T> parse_whole(std::string_view s, T lo, T hi) {
  T n{};
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || n < lo || n > hi) {
    return std::nullopt;
  }
  return n;
}

/// A duration: a whole number and a unit (ns, us, ms, s), e.g. "50ms", at most one hour.
inline std::optional<std::chrono::nanoseconds> parse_duration(std::string_view s) {
  struct Unit {
    std::string_view suffix;
    std::int64_t ns;
  };
  // "ns" and "us" before "s": the first suffix that matches is the unit.
  static constexpr Unit kUnits[] = {
      {"ns", 1}, {"us", 1'000}, {"ms", 1'000'000}, {"s", 1'000'000'000}};
  constexpr std::int64_t kHourNs = 3'600'000'000'000;
  for (const Unit& u : kUnits) {
    if (!s.ends_with(u.suffix)) continue;
    auto n = parse_whole<std::int64_t>(s.substr(0, s.size() - u.suffix.size()), 0, kHourNs / u.ns);
    if (!n) return std::nullopt;
    return std::chrono::nanoseconds(*n * u.ns);
  }
  return std::nullopt;
}
inline constexpr std::string_view kDurationValues =
    "a whole number with a unit (ns, us, ms, s) of at most one hour, e.g. 50ms";

}  // namespace stallscope::detail
