#pragma once
// An enum value's name from a table of names in declaration order, for enums numbered 0, 1, 2...
// (the label values and log words of stallscope's enums).
#include <cstddef>
#include <string_view>

namespace stallscope::detail {

// names[e]; `fallback` for a value outside the table (an integer cast to the enum).
template <class Enum, std::size_t N>
constexpr std::string_view enum_name(Enum e, const std::string_view (&names)[N],
                                     std::string_view fallback = "unknown") noexcept {
  const auto i = static_cast<std::size_t>(e);
  return i < N ? names[i] : fallback;
}

}  // namespace stallscope::detail
