// The Agent's endpoint under load, and its memory after large scrapes. Prints markdown tables.
//
//   stallscope-bench-endpoint flood [SECONDS]     64 keep-alive clients GET /metrics (1,000 named
//                                                 locks) as fast as they can: latency and
//                                                 requests/s; and the application's throughput
//                                                 (2 threads: lock, 2 us of work, unlock) alone,
//                                                 during the flood, and during one scrape a second
//   stallscope-bench-endpoint memory [--no-trim]  10,000 lock names (cap raised): RSS before and
//                                                 after three scrapes of the ~32 MB /metrics,
//                                                 served with or without malloc_trim after large
//                                                 bodies (run it once each way: RSS is per process)
//   stallscope-bench-endpoint shutdown            Agent construction and destruction times with
//                                                 64 idle connections open, 20 times
//
// The clients run in this process, on the same 2 cores as the server and the application: the
// flood's figures are what a machine that also runs its clients gets.
#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include "http_server.hpp"
#include "raw_http.hpp"
#include "stallscope/agent.hpp"
#include "stallscope/config.hpp"
#include "stallscope/mutex.hpp"
#include "stallscope/registry.hpp"
#include "stallz_endpoint.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
namespace st = stallscope::test;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

double rss_mb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("VmRSS:")) return std::strtod(line.c_str() + 6, nullptr) / 1024.0;
  }
  return -1;
}

std::vector<std::unique_ptr<stallscope::Mutex>> make_locks(int n) {
  std::vector<std::unique_ptr<stallscope::Mutex>> out;
  out.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    out.push_back(std::make_unique<stallscope::Mutex>(fmt::format("lock-{:05}", i)));
    std::lock_guard lock(*out.back());
  }
  return out;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
}

// The application: 2 threads, each looping lock; ~2 us of arithmetic; unlock on its own lock
// (and every 64th iteration on a shared one). Returns operations per second.
double app_throughput(std::chrono::milliseconds duration) {
  stallscope::Mutex shared("app-shared");
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> ops{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      stallscope::Mutex own(t == 0 ? "app-0" : "app-1");
      std::uint64_t n = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        std::lock_guard lock(n % 64 == 0 ? shared : own);
        std::uint64_t x = n;
        for (int i = 0; i < 600; ++i) x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        benchmark::DoNotOptimize(x);
        ++n;
      }
      ops.fetch_add(n);
    });
  }
  const auto t0 = Clock::now();
  std::this_thread::sleep_for(duration);
  stop.store(true);
  for (auto& t : threads) t.join();
  return static_cast<double>(ops.load()) / (ms_since(t0) / 1000.0);
}

