#include "stallz_endpoint.hpp"

#include <civetweb.h>
#include <pthread.h>

#include <algorithm>
#include <ctime>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "stallscope/clock.hpp"
#include "stallscope/prometheus.hpp"
#include "stallscope/stallz.hpp"
#include "text_format.hpp"

namespace stallscope::detail {

struct StallzSource {
  explicit StallzSource(const Registry& r) : registry(r) {}
  const Registry& registry;
  StallWindow window;
};

namespace {

// Scripts and styles are inline; nothing may be loaded from anywhere, and the page may only
// fetch from its own origin (stallz.json).
constexpr const char* kHtmlPolicyHeader =
    "Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; "
    "script-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
    "form-action 'none'\r\n";

struct Routes {
  std::mutex mu;
  std::vector<std::pair<const mg_context*, std::shared_ptr<const StallzSource>>> by_context;
};

// Never destroyed: a CivetWeb thread may still look a route up during static destruction.
Routes& routes() {
  static Routes* const r = new Routes;
  return *r;
}

// The source whose server this thread is starting (see StallzEndpoint::serve).
thread_local std::shared_ptr<const StallzSource> t_starting;

void on_init_context(const mg_context* ctx) {
  if (!t_starting) return;
  Routes& r = routes();
  std::lock_guard lock(r.mu);
  std::erase_if(r.by_context, [ctx](const auto& e) { return e.first == ctx; });
  r.by_context.emplace_back(ctx, t_starting);
}

void on_exit_context(const mg_context* ctx) {
  Routes& r = routes();
  std::lock_guard lock(r.mu);
  std::erase_if(r.by_context, [ctx](const auto& e) { return e.first == ctx; });
}

std::shared_ptr<const StallzSource> route(const mg_context* ctx) {
  Routes& r = routes();
  std::lock_guard lock(r.mu);
  for (const auto& [c, source] : r.by_context) {
    if (c == ctx) return source;
  }
  return nullptr;
}

// "Thu, 26 Nov 2026 05:13:21 GMT". With gmtime_r: CivetWeb's own header helpers format the Date
// with gmtime(), whose static buffer two worker threads answering at once would race on.
std::string http_date() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  char buf[64] = "";
  if (gmtime_r(&now, &tm) != nullptr) {
    std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  }
  return buf;
}

// Writes a whole response, headers included, and closes the connection after it.
int send_response(mg_connection* conn, int status, const char* reason, const char* content_type,
                  std::string_view body, bool head, const char* extra_headers = "") {
  mg_disable_connection_keep_alive(conn);
  const std::string headers = fmt::format(
      "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nDate: {}\r\n"
      "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n{}Connection: close\r\n\r\n",
      status, reason, content_type, body.size(), http_date(), extra_headers);
  mg_write(conn, headers.data(), headers.size());
  if (!head) mg_write(conn, body.data(), body.size());
  return status;
}

int respond(mg_connection* conn, const StallzSource& source, bool json, bool head) {
  std::string body;
  try {
    const StallzReport report =
        make_stallz_report(source.registry, source.window,
                           std::chrono::duration<double>(StallzEndpoint::kSampleInterval).count());
    body = json ? stallz_json(report) : stallz_html(report);
  } catch (const std::exception& e) {
    return send_response(conn, 500, "Internal Server Error", "text/plain; charset=utf-8",
                         fmt::format("stallscope: /stallz failed: {}\n", e.what()), head);
  }
  if (json) return send_response(conn, 200, "OK", "application/json", body, head);
  return send_response(conn, 200, "OK", "text/html; charset=utf-8", body, head, kHtmlPolicyHeader);
}

// /metrics in the text format, written by detail::write_text rather than prometheus-cpp's
// handler: 3-4x faster for the same bytes (see text_format.hpp), which is what keeps a scrape of
// 1,000 locks within its 20 ms budget.
int respond_metrics(mg_connection* conn, const StallzSource& source, bool head) {
  std::string body;
  try {
    body = detail::write_text(Collectable(source.registry).Collect());
  } catch (const std::exception& e) {
    return send_response(conn, 500, "Internal Server Error", "text/plain; charset=utf-8",
                         fmt::format("stallscope: /metrics failed: {}\n", e.what()), head);
  }
  return send_response(conn, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", body, head);
}

// Serves /metrics, /stallz and /stallz.json; returns 0 for every other path, which CivetWeb then
// hands to its own handlers (its 404).
int on_begin_request(mg_connection* conn) {
  const mg_request_info* info = mg_get_request_info(conn);
  if (info == nullptr || info->local_uri == nullptr) return 0;
  const std::string_view uri = info->local_uri;
  const bool json = uri == "/stallz.json";
  const bool metrics = uri == "/metrics";
  if (!json && !metrics && uri != "/stallz") return 0;
  const std::shared_ptr<const StallzSource> source = route(mg_get_context(conn));
  if (!source) return 0;
  if (metrics) {
    const std::string_view m = info->request_method != nullptr ? info->request_method : "";
    if (m != "GET" && m != "HEAD") return 0;  // prometheus-cpp's handler answers the rest
    return respond_metrics(conn, *source, m == "HEAD");
  }
  const std::string_view method = info->request_method != nullptr ? info->request_method : "";
  if (method != "GET" && method != "HEAD") {
    return send_response(conn, 405, "Method Not Allowed", "text/plain; charset=utf-8",
                         "/stallz answers GET and HEAD\n", false, "Allow: GET, HEAD\r\n");
  }
  return respond(conn, *source, json, method == "HEAD");
}

CivetCallbacks make_callbacks() {
  CivetCallbacks cb;
  cb.begin_request = on_begin_request;
  cb.init_context = on_init_context;
  cb.exit_context = on_exit_context;
  return cb;
}

}  // namespace

StallzEndpoint::StallzEndpoint(const Registry& registry)
    : source_(std::make_shared<StallzSource>(registry)) {}

StallzEndpoint::~StallzEndpoint() {
  stop_sampler();
  Routes& r = routes();
  std::lock_guard lock(r.mu);
  std::erase_if(r.by_context, [this](const auto& e) { return e.second == source_; });
}

const CivetCallbacks& StallzEndpoint::callbacks() noexcept {
  static const CivetCallbacks cb = make_callbacks();
  return cb;
}

StallzEndpoint::Binding::Binding(const std::shared_ptr<const StallzSource>& source) noexcept {
  t_starting = source;
}

StallzEndpoint::Binding::~Binding() { t_starting.reset(); }

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
