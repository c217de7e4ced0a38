#include "payload.hpp"

#include <charconv>
#include <cstdint>
#include <iterator>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <fmt/format.h>

namespace demo {

namespace {

constexpr std::uint64_t kFnvOffset = 14695981039346656037ULL;
constexpr std::uint64_t kFnvPrime = 1099511628211ULL;
constexpr int kMaxDepth = 64;
constexpr std::string_view kHex = "0123456789abcdef";
// Where the 16 hex digits of the request id go: right after `{"request":"`.
constexpr std::size_t kStampOffset = 12;
constexpr std::size_t kStampDigits = 16;

// One record of the "items" array, materialized as a service would (names and notes unescaped).
struct Item {
  double id = -1;
  std::string name;
  double score = 0;
  std::vector<std::string> tags;
  std::string note;
  std::optional<double> parent;
};

class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {}

  ParseResult run() {
    ParseResult r;
    skip_space();
    r.valid = value(0) && (skip_space(), pos_ == text_.size()) && saw_items_ && validate();
    r.hash = hash_;
    r.records = items_.size();
    r.number_sum = sum_;
    return r;
  }

 private:
  // Every record has an id, ids increase, a parent is an earlier record, names and tags are
  // present and scores are not negative.
  bool validate() const {
    double last_id = 0;
    for (const Item& item : items_) {
      if (item.id <= last_id || item.name.empty() || item.tags.empty() || item.score < 0) {
        return false;
      }
      if (item.parent && *item.parent >= item.id) return false;
      last_id = item.id;
    }
    return true;
  }

  bool value(int depth) {
    if (depth > kMaxDepth || pos_ >= text_.size()) return false;
    switch (text_[pos_]) {
      case '{':
        return object(depth);
      case '[':
        return array(depth);
      case '"':
        return string();
      case 't':
        return literal("true");
      case 'f':
        return literal("false");
      case 'n':
        return literal("null");
      default:
        return number();
    }
  }

  // `"key":`, leaving pos_ at the value.
  bool key(std::string_view& out) {
    skip_space();
    const std::size_t start = pos_ + 1;
    if (!peek('"') || !string()) return false;
    out = text_.substr(start, pos_ - start - 1);
    skip_space();
    if (!peek(':')) return false;
    ++pos_;
    skip_space();
    return true;
  }

  // After a member: `,` (true, more) or `close` (true, done).
  bool next(char close, bool& done) {
    skip_space();
    if (peek(',')) {
      ++pos_;
      return true;
    }
    if (!peek(close)) return false;
    ++pos_;
    done = true;
    return true;
  }

  // A '{' or '[' at pos_, up to its `close`: element() parses one member or element (it may
  // start after white space) and returns false on bad input.
  template <class Element>
  bool sequence(char close, Element element) {
    ++pos_;  // '{' or '['
    skip_space();
    if (peek(close)) {
      ++pos_;
      return true;
    }
    for (bool done = false; !done;) {
      skip_space();
      if (!element() || !next(close, done)) return false;
    }
    return true;
  }

  bool object(int depth) {
    return sequence('}', [&] {
      std::string_view k;
      if (!key(k)) return false;
      if (depth == 0 && k == "items") {
        saw_items_ = true;
        return peek('[') && records(depth + 1);
      }
      return value(depth + 1);
    });
  }

  bool records(int depth) {
    return sequence(']', [&] { return peek('{') && record(depth + 1); });
  }

  // One record; an empty one has no id, so it is bad input like any record without one.
  bool record(int depth) {
    Item item;
    bool has_id = false;
    const bool ok = sequence('}', [&] {
      std::string_view k;
      if (!key(k)) return false;
      if (k == "id") {
        has_id = true;
        return number(&item.id);
      }
      if (k == "name") return peek('"') && string(&item.name);
      if (k == "note") return peek('"') && string(&item.note);
      if (k == "score") return number(&item.score);
      if (k == "tags") return peek('[') && strings(item.tags);
      if (k == "parent" && !peek('n')) return number(&item.parent.emplace());
      return value(depth + 1);
    });
    if (!ok || !has_id) return false;
    items_.push_back(std::move(item));
    return true;
  }

  bool strings(std::vector<std::string>& out) {
    return sequence(']', [&] { return peek('"') && string(&out.emplace_back()); });
  }

  bool array(int depth) {
    return sequence(']', [&] { return value(depth + 1); });
  }

