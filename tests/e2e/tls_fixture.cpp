// A service as a user writes it, for tls_e2e.mjs: `stallscope::Agent agent;` configured by the
// environment alone. tls_e2e.mjs sets STALLSCOPE_LISTEN=127.0.0.1:0 and STALLSCOPE_WEB_CONFIG to
// a web configuration file (a certificate, a key and a basic-auth user), so this covers the path
// a user takes: the variable, the file loader, the HTTPS server.
//
//   STALLSCOPE_WEB_CONFIG=web.yml STALLSCOPE_LISTEN=127.0.0.1:0 stallscope-tls-fixture PORT_FILE
//
// Writes the bound port to PORT_FILE, then serves until SIGTERM or SIGINT; exits 1 (the Agent's
// error on stderr) when the Agent does not listen. A lock named "e2e-tls", taken twice, gives the
// scrape something exact to show.
#include <cstdio>
#include <mutex>

#include <stallscope/stallscope.hpp>

#include "fixture_support.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s PORT_FILE\n", argv[0]);
    return 2;
  }
  const sigset_t stop = stallscope::e2e::block_stop_signals();  // before any thread starts

  const stallscope::Agent agent;
  if (!agent.listening()) {
    std::fprintf(stderr, "stallscope-tls-fixture: not listening: %s\n", agent.error().c_str());
    return 1;
  }
  stallscope::Mutex lock("e2e-tls");
  for (int i = 0; i < 2; ++i) std::lock_guard l(lock);
  stallscope::e2e::serve_until_stopped(agent, argv[1], stop);
  return 0;
}
