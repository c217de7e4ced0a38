#include "stallscope/options.hpp"

#include <cstddef>

#include "env.hpp"

namespace stallscope {

Config Config::from_env() {
  Config c;
  detail::read_env("STALLSCOPE_HOLD_TIME", c.hold_time, detail::parse_flag, detail::kFlagValues,
                   c.hold_time ? "on" : "off");
  detail::read_env(
      "STALLSCOPE_MAX_RESOURCES", c.max_resources_per_kind,
      [](std::string_view s) { return detail::parse_whole<std::size_t>(s, 1, 1'000'000); },
      "a whole number from 1 to 1000000", std::to_string(c.max_resources_per_kind));
  detail::read_env("STALLSCOPE_SLOW_SLICE", c.slow_slice, detail::parse_duration,
                   detail::kDurationValues, "10ms");
  detail::read_env("STALLSCOPE_CANCEL_GRACE", c.cancel_grace, detail::parse_duration,
                   detail::kDurationValues, "1s");
  detail::read_env("STALLSCOPE_PROFILE_RATE", c.profile_rate, ProfileRate::parse,
                   "off, a whole number N (one event in N) or a duration (e.g. 1ms)",
                   c.profile_rate.to_string());
  return c;
}

}  // namespace stallscope
