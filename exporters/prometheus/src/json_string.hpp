#pragma once
// A JSON string literal, escaped so that it is also safe inside HTML and <script>: the writers of
// /stallz.json (stallz_json.cpp) and /stallz/map.json (stallz_map.cpp).
#include <iterator>
#include <string>
#include <string_view>

#include <fmt/format.h>

namespace stallscope::detail {

// Appends `s` to `out` as a quoted JSON string.
inline void json_string(std::string& out, std::string_view s) {
  out += '"';
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '<':
      case '>':
      case '&':
      case '\'':
        // Safe to embed in HTML and <script> as well.
        fmt::format_to(std::back_inserter(out), "\\u{:04x}", u);
        break;
      default:
        if (u < 0x20 || u == 0x7f) {
          fmt::format_to(std::back_inserter(out), "\\u{:04x}", u);
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

}  // namespace stallscope::detail
