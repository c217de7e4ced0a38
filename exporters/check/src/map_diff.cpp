// stallscope::compare_maps: the structural differences between two /stallz/map.json documents.
#include "stallscope/map_diff.hpp"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json.hpp>
#include <fmt/format.h>

namespace stallscope {

namespace {

namespace json = boost::json;

constexpr std::string_view kSchema = "stallscope-map/1";

// What a field is compared as.
enum class FieldKind {
  kValue,      // a value or a list of values: "changed from A to B"
  kBound,      // the "unbounded" flag: "now unbounded" / "now bounded"
  kUsers,      // {"tasks": [...], "threads": [...]}: each name gained or lost
  kTaskNames,  // a group's [{"name": ...}]: each task name gained or lost
};

struct Field {
  std::string_view key;
  std::string_view label;  // for kUsers: the verb ("taken by")
  FieldKind kind;
};

struct Section {
  std::string_view key;
  std::string_view noun;  // "" for locks: the entry's own "kind"
  std::vector<Field> fields;
};

const std::vector<Section>& sections() {
  static const std::vector<Section> kSections = {
      {"groups",
       "group",
       {{"parents", "parent scope", FieldKind::kValue}, {"tasks", "", FieldKind::kTaskNames}}},
      {"channels",
       "channel",
       {{"unbounded", "", FieldKind::kBound},
        {"capacity", "capacity", FieldKind::kValue},
        {"policy", "policy", FieldKind::kValue},
        {"control_capacity", "control capacity", FieldKind::kValue},
        {"senders", "sent to by", FieldKind::kUsers},
        {"receivers", "received from by", FieldKind::kUsers}}},
      {"semaphores",
       "semaphore",
       {{"permits", "permits", FieldKind::kValue}, {"users", "acquired by", FieldKind::kUsers}}},
      {"pools",
       "pool",
       {{"unbounded", "", FieldKind::kBound},
        {"threads", "threads", FieldKind::kValue},
        {"max_queue", "queue limit", FieldKind::kValue},
        {"users", "submitted to by", FieldKind::kUsers}}},
      {"locks", "", {{"users", "taken by", FieldKind::kUsers}}},
  };
  return kSections;
}

// One input, parsed and checked: section key -> (name -> entry).
using Entries = std::map<std::string, const json::object*>;
struct Parsed {
  json::value root;
  std::map<std::string_view, Entries> sections;
};

Parsed parse(std::string_view text, std::string_view which) {
  Parsed p;
  boost::system::error_code ec;
  p.root = json::parse(text, ec);
  if (ec) {
    throw std::invalid_argument(fmt::format("{} is not valid JSON: {}", which, ec.message()));
  }
  const json::object* root = p.root.if_object();
  if (root == nullptr) throw std::invalid_argument(fmt::format("{} is not a JSON object", which));
  const json::value* schema = root->if_contains("schema");
  if (schema == nullptr || !schema->is_string() || schema->get_string() != kSchema) {
    throw std::invalid_argument(fmt::format(
        "{} is not a stallscope map: its \"schema\" is {}, not \"{}\" (save /stallz/map.json)",
        which, schema != nullptr ? json::serialize(*schema) : std::string("missing"), kSchema));
  }
  for (const Section& s : sections()) {
    const json::value* v = root->if_contains(s.key);
    if (v == nullptr || !v->is_array()) {
      throw std::invalid_argument(
          fmt::format("{}: \"{}\" is missing or not an array", which, s.key));
    }
    Entries& entries = p.sections[s.key];
    for (const json::value& e : v->get_array()) {
      const json::object* o = e.if_object();
      const json::value* name = o != nullptr ? o->if_contains("name") : nullptr;
      if (name == nullptr || !name->is_string()) {
        throw std::invalid_argument(
            fmt::format("{}: an entry of \"{}\" is not an object with a string \"name\": {}", which,
                        s.key, json::serialize(e)));
      }
      std::string key(name->get_string());
      if (s.noun.empty()) {  // locks: one name may exist as several kinds
        const json::value* kind = o->if_contains("kind");
        key = fmt::format("{} `{}`",
                          kind != nullptr && kind->is_string() ? std::string(kind->get_string())
                                                               : std::string("lock"),
                          key);
      }
      entries[key] = o;
    }
  }
  return p;
}

// How an entry is named in a difference: "channel `jobs`", "rwlock `table`".
std::string what(const Section& s, const std::string& key) {
  return s.noun.empty() ? key : fmt::format("{} `{}`", s.noun, key);
}

std::string scalar(const json::value& v) {
  if (v.is_string()) return std::string(v.get_string());
  if (v.is_uint64() && v.get_uint64() == std::numeric_limits<std::uint64_t>::max()) {
    return "unbounded";
  }
  return json::serialize(v);
}

// A value as a reviewer reads it: a list's items joined, a missing one "none".
std::string text(const json::value* v) {
  if (v == nullptr) return "none";
  if (const json::array* a = v->if_array()) {
    if (a->empty()) return "none";
    std::string out;
    for (const json::value& x : *a) {
      if (!out.empty()) out += ", ";
      out += scalar(x);
    }
    return out;
  }
  return scalar(*v);
}

bool is_true(const json::value* v) { return v != nullptr && v->is_bool() && v->get_bool(); }

std::vector<std::string> names(const json::value* list, std::string_view inner = {}) {
  std::vector<std::string> out;
  const json::array* a = list != nullptr ? list->if_array() : nullptr;
  if (a == nullptr) return out;
  for (const json::value& x : *a) {
    const json::value* v = &x;
    if (!inner.empty()) {
      const json::object* o = x.if_object();
      v = o != nullptr ? o->if_contains(inner) : nullptr;
    }
    if (v != nullptr && v->is_string()) out.emplace_back(v->get_string());
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

const json::value* member(const json::object* o, std::string_view key) {
  return o != nullptr ? o->if_contains(key) : nullptr;
}

// Calls gained(name) / lost(name) for the names only in `now` / only in `was`.
template <class Gained, class Lost>
void set_diff(const std::vector<std::string>& was, const std::vector<std::string>& now,
              Gained gained, Lost lost) {
  for (const std::string& n : now) {
    if (!std::binary_search(was.begin(), was.end(), n)) gained(n);
  }
  for (const std::string& n : was) {
    if (!std::binary_search(now.begin(), now.end(), n)) lost(n);
  }
}

void compare_entry(const Section& s, const std::string& key, const json::object& was,
                   const json::object& now, std::vector<std::string>& out) {
  const std::string w = what(s, key);
  for (const Field& f : s.fields) {
    const json::value* a = was.if_contains(f.key);
    const json::value* b = now.if_contains(f.key);
    switch (f.kind) {
      case FieldKind::kValue:
        if (text(a) != text(b)) {
          out.push_back(fmt::format("{}: {} changed from {} to {}", w, f.label, text(a), text(b)));
        }
        break;
      case FieldKind::kBound:
        if (is_true(a) != is_true(b)) {
          out.push_back(fmt::format("{}: now {}", w, is_true(b) ? "unbounded" : "bounded"));
        }
        break;
      case FieldKind::kTaskNames:
        set_diff(
            names(a, "name"), names(b, "name"),
            [&](const std::string& n) {
              out.push_back(fmt::format("{}: new task name `{}`", w, n));
            },
            [&](const std::string& n) {
              out.push_back(fmt::format("{}: task name `{}` no longer spawned", w, n));
            });
        break;
      case FieldKind::kUsers:
        for (const auto& [list, binding] :
             {std::pair<std::string_view, std::string_view>{"tasks", "task name"},
              {"threads", "thread"}}) {
          const std::string_view noun = binding;  // clang 14 cannot capture a structured binding
          set_diff(
              names(member(a ? a->if_object() : nullptr, list)),
              names(member(b ? b->if_object() : nullptr, list)),
              [&](const std::string& n) {
                out.push_back(fmt::format("{}: {} a new {} `{}`", w, f.label, noun, n));
              },
              [&](const std::string& n) {
                out.push_back(fmt::format("{}: no longer {} {} `{}`", w, f.label, noun, n));
              });
        }
        break;
    }
  }
}

// "channel `events` added: unbounded, capacity unbounded, policy wait, control capacity 16".
std::string added(const Section& s, const std::string& key, const json::object& o) {
  std::string facts;
  for (const Field& f : s.fields) {
    std::string fact;
    if (f.kind == FieldKind::kBound && is_true(o.if_contains(f.key))) fact = "unbounded";
    if (f.kind == FieldKind::kValue)
      fact = fmt::format("{} {}", f.label, text(o.if_contains(f.key)));
    if (fact.empty()) continue;
    facts += facts.empty() ? ": " : ", ";
    facts += fact;
  }
  return fmt::format("{} added{}", what(s, key), facts);
}

}  // namespace

std::vector<std::string> compare_maps(std::string_view expected_json,
                                      std::string_view actual_json) {
  const Parsed was = parse(expected_json, "expected map");
  const Parsed now = parse(actual_json, "actual map");
  std::vector<std::string> out;
  for (const Section& s : sections()) {
    const Entries& a = was.sections.at(s.key);
    const Entries& b = now.sections.at(s.key);
    for (const auto& [key, o] : b) {
      auto it = a.find(key);
      if (it == a.end()) {
        out.push_back(added(s, key, *o));
      } else {
        compare_entry(s, key, *it->second, *o, out);
      }
    }
    for (const auto& [key, o] : a) {
      if (!b.contains(key)) out.push_back(fmt::format("{} removed", what(s, key)));
    }
  }
  return out;
}

}  // namespace stallscope
