// /stallz.json: the report as one JSON object (its shape is documented at stallz_json() in
// stallz.hpp).
#include <cmath>
#include <iterator>
#include <string_view>

#include <fmt/format.h>

#include "stallscope/config.hpp"
#include "stallscope/stallz.hpp"

namespace stallscope {

namespace {

std::string window_key(int seconds) { return fmt::format("{}s", seconds); }

void json_string(std::string& out, std::string_view s) {
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

void json_number(std::string& out, double v) {
  if (!std::isfinite(v)) {
    out += "null";
  } else {
    fmt::format_to(std::back_inserter(out), "{:.6g}", v);
  }
}

void json_number(std::string& out, const std::optional<double>& v) {
  if (v) {
    json_number(out, *v);
  } else {
    out += "null";
  }
}

// Writes `"key": ` with the right comma before it.
class JsonObject {
 public:
  explicit JsonObject(std::string& out) : out_(out) { out_ += '{'; }
  ~JsonObject() { out_ += '}'; }
  JsonObject(const JsonObject&) = delete;
  JsonObject& operator=(const JsonObject&) = delete;

  std::string& key(std::string_view k) {
    if (!first_) out_ += ',';
    first_ = false;
    json_string(out_, k);
    out_ += ':';
    return out_;
  }
  void str(std::string_view k, std::string_view v) { json_string(key(k), v); }
  void num(std::string_view k, double v) { json_number(key(k), v); }
  void num(std::string_view k, const std::optional<double>& v) { json_number(key(k), v); }
  void uint(std::string_view k, std::uint64_t v) {
    fmt::format_to(std::back_inserter(key(k)), "{}", v);
  }

 private:
  std::string& out_;
  bool first_ = true;
};

template <class T, class Fn>
void json_array(std::string& out, const std::vector<T>& items, Fn&& each) {
  out += '[';
  bool first = true;
  for (const T& item : items) {
    if (!first) out += ',';
    first = false;
    each(item);
  }
  out += ']';
}

void json_windows(JsonObject& o, std::string_view name,
                  const std::array<std::optional<double>, kStallzWindowCount>& values) {
  std::string& out = o.key(name);
  JsonObject w(out);
  for (std::size_t i = 0; i < kStallzWindowCount; ++i)
    w.num(window_key(kStallzWindows[i]), values[i]);
}

}  // namespace

std::string stallz_json(const StallzReport& r) {
  std::string out;
  out.reserve(256 + r.resources.size() * 320);
  {
    JsonObject o(out);
    o.str("version", STALLSCOPE_VERSION_STRING);
    fmt::format_to(std::back_inserter(o.key("unix_time")), "{:.3f}", r.unix_time);
    o.num("sample_interval_seconds", r.sample_interval_seconds);
    o.uint("samples", r.samples);
    std::string& windows = o.key("windows");
    windows += '[';
    for (std::size_t w = 0; w < kStallzWindowCount; ++w) {
      if (w != 0) windows += ',';
      JsonObject x(windows);
      x.uint("seconds", static_cast<std::uint64_t>(kStallzWindows[w]));
      x.num("covered_seconds", r.covered_seconds[w]);
    }
    windows += ']';
    json_array(o.key("resources"), r.resources, [&](const StallzResource& res) {
      JsonObject x(out);
      x.str("kind", res.kind);
      x.str("resource", res.resource);
      json_windows(x, "score", res.score);
      json_windows(x, "waits_per_second", res.waits_per_second);
      x.num("wait_seconds_total", res.wait_seconds_total);
      x.uint("waits_total", res.waits_total);
      x.num("waiters", res.waiters);
      x.num("oldest_wait_age_seconds", res.oldest_wait_age_seconds);
    });
    json_array(o.key("causes"), r.causes, [&](const StallzCause& c) {
      JsonObject x(out);
      x.str("executor", c.executor);
      x.num("threads", c.threads);
      x.num("busy_threads", c.busy_threads);
      x.num("score", c.score);
      x.str("text", c.text);
      json_array(x.key("parts"), c.parts, [&](const StallzCausePart& p) {
        JsonObject y(out);
        y.str("what", p.what);
        y.str("kind", p.kind);
        y.str("name", p.name);
        y.num("threads", p.threads);
        y.num("share", p.share);
      });
    });
    json_array(o.key("waiting"), r.waiting, [&](const StallzWaiting& w) {
      JsonObject x(out);
      x.str("kind", w.kind);
      x.str("resource", w.resource);
      x.str("op", w.op);
      x.num("waiters", w.waiters);
      x.num("oldest_wait_age_seconds", w.oldest_wait_age_seconds);
    });
    json_array(o.key("holding"), r.holding, [&](const StallzHolding& h) {
      JsonObject x(out);
      x.str("kind", h.kind);
      x.str("resource", h.resource);
      x.str("what", h.what);
      x.num("count", h.count);
      x.num("age_seconds", h.age_seconds);
    });
    json_array(o.key("lingering_tasks"), r.lingering, [&](const StallzLingering& l) {
      JsonObject x(out);
      x.str("task", l.task);
      x.uint("count", l.count);
      x.num("oldest_cancelled_seconds_ago", l.oldest_cancelled_seconds_ago);
    });
    json_array(o.key("detector_events"), r.detector_events, [&](const DetectorEvent& e) {
      JsonObject x(out);
      x.uint("seq", e.seq);
      x.str("type", to_string(e.type));
      x.str("lock", e.lock);
      x.str("task", e.task);
      x.num("age_seconds", e.age_seconds);
      x.num("duration_seconds", e.duration_seconds);
    });
  }
  out += '\n';
  return out;
}

}  // namespace stallscope
