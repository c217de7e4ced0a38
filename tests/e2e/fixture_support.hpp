#pragma once
// What the e2e fixtures share: the signals that stop them, and the port file their scripts wait
// for.
#include <signal.h>

#include <cstdio>
#include <fstream>
#include <string>

#include <stallscope/agent.hpp>

namespace stallscope::e2e {

// SIGTERM and SIGINT, blocked on the calling thread (call it before any thread starts: every
// thread inherits the mask, so wait_for_stop() gets them).
inline sigset_t block_stop_signals() {
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  return stop;
}

// Writes the agent's port to `path` (whole, or not there), says where it serves, and waits for
// SIGTERM or SIGINT.
inline void serve_until_stopped(const Agent& agent, const std::string& path, const sigset_t& stop) {
  {
    std::ofstream out(path + ".tmp");
    out << agent.port() << "\n";
  }
  std::rename((path + ".tmp").c_str(), path.c_str());
  std::printf("serving %s\n", agent.url().c_str());
  std::fflush(stdout);
  int sig = 0;
  sigwait(&stop, &sig);
}

}  // namespace stallscope::e2e
