// /stallz.json: the report as one JSON object (its shape is documented at stallz_json() in
// stallz.hpp).
#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <iterator>
#include <string_view>

#include <fmt/format.h>

#include "json_string.hpp"
#include "stallscope/config.hpp"
#include "stallscope/stallz.hpp"
#include "stallscope/stallz_tasks.hpp"

namespace stallscope {

namespace {

std::string window_key(int seconds) { return fmt::format("{}s", seconds); }

using detail::json_string;

// The values a field can hold: a string, a number (non-finite or absent: null), a count, and
// a value per window ({"10s": ..., "60s": ...}).
void json_value(std::string& out, std::string_view v) { json_string(out, v); }

void json_value(std::string& out, double v) {
  if (!std::isfinite(v)) {
    out += "null";
  } else {
    char buf[32];  // "-1.23457e+308": formatted on the stack, appended once
    out.append(buf, fmt::format_to_n(buf, sizeof buf, "{:.6g}", v).out);
  }
}

void json_value(std::string& out, const std::optional<double>& v) {
  if (v) {
    json_value(out, *v);
  } else {
    out += "null";
  }
}

void json_value(std::string& out, std::unsigned_integral auto v) {
  char buf[24];
  out.append(buf, fmt::format_to_n(buf, sizeof buf, "{}", v).out);
}

void json_value(std::string& out,
                const std::array<std::optional<double>, kStallzWindowCount>& values);

// An object being written: put() adds `"key": value` fields with the commas between them.
class JsonObject {
 public:
  explicit JsonObject(std::string& out) : out_(out) { out_ += '{'; }
  ~JsonObject() { out_ += '}'; }
  JsonObject(const JsonObject&) = delete;
  JsonObject& operator=(const JsonObject&) = delete;

  // Starts a field; the caller writes its value.
  std::string& key(std::string_view k) {
    if (!first_) out_ += ',';
    first_ = false;
    json_string(out_, k);
    out_ += ':';
    return out_;
  }
  // put("kind", kind, "waiters", waiters, ...): the fields in order, as key, value pairs.
  template <class V, class... More>
  void put(std::string_view k, const V& v, const More&... more) {
    json_value(key(k), v);
    if constexpr (sizeof...(More) > 0) put(more...);
  }

