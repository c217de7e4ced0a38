// stallscope-demo: the article's mixed workload as a real Asio service, in a slow and a fixed
// variant, serving stallscope's /metrics and /stallz. See examples/demo/README.md.
#include <stdlib.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <fmt/format.h>
#include <stallscope/agent.hpp>
#include <stallscope/agent_options.hpp>
#include <stallscope/watchdog.hpp>

#include "payload.hpp"
#include "service.hpp"

namespace {

// About 384 KiB of JSON per response: a few milliseconds of parsing on this project's machines.
constexpr std::size_t kPayloadBytes = 512 * 1024;

constexpr std::string_view kUsage =
    "usage: stallscope-demo [--variant slow|fixed] [--duration SECONDS (0: until SIGINT/SIGTERM)]\n"
    "                       [--listen HOST:PORT] [--threads N] [--rate REQUESTS_PER_SECOND]\n"
    "                       [--max-inflight N] [--summary-interval SECONDS (0: off)]\n"
    "                       [--clients N (closed loop: N clients, each sends its next request\n"
    "                        when the last one is done; 0: open loop at --rate)] [--data-dir DIR]\n"
    "                       [--cores N (the fixed variant's parse pool size; 0: this machine's)]\n"
    "defaults: --variant slow --duration 0 --listen $STALLSCOPE_LISTEN or 127.0.0.1:9464\n"
    "          --threads 2 --rate 100 --max-inflight 256 --summary-interval 5\n"
    "          --data-dir: a fresh temporary directory, removed at exit\n";

int usage_error(std::string_view message) {
  std::fprintf(stderr, "stallscope-demo: %.*s\n%.*s", static_cast<int>(message.size()),
               message.data(), static_cast<int>(kUsage.size()), kUsage.data());
  return 2;
}

template <class T>
bool parse_number(std::string_view s, T& out, T min) {
  T v{};
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || !(v >= min)) return false;
  out = v;
  return true;
}

// Median of a few runs, in milliseconds.
double measure_parse_ms(const std::string& payload_template) {
  std::vector<double> runs;
  for (int i = 0; i < 5; ++i) {
    const std::string payload = demo::make_payload(payload_template, static_cast<unsigned>(i));
    const auto t0 = std::chrono::steady_clock::now();
    const demo::ParseResult r = demo::parse_payload(payload);
    const auto t1 = std::chrono::steady_clock::now();
    if (!r.valid) throw std::logic_error("the payload template does not parse");
    runs.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  std::sort(runs.begin(), runs.end());
  return runs[runs.size() / 2];
}

// A fresh directory under the system's temporary directory.
std::string make_temp_dir() {
  std::string pattern =
      (std::filesystem::temp_directory_path() / "stallscope-demo-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) {
    throw std::system_error(errno, std::generic_category(), "mkdtemp " + pattern);
  }
  return pattern;
}

int run(int argc, char** argv) {
  demo::DemoOptions options;
  stallscope::AgentOptions agent_options;
  try {
    agent_options = stallscope::AgentOptions::from_env();
  } catch (const std::invalid_argument& e) {
    return usage_error(e.what());
  }
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (flag == "-h" || flag == "--help") {
      std::fputs(kUsage.data(), stdout);
      return 0;
    }
    if (i + 1 >= argc) return usage_error(fmt::format("{} needs a value", flag));
    const std::string_view value = argv[++i];
    bool ok = true;
    if (flag == "--variant") {
      ok = value == "slow" || value == "fixed";
      options.variant = value == "fixed" ? demo::Variant::kFixed : demo::Variant::kSlow;
    } else if (flag == "--duration") {
      ok = parse_number(value, options.duration_s, 0);
    } else if (flag == "--listen") {
      agent_options.listen = std::string(value);
    } else if (flag == "--threads") {
      ok = parse_number(value, options.threads, 1) && options.threads <= 256;
    } else if (flag == "--rate") {
      ok = parse_number(value, options.rate, 0.1) && options.rate <= 1e6;
    } else if (flag == "--clients") {
      ok = parse_number(value, options.clients, 0) && options.clients <= 100000;
    } else if (flag == "--max-inflight") {
      ok = parse_number(value, options.max_inflight, 1);
    } else if (flag == "--summary-interval") {
      ok = parse_number(value, options.summary_interval_s, 0);
    } else if (flag == "--cores") {
      ok = parse_number(value, options.cores, 0) && options.cores <= 1024;
    } else if (flag == "--data-dir") {
      ok = !value.empty();
      options.data_dir = std::string(value);
    } else {
      return usage_error(fmt::format("unknown flag {}", flag));
    }
    if (!ok) return usage_error(fmt::format("bad value for {}: \"{}\"", flag, value));
  }

  // The endpoint is the point of the demo: a port that cannot be bound is an error here.
  agent_options.throw_on_error = true;
  std::unique_ptr<stallscope::Agent> agent;
  try {
    agent = std::make_unique<stallscope::Agent>(agent_options);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "stallscope-demo: %s\n", e.what());
    return 1;
  }
  if (agent->listening()) {
    fmt::print("stallscope-demo: metrics at {}, status at {}\n", agent->url(), agent->stallz_url());
  } else {
    fmt::print("stallscope-demo: not serving metrics (STALLSCOPE_AGENT=0)\n");
  }
  // The Agent's watchdog reports any task handler that runs for more than 100 ms, while it runs
  // (stderr; STALLSCOPE_WATCHDOG_MS changes the threshold).

  // A temporary data directory is removed however run() returns.
  struct RemoveDir {
    std::string path;
    ~RemoveDir() {
      std::error_code ec;
      if (!path.empty()) std::filesystem::remove_all(path, ec);
    }
  } remove_dir;
  if (options.data_dir.empty()) {
    options.data_dir = make_temp_dir();
    remove_dir.path = options.data_dir;
  }
  std::filesystem::create_directories(options.data_dir);
  const std::string payload_template = demo::make_payload_template(kPayloadBytes, 42);
  const std::string load = options.clients > 0
                               ? fmt::format("{} clients (closed loop)", options.clients)
                               : fmt::format("{:g} requests/s (open loop), at most {} in flight",
                                             options.rate, options.max_inflight);
  fmt::print(
      "stallscope-demo: variant {}, {}, {} executor threads; each response is {} KiB of JSON, "
      "{:.2f} ms to parse here; records in {}\n",
      demo::to_string(options.variant), load, options.threads, payload_template.size() / 1024,
      measure_parse_ms(payload_template), options.data_dir);
  std::fflush(stdout);

  const demo::RunReport report = demo::run_service(options, payload_template);

  const demo::RequestStats::Window& r = report.requests;
  const bool stalled = !report.stalls.empty() && report.stalls.front().waiters > 0;
  const std::string top =
      stalled ? report.stalls.front().kind + "/" + report.stalls.front().resource : "none";
  fmt::print(
      "result variant={} requests={} failed={} rejected={} cancelled={} seconds={:.1f} "
      "throughput={:.1f} p50_ms={:.1f} p99_ms={:.1f} top_stall={} top_stall_waiters={:.2f} "
      "clean_shutdown={}\n",
      demo::to_string(options.variant), r.completed, r.failed, r.rejected, r.cancelled,
      report.seconds, report.seconds > 0 ? static_cast<double>(r.completed) / report.seconds : 0.0,
      r.latency.quantile_ms(0.50), r.latency.quantile_ms(0.99), top,
      stalled ? report.stalls.front().waiters : 0.0, report.clean_shutdown ? "yes" : "no");
  std::fflush(stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "stallscope-demo: %s\n", e.what());
    return 1;
  }
}
