// Thread counts for the multi-threaded benchmarks. Each benchmark has its default (the 2-core
// figures of bench/README.md); STALLSCOPE_BENCH_THREADS="1,2,4,8,16" replaces them all, for the
// scaling run on a many-core machine (scripts/bench-scaling.sh). A bad list is named and the
// program exits before running anything.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include <benchmark/benchmark.h>

namespace stallscope_bench {

// The counts STALLSCOPE_BENCH_THREADS asks for; empty when it is unset or empty.
inline const std::vector<int>& scaling_threads() {
  static const std::vector<int> counts = [] {
    std::vector<int> out;
    const char* env = std::getenv("STALLSCOPE_BENCH_THREADS");
    if (env == nullptr) return out;
    std::string_view rest(env);
    while (!rest.empty()) {
      const std::size_t comma = rest.find(',');
      const std::string item(rest.substr(0, comma));
      char* end = nullptr;
      const long n = std::strtol(item.c_str(), &end, 10);
      if (item.empty() || *end != '\0' || n < 1 || n > 1024) {
        std::fprintf(stderr,
                     "STALLSCOPE_BENCH_THREADS=\"%s\": \"%s\" is not a thread count (1-1024)\n",
                     env, item.c_str());
        std::exit(2);
      }
      out.push_back(static_cast<int>(n));
      rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    }
    return out;
  }();
  return counts;
}

// For Benchmark::Apply: Threads(n) for each count asked for, else for each of Defaults.
template <int... Defaults>
void threads(benchmark::internal::Benchmark* b) {
  const std::vector<int>& asked = scaling_threads();
  if (asked.empty()) {
    (b->Threads(Defaults), ...);
  } else {
    for (int n : asked) b->Threads(n);
  }
}

// For Benchmark::Apply on benchmarks that manage their own threads (state.range(0) of them):
// Arg(n) for each count asked for. Register such benchmarks only when scaling_threads() is not
// empty (they have no 2-core default).
inline void thread_args(benchmark::internal::Benchmark* b) {
  for (int n : scaling_threads()) b->Arg(n);
}

}  // namespace stallscope_bench
