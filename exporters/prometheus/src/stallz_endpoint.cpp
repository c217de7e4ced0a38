#include "stallz_endpoint.hpp"

#include <pthread.h>

#include <algorithm>
#include <exception>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "stallscope/clock.hpp"
#include "stallscope/prometheus.hpp"
#include "stallscope/stallz.hpp"
#include "stallscope/stallz_tasks.hpp"
#include "text_format.hpp"

namespace stallscope::detail {

struct StallzSource {
  explicit StallzSource(const Registry& r) : registry(r) {}
  const Registry& registry;
  StallWindow window;
};

namespace {

// Scripts and styles are inline; nothing may be loaded from anywhere, and the page may only
// fetch from its own origin (itself, to refresh).
constexpr const char* kHtmlPolicy =
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'";

HttpReply failure(std::string_view path, const std::exception& e) {
  HttpReply r;
  r.status = 500;
  r.body = fmt::format("stallscope: {} failed: {}\n", path, e.what());
  return r;
}

// A rendered page, or its JSON, with the headers each needs.
HttpReply rendered(std::string body, bool json) {
  HttpReply r;
  r.body = std::move(body);
  if (json) {
    r.content_type = "application/json";
  } else {
    r.content_type = "text/html; charset=utf-8";
    r.headers.emplace_back("Content-Security-Policy", kHtmlPolicy);
  }
  return r;
}

HttpReply render_stallz(const StallzSource& source, bool json) {
  std::string body;
  try {
    const StallzReport report =
        make_stallz_report(source.registry, source.window,
                           std::chrono::duration<double>(StallzEndpoint::kSampleInterval).count());
    body = json ? stallz_json(report) : stallz_html(report);
  } catch (const std::exception& e) {
    return failure(json ? "/stallz.json" : "/stallz", e);
  }
  return rendered(std::move(body), json);
}

// /metrics in the text format, written by detail::write_text rather than prometheus-cpp's
// serializer: 3-4x faster for the same bytes (see text_format.hpp), which is what keeps a
// scrape of 1,000 locks within its 20 ms budget.
HttpReply render_metrics(const StallzSource& source) {
  HttpReply r;
  try {
    r.body = detail::write_text(Collectable(source.registry).Collect());
  } catch (const std::exception& e) {
    return failure("/metrics", e);
  }
  r.content_type = "text/plain; version=0.0.4; charset=utf-8";
  return r;
}

// /stallz/tasks and /stallz/tasks.json: the task dump filtered by the query (400 naming a bad
// parameter or value).
HttpReply render_tasks(std::string_view query, bool json) {
  TaskFilter filter;
  try {
    filter = parse_task_filter(query);
  } catch (const std::invalid_argument& e) {
    HttpReply r;
    r.status = 400;
    r.body = fmt::format("{}\n", e.what());
    return r;
  }
  std::string body;
  try {
    const TaskDump dump = dump_tasks(filter);
    body = json ? stallz_tasks_json(dump, filter) : stallz_tasks_html(dump, filter);
  } catch (const std::exception& e) {
    return failure(json ? "/stallz/tasks.json" : "/stallz/tasks", e);
  }
  return rendered(std::move(body), json);
}

HttpReply render_path(const StallzSource& source, std::string_view target) {
  const std::string_view path = target.substr(0, target.find('?'));
  const std::string_view query = target.substr(path.size());
  if (path == "/stallz/tasks") return render_tasks(query, false);
  if (path == "/stallz/tasks.json") return render_tasks(query, true);
  if (path == "/metrics") return render_metrics(source);
  if (path == "/stallz") return render_stallz(source, false);
  if (path == "/stallz.json") return render_stallz(source, true);
  HttpReply r;
  r.status = 404;
  r.body = "stallscope: not found\n";
  return r;
}

}  // namespace

StallzEndpoint::StallzEndpoint(const Registry& registry)
    : source_(std::make_shared<StallzSource>(registry)) {}

StallzEndpoint::~StallzEndpoint() { stop_sampler(); }

std::vector<std::string> StallzEndpoint::paths() {
  return {"/metrics", "/stallz", "/stallz.json", "/stallz/tasks", "/stallz/tasks.json"};
}

HttpReply StallzEndpoint::render(std::string_view path) const {
  return render_path(*source_, path);
}

HttpHandler StallzEndpoint::handler() const {
  return [source = std::shared_ptr<const StallzSource>(source_)](std::string_view path) {
    return render_path(*source, path);
  };
}

void StallzEndpoint::start_sampler() {
  if (sampler_.joinable()) return;
  sampler_ = std::jthread([this](std::stop_token stop) { run(stop); });
}

void StallzEndpoint::stop_sampler() noexcept {
  if (!sampler_.joinable()) return;
  sampler_.request_stop();
  sampler_.join();
}

void StallzEndpoint::run(const std::stop_token& stop) {
#if defined(__linux__)
  pthread_setname_np(pthread_self(), "stallz-sampler");  // as `top -H` and gdb show it
#endif
  while (!stop.stop_requested()) {
    try {
      const std::int64_t t = now_ns();
      source_->window.add(t, source_->registry.collect());
    } catch (const std::exception&) {
      // Out of memory: skip this sample; the rates use the ones around it.
    }
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, stop, kSampleInterval, [] { return false; });
  }
}

}  // namespace stallscope::detail