 private:
  std::string& out_;
  bool first_ = true;
};

void json_value(std::string& out,
                const std::array<std::optional<double>, kStallzWindowCount>& values) {
  JsonObject w(out);
  for (std::size_t i = 0; i < kStallzWindowCount; ++i) {
    w.put(window_key(kStallzWindows[i]), values[i]);
  }
}

// An array with one object per item; `fields(object, item)` writes the item's fields.
template <class Items, class Fn>
void json_array(std::string& out, const Items& items, Fn&& fields) {
  out += '[';
  bool first = true;
  for (const auto& item : items) {
    if (!first) out += ',';
    first = false;
    JsonObject x(out);
    fields(x, item);
  }
  out += ']';
}

}  // namespace

std::string stallz_tasks_json(const TaskDump& d, const TaskFilter& f) {
  std::string out;
  out.reserve(512 + d.tasks.size() * 360);
  auto null_or = [](std::string& o, bool has, auto&& write) {
    if (has) {
      write(o);
    } else {
      o += "null";
    }
  };
  auto boolean = [](std::string& o, bool b) { o += b ? "true" : "false"; };
  {
    JsonObject o(out);
    o.put("version", STALLSCOPE_VERSION_STRING);
    fmt::format_to(std::back_inserter(o.key("unix_time")), "{:.3f}", d.unix_time);
    o.put("dump_seconds", d.dump_seconds, "max_lock_hold_seconds", d.max_lock_hold_seconds, "live",
          d.live, "matched", std::max(d.matched, d.tasks.size()));
    boolean(o.key("asio_tracking"), d.asio_tracking);
    {
      JsonObject s(o.key("by_state"));
      for (std::size_t i = 0; i < kTaskRunStates; ++i) {
        s.put(to_string(static_cast<TaskRunState>(i)), d.by_state[i]);
      }
    }
    o.put("cancel_requested", d.cancel_requested);
    {
      JsonObject x(o.key("filter"));
      null_or(x.key("name"), !f.name.empty(), [&](std::string& v) { json_string(v, f.name); });
      null_or(x.key("state"), f.state.has_value(),
              [&](std::string& v) { json_string(v, to_string(*f.state)); });
      null_or(x.key("cancelled"), f.cancel_requested.has_value(),
              [&](std::string& v) { boolean(v, *f.cancel_requested); });
      null_or(x.key("limit"), f.limit != 0, [&](std::string& v) { json_value(v, f.limit); });
    }
    json_array(o.key("tasks"), d.tasks, [&](JsonObject& x, const TaskInfo& t) {
      x.put("id", t.id, "name", t.name);
      null_or(x.key("group"), t.group_id != 0, [&](std::string& v) {
        JsonObject g(v);
        g.put("id", t.group_id);
        null_or(g.key("name"), !t.group.empty(), [&](std::string& n) { json_string(n, t.group); });
      });
      null_or(x.key("token_path"), !t.token_path.empty(),
              [&](std::string& v) { json_string(v, t.token_path); });
      x.put("age_seconds", t.age_seconds, "state", to_string(t.state), "state_seconds",
            t.state_seconds);
      null_or(x.key("waiting_on"), t.state == TaskRunState::kWaiting, [&](std::string& v) {
        JsonObject w(v);
        w.put("kind", t.wait_kind, "resource", t.wait_resource, "op", t.wait_op);
        boolean(w.key("blocks_thread"), t.blocks_thread);
      });
      null_or(x.key("asio_op"), !t.asio_op.empty(),
              [&](std::string& v) { json_string(v, t.asio_op); });
      boolean(x.key("cancel_requested"), t.cancel_requested);
      null_or(x.key("cancelled_seconds_ago"), t.cancel_requested,
              [&](std::string& v) { json_value(v, t.cancelled_seconds_ago); });
    });
  }
  out += '\n';
  return out;
}

std::string stallz_json(const StallzReport& r) {
  std::string out;
  out.reserve(256 + r.resources.size() * 320);
  {
    JsonObject o(out);
    o.put("version", STALLSCOPE_VERSION_STRING);
    fmt::format_to(std::back_inserter(o.key("unix_time")), "{:.3f}", r.unix_time);
    o.put("sample_interval_seconds", r.sample_interval_seconds, "samples", r.samples);
    std::size_t window = 0;
    json_array(o.key("windows"), kStallzWindows, [&](JsonObject& x, int seconds) {
      x.put("seconds", static_cast<std::uint64_t>(seconds), "covered_seconds",
            r.covered_seconds[window++]);
    });
    json_array(o.key("resources"), r.resources, [](JsonObject& x, const StallzResource& res) {
      x.put("kind", res.kind, "resource", res.resource, "score", res.score, "waits_per_second",
            res.waits_per_second, "wait_seconds_total", res.wait_seconds_total, "waits_total",
            res.waits_total, "waiters", res.waiters, "oldest_wait_age_seconds",
            res.oldest_wait_age_seconds);
    });
    json_array(o.key("causes"), r.causes, [](JsonObject& x, const StallzCause& c) {
      x.put("executor", c.executor, "threads", c.threads, "busy_threads", c.busy_threads, "score",
            c.score, "text", c.text);
      json_array(x.key("parts"), c.parts, [](JsonObject& y, const StallzCausePart& p) {
        y.put("what", p.what, "kind", p.kind, "name", p.name, "threads", p.threads, "share",
              p.share);
      });
    });
    json_array(o.key("waiting"), r.waiting, [](JsonObject& x, const StallzWaiting& w) {
      x.put("kind", w.kind, "resource", w.resource, "op", w.op, "waiters", w.waiters,
            "oldest_wait_age_seconds", w.oldest_wait_age_seconds);
    });
    json_array(o.key("holding"), r.holding, [](JsonObject& x, const StallzHolding& h) {
      x.put("kind", h.kind, "resource", h.resource, "what", h.what, "count", h.count, "age_seconds",
            h.age_seconds);
    });
    json_array(o.key("lingering_tasks"), r.lingering, [](JsonObject& x, const StallzLingering& l) {
      x.put("task", l.task, "count", l.count, "oldest_cancelled_seconds_ago",
            l.oldest_cancelled_seconds_ago);
    });
    json_array(o.key("detector_events"), r.detector_events,
               [](JsonObject& x, const DetectorEvent& e) {
                 x.put("seq", e.seq, "type", to_string(e.type), "lock", e.lock, "task", e.task,
                       "age_seconds", e.age_seconds, "duration_seconds", e.duration_seconds);
               });
    json_array(o.key("deadlocks"), r.deadlocks, [](JsonObject& x, const DeadlockReport& d) {
      x.put("seq", d.seq, "age_seconds", d.age_seconds);
      json_array(x.key("participants"), d.participants,
                 [](JsonObject& y, const DeadlockParticipant& p) {
                   y.put("name", p.name, "task", p.task);
                   json_array(y.key("holds"), p.holds,
                              [](JsonObject& z, const std::string& h) { z.put("resource", h); });
                   y.put("waits_for", p.waits_for, "op", p.op, "waited_seconds", p.waited_seconds);
                 });
    });
  }
  out += '\n';
  return out;
}

}  // namespace stallscope
