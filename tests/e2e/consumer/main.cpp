// The README quick start, built against the installed package. Exit code 0 when the lock
// acquisition shows up in the registry (or, with STALLSCOPE_ENABLED=0, when nothing does).
#include <cstdio>
#include <mutex>

#include <stallscope/stallscope.hpp>

namespace {

// Value of stallscope_lock_acquisitions_total{resource="ledger"}, or -1 when absent.
double ledger_acquisitions() {
  for (const auto& family : stallscope::Registry::global().collect()) {
    if (family.name != "stallscope_lock_acquisitions_total") continue;
    for (const auto& sample : family.samples) {
      for (const auto& [key, value] : sample.labels) {
        if (key == "resource" && value == "ledger") return sample.value;
      }
    }
  }
  return -1;
}

}  // namespace

int main() {
  stallscope::Agent agent{stallscope::AgentOptions{.listen = "127.0.0.1:0"}};
  if (!agent.listening()) {
    std::fprintf(stderr, "consumer: agent not listening: %s\n", agent.error().c_str());
    return 1;
  }
  std::printf("consumer: metrics at %s\n", agent.url().c_str());

  stallscope::Mutex ledger{"ledger"};
  { std::lock_guard lock(ledger); }

  const double got = ledger_acquisitions();
#if STALLSCOPE_ENABLED
  constexpr double kWant = 1;
#else
  constexpr double kWant = -1;  // compiled out: the wrapper is a bare std::mutex
#endif
  std::printf("consumer: STALLSCOPE_ENABLED=%d, ledger acquisitions %g (want %g)\n",
              STALLSCOPE_ENABLED, got, kWant);
  return got == kWant ? 0 : 1;
}
