#pragma once
// What a lock wrapper needs to name itself at compile time, with recording on or off: the
// compile-time name check behind LockName, and the declaring site of an unnamed lock.
#include <cstddef>
#include <cstdint>
#include <source_location>
#include <string_view>

namespace stallscope::detail {

// Where an unnamed lock is initialized. std::source_location where the standard library has it;
// clang 14 with libstdc++ 12 lacks __builtin_source_location (so <source_location> is empty),
// and there the older builtins, which GCC and clang both have, say the same. Both report the
// outermost call site through nested default arguments: the line that declares a global or local
// lock, or the constructor that initializes a member.
struct SourceSite {
  const char* file = "";
  std::uint32_t line = 0;
#if defined(__cpp_lib_source_location)
  static constexpr SourceSite current(
      std::source_location where = std::source_location::current()) noexcept {
    return {where.file_name(), where.line()};
  }
#else
  static constexpr SourceSite current(const char* file = __builtin_FILE(),
                                      std::uint32_t line = __builtin_LINE()) noexcept {
    return {file, line};
  }
#endif
};

// Called by a lock's literal-name constructor during constant evaluation when the name is bad.
// Not constexpr, so a constinit lock with a bad name is a compile error that names this function.
// (A lock that is not constant-initialized reports a bad name at its first use instead.) Never
// called at run time; defined (empty) in lock_recorder.cpp only so that no build depends on the
// dead call being optimized away.
void lock_name_is_invalid_see_validate_resource_name() noexcept;

// The compile-time twin of validate_resource_name (registry.cpp): 1-128 characters of letters,
// digits and _ - . : / @, not starting with "__".
// Reads through data(), not starts_with() or operator[]: libstdc++ 12 branches on
// std::is_constant_evaluated() in those (char_traits, its constexpr assertions), and with that in
// the initializer GCC 12 stops constant-initializing a global that is not constinit.
constexpr bool valid_resource_name(std::string_view name) noexcept {
  const char* p = name.data();
  const std::size_t n = name.size();
  if (n == 0 || n > 128) return false;
  if (n >= 2 && p[0] == '_' && p[1] == '_') return false;
  for (std::size_t i = 0; i < n; ++i) {
    const char c = p[i];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-' || c == '.' || c == ':' || c == '/' || c == '@';
    if (!ok) return false;
  }
  return true;
}

}  // namespace stallscope::detail
