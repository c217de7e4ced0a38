#pragma once
// A JSON string literal, escaped so that it is also safe inside HTML and <script>: the writers of
// /stallz.json (stallz_json.cpp) and /stallz/map.json (stallz_map.cpp).
#include <iterator>
#include <string>
#include <string_view>

#include <fmt/format.h>

namespace stallscope::detail {

// Appends `s` to `out` as a quoted JSON string. Runs of characters that need no escape are
// appended whole (a 10,000-task /stallz/tasks.json spent a third of its time appending one
// character at a time).
inline void json_string(std::string& out, std::string_view s) {
  out += '"';
  std::size_t from = 0;  // the first character not yet appended
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const auto u = static_cast<unsigned char>(c);
    const bool plain = u >= 0x20 && u != 0x7f && c != '"' && c != '\\' && c != '<' && c != '>' &&
                       c != '&' && c != '\'';
    if (plain) continue;
    out.append(s.data() + from, i - from);
    from = i + 1;
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
      default:
        // Control characters, and < > & ' (safe to embed in HTML and <script> as well).
        fmt::format_to(std::back_inserter(out), "\\u{:04x}", u);
    }
  }
  out.append(s.data() + from, s.size() - from);
  out += '"';
}

}  // namespace stallscope::detail