  // A string; with `out`, its unescaped text (\\uXXXX as UTF-8, surrogates not paired).
  bool string(std::string* out = nullptr) {
    ++pos_;  // '"'
    while (pos_ < text_.size()) {
      const char c = text_[pos_++];
      if (c == '"') return true;
      if (static_cast<unsigned char>(c) < 0x20) return false;
      if (c == '\\') {
        if (pos_ >= text_.size()) return false;
        const char e = text_[pos_++];
        if (e == 'u') {
          unsigned code = 0;
          for (int i = 0; i < 4; ++i) {
            const std::size_t digit =
                pos_ < text_.size() ? kHex.find(lower(text_[pos_])) : std::string_view::npos;
            if (digit == std::string_view::npos) return false;
            code = code * 16 + static_cast<unsigned>(digit);
            mix(text_[pos_++]);
          }
          if (out != nullptr) append_utf8(*out, code);
          continue;
        }
        const std::size_t k = std::string_view("\"\\/bfnrt").find(e);
        if (k == std::string_view::npos) return false;
        mix(e);
        if (out != nullptr) *out += "\"\\/\b\f\n\r\t"[k];
        continue;
      }
      mix(c);
      if (out != nullptr) *out += c;
    }
    return false;
  }

  static void append_utf8(std::string& out, unsigned code) {
    if (code < 0x80) {
      out += static_cast<char>(code);
    } else if (code < 0x800) {
      out += static_cast<char>(0xc0 | (code >> 6));
      out += static_cast<char>(0x80 | (code & 0x3f));
    } else {
      out += static_cast<char>(0xe0 | (code >> 12));
      out += static_cast<char>(0x80 | ((code >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (code & 0x3f));
    }
  }

  bool number(double* out = nullptr) {
    double v = 0;
    const char* first = text_.data() + pos_;
    const auto [end, ec] = std::from_chars(first, text_.data() + text_.size(), v);
    if (ec != std::errc() || end == first) return false;
    for (const char* p = first; p != end; ++p) mix(*p);
    sum_ += v;
    if (out != nullptr) *out = v;
    pos_ += static_cast<std::size_t>(end - first);
    return true;
  }

  bool literal(std::string_view word) {
    if (text_.substr(pos_, word.size()) != word) return false;
    for (const char c : word) mix(c);
    pos_ += word.size();
    return true;
  }

  void skip_space() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\n' ||
                                   text_[pos_] == '\t' || text_[pos_] == '\r')) {
      ++pos_;
    }
  }
  bool peek(char c) const { return pos_ < text_.size() && text_[pos_] == c; }
  static char lower(char c) { return c >= 'A' && c <= 'F' ? static_cast<char>(c + 32) : c; }
  void mix(char c) {
    hash_ ^= static_cast<unsigned char>(c);
    hash_ *= kFnvPrime;
  }

  std::string_view text_;
  std::size_t pos_ = 0;
  std::uint64_t hash_ = kFnvOffset;
  std::vector<Item> items_;
  bool saw_items_ = false;
  double sum_ = 0;
};

}  // namespace

std::string make_payload_template(std::size_t bytes, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto pick = [&rng](std::uint64_t n) { return rng() % n; };
  static constexpr std::string_view kWords[] = {"alpha", "bravo",   "charlie", "delta",
                                                "echo",  "foxtrot", "golf",    "hotel"};
  std::string out = "{\"request\":\"";
  out.append(kStampDigits, '0');
  out += "\",\"items\":[";
  auto it = std::back_inserter(out);
  for (std::uint64_t id = 1; out.size() < bytes; ++id) {
    // One pick per statement: the order of the draws, and so the payload, is fixed by the seed.
    const std::string_view word = kWords[pick(8)];
    const std::uint64_t suffix = pick(100000);
    const std::uint64_t score = pick(100000);
    const std::uint64_t fraction = pick(1000);
    const bool active = pick(2) != 0;
    fmt::format_to(it, "{}{{\"id\":{},\"name\":\"{}-{}\",\"score\":{}.{},\"active\":{},\"tags\":[",
                   id > 1 ? "," : "", id, word, suffix, score, fraction, active);
    const std::uint64_t tags = 1 + pick(4);
    for (std::uint64_t t = 0; t < tags; ++t) {
      fmt::format_to(it, "{}\"{}\"", t > 0 ? "," : "", kWords[pick(8)]);
    }
    fmt::format_to(it,
                   "],\"note\":\"line \\\"{}\\\" of\\nsome text \\u00e9\",\"parent\":", pick(1000));
    if (pick(4) == 0) {
      out += "null";
    } else {
      fmt::format_to(it, "{}", pick(id));
    }
    out += '}';
  }
  out += "]}";
  return out;
}

std::string make_payload(const std::string& payload_template, std::uint64_t request_id) {
  std::string out = payload_template;
  for (std::size_t i = 0; i < kStampDigits; ++i) {
    out[kStampOffset + kStampDigits - 1 - i] = kHex[(request_id >> (4 * i)) & 0xf];
  }
  return out;
}

ParseResult parse_payload(std::string_view text) { return Parser(text).run(); }

}  // namespace demo
