#include "stallscope/options.hpp"

#include <charconv>
#include <cstdlib>
#include <stdexcept>
#include <string_view>

#include <fmt/format.h>

namespace stallscope {

namespace {

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return (v != nullptr && *v != '\0') ? v : nullptr;
}

}  // namespace

Config Config::from_env() {
  Config c;
  if (const char* v = env("STALLSCOPE_HOLD_TIME")) {
    const std::string_view s(v);
    if (s == "1" || s == "true" || s == "on") {
      c.hold_time = true;
    } else if (s == "0" || s == "false" || s == "off") {
      c.hold_time = false;
    } else {
      throw std::invalid_argument(
          fmt::format("stallscope: STALLSCOPE_HOLD_TIME=\"{}\" is not one of 0, 1, true, false, "
                      "on, off",
                      s));
    }
  }
  if (const char* v = env("STALLSCOPE_MAX_RESOURCES")) {
    const std::string_view s(v);
    std::size_t n = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    if (ec != std::errc() || end != s.data() + s.size() || n < 1 || n > 1000000) {
      throw std::invalid_argument(fmt::format(
          "stallscope: STALLSCOPE_MAX_RESOURCES=\"{}\" is not a whole number from 1 to 1000000",
          s));
    }
    c.max_resources_per_kind = n;
  }
  return c;
}

}  // namespace stallscope
