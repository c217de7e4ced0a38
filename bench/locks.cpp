// Lock benchmarks: std::mutex (the baseline), stallscope::Mutex with hold timing off (the
// default) and on, and the instrumentation a user would write by hand with prometheus-cpp.
//
//   uncontended_*  one thread, lock + unlock of a lock nobody else touches
//   contended_*    two threads on one lock, each looping lock; 4 increments; unlock. Each thread
//                  is pinned to its own CPU: unpinned, the scheduler sometimes runs both on one
//                  core, they take turns, and the run measures an uncontended loop instead
//   lifecycle_*    a per-object lock's life on the heap: new + delete, and new + lock + unlock +
//                  delete (a stallscope lock named by a literal registers at its first use; one
//                  named at run time, at construction)
//
// Results are per operation (one lock + unlock). scripts/bench.sh turns them into ratios.
//
// The process starts (and joins) one thread before any benchmark runs, so every benchmark sees a
// multi-threaded process, the only kind where a mutex matters. In a process that never started a
// thread, glibc's pthread_mutex_lock/unlock skip their atomic instructions (a plain load and
// store), but pthread_mutex_trylock does not, so std::mutex looks 3x cheaper there than in any
// real service. STALLSCOPE_BENCH_SINGLE_THREADED=1 skips that thread to show the effect (run it
// with --benchmark_filter=uncontended: the contended benchmarks start threads).
#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include <benchmark/benchmark.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "hand_timed.hpp"
#include "stallscope/buckets.hpp"
#include "stallscope/mutex.hpp"
#include "stallscope/options.hpp"
#include "stallscope/registry.hpp"
#include "threads.hpp"

namespace {

// The naive instrumentation: time every acquisition with steady_clock and observe the wait in a
// prometheus-cpp histogram (same bounds as stallscope's), as a user without stallscope would.
using NaiveMutex = stallscope_bench::HandTimed<std::mutex>;

prometheus::Histogram& naive_histogram(const std::string& resource) {
  static auto* const registry = new prometheus::Registry;
  static auto& family = prometheus::BuildHistogram()
                            .Name("app_lock_wait_seconds")
                            .Help("Lock acquisition wait, timed by hand.")
                            .Register(*registry);
  const stallscope::Buckets buckets = stallscope::Buckets::latency();
  const auto bounds = buckets.bounds();
  return family.Add({{"resource", resource}},
                    prometheus::Histogram::BucketBoundaries(bounds.begin(), bounds.end()));
}

template <class Lock>
void lock_unlock(benchmark::State& state, Lock& m) {
  for (auto _ : state) {
    m.lock();
    m.unlock();
  }
  state.SetItemsProcessed(state.iterations());
}

// stallscope's own counters for the lock named `resource`: {acquisitions, contended}.
struct LockCounts {
  double acquisitions = 0;
  double contended = 0;
};

LockCounts lock_counts(std::string_view resource) {
  LockCounts out;
  for (const auto& f : stallscope::Registry::global().collect()) {
    double* field = f.name == "stallscope_lock_acquisitions_total" ? &out.acquisitions
                    : f.name == "stallscope_lock_contended_total"  ? &out.contended
                                                                   : nullptr;
    if (field == nullptr) continue;
    for (const auto& sample : f.samples) {
      for (const auto& [key, value] : sample.labels) {
        if (key == "resource" && value == resource) *field += sample.value;
      }
    }
  }
  return out;
}

// Pins the calling thread to one CPU (thread i to CPU i mod n) for its lifetime, and restores
// its previous affinity on destruction (thread 0 is the main thread, which runs later benchmarks).
class PinnedToCpu {
 public:
  explicit PinnedToCpu(int thread_index) {
    ok_ = pthread_getaffinity_np(pthread_self(), sizeof(saved_), &saved_) == 0;
    const unsigned n = std::max(1u, std::thread::hardware_concurrency());
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(static_cast<unsigned>(thread_index) % n, &one);
    if (ok_) pthread_setaffinity_np(pthread_self(), sizeof(one), &one);
  }
  ~PinnedToCpu() {
    if (ok_) pthread_setaffinity_np(pthread_self(), sizeof(saved_), &saved_);
  }
  PinnedToCpu(const PinnedToCpu&) = delete;
  PinnedToCpu& operator=(const PinnedToCpu&) = delete;

