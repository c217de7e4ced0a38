#pragma once
// The demo's CPU work: a JSON-ish payload as the slow external API would return it, and a real
// parser that validates it, checks every record and hashes every value. No Asio in here.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace demo {

/// What parsing a payload found.
struct ParseResult {
  bool valid = false;         // well-formed, and every record passes validation
  std::uint64_t hash = 0;     // FNV-1a over every key and value
  std::uint64_t records = 0;  // objects in the "items" array
  double number_sum = 0;      // sum of every number
};

/// A payload template of about `bytes` bytes: `{"request":"<16 hex digits>","items":[...]}`,
/// the items being records of ids, names, tags, scores and escaped notes. Deterministic in
/// `seed`.
std::string make_payload_template(std::size_t bytes, std::uint64_t seed);

/// A copy of `payload_template` stamped with `request_id`, so that every response differs.
std::string make_payload(const std::string& payload_template, std::uint64_t request_id);

/// Parses `text` (a full JSON parser: objects, arrays, strings with escapes, numbers, literals;
/// depth-limited), materializes every record of "items" (names and notes unescaped, tags, ids,
/// scores, parents), validates them (ids increase, parents precede, names and tags present) and
/// hashes every key and value. Pure function, thread-safe.
ParseResult parse_payload(std::string_view text);

}  // namespace demo
