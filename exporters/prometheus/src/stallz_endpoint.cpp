#include "stallz_endpoint.hpp"

#include <pthread.h>

#include <algorithm>
#include <exception>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "metrics_format.hpp"
#include "pprof_endpoint.hpp"
#include "stallscope/clock.hpp"
#include "stallscope/detail/histogram.hpp"
#include "stallscope/prometheus.hpp"
#include "stallscope/service_map.hpp"
#include "stallscope/stallz.hpp"
#include "stallscope/stallz_tasks.hpp"
#include "stallz_sites.hpp"
#include "text_format.hpp"

namespace stallscope::detail {

struct StallzSource {
  explicit StallzSource(const Registry& r) : registry(r) {}
  const Registry& registry;
  StallWindow window;
  mutable std::mutex origin_mu;
  std::string origin;  // "http://127.0.0.1:9464": set_origin()
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

// A page, HTML or JSON, with its headers; a 500 naming `path` when render() throws.
template <class Render>
HttpReply page(std::string_view path, bool json, Render&& render) {
  HttpReply r;
  try {
    r.body = render();
  } catch (const std::exception& e) {
    return failure(path, e);
  }
  if (json) {
    r.content_type = "application/json";
  } else {
    r.content_type = "text/html; charset=utf-8";
    r.headers.emplace_back("Content-Security-Policy", kHtmlPolicy);
  }
  return r;
}

HttpReply render_stallz(const StallzSource& source, bool json) {
  return page(json ? "/stallz.json" : "/stallz", json, [&] {
    const StallzReport report =
        make_stallz_report(source.registry, source.window,
                           std::chrono::duration<double>(StallzEndpoint::kSampleInterval).count());
    return json ? stallz_json(report) : stallz_html(report);
  });
}

// /metrics in the text format, written by detail::write_text rather than prometheus-cpp's
// serializer: 3-4x faster for the same bytes (see text_format.hpp), which is what keeps a
// scrape of 1,000 locks within its 20 ms budget. OpenMetrics, with the wait histogram's
// exemplars, when the Accept header prefers it.
HttpReply render_metrics(const StallzSource& source, std::string_view accept) {
  HttpReply r;
  const MetricsFormat format = negotiate_metrics_format(accept);
  try {
    if (format == MetricsFormat::kOpenMetrics) {
      const ExemplarsWanted exemplars;
      r.body = write_openmetrics(collect_families(source.registry));
    } else {
      r.body = write_text(Collectable(source.registry).Collect());
    }
  } catch (const std::exception& e) {
    return failure("/metrics", e);
  }
  r.content_type =
      format == MetricsFormat::kOpenMetrics ? kOpenMetricsContentType : kTextContentType;
  r.headers.emplace_back("Vary", "Accept");
  return r;
}

// /stallz/map and /stallz/map.json (service_map.hpp).
HttpReply render_map(bool json) {
  return page(json ? "/stallz/map.json" : "/stallz/map", json,
              [json] { return json ? service_map_json() : service_map_html(); });
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
  return page(json ? "/stallz/tasks.json" : "/stallz/tasks", json, [&] {
    TaskFilter want = filter;  // the page shows its first rows only: sort no more than those
    if (!json && (want.limit == 0 || want.limit > kStallzTaskRows)) want.limit = kStallzTaskRows;
    const TaskDump dump = dump_tasks(want);
    return json ? stallz_tasks_json(dump, filter) : stallz_tasks_html(dump, filter);
  });
}

// /stallz/sites and /stallz/sites.json (stallz_sites.hpp): 400 naming a bad parameter, 404
// naming a resource the registry does not have.
HttpReply render_sites(const StallzSource& source, std::string_view query, bool json) {
  HttpReply r;
  SitesQuery q;
  try {
    q = parse_sites_query(query);
  } catch (const std::invalid_argument& e) {
    r.status = 400;
    r.body = fmt::format("{}\n", e.what());
    return r;
  }
  if (!sites_resource_known(source.registry, q)) {
    r.status = 404;
    r.body = fmt::format("stallscope: /stallz/sites: no {} named \"{}\"\n",
                         q.kind ? *q.kind : std::string("resource"), q.resource);
    return r;
  }
  std::string origin;
  {
    std::lock_guard lock(source.origin_mu);
    origin = source.origin;
  }
  return page(json ? "/stallz/sites.json" : "/stallz/sites", json, [&] {
    const SitesReport report = make_sites_report(q, std::move(origin));
    return json ? stallz_sites_json(report) : stallz_sites_html(report);
  });
}

HttpReply render_path(const StallzSource& source, std::string_view target,
                      std::string_view accept) {
  const std::string_view path = target.substr(0, target.find('?'));
  const std::string_view query = target.substr(path.size());
  if (path == "/stallz/tasks") return render_tasks(query, false);
  if (path == "/stallz/tasks.json") return render_tasks(query, true);
  if (path == "/metrics") return render_metrics(source, accept);
  if (path == "/stallz/sites") return render_sites(source, query, false);
  if (path == "/stallz/sites.json") return render_sites(source, query, true);
  if (path == "/stallz") return render_stallz(source, false);
  if (path == "/stallz.json") return render_stallz(source, true);
  if (path == "/stallz/map") return render_map(false);
  if (path == "/stallz/map.json") return render_map(true);
  if (is_pprof_path(path)) return render_pprof(target);
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
  std::vector<std::string> p{"/metrics",          "/stallz",          "/stallz.json",
                             "/stallz/map",       "/stallz/map.json", "/stallz/tasks",
                             "/stallz/tasks.json"};
  p.insert(p.end(), {"/stallz/sites", "/stallz/sites.json"});
  for (std::string& x : pprof_paths()) p.push_back(std::move(x));
  return p;
}

HttpReply StallzEndpoint::render(std::string_view path, std::string_view accept) const {
  return render_path(*source_, path, accept);
}

HttpHandler StallzEndpoint::handler() const {
  return [source = std::shared_ptr<const StallzSource>(source_)](std::string_view path,
                                                                 std::string_view accept) {
    return render_path(*source, path, accept);
  };
}

void StallzEndpoint::set_origin(std::string origin) {
  std::lock_guard lock(source_->origin_mu);
  source_->origin = std::move(origin);
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