 private:
  cpu_set_t saved_{};
  bool ok_ = false;
};

// Each thread: lock; a small critical section (4 dependent increments); unlock.
template <class Lock>
void contended(benchmark::State& state, Lock& m, std::uint64_t& counter) {
  const PinnedToCpu pin(state.thread_index());
  for (auto _ : state) {
    m.lock();
    for (int i = 0; i < 4; ++i) {
      ++counter;
      benchmark::DoNotOptimize(counter);
    }
    m.unlock();
  }
  state.SetItemsProcessed(state.iterations());
}

// Every lock sits at the start of a cache line, with the data it guards right behind it as user
// code would declare them, so that no variant gains or loses from where the linker put it.
template <class Lock>
struct alignas(64) Guarded {
  template <class... Args>
  explicit Guarded(Args&&... args) : m(std::forward<Args>(args)...) {}
  Lock m;
  std::uint64_t counter = 0;
};

// --- uncontended ---

void uncontended_std_mutex(benchmark::State& state) {
  static Guarded<std::mutex> g;
  lock_unlock(state, g.m);
}

void uncontended_stallscope(benchmark::State& state) {
  static Guarded<stallscope::Mutex> g("bench-uncontended");
  lock_unlock(state, g.m);
}

void uncontended_stallscope_hold(benchmark::State& state) {
  static Guarded<stallscope::Mutex> g("bench-uncontended-hold",
                                      stallscope::LockOptions{.hold_time = true});
  lock_unlock(state, g.m);
}

void uncontended_naive(benchmark::State& state) {
  static Guarded<NaiveMutex> g(naive_histogram("bench-uncontended"));
  lock_unlock(state, g.m);
}

// --- lifecycle: per-object locks (one per connection, per cache entry, striped arrays) ---
// The name already exists (registered before the loop), as for every object after the first.

template <class Lock, class... Args>
void lifecycle(benchmark::State& state, bool use, Args&&... args) {
  for (auto _ : state) {
    auto* m = new Lock(args...);
    benchmark::DoNotOptimize(m);
    if (use) {
      m->lock();
      m->unlock();
    }
    delete m;
  }
  state.SetItemsProcessed(state.iterations());
}

const std::string kLifecycleName = "bench-lifecycle";

void lifecycle_new_std_mutex(benchmark::State& state) { lifecycle<std::mutex>(state, false); }

void lifecycle_new_stallscope(benchmark::State& state) {
  { const stallscope::Mutex warm(kLifecycleName); }  // registers the name
  lifecycle<stallscope::Mutex>(state, false, "bench-lifecycle");
}

void lifecycle_new_stallscope_runtime_name(benchmark::State& state) {
  lifecycle<stallscope::Mutex>(state, false, kLifecycleName);
}

void lifecycle_used_std_mutex(benchmark::State& state) { lifecycle<std::mutex>(state, true); }

void lifecycle_used_stallscope(benchmark::State& state) {
  lifecycle<stallscope::Mutex>(state, true, "bench-lifecycle");
}

void lifecycle_used_stallscope_runtime_name(benchmark::State& state) {
  lifecycle<stallscope::Mutex>(state, true, kLifecycleName);
}

// --- contended (2 threads) ---
// Function-local statics: both threads of a run share the lock and its counter.

void contended_std_mutex(benchmark::State& state) {
  static Guarded<std::mutex> g;
  contended(state, g.m, g.counter);
}

// Also reports which share of the acquisitions had to wait (and so read the clock twice), from
// stallscope's own counters. Thread 0 reads them outside the timed loop; the start and stop
// barriers of the run order the other thread's records before the second read.
void contended_stallscope_named(benchmark::State& state, Guarded<stallscope::Mutex>& g) {
  const LockCounts before = state.thread_index() == 0 ? lock_counts(g.m.name()) : LockCounts{};
  contended(state, g.m, g.counter);
  if (state.thread_index() != 0) return;
  const LockCounts after = lock_counts(g.m.name());
  const double acquisitions = after.acquisitions - before.acquisitions;
  if (acquisitions > 0) {
    state.counters["contended_pct"] = 100 * (after.contended - before.contended) / acquisitions;
  }
}

void contended_stallscope(benchmark::State& state) {
  static Guarded<stallscope::Mutex> g("bench-contended");
  contended_stallscope_named(state, g);
}

void contended_stallscope_hold(benchmark::State& state) {
  static Guarded<stallscope::Mutex> g("bench-contended-hold",
                                      stallscope::LockOptions{.hold_time = true});
  contended_stallscope_named(state, g);
}

void contended_naive(benchmark::State& state) {
  static Guarded<NaiveMutex> g(naive_histogram("bench-contended"));
  contended(state, g.m, g.counter);
}

// --- one lock per thread, every stallscope lock under the same name ---
// No thread waits; what the threads share is stallscope's series for the name (its per-thread
// shards), so this shows whether recording an uncontended lock scales with threads.

template <class Lock, class... Args>
void private_lock(benchmark::State& state, Args&&... args) {
  const PinnedToCpu pin(state.thread_index());
  Guarded<Lock> g(std::forward<Args>(args)...);
  for (auto _ : state) {
    g.m.lock();
    ++g.counter;
    benchmark::DoNotOptimize(g.counter);
    g.m.unlock();
  }
  state.SetItemsProcessed(state.iterations());
}

void private_std_mutex(benchmark::State& state) { private_lock<std::mutex>(state); }

void private_stallscope(benchmark::State& state) {
  private_lock<stallscope::Mutex>(state, "bench-private");
}

}  // namespace

BENCHMARK(uncontended_std_mutex);
BENCHMARK(uncontended_stallscope);
BENCHMARK(uncontended_stallscope_hold);
BENCHMARK(uncontended_naive);

BENCHMARK(lifecycle_new_std_mutex);
BENCHMARK(lifecycle_new_stallscope);
BENCHMARK(lifecycle_new_stallscope_runtime_name);
BENCHMARK(lifecycle_used_std_mutex);
BENCHMARK(lifecycle_used_stallscope);
BENCHMARK(lifecycle_used_stallscope_runtime_name);

// Real time: with two threads the figure that matters is wall-clock throughput.
using stallscope_bench::threads;
BENCHMARK(contended_std_mutex)->Apply(threads<2>)->UseRealTime();
BENCHMARK(contended_stallscope)->Apply(threads<2>)->UseRealTime();
BENCHMARK(contended_stallscope_hold)->Apply(threads<2>)->UseRealTime();
BENCHMARK(contended_naive)->Apply(threads<2>)->UseRealTime();
BENCHMARK(private_std_mutex)->Apply(threads<1, 2>)->UseRealTime();
BENCHMARK(private_stallscope)->Apply(threads<1, 2>)->UseRealTime();

int main(int argc, char** argv) {
  const char* single = std::getenv("STALLSCOPE_BENCH_SINGLE_THREADED");
  if (single == nullptr || std::string_view(single) != "1") std::thread([] {}).join();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
