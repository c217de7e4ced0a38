// /stallz/tasks: the query string of the task dump's page (the page and the JSON are rendered
// next to /stallz's, in stallz_html.cpp and stallz_json.cpp).
#include "stallscope/stallz_tasks.hpp"

#include <charconv>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <system_error>

#include <fmt/format.h>

#include "stallscope/registry.hpp"

namespace stallscope {

namespace {

// `s` with %XX and + decoded; throws on a bad escape.
std::string url_decode(std::string_view s) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%') {
      const int hi = i + 2 < s.size() ? hex(s[i + 1]) : -1;
      const int lo = hi >= 0 ? hex(s[i + 2]) : -1;
      if (lo < 0) {
        throw std::invalid_argument(
            fmt::format("stallscope: tasks filter: bad percent-encoding \"{}\"", s.substr(i, 3)));
      }
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// The bad value, quoted and cut short, with control characters shown as '?'.
std::string quoted(std::string_view v) {
  std::string out = "\"";
  for (const char c : v.substr(0, 64)) {
    out += static_cast<unsigned char>(c) < 0x20 || c == 0x7f ? '?' : c;
  }
  return out + (v.size() > 64 ? "...\"" : "\"");
}

}  // namespace

TaskFilter parse_task_filter(std::string_view query) {
  if (!query.empty() && query.front() == '?') query.remove_prefix(1);
  TaskFilter f;
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    const std::string_view field = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (field.empty()) continue;
    const std::size_t eq = field.find('=');
    const std::string key = url_decode(field.substr(0, eq));
    const std::string value =
        eq == std::string_view::npos ? std::string() : url_decode(field.substr(eq + 1));
    auto bad = [&](std::string_view why) {
      return std::invalid_argument(
          fmt::format("stallscope: tasks filter {} = {}: {}", key, quoted(value), why));
    };
    if (key == "name") {
      try {
        validate_resource_name(value);
      } catch (const std::invalid_argument&) {
        throw bad("not a task name (1-128 letters, digits and _ - . : / @)");
      }
      f.name = value;
    } else if (key == "state") {
      try {
        f.state = parse_task_run_state(value);
      } catch (const std::invalid_argument&) {
        throw bad("not one of running, queued, waiting, suspended");
      }
    } else if (key == "cancelled") {
      if (value != "true" && value != "false") throw bad("not true or false");
      f.cancel_requested = value == "true";
    } else if (key == "limit") {
      std::size_t n = 0;
      const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (value.empty() || ec != std::errc() || end != value.data() + value.size() || n == 0) {
        throw bad("not a whole number of tasks from 1");
      }
      f.limit = n;
    } else {
      throw std::invalid_argument(fmt::format(
          "stallscope: tasks filter: unknown parameter {} (use name, state, cancelled, limit)",
          quoted(key)));
    }
  }
  return f;
}

}  // namespace stallscope
