#include "text_parser.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <stdexcept>

#include <fmt/format.h>

namespace stallscope::check::detail {

namespace {

bool name_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
}
bool name_char(char c) { return name_start(c) || (c >= '0' && c <= '9'); }

class LineReader {
 public:
  LineReader(std::string_view line, std::string_view origin, std::size_t number)
      : line_(line), origin_(origin), number_(number) {}

  [[noreturn]] void fail(std::string_view what) const {
    throw std::invalid_argument(
        fmt::format("{} line {}: {}: \"{}\"", origin_, number_, what, line_));
  }
  bool done() const { return pos_ >= line_.size(); }
  char peek() const { return done() ? '\0' : line_[pos_]; }
  void skip_blanks() {
    while (!done() && (line_[pos_] == ' ' || line_[pos_] == '\t')) ++pos_;
  }
  void expect(char c) {
    if (peek() != c) fail(fmt::format("expected '{}'", c));
    ++pos_;
  }
  std::string name() {
    const std::size_t start = pos_;
    if (!name_start(peek())) fail("expected a metric or label name");
    while (!done() && name_char(line_[pos_])) ++pos_;
    return std::string(line_.substr(start, pos_ - start));
  }
  std::string quoted() {
    expect('"');
    std::string out;
    while (true) {
      if (done()) fail("unterminated label value");
      const char c = line_[pos_++];
      if (c == '"') return out;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (done()) fail("unterminated escape in a label value");
      const char e = line_[pos_++];
      if (e == 'n') {
        out += '\n';
      } else if (e == '\\' || e == '"') {
        out += e;
      } else {
        fail(fmt::format("unknown escape \\{} in a label value", e));
      }
    }
  }
  std::string_view token() {
    const std::size_t start = pos_;
    while (!done() && line_[pos_] != ' ' && line_[pos_] != '\t') ++pos_;
    return line_.substr(start, pos_ - start);
  }
  double number() {
    std::string_view t = token();
    if (t.empty()) fail("expected a value");
    if (t == "+Inf" || t == "Inf") return std::numeric_limits<double>::infinity();
    if (t == "-Inf") return -std::numeric_limits<double>::infinity();
    if (t == "NaN") return std::numeric_limits<double>::quiet_NaN();
    if (t.front() == '+') t.remove_prefix(1);
    double v = 0;
    const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
    if (ec != std::errc{} || end != t.data() + t.size()) {
      fail(fmt::format("\"{}\" is not a number", t));
    }
    return v;
  }

 private:
  std::string_view line_;
  std::string_view origin_;
  std::size_t number_;
  std::size_t pos_ = 0;
};

}  // namespace

std::vector<Series> parse_text(std::string_view text, std::string_view origin) {
  std::vector<Series> out;
  std::size_t number = 0;
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    ++number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    LineReader r(line, origin, number);
    r.skip_blanks();
    if (r.done() || r.peek() == '#') continue;
    Series s;
    s.name = r.name();
    r.skip_blanks();
    if (r.peek() == '{') {
      r.expect('{');
      r.skip_blanks();
      while (r.peek() != '}') {
        std::string key = r.name();
        r.skip_blanks();
        r.expect('=');
        r.skip_blanks();
        s.labels.emplace_back(std::move(key), r.quoted());
        r.skip_blanks();
        if (r.peek() == ',') {
          r.expect(',');
          r.skip_blanks();
        } else if (r.peek() != '}') {
          r.fail("expected ',' or '}' after a label");
        }
      }
      r.expect('}');
    }
    r.skip_blanks();
    s.value = r.number();
    r.skip_blanks();
    if (!r.done()) r.number();  // a timestamp, unused
    r.skip_blanks();
    if (!r.done()) r.fail("unexpected text after the value");
    std::sort(s.labels.begin(), s.labels.end());
    out.push_back(std::move(s));
  }
  return out;
}

std::string_view label(const Series& s, std::string_view key) noexcept {
  for (const auto& [k, v] : s.labels) {
    if (k == key) return v;
  }
  return {};
}

}  // namespace stallscope::check::detail
