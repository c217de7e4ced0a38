// stallscope-check: the release check against a running service.
//
//   stallscope-check --url http://HOST:PORT [--window 10s] [--config FILE] [--junit FILE]
//   stallscope-check map-diff EXPECTED ACTUAL
//
// Reads /metrics, waits --window, reads /metrics and /stallz.json again, and evaluates the
// checks over the window (stallscope/check.hpp). Exit 0: every check passed (warnings allowed);
// 1: a check failed; 2: a usage or connection error, with a message naming the bad value.
// map-diff compares two live maps (/stallz/map.json; stallscope/map_diff.hpp): exit 0 when they
// match, 1 naming each difference, 2 when an input cannot be read or is not a map.
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>

#include "stallscope/check.hpp"
#include "stallscope/map_diff.hpp"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

constexpr std::string_view kUsage =
    "usage: stallscope-check --url http://HOST:PORT [--window DURATION] [--config FILE] "
    "[--junit FILE]\n"
    "  --url      the service's stallscope endpoint (its /metrics and /stallz.json); plain HTTP\n"
    "  --window   how long to watch: /metrics is read at the start and the end (default 10s;\n"
    "             500ms, 30s, 2m or a number of seconds)\n"
    "  --config   thresholds, a YAML mapping (keys and defaults: README, \"Release check\")\n"
    "  --junit    also write the verdicts as JUnit XML to FILE\n"
    "exit status: 0 every check passed (warnings allowed), 1 a check failed, 2 usage or\n"
    "connection error\n"
    "\n"
    "usage: stallscope-check map-diff EXPECTED ACTUAL\n"
    "  compares two live maps (/stallz/map.json): EXPECTED a saved file, ACTUAL a file or a\n"
    "  service's http://HOST:PORT; prints each difference\n"
    "exit status: 0 the maps match, 1 they differ, 2 an input cannot be read or is not a map\n";

// A usage or connection error: exit 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Url {
  std::string text;
  std::string host;
  std::string port;
};

Url parse_url(const std::string& text) {
  constexpr std::string_view kScheme = "http://";
  std::string_view rest(text);
  if (rest.starts_with("https://")) {
    throw UsageError(fmt::format(
        "--url \"{}\": HTTPS is not supported; point it at a plain-HTTP endpoint", text));
  }
  if (!rest.starts_with(kScheme)) {
    throw UsageError(fmt::format("--url \"{}\" does not start with http://", text));
  }
  rest.remove_prefix(kScheme.size());
  while (rest.ends_with('/')) rest.remove_suffix(1);
  if (rest.find('/') != std::string_view::npos || rest.find('@') != std::string_view::npos) {
    throw UsageError(fmt::format(
        "--url \"{}\" must be http://HOST:PORT, with no path or user (the checks read /metrics "
        "and /stallz.json)",
        text));
  }
  Url url{text, {}, "80"};
  std::string_view host = rest;
  if (rest.starts_with('[')) {  // [IPv6]:port
    const std::size_t close = rest.find(']');
    if (close == std::string_view::npos) {
      throw UsageError(fmt::format("--url \"{}\": unterminated [IPv6 address]", text));
    }
    host = rest.substr(1, close - 1);
    rest.remove_prefix(close + 1);
    if (!rest.empty() && !rest.starts_with(':')) {
      throw UsageError(fmt::format("--url \"{}\": expected :PORT after ]", text));
    }
    if (!rest.empty()) url.port = std::string(rest.substr(1));
  } else if (const std::size_t colon = rest.rfind(':'); colon != std::string_view::npos) {
    host = rest.substr(0, colon);
    url.port = std::string(rest.substr(colon + 1));
  }
  if (host.empty()) throw UsageError(fmt::format("--url \"{}\" has no host", text));
  url.host = std::string(host);
  unsigned port = 0;
  const auto [end, ec] = std::from_chars(url.port.data(), url.port.data() + url.port.size(), port);
  if (ec != std::errc{} || end != url.port.data() + url.port.size() || port == 0 || port > 65535) {
    throw UsageError(fmt::format("--url \"{}\": \"{}\" is not a port (1-65535)", text, url.port));
  }
  return url;
}

double parse_window(const std::string& text) {
  std::string_view t(text);
  double scale = 1;
  if (t.ends_with("ms")) {
    scale = 1e-3;
    t.remove_suffix(2);
  } else if (t.ends_with('s')) {
    t.remove_suffix(1);
  } else if (t.ends_with('m')) {
    scale = 60;
    t.remove_suffix(1);
  }
  double v = 0;
  const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (t.empty() || ec != std::errc{} || end != t.data() + t.size() || !std::isfinite(v) || v <= 0) {
    throw UsageError(fmt::format(
        "--window \"{}\" is not a positive duration (such as 500ms, 30s, 2m or 10)", text));
  }
  return v * scale;
}