int flood(int seconds) {
  const auto locks = make_locks(1000);
  stallscope::Agent agent(stallscope::AgentOptions{.listen = "127.0.0.1:0"});
  if (!agent.listening()) {
    std::fprintf(stderr, "not listening: %s\n", agent.error().c_str());
    return 1;
  }
  const int port = agent.port();
  const auto duration = std::chrono::milliseconds(seconds * 1000);

  // One client alone, for reference: 20 sequential scrapes.
  std::vector<double> single;
  for (int i = 0; i < 20; ++i) {
    const auto t0 = Clock::now();
    st::roundtrip(port, st::get_request("/metrics"));
    single.push_back(ms_since(t0));
  }

  const double alone = app_throughput(duration);

  // One scrape a second, as Prometheus does, with the application running.
  std::atomic<bool> stop{false};
  std::thread scraper([&] {
    while (!stop.load()) {
      st::roundtrip(port, st::get_request("/metrics"));
      for (int i = 0; i < 100 && !stop.load(); ++i) std::this_thread::sleep_for(10ms);
    }
  });
  const double with_scrapes = app_throughput(duration);
  stop.store(true);
  scraper.join();

  // The flood: 64 keep-alive clients.
  stop.store(false);
  std::mutex mu;
  std::vector<double> latencies;
  std::atomic<int> failures{0};
  std::vector<std::thread> clients;
  std::atomic<double> app_during{0};
  const auto t0 = Clock::now();
  for (int c = 0; c < 64; ++c) {
    clients.emplace_back([&] {
      std::vector<double> mine;
      try {
        st::Socket s = st::connect_local(port);
        const std::string req = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
        while (!stop.load()) {
          const auto r0 = Clock::now();
          if (!st::send_all(s, req)) break;
          const auto r = st::read_response(s, false, 60s);
          if (!r || r->status != 200) {
            failures.fetch_add(1);
            s = st::connect_local(port);
            continue;
          }
          mine.push_back(ms_since(r0));
        }
      } catch (const std::exception&) {
        failures.fetch_add(1);
      }
      std::lock_guard lock(mu);
      latencies.insert(latencies.end(), mine.begin(), mine.end());
    });
  }
  app_during.store(app_throughput(duration));
  stop.store(true);
  for (auto& t : clients) t.join();
  const double elapsed_s = ms_since(t0) / 1000.0;

  std::printf("| scenario | value |\n|---|---:|\n");
  std::printf("| /metrics size | %zu bytes |\n",
              st::roundtrip(port, st::get_request("/metrics"))->body.size());
  std::printf("| one client alone: latency p50 / max (20 scrapes) | %.1f / %.1f ms |\n",
              percentile(single, 0.5), percentile(single, 1.0));
  std::printf("| flood: requests answered (64 clients, %d s) | %zu |\n", seconds, latencies.size());
  std::printf("| flood: requests per second | %.0f |\n",
              static_cast<double>(latencies.size()) / elapsed_s);
  std::printf("| flood: latency p50 / p99 / max | %.1f / %.1f / %.1f ms |\n",
              percentile(latencies, 0.5), percentile(latencies, 0.99), percentile(latencies, 1.0));
  std::printf("| flood: failed requests | %d |\n", failures.load());
  std::printf("| application alone | %.0f ops/s (1.00x) |\n", alone);
  std::printf("| application, one scrape a second | %.0f ops/s (%.2fx) |\n", with_scrapes,
              with_scrapes / alone);
  std::printf("| application during the flood | %.0f ops/s (%.2fx) |\n", app_during.load(),
              app_during.load() / alone);
  return 0;
}

// Reads one whole /metrics response (optionally gzipped) and returns its body size. The body is
// counted, not kept: the client shares this process, and a 32 MB copy on its side would be in
// the RSS measured for the server.
std::size_t scrape_size(int port, bool gzip) {
  const st::Socket s = st::connect_local(port);
  st::send_all(s, st::get_request("/metrics", gzip ? "Accept-Encoding: gzip\r\n" : ""));
  std::size_t total = 0;
  std::size_t head_end = std::string::npos;
  std::string head;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::recv(s.fd(), buf, sizeof buf, 0);
    if (n <= 0) break;
    if (head_end == std::string::npos) {
      head.append(buf, static_cast<std::size_t>(n));
      head_end = head.find("\r\n\r\n");
      if (head_end != std::string::npos) total = head.size() - head_end - 4;
    } else {
      total += static_cast<std::size_t>(n);
    }
  }
  return total;
}

