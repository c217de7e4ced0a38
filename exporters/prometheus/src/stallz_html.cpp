// /stallz: the report as one self-contained HTML page.
//
// Every table is rendered here and nowhere else. The page's script (stallz/stallz.js) refreshes
// the page by fetching it again and swapping in the new <main>; it formats nothing. So there is
// one set of formatters (below), one description of each table's columns (stallz_html()), and
// the page reads the same with and without JavaScript. The style and the script are real files
// in stallz/, compiled in as kStallzStyle and kStallzScript by cmake/embed_file.cmake.
#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <ctime>
#include <iterator>
#include <string_view>

#include <fmt/format.h>

#include "query_string.hpp"
#include "stallscope/config.hpp"
#include "stallscope/detail/markup_escape.hpp"
#include "stallscope/detail/metric_names.hpp"
#include "stallscope/stallz.hpp"
#include "stallscope/stallz_tasks.hpp"
#include "stallz_script.hpp"
#include "stallz_style.hpp"
#include "stallz_tasks_style.hpp"

namespace stallscope {

namespace {

using detail::kStallzScript;
using detail::kStallzStyle;
using detail::markup_escape;

// Neither file may end the element it is inlined in.
static_assert(kStallzStyle.find("</") == std::string_view::npos);
static_assert(kStallzScript.find("</") == std::string_view::npos);

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

constexpr std::string_view kEmptyResources =
    "No resources yet: create a stallscope lock, channel, semaphore, pool or task.";
constexpr std::string_view kEmptyWaiting = "Nobody is waiting.";
constexpr std::string_view kEmptyCauses =
    "No executor thread time yet: run a stallscope task on an io_context.";
constexpr std::string_view kEmptyHolding = "Nothing is held or running.";
constexpr std::string_view kEmptyLingering = "No lingering tasks.";
constexpr std::string_view kEmptyEvents = "No detector events.";
constexpr std::string_view kEmptyDeadlocks = "No cycle of waits.";

// One row of the deadlocks table: a participant of cycle `seq`.
struct DeadlockRow {
  std::uint64_t seq;
  const DeadlockParticipant* p;
};

// The headline: the cause, when the top of the ranking is an executor's or a task's delay.
std::string cause_headline(const StallzReport& r) {
  if (r.causes.empty() || r.resources.empty()) return {};
  const StallzResource& top = r.resources.front();
  if (top.kind != "executor" && top.kind != "task") return {};
  return "Cause: " + r.causes.front().text;
}

// One column of a table: its heading, and whether it holds numbers (right-aligned).
struct Column {
  std::string heading;
  bool number = false;
};

// One table of the page: its <tbody> id, its columns, the line shown when it has no rows, and
// whether rows carry their rank (data-rank, 1-based).
struct Table {
  std::string_view id;
  std::vector<Column> columns;
  std::string_view empty;
  bool ranked = false;
};

class Html : public detail::MarkupWriter {
 public:
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
  // Opens a <section> with its heading and, when given, a note (trusted markup).
  void section(std::string_view title, std::string_view note = {}) {
    raw("<section><h2>").text(title).raw("</h2>");
    if (!note.empty()) raw("<p class=\"note\">").raw(note).raw("</p>");
  }
  // The table, a row per item (`row` writes its cells) up to kStallzPageRows or the empty-table
  // line, the "N more" line after it, and the end of the section.
  template <class T, class Fn>
  void table(const Table& t, const std::vector<T>& items, Fn&& row) {
    out_ += "<table><thead><tr>";
    for (const Column& c : t.columns) {
      raw(c.number ? "<th class=\"n\">" : "<th>").text(c.heading).raw("</th>");
    }
    fmt::format_to(std::back_inserter(out_), "</tr></thead><tbody id=\"{}\">", t.id);
    const std::size_t n = std::min(items.size(), kStallzPageRows);
    for (std::size_t i = 0; i < n; ++i) {
      if (t.ranked) {
        fmt::format_to(std::back_inserter(out_), "<tr data-rank=\"{}\">", i + 1);
      } else {
        out_ += "<tr>";
      }
      row(items[i], i);
      out_ += "</tr>";
    }
    if (n == 0) {
      fmt::format_to(std::back_inserter(out_), "<tr class=\"empty\"><td colspan=\"{}\">",
                     t.columns.size());
      text(t.empty);
      out_ += "</td></tr>";
    }
    fmt::format_to(std::back_inserter(out_), "</tbody></table><p class=\"more\" id=\"{}-more\">",
                   t.id);
    if (items.size() > n) {
      fmt::format_to(std::back_inserter(out_), "and {} more in stallz.json", items.size() - n);
    }
    out_ += "</p></section>";
  }
};

// The ranking: rank, resource, kind, a stall score per window, then the shortest window's
// waits per second, the waiters now and the oldest wait.
void ranking(Html& h, const StallzReport& r) {
  std::array<double, kStallzWindowCount> max{};
  for (std::size_t i = 0; i < std::min(r.resources.size(), kStallzPageRows); ++i) {
    for (std::size_t w = 0; w < kStallzWindowCount; ++w) {
      max[w] = std::max(max[w], r.resources[i].score[w].value_or(0));
    }
  }
  h.section("Stalling resources");
  h.raw(fmt::format("<p class=\"note\">Stall score = average number of waiters = rate of "
                    "<code>{}_sum</code>. <span id=\"coverage\">",
                    detail::metric_names::kWaitSeconds))
      .text(coverage_text(r))
      .raw("</span></p><p class=\"cause\" id=\"cause\">")
      .text(cause_headline(r))
      .raw("</p>");
  Table t{"resources", {{"#", true}, {"resource"}, {"kind"}}, kEmptyResources, true};
  for (const int w : kStallzWindows)
    t.columns.push_back({fmt::format("stall score {} s", w), true});
  t.columns.push_back({fmt::format("waits/s {} s", kStallzWindows.front()), true});
  t.columns.push_back({"waiters now", true});
  t.columns.push_back({"oldest wait", true});
  h.table(t, r.resources, [&](const StallzResource& res, std::size_t i) {
    h.td(std::to_string(i + 1), "n");
    // The name links to the resource's holder and waiter sites (stallz_sites.hpp).
    h.raw("<td class=\"name\"><a href=\"stallz/sites?kind=")
        .text(detail::query_encode(res.kind))
        .raw("&amp;resource=")
        .text(detail::query_encode(res.resource))
        .raw("\">")
        .text(res.resource)
        .raw("</a></td><td class=\"kind\"><span>")
        .text(res.kind)
        .raw("</span></td>");
    for (std::size_t w = 0; w < kStallzWindowCount; ++w) h.score_td(res.score[w], max[w]);
    h.td(fmt_rate(res.waits_per_second.front()), "n");
    h.td(fmt_count(res.waiters), "n");
    h.td(fmt_seconds(res.oldest_wait_age_seconds), "n");
  });
}

// A row of the waiting or holding table, which share one shape: resource, kind, what (the op,
// or what is held), a count and an age.
struct ResourceCells {
  std::string_view resource;
  std::string_view kind;
  std::string_view what;
  std::optional<double> count;
  std::optional<double> seconds;
};

// The waiting or holding table; `headings` names the what, count and age columns.
template <class T, class Fn>
void resource_table(Html& h, std::string_view title, std::string_view id,
                    const std::array<const char*, 3>& headings, std::string_view empty,
                    const std::vector<T>& items, Fn&& cells_of) {
  h.section(title);
  const Table t{
      id, {{"resource"}, {"kind"}, {headings[0]}, {headings[1], true}, {headings[2], true}}, empty};
  h.table(t, items, [&](const T& item, std::size_t) {
    const ResourceCells c = cells_of(item);
    h.resource_tds(c.resource, c.kind);
    h.td(c.what);
    h.td(fmt_count(c.count), "n");
    h.td(fmt_seconds(c.seconds), "n");
  });
}

static_assert(detail::kStallzTasksStyle.find("</") == std::string_view::npos);

// A query string for the tasks page: each value percent-encoded, fields joined by `&`.
std::string task_query(const TaskFilter& f) {
  std::string q;
  auto add = [&q](std::string_view k, std::string_view v) {
    q += q.empty() ? "?" : "&";
    q += k;
    q += '=';
    for (const char c : v) {
      const auto u = static_cast<unsigned char>(c);
      if (std::isalnum(u) != 0 || c == '-' || c == '_' || c == '.' || c == '~') {
        q += c;
      } else {
        fmt::format_to(std::back_inserter(q), "%{:02X}", u);
      }
    }
  };
  if (!f.name.empty()) add("name", f.name);
  if (f.state) add("state", to_string(*f.state));
  if (f.cancel_requested) add("cancelled", *f.cancel_requested ? "true" : "false");
  return q;
}

std::string wait_target(const TaskInfo& t, bool asio_tracking) {
  switch (t.state) {
    case TaskRunState::kWaiting:
      return fmt::format("{}/{}/{}{}", t.wait_kind, t.wait_resource, t.wait_op,
                         t.blocks_thread ? " (blocks its executor thread)" : "");
    case TaskRunState::kSuspended:
      if (!t.asio_op.empty()) return "Asio: " + t.asio_op;
      return asio_tracking ? "not instrumented (no Asio operation outstanding)"
                           : "not instrumented by stallscope (build with "
                             "-DSTALLSCOPE_ASIO_TRACKING=ON to see the Asio operation)";
    case TaskRunState::kQueued:
      return "an executor thread";
    case TaskRunState::kRunning:
      break;
  }
  return std::string(kDash);
}

}  // namespace

std::string stallz_tasks_html(const TaskDump& d, const TaskFilter& f) {
  Html h;
  std::string& out = h.out();
  out.reserve(8192 + std::min(d.tasks.size(), kStallzTaskRows) * 500);
  // The dump may have been cut at a limit (render_tasks asks for kStallzTaskRows).
  const std::size_t matched = std::max(d.matched, d.tasks.size());
  h.raw(
      "<!doctype html>\n<html lang=\"en\" data-refreshes=\"0\"><head><meta charset=\"utf-8\">"
      "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
      "<title>/stallz/tasks \u00b7 stallscope</title><style>\n");
  h.raw(kStallzStyle).raw(detail::kStallzTasksStyle);
  h.raw(
      "</style></head><body><header><h1>stallscope <small>/stallz/tasks: what every task is "
      "doing now</small></h1><p class=\"meta\" id=\"status\" data-state=\"static\"><span "
      "class=\"dot\"></span><span id=\"status-text\">rendered at ");
  h.text(utc_clock(d.unix_time));
  h.raw("</span> \u00b7 <a href=\"tasks.json").text(task_query(f));
  h.raw("\">tasks.json</a> \u00b7 <a href=\"../stallz\">/stallz</a></p></header><main>");

  h.section("Tasks");
  fmt::format_to(std::back_inserter(out),
                 "<p class=\"note\">{} live tasks, dumped in {}. Longest in its state first.</p>"
                 "<p class=\"note filters\" id=\"filters\">",
                 d.live, fmt_seconds(d.dump_seconds));
  auto filter_link = [&](const TaskFilter& to, std::string_view label, std::size_t n) {
    const bool current =
        to.name == f.name && to.state == f.state && to.cancel_requested == f.cancel_requested;
    h.raw("<a href=\"tasks")
        .text(task_query(to))
        .raw(current ? "\" aria-current=\"true\">" : "\">");
    h.text(fmt::format("{} {}", label, n)).raw("</a>");
  };
  filter_link({}, "all", d.live);
  for (std::size_t i = 0; i < kTaskRunStates; ++i) {
    const auto s = static_cast<TaskRunState>(i);
    filter_link({{}, s, {}}, to_string(s), d.by_state[i]);
  }
  filter_link({{}, {}, true}, "cancel requested", d.cancel_requested);
  h.raw("</p>");
  if (!f.name.empty() || f.state || f.cancel_requested) {
    h.raw("<p class=\"note\">Filtered:");
    if (!f.name.empty()) h.raw(" name <code>").text(f.name).raw("</code>");
    if (f.state) h.raw(" state <code>").text(to_string(*f.state)).raw("</code>");
    if (f.cancel_requested) {
      h.raw(" cancel requested <code>").text(*f.cancel_requested ? "true" : "false").raw("</code>");
    }
    fmt::format_to(std::back_inserter(out), ": {} tasks.</p>", matched);
  }

  const std::array<Column, 9> columns = {
      Column{"task"},      Column{"id", true},   Column{"state"},
      Column{"for", true}, Column{"waiting on"}, Column{"group"},
      Column{"token"},     Column{"age", true},  Column{"cancel requested", true}};
  out += "<table><thead><tr>";
  for (const Column& c : columns) {
    h.raw(c.number ? "<th class=\"n\">" : "<th>").text(c.heading).raw("</th>");
  }
  out += "</tr></thead><tbody id=\"tasks\">";
  const std::size_t n = std::min(d.tasks.size(), kStallzTaskRows);
  for (std::size_t i = 0; i < n; ++i) {
    const TaskInfo& t = d.tasks[i];
    TaskFilter by_name;
    by_name.name = t.name;
    h.raw("<tr><td class=\"name\"><a href=\"tasks").text(task_query(by_name)).raw("\">");
    h.text(t.name).raw("</a></td>");
    h.td(std::to_string(t.id), "n");
    const std::string_view state = to_string(t.state);
    h.raw("<td class=\"state\"><span data-state=\"").text(state).raw("\">").text(state);
    h.raw("</span></td>");
    h.td(fmt_seconds(t.state_seconds), "n");
    h.td(wait_target(t, d.asio_tracking), t.state == TaskRunState::kWaiting ? "name" : nullptr);
    h.td(t.group_id == 0   ? std::string(kDash)
         : t.group.empty() ? fmt::format("#{}", t.group_id)
                           : fmt::format("{} (#{})", t.group, t.group_id),
         "name");
    h.td(t.token_path.empty() ? std::string(kDash) : t.token_path, "name");
    h.td(fmt_seconds(t.age_seconds), "n");
    h.td(t.cancel_requested ? fmt_seconds(t.cancelled_seconds_ago) + " ago" : "no",
         t.cancel_requested ? "n cancel" : "n");
    out += "</tr>";
  }
  if (n == 0) {
    fmt::format_to(std::back_inserter(out), "<tr class=\"empty\"><td colspan=\"{}\">",
                   columns.size());
    h.text(d.live == 0 ? "No live tasks: spawn one with stallscope::spawn."
                       : "No task matches the filter.");
    out += "</td></tr>";
  }
  out += "</tbody></table><p class=\"more\" id=\"tasks-more\">";
  if (matched > n) {
    fmt::format_to(std::back_inserter(out), "and {} more in tasks.json", matched - n);
  }
  out += "</p></section></main><footer>stallscope " STALLSCOPE_VERSION_STRING " \u00b7 ";
  fmt::format_to(std::back_inserter(out),
                 "<span id=\"samples\">{}</span> live tasks \u00b7 the page refreshes itself "
                 "every 2 s",
                 d.live);
  h.raw("</footer><script>").raw(kStallzScript).raw("</script></body></html>\n");
  return std::move(out);
}

std::string stallz_html(const StallzReport& r) {
  Html h;
  std::string& out = h.out();
  out.reserve(16384 + r.resources.size() * 600);
  h.raw(
      "<!doctype html>\n<html lang=\"en\" data-refreshes=\"0\"><head><meta charset=\"utf-8\">"
      "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
      "<title>/stallz \u00b7 stallscope</title><style>\n");
  h.raw(kStallzStyle);
  h.raw(
      "</style></head><body><header><h1>stallscope <small>/stallz: what is stalling now</small>"
      "</h1><p class=\"meta\" id=\"status\" data-state=\"static\"><span class=\"dot\"></span>"
      "<span id=\"status-text\">rendered at ");
  h.text(utc_clock(r.unix_time));
  h.raw(
      "</span> \u00b7 <a href=\"stallz.json\">stallz.json</a> \u00b7 "
      "<a href=\"stallz/tasks\">tasks</a> \u00b7 <a href=\"stallz/map\">map</a> \u00b7 "
      "<a href=\"metrics\">/metrics</a></p></header><main>");

  ranking(h, r);

  h.section("What held the executors",
            fmt::format("Executor thread time over the shortest window: running task slices, "
                        "blocked in stallscope locks, running other handlers, idle "
                        "(<code>{}</code>).",
                        detail::metric_names::kExecutorThreadSeconds));
  h.table({"causes", {{"executor"}, {"threads", true}, {"busy", true}, {"cause"}}, kEmptyCauses},
          r.causes, [&](const StallzCause& c, std::size_t) {
            h.td(c.executor, "name");
            h.td(c.threads > 0 ? fmt_count(c.threads) : std::string(kDash), "n");
            h.td(fmt::format("{:.2f}", c.busy_threads), "n");
            h.td(c.text);
          });

  resource_table(
      h, "Waiting now", "waiting", {"op", "waiters", "oldest wait"}, kEmptyWaiting, r.waiting,
      [](const StallzWaiting& w) {
        return ResourceCells{w.resource, w.kind, w.op, w.waiters, w.oldest_wait_age_seconds};
      });
  resource_table(h, "Held and running now", "holding", {"what", "count", "age"}, kEmptyHolding,
                 r.holding, [](const StallzHolding& x) {
                   return ResourceCells{x.resource, x.kind, x.what, x.count, x.age_seconds};
                 });

  h.section("Lingering tasks",
            "Alive longer than the cancel grace period after cancellation was requested.");
  h.table({"lingering", {{"task"}, {"tasks", true}, {"oldest cancelled", true}}, kEmptyLingering},
          r.lingering, [&](const StallzLingering& l, std::size_t) {
            h.td(l.task, "name");
            h.td(std::to_string(l.count), "n");
            h.td(fmt_seconds(l.oldest_cancelled_seconds_ago), "n");
          });

  h.section("Detector events",
            "The latest locks held across a suspension and slices that ran too long, newest "
            "first.");
  h.table(
      {"events", {{"when", true}, {"event"}, {"lock"}, {"task"}, {"duration", true}}, kEmptyEvents},
      r.detector_events, [&](const DetectorEvent& e, std::size_t) {
        h.td(fmt_seconds(e.age_seconds) + " ago", "n");
        h.td(human_event_type(e.type));
        h.td(e.lock, "name");
        h.td(e.task, "name");
        h.td(event_duration(e), "n");
      });

  h.section("Deadlocks",
            "Cycles of waits over stallscope locks, semaphores and channels, each participant "
            "with what it holds and what it waits for (<code>stallscope_deadlocks_total</code>).");
  std::vector<DeadlockRow> deadlock_rows;
  for (const DeadlockReport& d : r.deadlocks) {
    for (const DeadlockParticipant& p : d.participants) deadlock_rows.push_back({d.seq, &p});
  }
  h.table({"deadlocks",
           {{"cycle", true}, {"participant"}, {"holds"}, {"waits for"}, {"op"}, {"waited", true}},
           kEmptyDeadlocks},
          deadlock_rows, [&](const DeadlockRow& row, std::size_t) {
            h.td(fmt::format("#{}", row.seq), "n");
            h.td(row.p->name, "name");
            std::string held;
            for (const std::string& x : row.p->holds) held += (held.empty() ? "" : ", ") + x;
            h.td(held, "name");
            h.td(row.p->waits_for, "name");
            h.td(row.p->op);
            h.td(fmt_seconds(row.p->waited_seconds), "n");
          });

  h.raw("</main><footer>stallscope " STALLSCOPE_VERSION_STRING " \u00b7 ");
  fmt::format_to(std::back_inserter(out),
                 "<span id=\"samples\">{}</span> samples, one every {} s \u00b7 the page refreshes "
                 "itself every 2 s",
                 r.samples, r.sample_interval_seconds);
  h.raw("</footer><script>");
  h.raw(kStallzScript);
  h.raw("</script></body></html>\n");
  return std::move(out);
}

}  // namespace stallscope