// GET url.host:url.port/path over plain HTTP/1.1; the body of a 200, else a UsageError naming
// the URL.
std::string get(const Url& url, std::string_view path) {
  const std::string where = fmt::format("{}{}", url.text, path);
  asio::io_context io;
  beast::tcp_stream stream(io);
  beast::error_code ec;
  asio::ip::tcp::resolver resolver(io);
  const auto endpoints = resolver.resolve(url.host, url.port, ec);
  if (ec) {
    throw UsageError(
        fmt::format("--url \"{}\": cannot resolve \"{}\": {}", url.text, url.host, ec.message()));
  }
  stream.expires_after(std::chrono::seconds(10));
  stream.connect(endpoints, ec);
  if (ec) {
    throw UsageError(fmt::format("--url \"{}\": cannot connect to {}:{}: {}", url.text, url.host,
                                 url.port, ec.message()));
  }
  http::request<http::empty_body> req(http::verb::get, std::string(path), 11);
  req.set(http::field::host, url.host);
  req.set(http::field::user_agent, "stallscope-check");
  req.set(http::field::connection, "close");
  stream.expires_after(std::chrono::seconds(30));
  http::write(stream, req, ec);
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(512u * 1024 * 1024);
  if (!ec) http::read(stream, buffer, parser, ec);
  if (ec) throw UsageError(fmt::format("GET {} failed: {}", where, ec.message()));
  http::response<http::string_body> res = parser.release();
  if (res.result() != http::status::ok) {
    throw UsageError(
        fmt::format("GET {} answered {} {}", where, res.result_int(), std::string(res.reason())));
  }
  stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ec);
  return std::move(res.body());
}

// A map-diff input: a file, or for ACTUAL a service's http://HOST:PORT (its /stallz/map.json).
std::string read_map(const std::string& where) {
  if (where.starts_with("http://") || where.starts_with("https://")) {
    return get(parse_url(where), "/stallz/map.json");
  }
  std::ifstream in(where, std::ios::binary);
  if (!in) throw UsageError(fmt::format("map-diff: cannot read \"{}\"", where));
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

int run_map_diff(int argc, char** argv) {
  if (argc != 4) throw UsageError("map-diff needs two arguments: EXPECTED ACTUAL");
  const std::string expected = read_map(argv[2]);
  const std::string actual = read_map(argv[3]);
  std::vector<std::string> differences;
  try {
    differences = stallscope::compare_maps(expected, actual);
  } catch (const std::invalid_argument& e) {
    throw UsageError(fmt::format("map-diff: {} ({} vs {})", e.what(), argv[2], argv[3]));
  }
  for (const std::string& d : differences) fmt::print("{}\n", d);
  if (differences.empty()) {
    fmt::print("the maps match\n");
    return 0;
  }
  fmt::print("{} difference{} from {}\n", differences.size(), differences.size() == 1 ? "" : "s",
             argv[2]);
  return 1;
}

int run(int argc, char** argv) {
  if (argc > 1 && std::string_view(argv[1]) == "map-diff") return run_map_diff(argc, argv);
  std::string url_text, window_text = "10s", config, junit;
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag(argv[i]);
    if (flag == "-h" || flag == "--help") {
      fmt::print("{}", kUsage);
      return 0;
    }
    std::string* target = flag == "--url"      ? &url_text
                          : flag == "--window" ? &window_text
                          : flag == "--config" ? &config
                          : flag == "--junit"  ? &junit
                                               : nullptr;
    if (target == nullptr) throw UsageError(fmt::format("unknown argument \"{}\"", flag));
    if (i + 1 >= argc) throw UsageError(fmt::format("{} needs a value", flag));
    *target = argv[++i];
  }
  if (url_text.empty()) throw UsageError("--url is required");
  const Url url = parse_url(url_text);
  const double window = parse_window(window_text);
  stallscope::check::Thresholds thresholds;
  if (!config.empty()) {
    try {
      thresholds = stallscope::check::load_thresholds(config);
    } catch (const std::invalid_argument& e) {
      throw UsageError(fmt::format("--config: {}", e.what()));
    }
  }

  stallscope::check::Inputs in;
  in.metrics_start = get(url, "/metrics");
  const auto start = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(window));
  in.metrics_end = get(url, "/metrics");
  in.window_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  in.stallz_json = get(url, "/stallz.json");

  stallscope::check::Report report;
  try {
    report = stallscope::check::evaluate(in, thresholds);
  } catch (const std::invalid_argument& e) {
    throw UsageError(
        fmt::format("{} did not answer as a stallscope endpoint: {}", url.text, e.what()));
  }
  fmt::print("{}", stallscope::check::to_text(report));
  if (!junit.empty()) {
    std::ofstream out(junit, std::ios::binary | std::ios::trunc);
    out << stallscope::check::to_junit(report);
    out.close();
    if (!out) throw UsageError(fmt::format("--junit \"{}\" cannot be written", junit));
  }
  return stallscope::check::exit_code(report);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const UsageError& e) {
    fmt::print(stderr, "stallscope-check: {}\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "stallscope-check: {}\n", e.what());
    return 2;
  }
}
