// Contention profiles (stallscope/profile.hpp): the sampler, the stack capture, the aggregated
// samples and the waits in progress. The exporter symbolizes and encodes (pprof.cpp).
//
// Stacks are captured as raw return addresses with _Unwind_Backtrace (libgcc's unwinder, part of
// every GCC and Clang toolchain: no package), the cheapest portable way that needs no frame
// pointers: a few microseconds (bench/README.md), paid only by a sampled event. Symbolizing is
// the expensive part (it reads DWARF) and happens only when a profile is served.
//
// Waits in progress: a thread blocked in a lock cannot capture its own stack, and capturing it
// at every contended wait's start would cost every wait the unwind. So the stack of a wait still
// in progress is read only when a profile is asked for: the reader sends the waiting thread a
// signal (kStackSignal) whose handler unwinds that thread's own stack into its slot. The handler
// is installed only if the signal has no handler of the application's; a wait in progress is
// listed with its age either way.
#include "stallscope/profile.hpp"

#include <pthread.h>
#include <unwind.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "env.hpp"
#include "stallscope/clock.hpp"
#include "stallscope/detail/profile_hooks.hpp"
#include "stallscope/detail/series.hpp"
#include "stallscope/detail/slice.hpp"
#include "stallscope/detail/task_recorder.hpp"
#include "stallscope/detail/waitfor.hpp"
#include "stallscope/registry.hpp"

namespace stallscope {

namespace {

// By op index (profile_hooks.hpp): the lock ops (LockOp), then the async primitives' waits.
constexpr std::string_view kOpNames[6] = {"exclusive", "shared", "acquire",
                                          "send",      "queue",  "schedule"};
using detail::kOpAcquire;
constexpr int kMaxFrames = detail::kProfileFrames;
// Distinct (stack, resource, op, task) rows kept per profile; further ones are dropped (counted).
constexpr std::size_t kMaxRows = 20'000;

std::atomic<std::uint8_t> g_mode{static_cast<std::uint8_t>(ProfileRate::Mode::kDelay)};
std::atomic<std::uint64_t> g_every{1};
std::atomic<std::int64_t> g_delay_ns{1'000'000};

// --- stack capture -------------------------------------------------------------------------

struct Unwind {
  std::uintptr_t* pcs;
  int n;
  int skip;
};

_Unwind_Reason_Code unwind_one(_Unwind_Context* ctx, void* arg) {
  auto* u = static_cast<Unwind*>(arg);
  const std::uintptr_t pc = _Unwind_GetIP(ctx);
  if (pc == 0) return _URC_END_OF_STACK;
  if (u->skip > 0) {
    --u->skip;
    return _URC_NO_REASON;
  }
  u->pcs[u->n++] = pc;
  return u->n == kMaxFrames ? _URC_END_OF_STACK : _URC_NO_REASON;
}

// This thread's stack, innermost first, without this function. Async-signal-safe in practice on
// glibc (the signal handler below calls it): libgcc finds unwind tables with _dl_find_object.
[[gnu::noinline]] int capture(std::uintptr_t* pcs) noexcept {
  Unwind u{pcs, 0, 1};
  _Unwind_Backtrace(unwind_one, &u);
  return u.n;
}

// --- sampling --------------------------------------------------------------------------------

// Inlined (as sample_weight): they run on every contended wait and every task resumption.
[[gnu::always_inline]] inline std::uint64_t next_random() noexcept {
  constinit thread_local std::uint64_t x = 0;
  if (x == 0) x = static_cast<std::uint64_t>(now_ns()) | 1;  // differs between threads
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return x;
}

struct Weight {
  double count = 0;  // 0: not sampled
  double delay_ns = 0;
};

[[gnu::always_inline]] inline Weight sample_weight(std::int64_t delay_ns) noexcept {
  if (delay_ns <= 0) return {};
  const auto d = static_cast<double>(delay_ns);
  switch (static_cast<ProfileRate::Mode>(g_mode.load(std::memory_order_relaxed))) {
    case ProfileRate::Mode::kOff:
      return {};
    case ProfileRate::Mode::kEvents: {
      const std::uint64_t every = g_every.load(std::memory_order_relaxed);
      if (every > 1 && next_random() % every != 0) return {};
      return {static_cast<double>(every), d * static_cast<double>(every)};
    }
    case ProfileRate::Mode::kDelay: {
      const std::int64_t rate = g_delay_ns.load(std::memory_order_relaxed);
      if (delay_ns >= rate) return {1.0, d};
      // Sampled with probability d / rate, counted rate / d times: the expected total is exact.
      if (static_cast<std::int64_t>(next_random() % static_cast<std::uint64_t>(rate)) >= delay_ns) {
        return {};
      }
      const double r = static_cast<double>(rate);
      return {r / d, r};
    }
  }
  return {};
}

// --- the aggregated samples ------------------------------------------------------------------

struct Key {
  const detail::Series* series;
  const detail::Series* task;
  std::uint32_t op;
  std::uint32_t n;
  std::uintptr_t pcs[kMaxFrames];

