// The README's quick start, built with the examples so it keeps compiling.
#include <chrono>
#include <thread>
#include <vector>

#include <stallscope/stallscope.hpp>

int main() {
  stallscope::Agent agent;             // serves /metrics on 127.0.0.1:9464 (STALLSCOPE_LISTEN)
  stallscope::Mutex ledger{"ledger"};  // drop-in for std::mutex
  std::vector<std::jthread> workers;
  for (int i = 0; i < 4; ++i) {
    workers.emplace_back([&] {
      for (int n = 0; n < 1'000'000; ++n) {
        std::lock_guard lock(ledger);  // contended waits are timed and recorded under "ledger"
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::seconds(30));  // curl 127.0.0.1:9464/metrics now
}
