// Scrape: the time to render /metrics text for 1,000 named locks.
//
// Setup: 1000 stallscope::Mutex with distinct names ("lock-0000" ...), each locked and unlocked
// once by the main thread. Then, timed separately:
//   scrape_registry_collect   Registry::global().collect(): the agent's snapshot alone
//   scrape_collect            stallscope::Collectable{}.Collect(): snapshot + prometheus model
//   scrape_write_text         detail::write_text on the collected families
//   scrape_total              Collect() + write_text(): what one GET /metrics on the Agent's
//                             endpoint costs (see stallz_endpoint.cpp)
//   scrape_text_serializer    prometheus::TextSerializer on the same families, and
//   scrape_total_text_serializer  Collect() + TextSerializer: what a scrape costs when the
//                             Collectable is registered into an application's own Exposer
//   scrape_registry_collect_16_threads, scrape_total_16_threads
//                             the same after 16 threads (alive at once) recorded into every lock:
//                             a scrape sums each cell over every thread's shard
// Runs in registration order (no interleaving): the 16-thread setup only ever adds shards.
#include <algorithm>
#include <barrier>
#include <cstddef>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <benchmark/benchmark.h>
#include <fmt/format.h>
#include <prometheus/text_serializer.h>

#include "stallscope/mutex.hpp"
#include "stallscope/prometheus.hpp"
#include "stallscope/registry.hpp"
#include "text_format.hpp"

namespace {

constexpr int kLocks = 1000;

std::vector<std::unique_ptr<stallscope::Mutex>>& locks() {
  static auto* const v = [] {
    auto* out = new std::vector<std::unique_ptr<stallscope::Mutex>>;
    out->reserve(kLocks);
    for (int i = 0; i < kLocks; ++i) {
      out->push_back(std::make_unique<stallscope::Mutex>(fmt::format("lock-{:04}", i)));
      out->back()->lock();
      out->back()->unlock();
    }
    return out;
  }();
  return *v;
}

void lock_all() {
  for (auto& m : locks()) {
    m->lock();
    m->unlock();
  }
}

// Makes sure `n` threads have recorded into every lock, all alive at once so that each one
// claims its own shard (an exited thread's shard is reused by the next thread).
void ensure_recording_threads(int n) {
  static int have = 1;  // the main thread
  if (have >= n) return;
  const int extra = n - have;
  std::barrier done(extra);
  std::vector<std::thread> threads;
  for (int t = 0; t < extra; ++t) {
    threads.emplace_back([&] {
      lock_all();
      done.arrive_and_wait();
    });
  }
  for (auto& t : threads) t.join();
  have = n;
}

std::size_t lines(const std::string& text) {
  return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n'));
}

void scrape_registry_collect(benchmark::State& state) {
  for (auto _ : state) {
    auto families = stallscope::Registry::global().collect();
    benchmark::DoNotOptimize(families.data());
  }
}

void scrape_collect(benchmark::State& state) {
  for (auto _ : state) {
    auto families = stallscope::Collectable{}.Collect();
    benchmark::DoNotOptimize(families.data());
  }
}

template <class Serialize>
void serialize(benchmark::State& state, Serialize write) {
  const auto families = stallscope::Collectable{}.Collect();
  std::string text;
  for (auto _ : state) {
    text = write(families);
    benchmark::DoNotOptimize(text.data());
  }
  state.counters["lines"] = static_cast<double>(lines(text));
  state.counters["bytes"] = static_cast<double>(text.size());
  // 1: write_text's output is byte for byte prometheus-cpp's.
  const bool same =
      stallscope::detail::write_text(families) == prometheus::TextSerializer().Serialize(families);
  state.counters["same_text"] = same ? 1 : 0;
}

template <class Serialize>
void total(benchmark::State& state, Serialize write) {
  for (auto _ : state) {
    std::string text = write(stallscope::Collectable{}.Collect());
    benchmark::DoNotOptimize(text.data());
  }
  state.counters["lock_series"] = static_cast<double>(
      stallscope::Registry::global().series_count(stallscope::ResourceKind::kLock));
}

std::string write_text(const std::vector<prometheus::MetricFamily>& families) {
  return stallscope::detail::write_text(families);
}

std::string text_serializer(const std::vector<prometheus::MetricFamily>& families) {
  return prometheus::TextSerializer().Serialize(families);
}

void scrape_write_text(benchmark::State& state) { serialize(state, write_text); }
void scrape_total(benchmark::State& state) { total(state, write_text); }
void scrape_text_serializer(benchmark::State& state) { serialize(state, text_serializer); }
void scrape_total_text_serializer(benchmark::State& state) { total(state, text_serializer); }

void scrape_registry_collect_16_threads(benchmark::State& state) {
  ensure_recording_threads(16);
  scrape_registry_collect(state);
}

void scrape_total_16_threads(benchmark::State& state) {
  ensure_recording_threads(16);
  total(state, write_text);
}

}  // namespace

BENCHMARK(scrape_registry_collect)->Unit(benchmark::kMillisecond);
BENCHMARK(scrape_collect)->Unit(benchmark::kMillisecond);
BENCHMARK(scrape_write_text)->Unit(benchmark::kMillisecond);
BENCHMARK(scrape_total)->Unit(benchmark::kMillisecond);
BENCHMARK(scrape_text_serializer)->Unit(benchmark::kMillisecond);
BENCHMARK(scrape_total_text_serializer)->Unit(benchmark::kMillisecond);
BENCHMARK(scrape_registry_collect_16_threads)->Unit(benchmark::kMillisecond);
BENCHMARK(scrape_total_16_threads)->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) {
  locks();  // the 1000 named locks exist before anything is timed
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
