// stallscope-example-locks: worker threads contend on named locks while /metrics is served.
//
//   stallscope-example-locks [--duration SECONDS] [--listen HOST:PORT] [--threads N]
//
// "ledger" is the hot lock (every worker takes it and holds it ~50 us); "sessions" is a reader-
// heavy shared mutex; "conn" is 64 per-connection mutexes sharing one name, barely contended.
#include <atomic>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <stallscope/stallscope.hpp>

namespace {

std::atomic<bool> g_stop{false};

void on_signal(int) { g_stop.store(true); }

void spin_for(std::chrono::nanoseconds d) {
  const auto end = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < end) {
  }
}

int usage(const char* bad) {
  std::fprintf(stderr,
               "stallscope-example-locks: bad argument \"%s\"\n"
               "usage: stallscope-example-locks [--duration SECONDS (0: until Ctrl-C)] "
               "[--listen HOST:PORT] [--threads N]\n",
               bad);
  return 2;
}

bool parse_int(std::string_view s, int& out) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size() && out >= 0;
}

}  // namespace

int main(int argc, char** argv) {
  int duration_s = 0;
  int threads = 4;
  stallscope::AgentOptions options = stallscope::AgentOptions::from_env();
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
    if (arg == "--duration" && value != nullptr && parse_int(value, duration_s)) {
      ++i;
    } else if (arg == "--threads" && value != nullptr && parse_int(value, threads) && threads > 0) {
      ++i;
    } else if (arg == "--listen" && value != nullptr) {
      options.listen = value;
      ++i;
    } else {
      return usage(argv[i]);
    }
  }
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);

  stallscope::Agent agent(options);
  if (agent.listening()) {
    std::printf("stallscope-example-locks: metrics at %s\n", agent.url().c_str());
  } else {
    std::printf("stallscope-example-locks: not serving metrics (%s)\n", agent.error().c_str());
  }
  std::fflush(stdout);

  stallscope::Mutex ledger{"ledger", {.hold_time = true}};
  stallscope::SharedMutex sessions{"sessions", {.hold_time = true}};
  std::vector<std::unique_ptr<stallscope::Mutex>> conns;
  for (int i = 0; i < 64; ++i) conns.push_back(std::make_unique<stallscope::Mutex>("conn"));

  std::atomic<std::uint64_t> ops{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      std::uint64_t n = 0;
      while (!g_stop.load(std::memory_order_relaxed)) {
        {
          std::lock_guard lock(ledger);
          spin_for(std::chrono::microseconds(50));
        }
        for (int r = 0; r < 8; ++r) {
          std::shared_lock lock(sessions);
          spin_for(std::chrono::microseconds(5));
        }
        if (n % 16 == 0) {
          std::lock_guard lock(sessions);
          spin_for(std::chrono::microseconds(20));
        }
        {
          std::lock_guard lock(*conns[(n * 7 + static_cast<std::uint64_t>(t)) % conns.size()]);
          spin_for(std::chrono::microseconds(2));
        }
        std::this_thread::sleep_for(std::chrono::microseconds(100));
        ++n;
      }
      ops.fetch_add(n);
    });
  }

  const auto start = std::chrono::steady_clock::now();
  while (!g_stop.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (duration_s > 0 &&
        std::chrono::steady_clock::now() - start >= std::chrono::seconds(duration_s)) {
      g_stop.store(true);
    }
  }
  for (auto& w : workers) w.join();
  std::printf("stallscope-example-locks: %llu iterations done\n",
              static_cast<unsigned long long>(ops.load()));
  return 0;
}
