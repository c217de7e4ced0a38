#pragma once
// Helpers for the exporter tests: an Agent's options on an ephemeral port, a real HTTP GET
// (CivetWeb's client), exact lookups in the Prometheus text format, running promtool, a log
// capture, an environment-variable guard and two threads deadlocked on two locks.

#include <civetweb.h>
#include <fcntl.h>
#include <spawn.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <latch>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "stallscope/agent_options.hpp"
#include "stallscope/log.hpp"
#include "stallscope/mutex.hpp"

extern char** environ;

namespace stallscope::test {

// CivetWeb wants mg_init_library() once, before any other call and before any thread uses it;
// a dynamic initializer runs before main(), so before any Agent starts its server threads.
inline const unsigned kCivetwebFeatures = mg_init_library(0);

// An Agent listening on an ephemeral port of 127.0.0.1 (Agent::port() says which).
inline AgentOptions ephemeral() { return AgentOptions{.listen = "127.0.0.1:0"}; }

struct HttpResponse {
  int status = 0;
  std::string content_type;
  std::string body;
};

// One GET over a real TCP connection. Throws std::runtime_error when there is no answer.
inline HttpResponse http_get(const std::string& host, int port, const std::string& path) {
  char err[256] = "";
  mg_connection* raw = mg_connect_client(host.c_str(), port, 0, err, sizeof err);
  if (raw == nullptr) {
    throw std::runtime_error(fmt::format("cannot connect to {}:{}: {}", host, port, err));
  }
  const std::unique_ptr<mg_connection, void (*)(mg_connection*)> conn(raw, mg_close_connection);
  mg_printf(raw, "GET %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n", path.c_str(),
            host.c_str(), port);
  if (mg_get_response(raw, err, sizeof err, 30000) < 0) {
    throw std::runtime_error(fmt::format("no response from {}:{}{}: {}", host, port, path, err));
  }
  HttpResponse r;
  const mg_response_info* info = mg_get_response_info(raw);
  r.status = info->status_code;
  for (int i = 0; i < info->num_headers; ++i) {
    if (strcasecmp(info->http_headers[i].name, "Content-Type") == 0) {
      r.content_type = info->http_headers[i].value;
    }
  }
  char buf[16384];
  for (int n; (n = mg_read(raw, buf, sizeof buf)) > 0;) {
    r.body.append(buf, static_cast<std::size_t>(n));
  }
  return r;
}

// GET /metrics on 127.0.0.1:port; throws unless it answers 200.
inline std::string scrape(int port) {
  HttpResponse r = http_get("127.0.0.1", port, "/metrics");
  if (r.status != 200) {
    throw std::runtime_error(fmt::format("GET /metrics answered {}: {}", r.status, r.body));
  }
  return std::move(r.body);
}

// Scrapes until pred(body) holds, for at most `deadline`; returns the last body. Callers assert
// pred on the result, so a condition that never comes fails the test with the text to read.
template <class Pred>
std::string scrape_until(int port, Pred pred,
                         std::chrono::steady_clock::duration deadline = std::chrono::seconds(30)) {
  const auto end = std::chrono::steady_clock::now() + deadline;
  std::string body = scrape(port);
  while (!pred(body) && std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));  // poll interval, not a sync
    body = scrape(port);
  }
  return body;
}