  bool operator<(const Key& o) const noexcept {
    if (series != o.series) return series < o.series;
    if (task != o.task) return task < o.task;
    if (op != o.op) return op < o.op;
    if (n != o.n) return n < o.n;
    return std::lexicographical_compare(pcs, pcs + n, o.pcs, o.pcs + o.n);
  }
};

struct Totals {
  double count = 0;
  double delay_ns = 0;
};

// Taken by sampled events (a few per second at the default rate) and by profile readers; no
// user code runs under it.
std::mutex g_rows_mu;
std::map<Key, Totals>& rows(ProfileType type) {
  static auto* const r = new std::map<Key, Totals>[2];  // leaked: used during static destruction
  return r[static_cast<int>(type)];
}

const detail::Series* current_task() noexcept {
  const detail::SliceContext* sc = detail::tls_slice;
  return sc != nullptr ? sc->series : nullptr;
}

void record(ProfileType type, const detail::Series* series, const detail::Series* task,
            std::uint32_t op, Weight w, const std::uintptr_t* pcs, int n) noexcept {
  Key k;
  k.series = series;
  k.task = task;
  k.op = op;
  k.n = static_cast<std::uint32_t>(n);
  std::copy(pcs, pcs + n, k.pcs);
  try {
    std::lock_guard lock(g_rows_mu);
    auto& m = rows(type);
    auto it = m.find(k);
    if (it == m.end()) {
      if (m.size() >= kMaxRows) return;
      it = m.emplace(k, Totals{}).first;
    }
    it->second.count += w.count;
    it->second.delay_ns += w.delay_ns;
  } catch (...) {  // out of memory: the sample is lost, the application goes on
  }
}

void sample(ProfileType type, const detail::Series* series, std::uint32_t op,
            std::int64_t delay_ns) noexcept {
  const Weight w = sample_weight(delay_ns);
  if (w.count == 0) return;
  std::uintptr_t pcs[kMaxFrames];
  const int n = capture(pcs);
  record(type, series, current_task(), op, w, pcs, n);
}

double unit_random() noexcept {
  return static_cast<double>(next_random() >> 11) * 0x1.0p-53;  // [0, 1)
}

// --- waits in progress -----------------------------------------------------------------------

const int kStackSignal = SIGRTMAX - 3;

// One per thread that ever waited; linked into a list read by profile_samples(). The waiting
// fields are written by the owner only; `asked`/`done` hand a stack request to its signal
// handler.
struct ThreadWait {
  pthread_t thread{};
  std::atomic<const detail::Series*> series{nullptr};  // nullptr: not waiting
  std::atomic<const detail::Series*> task{nullptr};
  std::atomic<std::uint32_t> op{0};
  std::atomic<std::int64_t> since_ns{0};
  std::atomic<std::uint64_t> asked{0};
  std::atomic<std::uint64_t> done{0};
  std::atomic<int> n{0};
  std::atomic<std::uintptr_t> pcs[kMaxFrames] = {};
  ThreadWait* next = nullptr;
  ThreadWait* prev = nullptr;
};

std::mutex g_threads_mu;  // the list; never held by user code or by a waiting thread
ThreadWait* g_threads = nullptr;

struct ThreadWaitOwner {
  ThreadWait* w = nullptr;
  ~ThreadWaitOwner();
};
constinit thread_local ThreadWait* tls_wait = nullptr;
thread_local ThreadWaitOwner tls_wait_owner;

ThreadWaitOwner::~ThreadWaitOwner() {
  if (w == nullptr) return;
  {
    std::lock_guard lock(g_threads_mu);
    (w->prev != nullptr ? w->prev->next : g_threads) = w->next;
    if (w->next != nullptr) w->next->prev = w->prev;
  }
  tls_wait = nullptr;
  delete w;
}

ThreadWait* own_wait() noexcept {
  if (tls_wait != nullptr) [[likely]]
    return tls_wait;
  try {
    auto* w = new ThreadWait;
    w->thread = pthread_self();
    std::lock_guard lock(g_threads_mu);
    w->next = g_threads;
    if (g_threads != nullptr) g_threads->prev = w;
    g_threads = w;
    tls_wait_owner.w = w;
    tls_wait = w;
  } catch (...) {
    return nullptr;
  }
  return tls_wait;
}

void on_stack_signal(int) {
  const int saved = errno;
  if (ThreadWait* w = tls_wait) {
    const std::uint64_t asked = w->asked.load(std::memory_order_acquire);
    if (asked != w->done.load(std::memory_order_relaxed)) {
      std::uintptr_t pcs[kMaxFrames];
      const int n = capture(pcs);
      for (int i = 0; i < n; ++i) w->pcs[i].store(pcs[i], std::memory_order_relaxed);
      w->n.store(n, std::memory_order_relaxed);
      w->done.store(asked, std::memory_order_release);
    }
  }
  errno = saved;
}

// Installs the handler once, unless the application handles the signal itself.
bool stack_signal_ready() {
  static const bool ready = [] {
    struct sigaction old {};
    if (sigaction(kStackSignal, nullptr, &old) != 0) return false;
    if (old.sa_handler != SIG_DFL || (old.sa_flags & SA_SIGINFO) != 0) return false;
    struct sigaction sa {};
    sa.sa_handler = on_stack_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    return sigaction(kStackSignal, &sa, nullptr) == 0;
  }();
  return ready;
}

struct InProgress {
  const detail::Series* series;
  const detail::Series* task;
  std::uint32_t op;
  std::int64_t since_ns;
  std::vector<std::uintptr_t> pcs;
};

std::vector<InProgress> waits_in_progress() {
  static std::mutex readers_mu;  // one reader at a time: the request counter is per thread
  std::lock_guard one(readers_mu);
  const bool signals = stack_signal_ready();
  std::vector<InProgress> out;
  std::lock_guard lock(g_threads_mu);
  std::vector<std::pair<ThreadWait*, std::uint64_t>> asked;
  for (ThreadWait* w = g_threads; w != nullptr; w = w->next) {
    if (w->series.load(std::memory_order_acquire) == nullptr) continue;
    if (!signals) continue;
    const std::uint64_t a = w->asked.load(std::memory_order_relaxed) + 1;
    w->asked.store(a, std::memory_order_release);
    if (pthread_kill(w->thread, kStackSignal) == 0) asked.emplace_back(w, a);
  }
  // The handlers run as soon as the threads are scheduled: wait for them, a bounded time. Half a
  // second: on a loaded 2-core machine a woken thread can wait past 100 ms for a core, and a
  // stack not read is a profile that no longer says where the program is stuck.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
  for (auto& [w, a] : asked) {
    while (w->done.load(std::memory_order_acquire) != a &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }
  for (ThreadWait* w = g_threads; w != nullptr; w = w->next) {
    const detail::Series* s = w->series.load(std::memory_order_acquire);
    if (s == nullptr) continue;
    InProgress p{s,
                 w->task.load(std::memory_order_relaxed),
                 w->op.load(std::memory_order_relaxed),
                 w->since_ns.load(std::memory_order_relaxed),
                 {}};
    const bool got = std::any_of(asked.begin(), asked.end(), [&](const auto& x) {
      return x.first == w && w->done.load(std::memory_order_acquire) == x.second;
    });
    // The stack is this wait's if the thread still waits since the same moment.
    if (got && w->series.load(std::memory_order_acquire) == s &&
        w->since_ns.load(std::memory_order_relaxed) == p.since_ns) {
      const int n = w->n.load(std::memory_order_relaxed);
      for (int i = 0; i < n; ++i) p.pcs.push_back(w->pcs[i].load(std::memory_order_relaxed));
    }
    out.push_back(std::move(p));
  }
  return out;
}

// The async primitives' waits in progress, from the wait-for graph (the primitives' own queues):
// each with its age and, when the wait was drawn at its start, the stack captured then. Locks are
// left out (their threads' slots list them above); so are channel receives (not waits for a
// resource: an idle consumer) and waits whose waiter is not known (a callback with no
// cancellation slot).
void async_waits_in_progress(std::int64_t now, std::vector<ProfileSample>& out) {
  const detail::WaitforBuilder g = detail::build_waitfor_graph();
  for (const detail::WaitforBuilder::Node& n : g.nodes) {
    for (const detail::WaitforBuilder::Wait& w : n.waits) {
      const detail::WaitforBuilder::Resource& r = g.resources[w.res];
      std::uint32_t op = 0;
      if (r.kind == ResourceKind::kAsyncLock) {
        op = detail::kOpExclusive;
      } else if (r.kind == ResourceKind::kSemaphore) {
        op = kOpAcquire;
      } else if (r.kind == ResourceKind::kChannel && r.side == "send") {
        op = detail::kOpSend;
      } else {
        continue;
      }
      ProfileSample s;
      s.kind = std::string(to_string(r.kind));
      s.resource = r.name;
      s.op = std::string(kOpNames[op]);
      if (n.task_series != 0) s.task = Registry::global().series_name(n.task_series);
      s.pcs = w.pcs;
      s.count = 1;
      s.delay_ns = static_cast<double>(std::max<std::int64_t>(now - w.since_ns, 0));
      s.in_progress = true;
      out.push_back(std::move(s));
    }
  }
}

ProfileSample to_sample(const detail::Series* series, const detail::Series* task,
                        std::uint32_t op) {
  ProfileSample s;
  s.kind = std::string(to_string(series->kind()));
  s.resource = series->name();
  s.op = std::string(kOpNames[op < std::size(kOpNames) ? op : 0]);
  if (task != nullptr) s.task = task->name();
  return s;
}

}  // namespace

std::optional<ProfileRate> ProfileRate::parse(std::string_view text) {
  if (text == "off" || text == "0") return off();
  if (auto n = detail::parse_whole<std::uint64_t>(text, 1, 1'000'000'000)) return events(*n);
  if (auto d = detail::parse_duration(text); d && d->count() > 0) return by_delay(*d);
  return std::nullopt;
}

std::string ProfileRate::to_string() const {
  switch (mode) {
    case Mode::kOff:
      return "off";
    case Mode::kEvents:
      return std::to_string(every);
    case Mode::kDelay:
      break;
  }
  return fmt::format("{}ns", delay.count());
}

void set_profile_rate(ProfileRate rate) noexcept {
  g_every.store(rate.every == 0 ? 1 : rate.every, std::memory_order_relaxed);
  g_delay_ns.store(std::max<std::int64_t>(rate.delay.count(), 1), std::memory_order_relaxed);
  g_mode.store(static_cast<std::uint8_t>(rate.mode), std::memory_order_relaxed);
}

ProfileRate profile_rate() noexcept {
  const auto mode = static_cast<ProfileRate::Mode>(g_mode.load(std::memory_order_relaxed));
  switch (mode) {
    case ProfileRate::Mode::kOff:
      return ProfileRate::off();
    case ProfileRate::Mode::kEvents:
      return ProfileRate::events(g_every.load(std::memory_order_relaxed));
    case ProfileRate::Mode::kDelay:
      break;
  }
  return ProfileRate::by_delay(
      std::chrono::nanoseconds(g_delay_ns.load(std::memory_order_relaxed)));
}

std::vector<ProfileSample> profile_samples(ProfileType type) {
  std::vector<ProfileSample> out;
  {
    std::lock_guard lock(g_rows_mu);
    for (const auto& [k, t] : rows(type)) {
      ProfileSample s = to_sample(k.series, k.task, k.op);
      s.pcs.assign(k.pcs, k.pcs + k.n);
      s.count = t.count;
      s.delay_ns = t.delay_ns;
      out.push_back(std::move(s));
    }
  }
  if (type == ProfileType::kBlock) {
    const std::int64_t now = now_ns();
    for (InProgress& p : waits_in_progress()) {
      ProfileSample s = to_sample(p.series, p.task, p.op);
      s.pcs = std::move(p.pcs);
      s.count = 1;
      s.delay_ns = static_cast<double>(std::max<std::int64_t>(now - p.since_ns, 0));
      s.in_progress = true;
      out.push_back(std::move(s));
    }
    async_waits_in_progress(now, out);
  }
  return out;
}

namespace detail {

namespace {

// Under blame.busy: brings the waiting integral up to `t`.
void advance(LockBlame& b, std::int64_t t) noexcept {
  if (t > b.since_ns) {
    b.area_ns +=
        static_cast<std::int64_t>(b.waiters.load(std::memory_order_relaxed)) * (t - b.since_ns);
    b.since_ns = t;
  }
}

struct BlameLock {
  explicit BlameLock(LockBlame& b) noexcept : b_(b) {
    while (b_.busy.exchange(true, std::memory_order_acquire)) std::this_thread::yield();
  }
  ~BlameLock() { b_.busy.store(false, std::memory_order_release); }
  LockBlame& b_;
};

}  // namespace

void profile_wait_begin(LockBlame* blame, const Series* series, std::uint32_t op,
                        std::int64_t t0) noexcept {
  ThreadWait* w = own_wait();
  if (w == nullptr) return;  // out of memory: this wait is neither listed nor blamed
  if (blame != nullptr) {
    BlameLock lock(*blame);
    advance(*blame, t0);
    blame->waiters.store(blame->waiters.load(std::memory_order_relaxed) + 1,
                         std::memory_order_relaxed);
  }
  w->since_ns.store(t0, std::memory_order_relaxed);
  w->op.store(op, std::memory_order_relaxed);
  w->task.store(current_task(), std::memory_order_relaxed);
  w->series.store(series, std::memory_order_release);
}

void profile_wait_end(LockBlame* blame, const Series* series, std::uint32_t op, std::int64_t t0,
                      std::int64_t t1) noexcept {
  // Only a wait that profile_wait_begin listed counts a waiter (a condition variable's
  // re-acquisition ends a wait it never began).
  ThreadWait* w = tls_wait;
  const bool begun = w != nullptr && w->series.load(std::memory_order_relaxed) != nullptr;
  if (begun) w->series.store(nullptr, std::memory_order_relaxed);
  if (blame != nullptr && begun) {
    BlameLock lock(*blame);
    advance(*blame, t1);
    const std::uint32_t n = blame->waiters.load(std::memory_order_relaxed) - 1;
    blame->waiters.store(n, std::memory_order_relaxed);
    // The last waiter is through: what built up since the last release is its wake-up, which
    // no holder caused.
    if (n == 0) blame->area_ns = 0;
  }
  sample(ProfileType::kBlock, series, op, t1 - t0);
}

void profile_released(LockBlame& blame, const Series* series, std::uint32_t op) noexcept {
  std::int64_t charged;
  {
    BlameLock lock(blame);
    advance(blame, now_ns());
    charged = blame.area_ns;
    blame.area_ns = 0;
  }
  sample(ProfileType::kMutex, series, op, charged);
}

void profile_granted(const Series* series, std::int64_t waited_ns) noexcept {
  const bool lock = series->kind() == ResourceKind::kAsyncLock;
  sample(ProfileType::kMutex, series, lock ? kOpExclusive : kOpAcquire, waited_ns);
}

AsyncStack* profile_async_draw(const WaitHint& hint) noexcept {
  const auto mode = g_mode.load(std::memory_order_relaxed);
  const std::int64_t rate = g_delay_ns.load(std::memory_order_relaxed);
  double q = 1;
  switch (static_cast<ProfileRate::Mode>(mode)) {
    case ProfileRate::Mode::kOff:
      return profile_not_sampled();
    case ProfileRate::Mode::kEvents: {
      const std::uint64_t every = g_every.load(std::memory_order_relaxed);
      if (every > 1 && next_random() % every != 0) return profile_not_sampled();
      q = 1.0 / static_cast<double>(every);
      break;
    }
    case ProfileRate::Mode::kDelay: {
      // Twice the last wait's share of the rate (profile.hpp, "Async waits"): at least the
      // probability Go's rule gives a wait up to twice as long as the last one.
      const std::int64_t last = hint.last_ns.load(std::memory_order_relaxed);
      if (last > 0 && last < rate / 2) {
        q = 2 * static_cast<double>(last) / static_cast<double>(rate);
        if (unit_random() >= q) return profile_not_sampled();
      }
      break;
    }
  }
  auto* s = new (std::nothrow) AsyncStack;
  if (s == nullptr) return profile_not_sampled();
  s->task = current_task();
  s->q = q;
  s->mode = mode;
  s->rate_ns = rate;
  s->n = capture(s->pcs);
  return s;
}

void profile_async_end(AsyncStack* s, const Series* series, std::uint32_t op,
                       std::int64_t waited_ns) noexcept {
  const std::unique_ptr<AsyncStack> owned(s);
  if (waited_ns <= 0) return;
  const auto d = static_cast<double>(waited_ns);
  double m = s->q;  // the probability this wait was kept with
  if (static_cast<ProfileRate::Mode>(s->mode) == ProfileRate::Mode::kDelay) {
    // Go's rule keeps the wait with p = min(1, d / rate); drawn with q at the call, it is kept
    // now with min(1, p / q): in all, min(q, p), and weighted by its inverse.
    const double p = std::min(1.0, d / static_cast<double>(s->rate_ns));
    if (p < s->q && unit_random() >= p / s->q) return;
    m = std::min(s->q, p);
  }
  record(ProfileType::kBlock, series, s->task, op, Weight{1 / m, d / m}, s->pcs, s->n);
}

void profile_async_discard(AsyncStack* s) noexcept { delete s; }

void profile_waited(const Series* series, std::uint32_t op, std::int64_t waited_ns) noexcept {
  sample(ProfileType::kBlock, series, op, waited_ns);
}

void profile_schedule(const Series* executor, const Series* task, std::int64_t delay_ns) noexcept {
  const Weight w = sample_weight(delay_ns);
  if (w.count == 0) return;
  record(ProfileType::kBlock, executor != nullptr ? executor : task, task, kOpSchedule, w, nullptr,
         0);
}

}  // namespace detail

}  // namespace stallscope
