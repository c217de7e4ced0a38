#include "stallscope/stallz.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <iterator>
#include <stdexcept>
#include <string_view>
#include <tuple>

#include <fmt/format.h>

#include "stallscope/clock.hpp"
#include "stallscope/config.hpp"

namespace stallscope {

namespace {

using Key = std::pair<std::string, std::string>;  // (kind, resource)

constexpr std::string_view kWaitSeconds = "stallscope_wait_seconds";
// A rate needs a base sample at least this old when the history is shorter than the window.
constexpr std::int64_t kMinSpanNs = 500'000'000;

std::string_view label(const Labels& labels, std::string_view key) {
  for (const auto& [k, v] : labels) {
    if (k == key) return v;
  }
  return {};
}

Key key_of(const Labels& labels) {
  return {std::string(label(labels, "kind")), std::string(label(labels, "resource"))};
}

std::string window_key(int seconds) { return fmt::format("{}s", seconds); }

using CounterKey = std::tuple<std::string, std::string, std::string, std::string>;

// The counters an executor's cause is rated from, summed over ops: (what, kind, resource, state).
std::map<CounterKey, double> cause_counters(const std::vector<FamilySnapshot>& families) {
  std::map<CounterKey, double> out;
  for (const FamilySnapshot& f : families) {
    const char* what = nullptr;
    if (f.name == "stallscope_executor_thread_seconds_total") {
      what = "exec";
    } else if (f.name == "stallscope_task_slice_seconds") {
      what = "task";
    } else if (f.name == "stallscope_task_blocked_seconds_total") {
      what = "task_blocked";
    } else if (f.name == "stallscope_lock_executor_blocked_seconds_total") {
      what = "lock";
    } else {
      continue;
    }
    const bool histogram = f.type == MetricType::kHistogram;
    for (const SampleSnapshot& x : f.samples) {
      out[{what, std::string(label(x.labels, "kind")), std::string(label(x.labels, "resource")),
           std::string(label(x.labels, "state"))}] += histogram ? x.histogram.sum : x.value;
    }
  }
  return out;
}

std::string cause_text(const StallzCause& c) {
  std::string text = fmt::format("executor `{}`: ", c.executor);
  if (c.busy_threads <= 0) return text + "idle";
  if (c.threads > 0) {
    text += fmt::format("{:.2f} of {:g} threads busy", c.busy_threads, c.threads);
  } else {
    text += fmt::format("{:.2f} threads busy", c.busy_threads);
  }
  int named = 0;
  for (const StallzCausePart& p : c.parts) {
    if (p.what == "idle" || p.share < 0.01 || named == 4) continue;
    text += named++ == 0 ? ": " : ", ";
    const long pct = std::lround(p.share * 100);
    if (p.what == "task") {
      text += p.name.empty() ? fmt::format("task slices {}%", pct)
                             : fmt::format("task `{}` {}%", p.name, pct);
    } else if (p.what == "lock") {
      text += p.name.empty() ? fmt::format("blocked on locks {}%", pct)
                             : fmt::format("blocked on {} `{}` {}%", p.kind, p.name, pct);
    } else {
      text += fmt::format("other handlers {}%", pct);
    }
  }
  return text;
}

// ---------------------------------------------------------------------------------------------
// JSON

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

// ---------------------------------------------------------------------------------------------
// HTML. The formatting helpers mirror the page script's (kScript below): keep them in step.

void html_escape(std::string& out, std::string_view s) {
  for (const char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
}

constexpr std::string_view kDash = "\u2013";

std::string fmt_seconds(double x) {
  if (!std::isfinite(x)) return std::string(kDash);
  if (x == 0) return "0";
  if (x < 1e-3) return fmt::format("{:.0f} \u00b5s", x * 1e6);
  if (x < 1) return fmt::format("{:.1f} ms", x * 1e3);
  if (x < 100) return fmt::format("{:.2f} s", x);
  return fmt::format("{:.0f} s", x);
}

std::string fmt_seconds(const std::optional<double>& x) {
  return x ? fmt_seconds(*x) : std::string(kDash);
}

std::string fmt_score(const std::optional<double>& x) {
  if (!x || !std::isfinite(*x)) return std::string(kDash);
  if (*x == 0) return "0";
  if (*x < 0.01) return "<0.01";
  if (*x < 100) return fmt::format("{:.2f}", *x);
  return fmt::format("{:.0f}", *x);
}

std::string fmt_rate(const std::optional<double>& x) {
  if (!x || !std::isfinite(*x)) return std::string(kDash);
  if (*x == 0) return "0";
  if (*x < 10) return fmt::format("{:.2f}", *x);
  if (*x < 1e4) return fmt::format("{:.0f}", *x);
  if (*x < 1e6) return fmt::format("{:.1f}k", *x / 1e3);
  return fmt::format("{:.1f}M", *x / 1e6);
}

std::string fmt_count(const std::optional<double>& x) {
  if (!x || !std::isfinite(*x)) return std::string(kDash);
  if (*x == std::floor(*x)) return fmt::format("{:.0f}", *x);
  return fmt::format("{:.2f}", *x);
}

std::string fmt_pct(const std::optional<double>& x, double max) {
  if (!x || !std::isfinite(*x) || !(max > 0)) return "0.0%";
  return fmt::format("{:.1f}%", std::clamp(*x / max * 100, 0.0, 100.0));
}

std::string human_event_type(DetectorEvent::Type t) {
  std::string s(to_string(t));
  std::replace(s.begin(), s.end(), '_', ' ');
  return s;
}

std::string event_duration(const DetectorEvent& e) {
  if (e.type == DetectorEvent::Type::kLockHeldAcrossSuspend && e.duration_seconds < 0) {
    return "still held";
  }
  return fmt_seconds(e.duration_seconds);
}

std::string coverage_text(const StallzReport& r) {
  constexpr int kLongest = kStallzWindows.back();
  const std::optional<double>& longest = r.covered_seconds.back();
  std::string text =
      fmt::format("Rates over the last {} s and {} s", kStallzWindows.front(), kLongest);
  if (!longest) return text + "; collecting history, the first rates appear within a second.";
  if (*longest + 0.5 < kLongest) {
    return text + fmt::format(" (history so far: {:.0f} s).", *longest);
  }
  return text + ".";
}

std::string utc_clock(double unix_time) {
  const auto t = static_cast<std::time_t>(unix_time);
  std::tm tm{};
  if (gmtime_r(&t, &tm) == nullptr) return "?";
  return fmt::format("{:02}:{:02}:{:02} UTC", tm.tm_hour, tm.tm_min, tm.tm_sec);
}

class Html {
 public:
  std::string& out() { return out_; }
  Html& raw(std::string_view s) {
    out_ += s;
    return *this;
  }
  Html& text(std::string_view s) {
    html_escape(out_, s);
    return *this;
  }
  void td(std::string_view s, const char* cls = nullptr) {
    out_ += cls != nullptr ? fmt::format("<td class=\"{}\">", cls) : std::string("<td>");
    text(s);
    out_ += "</td>";
  }
  // The name cell and the kind badge that start every resource row.
  void resource_tds(std::string_view resource, std::string_view kind) {
    td(resource, "name");
    raw("<td class=\"kind\"><span>").text(kind).raw("</span></td>");
  }
  void score_td(const std::optional<double>& x, double max) {
    out_ += "<td class=\"n\"><div class=\"score\"><div class=\"bar\"><span style=\"width:";
    out_ += fmt_pct(x, max);
    out_ += "\"></span></div><span>";
    text(fmt_score(x));
    out_ += "</span></div></td>";
  }
  // <tbody id=...> rows (or the empty-table row), then the "N more" line after the table.
  template <class T, class Fn>
  void rows(std::string_view id, const std::vector<T>& items, int cols, std::string_view empty,
            Fn&& row) {
    fmt::format_to(std::back_inserter(out_), "<tbody id=\"{}\">", id);
    const std::size_t n = std::min(items.size(), kStallzPageRows);
    for (std::size_t i = 0; i < n; ++i) row(items[i], i);
    if (n == 0) {
      fmt::format_to(std::back_inserter(out_), "<tr class=\"empty\"><td colspan=\"{}\">", cols);
      text(empty);
      out_ += "</td></tr>";
    }
    fmt::format_to(std::back_inserter(out_), "</tbody></table><p class=\"more\" id=\"{}-more\">",
                   id);
    if (items.size() > n) {
      fmt::format_to(std::back_inserter(out_), "and {} more in stallz.json", items.size() - n);
    }
    out_ += "</p>";
  }

 private:
  std::string out_;
};

constexpr std::string_view kStyle = R"css(
:root{--bg:#fff;--fg:#1d2330;--muted:#667085;--line:#e4e7ec;--head:#f8f9fb;--chip:#f2f4f7;
--bar:#f04438;--ok:#12b76a;--warn:#f79009}
@media (prefers-color-scheme:dark){:root{--bg:#0f1115;--fg:#e6e8ec;--muted:#98a2b3;
--line:#2a2f3a;--head:#161a22;--chip:#1f2430;--bar:#f97066}}
*{box-sizing:border-box}
body{margin:0;padding:20px 28px 40px;background:var(--bg);color:var(--fg);
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
header{display:flex;flex-wrap:wrap;align-items:baseline;justify-content:space-between;gap:8px;
border-bottom:1px solid var(--line);padding-bottom:10px}
h1{font-size:20px;margin:0}h1 small{color:var(--muted);font-weight:400;font-size:14px}
h2{font-size:15px;margin:26px 0 4px}
a{color:inherit}
.meta,.note,.more,footer{color:var(--muted)}
.note{margin:0 0 8px}.cause{margin:0 0 8px;font-weight:600}.more{margin:4px 0 0;font-size:12px}
.dot{display:inline-block;width:8px;height:8px;border-radius:50%;background:var(--muted);
margin-right:6px}
#status[data-state=live] .dot{background:var(--ok)}
#status[data-state=stale] .dot{background:var(--warn)}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{text-align:left;padding:5px 10px;border-bottom:1px solid var(--line);white-space:nowrap;
vertical-align:middle}
th{background:var(--head);color:var(--muted);font-size:11px;font-weight:600;
text-transform:uppercase;letter-spacing:.04em}
th.n,td.n{text-align:right}
td.name{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;white-space:normal;
word-break:break-all}
td.kind span{display:inline-block;padding:0 6px;border-radius:4px;background:var(--chip);
color:var(--muted);font-size:12px}
tbody tr[data-rank="1"] td.name{font-weight:700}
.score{display:flex;align-items:center;justify-content:flex-end;gap:8px}
.bar{width:110px;height:8px;border-radius:4px;background:var(--chip);overflow:hidden}
.bar span{display:block;height:100%;background:var(--bar)}
.score>span{min-width:3.2em;text-align:right}
tr.empty td{color:var(--muted);font-style:italic}
code{background:var(--chip);padding:1px 4px;border-radius:3px;font-size:12px}
footer{margin-top:28px;font-size:12px}
)css";

// The page script: every 2 s it fetches stallz.json (relative to the page) and rebuilds the
// tables with textContent only (never innerHTML), the same cells the server renders.
constexpr std::string_view kScript = R"js(
(function () {
  'use strict';
  var W = [WINDOWS], ROWS = PAGE_ROWS, DASH = '\u2013', refreshes = 0;
  function secs(x) {
    if (x === null || x === undefined) return DASH;
    if (x === 0) return '0';
    if (x < 1e-3) return (x * 1e6).toFixed(0) + ' \u00b5s';
    if (x < 1) return (x * 1e3).toFixed(1) + ' ms';
    if (x < 100) return x.toFixed(2) + ' s';
    return x.toFixed(0) + ' s';
  }
  function score(x) {
    if (x === null || x === undefined) return DASH;
    if (x === 0) return '0';
    if (x < 0.01) return '<0.01';
    return x < 100 ? x.toFixed(2) : x.toFixed(0);
  }
  function rate(x) {
    if (x === null || x === undefined) return DASH;
    if (x === 0) return '0';
    if (x < 10) return x.toFixed(2);
    if (x < 1e4) return x.toFixed(0);
    if (x < 1e6) return (x / 1e3).toFixed(1) + 'k';
    return (x / 1e6).toFixed(1) + 'M';
  }
  function count(x) {
    if (x === null || x === undefined) return DASH;
    return Number.isInteger(x) ? x.toFixed(0) : x.toFixed(2);
  }
  function pct(x, max) {
    if (x === null || x === undefined || !(max > 0)) return '0.0%';
    return Math.min(100, Math.max(0, x / max * 100)).toFixed(1) + '%';
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function td(tr, text, cls) { var c = el('td', cls, text); tr.appendChild(c); return c; }
  function kind(tr, k) { td(tr, '', 'kind').appendChild(el('span', null, k)); }
  function scoreTd(tr, x, max) {
    var wrap = el('div', 'score'), bar = el('div', 'bar'), fill = el('span');
    fill.style.width = pct(x, max);
    bar.appendChild(fill);
    wrap.appendChild(bar);
    wrap.appendChild(el('span', null, score(x)));
    td(tr, '', 'n').appendChild(wrap);
  }
  function fill(id, items, cols, empty, row) {
    var old = document.getElementById(id), tb = el('tbody'), n = Math.min(items.length, ROWS);
    tb.id = id;
    for (var i = 0; i < n; ++i) { var tr = el('tr'); row(tr, items[i], i); tb.appendChild(tr); }
    if (n === 0) { var e = el('tr', 'empty'); td(e, empty).colSpan = cols; tb.appendChild(e); }
    old.parentNode.replaceChild(tb, old);
    document.getElementById(id + '-more').textContent =
        items.length > n ? 'and ' + (items.length - n) + ' more in stallz.json' : '';
  }
  function coverage(d) {
    var longest = d.windows[d.windows.length - 1].covered_seconds;
    var text = 'Rates over the last ' + W[0] + ' s and ' + W[W.length - 1] + ' s';
    if (longest === null) {
      return text + '; collecting history, the first rates appear within a second.';
    }
    if (longest + 0.5 < W[W.length - 1]) {
      return text + ' (history so far: ' + longest.toFixed(0) + ' s).';
    }
    return text + '.';
  }
  function render(d) {
    var max = W.map(function (w) {
      var m = 0;
      d.resources.slice(0, ROWS).forEach(function (r) { m = Math.max(m, r.score[w + 's'] || 0); });
      return m;
    });
    document.getElementById('coverage').textContent = coverage(d);
    fill('resources', d.resources, 8, EMPTY_RESOURCES, function (tr, r, i) {
      tr.setAttribute('data-rank', String(i + 1));
      td(tr, String(i + 1), 'n');
      td(tr, r.resource, 'name');
      kind(tr, r.kind);
      W.forEach(function (w, j) { scoreTd(tr, r.score[w + 's'], max[j]); });
      td(tr, rate(r.waits_per_second[W[0] + 's']), 'n');
      td(tr, count(r.waiters), 'n');
      td(tr, secs(r.oldest_wait_age_seconds), 'n');
    });
    var top = d.resources[0];
    document.getElementById('cause').textContent =
        top && (top.kind === 'executor' || top.kind === 'task') && d.causes.length
            ? 'Cause: ' + d.causes[0].text : '';
    fill('causes', d.causes, 4, EMPTY_CAUSES, function (tr, c) {
      td(tr, c.executor, 'name'); td(tr, c.threads > 0 ? count(c.threads) : DASH, 'n');
      td(tr, c.busy_threads.toFixed(2), 'n'); td(tr, c.text);
    });
    fill('waiting', d.waiting, 5, EMPTY_WAITING, function (tr, w) {
      td(tr, w.resource, 'name'); kind(tr, w.kind); td(tr, w.op);
      td(tr, count(w.waiters), 'n'); td(tr, secs(w.oldest_wait_age_seconds), 'n');
    });
    fill('holding', d.holding, 5, EMPTY_HOLDING, function (tr, h) {
      td(tr, h.resource, 'name'); kind(tr, h.kind); td(tr, h.what);
      td(tr, count(h.count), 'n'); td(tr, secs(h.age_seconds), 'n');
    });
    fill('lingering', d.lingering_tasks, 3, EMPTY_LINGERING, function (tr, t) {
      td(tr, t.task, 'name'); td(tr, count(t.count), 'n');
      td(tr, secs(t.oldest_cancelled_seconds_ago), 'n');
    });
    fill('events', d.detector_events, 5, EMPTY_EVENTS, function (tr, e) {
      td(tr, secs(e.age_seconds) + ' ago', 'n'); td(tr, e.type.replace(/_/g, ' '));
      td(tr, e.lock, 'name'); td(tr, e.task, 'name');
      var held = e.type === 'lock_held_across_suspend' && e.duration_seconds < 0;
      td(tr, held ? 'still held' : secs(e.duration_seconds), 'n');
    });
    document.getElementById('samples').textContent = String(d.samples);
  }
  function status(state, text) {
    var s = document.getElementById('status');
    s.setAttribute('data-state', state);
    document.getElementById('status-text').textContent = text;
  }
  function tick() {
    fetch('stallz.json', {cache: 'no-store'})
        .then(function (r) { if (!r.ok) throw new Error('HTTP ' + r.status); return r.json(); })
        .then(function (d) {
          render(d);
          document.documentElement.setAttribute('data-refreshes', String(++refreshes));
          status('live', 'live, updated ' + new Date(d.unix_time * 1000).toLocaleTimeString());
        })
        .catch(function (e) {
          status('stale', 'refresh failed (' + e.message + '); the data may be old');
        })
        .then(function () { setTimeout(tick, 2000); });
  }
  setTimeout(tick, 2000);
})();
)js";

constexpr std::string_view kEmptyResources =
    "No resources yet: create a stallscope lock, channel, semaphore, pool or task.";
constexpr std::string_view kEmptyWaiting = "Nobody is waiting.";
constexpr std::string_view kEmptyCauses =
    "No executor thread time yet: run a stallscope task on an io_context.";
constexpr std::string_view kEmptyHolding = "Nothing is held or running.";
constexpr std::string_view kEmptyLingering = "No lingering tasks.";
constexpr std::string_view kEmptyEvents = "No detector events.";

std::string js_string(std::string_view s) {
  std::string out;
  json_string(out, s);
  return out;
}

std::string script() {
  std::string s(kScript);
  const auto replace = [&s](std::string_view from, const std::string& to) {
    const auto at = s.find(from);
    if (at == std::string::npos) throw std::logic_error("stallz: script placeholder missing");
    s.replace(at, from.size(), to);
  };
  std::string windows;
  for (const int w : kStallzWindows) windows += (windows.empty() ? "" : ", ") + std::to_string(w);
  replace("WINDOWS", windows);
  replace("PAGE_ROWS", std::to_string(kStallzPageRows));
  replace("EMPTY_RESOURCES", js_string(kEmptyResources));
  replace("EMPTY_WAITING", js_string(kEmptyWaiting));
  replace("EMPTY_CAUSES", js_string(kEmptyCauses));
  replace("EMPTY_HOLDING", js_string(kEmptyHolding));
  replace("EMPTY_LINGERING", js_string(kEmptyLingering));
  replace("EMPTY_EVENTS", js_string(kEmptyEvents));
  return s;
}

// Each executor's thread time over the window, split by cause (see StallzCause).
std::vector<StallzCause> make_causes(const std::map<CounterKey, double>& rates,
                                     const std::vector<FamilySnapshot>& now,
                                     const std::vector<StallzResource>& resources) {
  // Per task name (slice time less lock-blocked time) and per lock, process-wide.
  std::map<std::pair<std::string, std::string>, double> tasks;
  std::map<std::pair<std::string, std::string>, double> locks;
  double task_total = 0;
  double lock_total = 0;
  for (const auto& [key, rate] : rates) {
    const auto& [what, kind, resource, state] = key;
    if (what == "task") {
      double blocked = 0;
      if (auto it = rates.find({"task_blocked", kind, resource, ""}); it != rates.end()) {
        blocked = it->second;
      }
      const double v = std::max(0.0, rate - blocked);
      tasks[{kind, resource}] += v;
      task_total += v;
    } else if (what == "lock") {
      locks[{kind, resource}] += rate;
      lock_total += rate;
    }
  }
  std::map<std::string, StallzCause> causes;
  for (const auto& [key, rate] : rates) {
    const auto& [what, kind, resource, state] = key;
    if (what != "exec") continue;
    StallzCause& c = causes[resource];
    c.executor = resource;
    if (state == "task") {
      for (const auto& [name, v] : tasks) {
        if (v > 0) c.parts.push_back({"task", name.first, name.second, rate * v / task_total, 0});
      }
      if (task_total == 0 && rate > 0) c.parts.push_back({"task", "", "", rate, 0});
    } else if (state == "lock") {
      for (const auto& [name, v] : locks) {
        if (v > 0) c.parts.push_back({"lock", name.first, name.second, rate * v / lock_total, 0});
      }
      if (lock_total == 0 && rate > 0) c.parts.push_back({"lock", "", "", rate, 0});
    } else if (state == "other" || state == "idle") {
      c.parts.push_back({state, "", "", rate, 0});
    }
  }
  for (const FamilySnapshot& f : now) {
    if (f.name != "stallscope_executor_threads") continue;
    for (const SampleSnapshot& x : f.samples) {
      if (auto it = causes.find(std::string(label(x.labels, "resource"))); it != causes.end()) {
        it->second.threads = x.value;
      }
    }
  }
  std::vector<StallzCause> out;
  for (auto& [name, c] : causes) {
    for (const StallzCausePart& p : c.parts) {
      if (p.what != "idle") c.busy_threads += p.threads;
    }
    if (c.busy_threads <= 0) continue;
    for (StallzCausePart& p : c.parts) p.share = p.what == "idle" ? 0 : p.threads / c.busy_threads;
    // Order: threads blocked in lock waits first when they are a tenth of the busy time or
    // more (a blocked thread runs nothing, and the slices it waits behind hold that lock: the
    // lock is what to fix first), then the busiest, idle last.
    const auto rank = [](const StallzCausePart& p) {
      if (p.what == "idle") return 2;
      return p.what == "lock" && p.share >= 0.1 ? 0 : 1;
    };
    std::stable_sort(c.parts.begin(), c.parts.end(),
                     [&](const StallzCausePart& a, const StallzCausePart& b) {
                       if (rank(a) != rank(b)) return rank(a) < rank(b);
                       return a.threads > b.threads;
                     });
    for (const StallzResource& res : resources) {
      if (res.kind == "executor" && res.resource == name) c.score = res.score[0].value_or(0);
    }
    c.text = cause_text(c);
    out.push_back(std::move(c));
  }
  std::stable_sort(out.begin(), out.end(), [](const StallzCause& a, const StallzCause& b) {
    if (a.score != b.score) return a.score > b.score;
    return a.busy_threads > b.busy_threads;
  });
  return out;
}

// The headline: the cause, when the top of the ranking is an executor's or a task's delay.
std::string cause_headline(const StallzReport& r) {
  if (r.causes.empty() || r.resources.empty()) return {};
  const StallzResource& top = r.resources.front();
  if (top.kind != "executor" && top.kind != "task") return {};
  return "Cause: " + r.causes.front().text;
}

}  // namespace

// -----------------------------------------------------------------------------------------------
// StallWindow

StallWindow::StallWindow(std::size_t capacity) : capacity_(capacity) {
  if (capacity < 2) {
    throw std::invalid_argument(
        fmt::format("stallscope: StallWindow capacity {} is too small (at least 2)", capacity));
  }
}

void StallWindow::add(std::int64_t t_ns, const std::vector<FamilySnapshot>& families) {
  std::map<Key, Totals> totals;
  for (const FamilySnapshot& f : families) {
    if (f.name != kWaitSeconds) continue;
    for (const SampleSnapshot& s : f.samples) {
      Totals& t = totals[key_of(s.labels)];
      t.sum += s.histogram.sum;
      t.count += s.histogram.count;
    }
  }
  const std::map<CounterKey, double> counters = cause_counters(families);
  std::lock_guard lock(mu_);
  if (!samples_.empty() && t_ns <= samples_.back().t_ns) return;
  Sample sample;
  sample.t_ns = t_ns;
  sample.totals.resize(keys_.size());
  for (auto& [key, t] : totals) {
    const auto next = static_cast<std::uint32_t>(keys_.size());
    const std::uint32_t index = keys_.try_emplace(key, next).first->second;
    if (index >= sample.totals.size()) sample.totals.resize(index + 1);
    sample.totals[index] = t;
  }
  sample.counters.resize(counter_keys_.size());
  for (const auto& [key, v] : counters) {
    const auto next = static_cast<std::uint32_t>(counter_keys_.size());
    const std::uint32_t index = counter_keys_.try_emplace(key, next).first->second;
    if (index >= sample.counters.size()) sample.counters.resize(index + 1);
    sample.counters[index] = v;
  }
  samples_.push_back(std::move(sample));
  while (samples_.size() > capacity_) samples_.pop_front();
}

std::size_t StallWindow::size() const {
  std::lock_guard lock(mu_);
  return samples_.size();
}

StallzReport StallWindow::report(std::int64_t now_ns,
                                 const std::vector<FamilySnapshot>& now) const {
  StallzReport r;
  std::map<Key, StallzResource> rows;
  for (const FamilySnapshot& f : now) {
    if (f.name != kWaitSeconds) continue;
    for (const SampleSnapshot& s : f.samples) {
      Key key = key_of(s.labels);
      StallzResource& row = rows[key];
      row.kind = key.first;
      row.resource = key.second;
      row.wait_seconds_total += s.histogram.sum;
      row.waits_total += s.histogram.count;
    }
  }

  using OpKey = std::tuple<std::string, std::string, std::string>;
  std::map<OpKey, StallzWaiting> waiting;
  std::map<Key, StallzHolding> holding;
  const auto holder = [&holding](const Labels& labels, const char* what) -> StallzHolding& {
    Key key = key_of(labels);
    StallzHolding& h = holding[key];
    h.kind = key.first;
    h.resource = key.second;
    h.what = what;
    return h;
  };
  for (const FamilySnapshot& f : now) {
    for (const SampleSnapshot& s : f.samples) {
      const double v = s.value;
      if (f.name == "stallscope_waiters" || f.name == "stallscope_oldest_wait_age_seconds") {
        const bool count = f.name == "stallscope_waiters";
        if (auto it = rows.find(key_of(s.labels)); it != rows.end()) {
          if (count) {
            it->second.waiters += v;
          } else {
            it->second.oldest_wait_age_seconds = std::max(it->second.oldest_wait_age_seconds, v);
          }
        }
        if (v <= 0) continue;
        OpKey key{std::string(label(s.labels, "kind")), std::string(label(s.labels, "resource")),
                  std::string(label(s.labels, "op"))};
        StallzWaiting& w = waiting[key];
        std::tie(w.kind, w.resource, w.op) = key;
        (count ? w.waiters : w.oldest_wait_age_seconds) = v;
      } else if (f.name == "stallscope_lock_holder_age_seconds") {
        if (v > 0) holder(s.labels, "lock held").age_seconds = v;
      } else if (f.name == "stallscope_task_running_slice_seconds") {
        if (v > 0) holder(s.labels, "slice running").age_seconds = v;
      } else if (f.name == "stallscope_pool_oldest_run_age_seconds") {
        if (v > 0) holder(s.labels, "job running").age_seconds = v;
      } else if (f.name == "stallscope_pool_busy_threads") {
        if (v > 0) holder(s.labels, "job running").count = v;
      } else if (f.name == "stallscope_semaphore_permits_in_use") {
        if (v > 0) holder(s.labels, "permits in use").count = v;
      }
    }
  }

  const std::map<CounterKey, double> now_counters = cause_counters(now);
  std::map<CounterKey, double> counter_rates;
  {
    std::lock_guard lock(mu_);
    r.samples = samples_.size();
    for (std::size_t w = 0; w < kStallzWindowCount; ++w) {
      const std::int64_t window_ns = std::int64_t{kStallzWindows[w]} * 1'000'000'000;
      const Sample* base = nullptr;
      for (auto it = samples_.rbegin(); it != samples_.rend(); ++it) {
        if (now_ns - it->t_ns >= window_ns) {
          base = &*it;
          break;
        }
      }
      if (base == nullptr && !samples_.empty() && now_ns - samples_.front().t_ns >= kMinSpanNs) {
        base = &samples_.front();
      }
      if (base == nullptr) continue;
      const double span = static_cast<double>(now_ns - base->t_ns) * 1e-9;
      r.covered_seconds[w] = span;
      if (w == 0) {
        for (const auto& [key, v] : now_counters) {
          double old = 0;
          if (const auto k = counter_keys_.find(key);
              k != counter_keys_.end() && k->second < base->counters.size()) {
            old = base->counters[k->second];
          }
          counter_rates[key] = std::max(0.0, (v - old) / span);
        }
      }
      for (auto& [key, row] : rows) {
        Totals old;
        if (const auto k = keys_.find(key); k != keys_.end() && k->second < base->totals.size()) {
          old = base->totals[k->second];
        }
        row.score[w] = std::max(0.0, (row.wait_seconds_total - old.sum) / span);
        row.waits_per_second[w] =
            static_cast<double>(row.waits_total >= old.count ? row.waits_total - old.count : 0) /
            span;
      }
    }
  }

  r.resources.reserve(rows.size());
  for (auto& [key, row] : rows) r.resources.push_back(std::move(row));
  std::sort(r.resources.begin(), r.resources.end(),
            [](const StallzResource& a, const StallzResource& b) {
              for (std::size_t w = 0; w < kStallzWindowCount; ++w) {
                const double x = a.score[w].value_or(-1);
                const double y = b.score[w].value_or(-1);
                if (x != y) return x > y;
              }
              if (a.wait_seconds_total != b.wait_seconds_total) {
                return a.wait_seconds_total > b.wait_seconds_total;
              }
              return std::tie(a.kind, a.resource) < std::tie(b.kind, b.resource);
            });

  r.causes = make_causes(counter_rates, now, r.resources);

  for (auto& [key, w] : waiting) r.waiting.push_back(std::move(w));
  std::stable_sort(r.waiting.begin(), r.waiting.end(),
                   [](const StallzWaiting& a, const StallzWaiting& b) {
                     return a.oldest_wait_age_seconds > b.oldest_wait_age_seconds;
                   });
  for (auto& [key, h] : holding) r.holding.push_back(std::move(h));
  std::stable_sort(r.holding.begin(), r.holding.end(),
                   [](const StallzHolding& a, const StallzHolding& b) {
                     return a.age_seconds.value_or(-1) > b.age_seconds.value_or(-1);
                   });
  return r;
}

StallzReport make_stallz_report(const Registry& registry, const StallWindow& window,
                                double sample_interval_seconds) {
  const std::int64_t t = now_ns();
  StallzReport r = window.report(t, registry.collect());
  r.unix_time =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  r.sample_interval_seconds = sample_interval_seconds;

  std::map<std::string, StallzLingering> lingering;
  for (LingeringTask& task : lingering_tasks()) {
    StallzLingering& l = lingering[task.task];
    l.task = std::move(task.task);
    ++l.count;
    l.oldest_cancelled_seconds_ago =
        std::max(l.oldest_cancelled_seconds_ago, task.cancelled_seconds_ago);
  }
  for (auto& [name, l] : lingering) r.lingering.push_back(std::move(l));
  std::stable_sort(r.lingering.begin(), r.lingering.end(),
                   [](const StallzLingering& a, const StallzLingering& b) {
                     return a.oldest_cancelled_seconds_ago > b.oldest_cancelled_seconds_ago;
                   });
  r.detector_events = recent_detector_events();
  return r;
}

// -----------------------------------------------------------------------------------------------
// JSON

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

// -----------------------------------------------------------------------------------------------
// HTML

std::string stallz_html(const StallzReport& r) {
  Html h;
  std::string& out = h.out();
  out.reserve(16384 + r.resources.size() * 600);
  h.raw(
      "<!doctype html>\n<html lang=\"en\" data-refreshes=\"0\"><head><meta charset=\"utf-8\">"
      "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
      "<title>/stallz \u00b7 stallscope</title><style>");
  h.raw(kStyle);
  h.raw(
      "</style></head><body><header><h1>stallscope <small>/stallz: what is stalling now</small>"
      "</h1><p class=\"meta\" id=\"status\" data-state=\"static\"><span class=\"dot\"></span>"
      "<span id=\"status-text\">rendered at ");
  h.text(utc_clock(r.unix_time));
  h.raw(
      "</span> \u00b7 <a href=\"stallz.json\">stallz.json</a> \u00b7 "
      "<a href=\"metrics\">/metrics</a></p></header><main>");

  // Ranking.
  std::array<double, kStallzWindowCount> max{};
  for (std::size_t i = 0; i < std::min(r.resources.size(), kStallzPageRows); ++i) {
    for (std::size_t w = 0; w < kStallzWindowCount; ++w) {
      max[w] = std::max(max[w], r.resources[i].score[w].value_or(0));
    }
  }
  h.raw(
      "<section><h2>Stalling resources</h2><p class=\"note\">Stall score = average number of "
      "waiters = rate of <code>stallscope_wait_seconds_sum</code>. <span id=\"coverage\">");
  h.text(coverage_text(r));
  h.raw("</span></p><p class=\"cause\" id=\"cause\">");
  h.text(cause_headline(r));
  h.raw("</p><table><thead><tr><th class=\"n\">#</th><th>resource</th><th>kind</th>");
  for (const int w : kStallzWindows) {
    fmt::format_to(std::back_inserter(out), "<th class=\"n\">stall score {} s</th>", w);
  }
  fmt::format_to(std::back_inserter(out),
                 "<th class=\"n\">waits/s {} s</th><th class=\"n\">waiters now</th>"
                 "<th class=\"n\">oldest wait</th></tr></thead>",
                 kStallzWindows.front());
  h.rows("resources", r.resources, 8, kEmptyResources,
         [&](const StallzResource& res, std::size_t i) {
           fmt::format_to(std::back_inserter(out), "<tr data-rank=\"{}\">", i + 1);
           h.td(std::to_string(i + 1), "n");
           h.resource_tds(res.resource, res.kind);
           for (std::size_t w = 0; w < kStallzWindowCount; ++w) h.score_td(res.score[w], max[w]);
           h.td(fmt_rate(res.waits_per_second.front()), "n");
           h.td(fmt_count(res.waiters), "n");
           h.td(fmt_seconds(res.oldest_wait_age_seconds), "n");
           h.raw("</tr>");
         });
  h.raw("</section>");

  h.raw(
      "<section><h2>What held the executors</h2><p class=\"note\">Executor thread time over "
      "the shortest window: running task slices, blocked in stallscope locks, running other "
      "handlers, idle (<code>stallscope_executor_thread_seconds_total</code>).</p><table><thead>"
      "<tr><th>executor</th><th class=\"n\">threads</th><th class=\"n\">busy</th>"
      "<th>cause</th></tr></thead>");
  h.rows("causes", r.causes, 4, kEmptyCauses, [&](const StallzCause& c, std::size_t) {
    h.raw("<tr>");
    h.td(c.executor, "name");
    h.td(c.threads > 0 ? fmt_count(c.threads) : std::string(kDash), "n");
    h.td(fmt::format("{:.2f}", c.busy_threads), "n");
    h.td(c.text);
    h.raw("</tr>");
  });
  h.raw("</section>");

  h.raw(
      "<section><h2>Waiting now</h2><table><thead><tr><th>resource</th><th>kind</th>"
      "<th>op</th><th class=\"n\">waiters</th><th class=\"n\">oldest wait</th></tr></thead>");
  // The waiting and holding tables share one row shape: resource, kind, what, count, age.
  const auto resource_row = [&](const auto& resource, const auto& kind, const auto& what,
                                const std::optional<double>& count,
                                const std::optional<double>& seconds) {
    h.raw("<tr>");
    h.resource_tds(resource, kind);
    h.td(what);
    h.td(fmt_count(count), "n");
    h.td(fmt_seconds(seconds), "n");
    h.raw("</tr>");
  };
  h.rows("waiting", r.waiting, 5, kEmptyWaiting, [&](const StallzWaiting& w, std::size_t) {
    resource_row(w.resource, w.kind, w.op, w.waiters, w.oldest_wait_age_seconds);
  });
  h.raw("</section>");

  h.raw(
      "<section><h2>Held and running now</h2><table><thead><tr><th>resource</th>"
      "<th>kind</th><th>what</th><th class=\"n\">count</th><th class=\"n\">age</th></tr>"
      "</thead>");
  h.rows("holding", r.holding, 5, kEmptyHolding, [&](const StallzHolding& x, std::size_t) {
    resource_row(x.resource, x.kind, x.what, x.count, x.age_seconds);
  });
  h.raw("</section>");

  h.raw(
      "<section><h2>Lingering tasks</h2><p class=\"note\">Alive longer than the cancel grace "
      "period after cancellation was requested.</p><table><thead><tr><th>task</th>"
      "<th class=\"n\">tasks</th><th class=\"n\">oldest cancelled</th></tr></thead>");
  h.rows("lingering", r.lingering, 3, kEmptyLingering, [&](const StallzLingering& l, std::size_t) {
    h.raw("<tr>");
    h.td(l.task, "name");
    h.td(std::to_string(l.count), "n");
    h.td(fmt_seconds(l.oldest_cancelled_seconds_ago), "n");
    h.raw("</tr>");
  });
  h.raw("</section>");

  h.raw(
      "<section><h2>Detector events</h2><p class=\"note\">The latest locks held across a "
      "suspension and slices that ran too long, newest first.</p><table><thead><tr>"
      "<th class=\"n\">when</th><th>event</th><th>lock</th><th>task</th>"
      "<th class=\"n\">duration</th></tr></thead>");
  h.rows("events", r.detector_events, 5, kEmptyEvents, [&](const DetectorEvent& e, std::size_t) {
    h.raw("<tr>");
    h.td(fmt_seconds(e.age_seconds) + " ago", "n");
    h.td(human_event_type(e.type));
    h.td(e.lock, "name");
    h.td(e.task, "name");
    h.td(event_duration(e), "n");
    h.raw("</tr>");
  });
  h.raw("</section></main><footer>stallscope " STALLSCOPE_VERSION_STRING " \u00b7 ");
  fmt::format_to(std::back_inserter(out),
                 "<span id=\"samples\">{}</span> samples, one every {} s \u00b7 the page refreshes "
                 "itself every 2 s",
                 r.samples, r.sample_interval_seconds);
  h.raw("</footer><script>");
  h.raw(script());
  h.raw("</script></body></html>\n");
  return std::move(out);
}

}  // namespace stallscope