inline std::vector<std::string_view> lines_of(std::string_view text) {
  std::vector<std::string_view> out;
  while (!text.empty()) {
    const auto nl = text.find('\n');
    out.push_back(text.substr(0, nl));
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return out;
}

// True when `line` is one whole line of `text`.
inline bool has_line(std::string_view text, std::string_view line) {
  for (std::string_view l : lines_of(text)) {
    if (l == line) return true;
  }
  return false;
}

// The value of the sample whose name-and-labels are exactly `series`; nullopt when absent.
inline std::optional<double> value_of(std::string_view text, std::string_view series) {
  for (std::string_view l : lines_of(text)) {
    if (l.size() > series.size() && l.starts_with(series) && l[series.size()] == ' ') {
      const std::string v(l.substr(series.size() + 1));
      char* end = nullptr;
      const double d = std::strtod(v.c_str(), &end);
      if (end == v.c_str()) return std::nullopt;
      return d;
    }
  }
  return std::nullopt;
}

// `name{kind="lock",resource="<resource>",op="exclusive"<extra>}`: a lock series as exported.
inline std::string lock_series(std::string_view name, std::string_view resource,
                               std::string_view extra = {}) {
  return fmt::format("{}{{kind=\"lock\",resource=\"{}\",op=\"exclusive\"{}}}", name, resource,
                     extra);
}

struct ProcessResult {
  int exit_status = -1;  // -1: did not exit normally
  std::string output;    // stdout and stderr together
};

// Runs `argv` with `input` on its stdin (from a temporary file) and collects its output.
inline ProcessResult run_with_input(const std::vector<std::string>& argv,
                                    const std::string& input) {
  std::string path = (std::filesystem::temp_directory_path() / "stallscope-test-XXXXXX").string();
  const int fd = mkstemp(path.data());
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "mkstemp");
  struct Unlink {
    const std::string& p;
    ~Unlink() { ::unlink(p.c_str()); }
  } unlink_tmp{path};
  for (std::size_t done = 0; done < input.size();) {
    const ssize_t n = ::write(fd, input.data() + done, input.size() - done);
    if (n < 0) {
      ::close(fd);
      throw std::system_error(errno, std::generic_category(), "write");
    }
    done += static_cast<std::size_t>(n);
  }
  ::close(fd);

  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, path.c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_adddup2(&actions, out[1], 2);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(out[1]);
  if (rc != 0) {
    ::close(out[0]);
    throw std::system_error(rc, std::generic_category(), "posix_spawn " + argv[0]);
  }
  ProcessResult r;
  char buf[4096];
  for (ssize_t n; (n = ::read(out[0], buf, sizeof buf)) != 0;) {
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    r.output.append(buf, static_cast<std::size_t>(n));
  }
  ::close(out[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) r.exit_status = WEXITSTATUS(status);
  return r;
}

// Captures every log message while alive; restores the default sink after.
class LogCapture {
 public:
  LogCapture() {
    set_log_sink([this](LogLevel, std::string_view message) {
      std::lock_guard lock(mu_);
      messages_.emplace_back(message);
    });
  }
  ~LogCapture() { set_log_sink({}); }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

  std::vector<std::string> messages() const {
    std::lock_guard lock(mu_);
    return messages_;
  }
  std::string all() const {
    std::string out;
    for (const std::string& m : messages()) out += m + '\n';
    return out;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> messages_;
};

// Sets (or, with nullptr, unsets) an environment variable and restores it on destruction.
// Use only while no other thread reads the environment.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value != nullptr) {
      ::setenv(name, value, 1);
    } else {
      ::unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// Two threads deadlocked on two locks named `a_name` and `b_name`. x takes a, then waits for b
// for as long as it takes: one continuous wait. y takes b, then waits for a in timed attempts
// of 10 ms so that the test can make it give up; giving up releases b, which lets x finish.
// stop() (or the destructor, even after a failed REQUIRE) makes y give up and joins both.
// y_longest_gap() bounds from above the longest time y spent outside a wait for a between two
// attempts (the span from the start of one attempt to the end of the next, less the two
// timeouts that each attempt lasts at least): the cycle is broken only in those gaps.
class Deadlock {
 public:
  Deadlock(const char* a_name, const char* b_name)
      : a_(a_name),
        b_(b_name),
        x_([&a = a_, &b = b_, this] {
          std::lock_guard la(a);
          both_hold_.arrive_and_wait();
          std::lock_guard lb(b);
        }),
        y_([&a = a_, &b = b_, this](std::stop_token stop) {
          std::lock_guard lb(b);
          both_hold_.arrive_and_wait();
          constexpr auto kAttempt = std::chrono::milliseconds(10);
          std::optional<std::chrono::steady_clock::time_point> previous_start;
          do {
            const auto start = std::chrono::steady_clock::now();
            if (a.try_lock_for(kAttempt)) {
              y_got_a_ = true;
              a.unlock();
              return;
            }
            if (previous_start) {
              const auto gap = std::chrono::steady_clock::now() - *previous_start - 2 * kAttempt;
              y_longest_gap_ = std::max(y_longest_gap_, gap);
            }
            previous_start = start;
            ++y_timeouts_;
          } while (!stop.stop_requested());
        }) {}
  Deadlock(const Deadlock&) = delete;
  Deadlock& operator=(const Deadlock&) = delete;

  void stop() {
    y_.request_stop();
    y_.join();
    x_.join();
  }
  // How often y gave up waiting for a, and whether it ever got it; read after stop().
  int y_timeouts() const { return y_timeouts_; }
  bool y_got_a() const { return y_got_a_; }
  std::chrono::steady_clock::duration y_longest_gap() const { return y_longest_gap_; }

 private:
  TimedMutex a_;
  TimedMutex b_;
  std::latch both_hold_{2};
  int y_timeouts_ = 0;  // written by y
  bool y_got_a_ = false;
  std::chrono::steady_clock::duration y_longest_gap_{};
  std::jthread x_;
  std::jthread y_;  // last: stopped and joined first, which lets x finish
};

}  // namespace stallscope::test
