// The wrappers alone, built against the installed package. Exit code 0 when the lock acquisition
// shows up in the registry (or, with STALLSCOPE_ENABLED=0, when nothing does).
#include <cstdio>
#include <mutex>

#include <stallscope/wrappers.hpp>

int main() {
  stallscope::Mutex ledger{"ledger"};
  { std::lock_guard lock(ledger); }
  double got = -1;
  for (const auto& family : stallscope::Registry::global().collect()) {
    if (family.name != "stallscope_lock_acquisitions_total") continue;
    for (const auto& sample : family.samples) {
      for (const auto& [key, value] : sample.labels) {
        if (key == "resource" && value == "ledger") got = sample.value;
      }
    }
  }
  const double want = STALLSCOPE_ENABLED ? 1 : -1;
  std::printf("wrappers consumer: STALLSCOPE_ENABLED=%d, ledger acquisitions %g (want %g)\n",
              STALLSCOPE_ENABLED, got, want);
  return got == want ? 0 : 1;
}
