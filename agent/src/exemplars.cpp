// Exemplars of the wait histograms: the newest contended wait of each bucket, with the task that
// waited and the application's trace id (stallscope/trace.hpp), read at scrape time for the
// OpenMetrics output.
//
// A slot is written under a sequence counter (a seqlock): a writer makes the counter odd with a
// compare-and-swap, writes the fields and makes it even again; a reader copies the fields between
// two reads of the counter and keeps the copy only if both saw the same even value. Two waits
// ending in one bucket at once: the one that finds the slot being written drops its exemplar
// (the slot gets an exemplar just as new), so a writer never waits.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <new>
#include <span>
#include <string>

#include "stallscope/clock.hpp"
#include "stallscope/detail/histogram.hpp"
#include "stallscope/detail/series.hpp"
#include "stallscope/detail/slice.hpp"
#include "stallscope/detail/task_recorder.hpp"
#include "stallscope/trace.hpp"

namespace stallscope {

namespace {

constinit std::atomic<TraceIdProvider> g_provider{nullptr};

}  // namespace

void set_trace_id_provider(TraceIdProvider provider) noexcept {
  g_provider.store(provider, std::memory_order_release);
}

TraceIdProvider trace_id_provider() noexcept { return g_provider.load(std::memory_order_acquire); }

namespace detail {

namespace {

constexpr std::size_t kTraceWords = kMaxTraceIdLength / 8;
static_assert(kMaxTraceIdLength % 8 == 0);

}  // namespace

// Every field is an atomic (written and read relaxed), so a read that races a write is no data
// race; the sequence counter tells the reader whether its copy is whole.
struct alignas(64) ExemplarSlot {
  std::atomic<std::uint32_t> seq{0};  // odd: being written; 0: never written
  std::atomic<std::uint32_t> trace_n{0};
  std::atomic<std::int64_t> value_ns{0};
  std::atomic<std::int64_t> at_ns{0};             // now_ns() when the wait ended
  std::atomic<const std::string*> task{nullptr};  // a task series' name: series live forever
  std::atomic<std::uint64_t> trace[kTraceWords] = {};
};

namespace {

// The trace id of the calling thread's request, from the application's provider: its length
// (0: none, or the provider failed).
std::size_t current_trace_id(char (&out)[kMaxTraceIdLength]) noexcept {
  const TraceIdProvider provider = g_provider.load(std::memory_order_acquire);
  if (provider == nullptr) return 0;
  std::size_t n = 0;
  try {
    n = provider(std::span<char, kMaxTraceIdLength>(out));
  } catch (...) {
    return 0;  // the application's exception: no trace id for this wait, nothing else changes
  }
  if (n > kMaxTraceIdLength) return 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (out[i] <= ' ' || out[i] > '~') return 0;  // printable ASCII without spaces only
  }
  return n;
}

ExemplarSlot* slots_of(const WaitHistogramCells& h) noexcept {
  if (ExemplarSlot* s = h.exemplars.load(std::memory_order_acquire)) return s;
  auto* fresh = new (std::nothrow) ExemplarSlot[h.layout->bucket_count()];
  if (fresh == nullptr) return nullptr;
  ExemplarSlot* expected = nullptr;
  // Release: a thread that loads the pointer (acquire) sees the slots constructed.
  if (h.exemplars.compare_exchange_strong(expected, fresh, std::memory_order_acq_rel,
                                          std::memory_order_acquire)) {
    return fresh;
  }
  delete[] fresh;  // another wait allocated them first
  return expected;
}

// Unix time minus now_ns(), in nanoseconds: turns a recorded now_ns() into wall-clock time.
std::int64_t unix_offset_ns() noexcept {
  const auto unix = std::chrono::duration_cast<std::chrono::nanoseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
  return static_cast<std::int64_t>(unix) - now_ns();
}

}  // namespace

constinit thread_local bool ExemplarsWanted::wanted_ = false;

WaitHistogramCells::~WaitHistogramCells() { delete[] exemplars.load(std::memory_order_acquire); }

void WaitHistogramCells::keep_exemplar(std::int64_t ns, std::int64_t end_ns) const noexcept {
  if (base == kNoCell) return;  // out of cells: this histogram records nothing
  const std::string* task = nullptr;
  if (const SliceContext* sc = tls_slice; sc != nullptr && sc->series != nullptr) {
    task = &static_cast<const Series*>(sc->series)->name();
  }
  char trace[kMaxTraceIdLength];
  const std::size_t trace_n = current_trace_id(trace);
  if (task == nullptr && trace_n == 0) return;  // nothing to link the wait to
  ExemplarSlot* slots = slots_of(*this);
  if (slots == nullptr) return;
  if (ns < 0) ns = 0;
  ExemplarSlot& slot = slots[layout->index(ns)];

  std::uint32_t seq = slot.seq.load(std::memory_order_relaxed);
  if ((seq & 1) != 0 ||
      !slot.seq.compare_exchange_strong(seq, seq + 1, std::memory_order_relaxed)) {
    return;  // another wait is writing this slot now
  }
  // Ordering argument: the release fence orders the odd counter before the field stores below;
  // a reader that sees any of them and then fences (acquire) reads the counter as odd or newer,
  // and discards its copy. The final release store publishes the fields with the even counter.
  std::atomic_thread_fence(std::memory_order_release);
  std::uint64_t words[kTraceWords] = {};
  std::memcpy(words, trace, trace_n);
  for (std::size_t i = 0; i < kTraceWords; ++i) {
    slot.trace[i].store(words[i], std::memory_order_relaxed);
  }
  slot.trace_n.store(static_cast<std::uint32_t>(trace_n), std::memory_order_relaxed);
  slot.value_ns.store(ns, std::memory_order_relaxed);
  slot.at_ns.store(end_ns, std::memory_order_relaxed);
  slot.task.store(task, std::memory_order_relaxed);
  slot.seq.store(seq + 2, std::memory_order_release);
}

HistogramSnapshot read(const WaitHistogramCells& h) {
  HistogramSnapshot out = read(static_cast<const HistogramCells&>(h));
  const ExemplarSlot* slots = h.exemplars.load(std::memory_order_acquire);
  if (slots == nullptr || !ExemplarsWanted::now()) return out;
  const std::int64_t offset = unix_offset_ns();
  out.exemplars.resize(h.layout->bucket_count());
  for (std::uint32_t b = 0; b < h.layout->bucket_count(); ++b) {
    const ExemplarSlot& slot = slots[b];
    // A few tries: a slot is rewritten only when a wait ends in its bucket, which takes far
    // longer than this copy. One being written all along is left out of this scrape.
    for (int attempt = 0; attempt < 4; ++attempt) {
      const std::uint32_t seq = slot.seq.load(std::memory_order_acquire);
      if (seq == 0) break;
      if ((seq & 1) != 0) continue;
      std::uint64_t words[kTraceWords];
      for (std::size_t i = 0; i < kTraceWords; ++i) {
        words[i] = slot.trace[i].load(std::memory_order_relaxed);
      }
      const std::uint32_t trace_n = slot.trace_n.load(std::memory_order_relaxed);
      const std::int64_t value_ns = slot.value_ns.load(std::memory_order_relaxed);
      const std::int64_t at_ns = slot.at_ns.load(std::memory_order_relaxed);
      const std::string* task = slot.task.load(std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_acquire);
      if (slot.seq.load(std::memory_order_relaxed) != seq) continue;

      ExemplarSnapshot& e = out.exemplars[b];
      char trace[kMaxTraceIdLength];
      std::memcpy(trace, words, sizeof trace);
      // The trace id first: when the labels must be cut to OpenMetrics' 128 characters, the
      // writer keeps the link to the trace and drops the task name.
      if (trace_n != 0 && trace_n <= kMaxTraceIdLength) {
        e.labels.emplace_back("trace_id", std::string(trace, trace_n));
      }
      if (task != nullptr) e.labels.emplace_back("task", *task);
      e.value = static_cast<double>(value_ns) * 1e-9;
      e.timestamp = static_cast<double>(at_ns + offset) * 1e-9;
      break;
    }
  }
  return out;
}

}  // namespace detail
}  // namespace stallscope
