#pragma once
// A small JSON reader for the exporter tests: enough to check that output parses and to look
// values up.
#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

namespace stallscope::test {

struct Json {
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };
  Type type = Type::kNull;
  bool boolean = false;
  double number = 0;
  std::string string;
  std::vector<std::string> keys;  // objects: keys[i] names items[i]
  std::vector<Json> items;

  const Json& operator[](std::string_view key) const {
    for (std::size_t i = 0; i < keys.size(); ++i) {
      if (keys[i] == key) return items[i];
    }
    throw std::out_of_range(fmt::format("no key \"{}\"", key));
  }
  const Json& operator[](std::size_t i) const { return items.at(i); }
  bool is_null() const { return type == Type::kNull; }
};

class JsonParser {
 public:
  explicit JsonParser(std::string_view text) : s_(text) {}

  Json parse() {
    Json v = value();
    space();
    if (i_ != s_.size()) fail("trailing text");
    return v;
  }

 private:
  [[noreturn]] void fail(std::string_view what) const {
    throw std::runtime_error(fmt::format("bad JSON at offset {}: {}", i_, what));
  }
  void space() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t'))
      ++i_;
  }
  void expect(char c) {
    space();
    if (i_ >= s_.size() || s_[i_] != c) fail(fmt::format("expected '{}'", c));
    ++i_;
  }
  bool literal(std::string_view word) {
    if (s_.substr(i_, word.size()) != word) return false;
    i_ += word.size();
    return true;
  }
  // After an opening bracket: `element` for each comma-separated element, then `close`.
  template <class Fn>
  void elements(char close, Fn&& element) {
    ++i_;
    space();
    if (i_ < s_.size() && s_[i_] == close) {
      ++i_;
      return;
    }
    do {
      element();
      space();
    } while (i_ < s_.size() && s_[i_] == ',' && ++i_ != 0);
    expect(close);
  }
  Json value() {
    space();
    if (i_ >= s_.size()) fail("unexpected end");
    Json v;
    const char c = s_[i_];
    if (c == '{') {
      v.type = Json::Type::kObject;
      elements('}', [&] {
        space();
        v.keys.push_back(string());
        expect(':');
        v.items.push_back(value());
      });
    } else if (c == '[') {
      v.type = Json::Type::kArray;
      elements(']', [&] { v.items.push_back(value()); });
    } else if (c == '"') {
      v.type = Json::Type::kString;
      v.string = string();
    } else if (literal("null")) {
      v.type = Json::Type::kNull;
    } else if (literal("true") || literal("false")) {
      v.type = Json::Type::kBool;
      v.boolean = s_[i_ - 1] == 'e' && s_[i_ - 2] == 'u';
    } else {
      v.type = Json::Type::kNumber;
      const std::size_t start = i_;
      while (i_ < s_.size() &&
             std::string_view("+-0123456789.eE").find(s_[i_]) != std::string_view::npos) {
        ++i_;
      }
      if (start == i_) fail("unexpected character");
      const std::string num(s_.substr(start, i_ - start));
      char* end = nullptr;
      v.number = std::strtod(num.c_str(), &end);
      if (end != num.c_str() + num.size()) fail("bad number");
    }
    return v;
  }
  std::string string() {
    expect('"');
    std::string out;
    while (true) {
      if (i_ >= s_.size()) fail("unterminated string");
      const char c = s_[i_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in a string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i_ >= s_.size()) fail("unterminated escape");
      const char e = s_[i_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out += e;
          break;
        case 'n':
          out += '\n';
          break;
        case 't':
          out += '\t';
          break;
        case 'r':
          out += '\r';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'u': {
          if (i_ + 4 > s_.size()) fail("short \\u escape");
          const unsigned cp =
              static_cast<unsigned>(std::stoul(std::string(s_.substr(i_, 4)), nullptr, 16));
          i_ += 4;
          if (cp >= 0x80) fail("test reader decodes ASCII \\u escapes only");
          out += static_cast<char>(cp);
          break;
        }
        default:
          fail("bad escape");
      }
    }
  }

  std::string_view s_;
  std::size_t i_ = 0;
};

// Whether JSON output is safe to embed in HTML and <script>: none of < > & ' written raw.
inline bool html_safe(std::string_view json) {
  return json.find_first_of("<>&'") == std::string_view::npos;
}

inline Json parse_json(std::string_view text) { return JsonParser(text).parse(); }

}  // namespace stallscope::test