int memory(bool trim) {
  stallscope::Config config;
  config.max_resources_per_kind = 20'000;
  stallscope::Registry::global().configure(config);
  const double start = rss_mb();
  const auto locks = make_locks(10'000);
  const double with_locks = rss_mb();
  stallscope::detail::StallzEndpoint stallz(stallscope::Registry::global());
  stallscope::detail::HttpServerOptions options;
  if (!trim) options.trim_after_bytes = 0;
  stallscope::detail::HttpServer server(
      {"127.0.0.1", 0}, options, {}, stallscope::detail::StallzEndpoint::paths(), stallz.handler());
  const double serving = rss_mb();
  std::printf("| malloc_trim after large bodies | %s |\n|---|---:|\n", trim ? "yes" : "no");
  std::printf("| RSS at start | %.1f MB |\n", start);
  std::printf("| RSS with 10,000 lock names | %.1f MB |\n", with_locks);
  std::printf("| RSS serving, before any scrape | %.1f MB |\n", serving);
  double peak = 0;
  for (int i = 1; i <= 3; ++i) {
    const std::size_t bytes = scrape_size(server.port(), false);
    std::this_thread::sleep_for(1s);  // the trim runs on a pool thread after the write
    peak = std::max(peak, rss_mb());
    std::printf("| RSS after scrape %d (%.1f MB of text) | %.1f MB |\n", i,
                static_cast<double>(bytes) / 1e6, rss_mb());
  }
  const std::size_t zipped = scrape_size(server.port(), true);
  std::this_thread::sleep_for(200ms);
  std::printf("| RSS after a gzip scrape (%.1f MB sent) | %.1f MB |\n",
              static_cast<double>(zipped) / 1e6, rss_mb());
  const auto t0 = Clock::now();
  malloc_trim(0);
  std::printf("| malloc_trim(0) here takes | %.2f ms |\n", ms_since(t0));
  std::printf("| RSS after it | %.1f MB |\n", rss_mb());
  return 0;
}

int shutdown_times() {
  const auto locks = make_locks(1000);
  std::vector<double> construct;
  std::vector<double> destroy;
  for (int i = 0; i < 20; ++i) {
    auto t0 = Clock::now();
    auto agent =
        std::make_unique<stallscope::Agent>(stallscope::AgentOptions{.listen = "127.0.0.1:0"});
    construct.push_back(ms_since(t0));
    std::vector<st::Socket> idle;
    for (int c = 0; c < 64; ++c) idle.push_back(st::connect_local(agent->port()));
    st::roundtrip(agent->port(), st::get_request("/metrics"));
    t0 = Clock::now();
    agent.reset();
    destroy.push_back(ms_since(t0));
  }
  // Memory per idle connection: RSS before and after 2,000 connections that send nothing (the
  // client ends are file descriptors only; both ends' kernel buffers are not in RSS).
  double per_idle_kb = 0;
  {
    stallscope::Agent agent(stallscope::AgentOptions{
        .listen = "127.0.0.1:0", .max_connections = 4096, .request_timeout = 60s});
    st::roundtrip(agent.port(), st::get_request("/metrics"));
    malloc_trim(0);
    const double before = rss_mb();
    std::vector<st::Socket> idle;
    for (int c = 0; c < 2000; ++c) idle.push_back(st::connect_local(agent.port()));
    // The server has accepted (and started reading) all of them once the last one is answered.
    st::send_all(idle.back(), "GET /stallz.json HTTP/1.1\r\nHost: x\r\n\r\n");
    st::read_response(idle.back());
    per_idle_kb = (rss_mb() - before) * 1024.0 / 2000.0;
  }
  std::printf(
      "| Agent, 1,000 locks, 64 idle connections (20 runs) | median | max |\n|---|---:|---:|\n");
  std::printf("| construction | %.2f ms | %.2f ms |\n", percentile(construct, 0.5),
              percentile(construct, 1.0));
  std::printf("| destruction | %.2f ms | %.2f ms |\n", percentile(destroy, 0.5),
              percentile(destroy, 1.0));
  std::printf("\nRSS per idle connection (2,000 open): %.2f KiB\n", per_idle_kb);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "flood") return flood(argc > 2 ? std::atoi(argv[2]) : 5);
  if (mode == "memory") return memory(!(argc > 2 && std::strcmp(argv[2], "--no-trim") == 0));
  if (mode == "shutdown") return shutdown_times();
  std::fprintf(stderr, "usage: %s flood [SECONDS] | memory [--no-trim] | shutdown\n", argv[0]);
  return 2;
}
