// A process that serves stallscope's endpoint over HTTPS with basic auth, for tls_e2e.mjs: the
// server the Agent runs, built from a web configuration given on the command line.
//
//   stallscope-tls-fixture CERT KEY USER BCRYPT_HASH PORT_FILE
//
// Writes the bound port (127.0.0.1, a free one) to PORT_FILE, then serves until SIGTERM or
// SIGINT. A lock named "e2e-tls", taken twice, gives the scrape something exact to show.
#include <signal.h>

#include <cstdio>
#include <fstream>
#include <mutex>
#include <string>

#include <stallscope/stallscope.hpp>

#include "http_server.hpp"
#include "stallz_endpoint.hpp"
#include "web_config.hpp"

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: %s CERT KEY USER BCRYPT_HASH PORT_FILE\n", argv[0]);
    return 2;
  }
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);  // before any thread starts: sigwait gets them

  stallscope::detail::WebConfig web;
  web.tls = stallscope::detail::WebConfig::Tls{argv[1], argv[2]};
  web.users.push_back({argv[3], argv[4]});
  stallscope::detail::StallzEndpoint stallz(stallscope::Registry::global());
  stallscope::detail::HttpServer server({"127.0.0.1", 0}, {}, std::move(web),
                                        stallscope::detail::StallzEndpoint::paths(),
                                        stallz.handler());
  stallz.start_sampler();

  stallscope::Mutex lock("e2e-tls");
  for (int i = 0; i < 2; ++i) std::lock_guard l(lock);
  {
    std::ofstream out(std::string(argv[5]) + ".tmp");
    out << server.port() << "\n";
  }
  std::rename((std::string(argv[5]) + ".tmp").c_str(), argv[5]);  // whole, or not there
  std::printf("serving https://127.0.0.1:%d/metrics\n", server.port());
  std::fflush(stdout);
  int sig = 0;
  sigwait(&stop, &sig);
  return 0;
}
