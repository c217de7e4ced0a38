#pragma once
/// Contention profiles: sampled call stacks of the waits on stallscope locks (the block profile)
/// and of the holders that kept others waiting (the mutex profile), as Go's runtime keeps them.
/// Served as pprof by the Agent (/debug/pprof/mutex, /debug/pprof/block) or written with
/// stallscope::write_pprof (pprof.hpp); README, "Contention profiles".

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace stallscope {

/// How waits and holds are sampled. Thread-safe to change at run time (set_profile_rate).
///   by_delay(d): like Go's SetBlockProfileRate. An event of at least `d` is always sampled; a
///     shorter one with probability event/d and then counted d/event times (an unbiased total).
///   events(n): like Go's SetMutexProfileFraction: one event in `n`, counted n times.
///   off(): nothing is sampled (the contended path then reads the rate and nothing more).
/// Cost: one stack capture (bench/README.md, "Contention profiles") per sampled event; events
/// are contended waits and releases that kept a waiter waiting, never uncontended operations.
struct ProfileRate {
  enum class Mode : std::uint8_t { kOff, kEvents, kDelay };
  Mode mode = Mode::kDelay;
  std::uint64_t every = 1;                                        ///< kEvents: one in `every`
  std::chrono::nanoseconds delay = std::chrono::milliseconds(1);  ///< kDelay

  static ProfileRate off() noexcept { return {Mode::kOff, 1, {}}; }
  static ProfileRate events(std::uint64_t n) noexcept {
    return {Mode::kEvents, n == 0 ? 1 : n, {}};
  }
  static ProfileRate by_delay(std::chrono::nanoseconds d) noexcept { return {Mode::kDelay, 1, d}; }
  /// "off", a whole number N (events(N)) or a duration with a unit (ns, us, ms, s: by_delay);
  /// nothing for anything else.
  static std::optional<ProfileRate> parse(std::string_view text);
  /// The form parse() reads back.
  std::string to_string() const;
  friend bool operator==(const ProfileRate&, const ProfileRate&) = default;
};

/// Sets the process-wide sampling rate (also set by Registry::configure from Config::
/// profile_rate, and from STALLSCOPE_PROFILE_RATE at start). Samples already taken keep the
/// weight they were taken with. Never throws.
void set_profile_rate(ProfileRate rate) noexcept;
ProfileRate profile_rate() noexcept;

/// Which profile: waits (kBlock: the sampled waits on Mutex, SharedMutex and the other lock
/// wrappers, on AsyncMutex, Semaphore, a full Channel's send and a BlockingPool's queue, by the
/// waiter's stack; task resumptions' scheduling delays, by label only; plus the waits still in
/// progress) or holders (kMutex: the
/// holder's stack at each release that kept others waiting, charged with the waiting it caused:
/// for a lock the sum of its waiters' time while it held; for an AsyncMutex or Semaphore the
/// wait of the waiter its release hands the permit to).
enum class ProfileType : std::uint8_t { kMutex, kBlock };

/// One aggregated stack of a profile. Thread-safe snapshot; the stacks are raw return addresses,
/// innermost first (symbolized by the exporter).
struct ProfileSample {
  std::vector<std::uintptr_t> pcs;
  std::string kind;          ///< to_string(ResourceKind)
  std::string resource;      ///< the resource name
  std::string op;            ///< "exclusive", "shared"; "acquire" (a Semaphore), "send" (a
                             ///< Channel), "queue" (a BlockingPool), "schedule" (an executor)
  std::string task;          ///< the task name when the event happened inside a task slice; else ""
  double count = 0;          ///< contentions, scaled by the sampling rate
  double delay_ns = 0;       ///< delay, scaled by the sampling rate
  bool in_progress = false;  ///< a wait not yet ended: count 1, delay its age so far
};

/// The samples of `type` taken so far (since the process started); for kBlock also the waits in
/// progress now, each with its age and, where it could be read, its stack (README): lock waits
/// from the waiting threads' slots, AsyncMutex/Semaphore waits and Channel sends from the
/// primitives' own queues (the deadlock detector's wait-for graph), with the stack captured at
/// the wait's start when it was drawn for sampling (pool jobs still queued and scheduling delays
/// are not listed in progress). Takes no lock that user code can hold, so it
/// answers while the application is deadlocked. Never blocks for more than ~100 ms (the
/// in-progress stacks are read from the waiting threads).
///
/// Async waits (a coroutine or callback on AsyncMutex, Semaphore, Channel::async_send,
/// BlockingPool::run): the waiter's frames are on the stack only at the call that starts the
/// wait (Asio runs the initiation after the coroutine has suspended, and resumes it from its run
/// loop), so the stack is captured there, and the sampling decision, which Go makes at the end
/// when the delay is known, is made in two steps that keep every total unbiased:
///   - at the call, only when the primitive looks full (a relaxed load: the uncontended path
///     draws nothing and reads no clock), a draw with probability q: events(n): q = 1/n;
///     by_delay(r): q = min(1, 2 * last / r), `last` the previous async wait on that resource
///     (1 for the first). A wait that turns out not to queue drops its draw; one that queues
///     without a draw at the call (the look was stale) draws where it queues (its stack then
///     starts in Asio's frames);
///   - at the end, by_delay keeps a drawn wait with probability min(1, p / q), p = min(1, d / r)
///     being Go's: in all min(q, p), and the sample is weighted by 1 / min(q, p). So a wait is
///     kept exactly as Go would keep it whenever q >= p (it lasted under twice the last one);
///     a longer one than the hint foresaw is kept with q only, weighted up to match.
/// Thread waits on these primitives (Semaphore::acquire, Channel::send) are sampled as lock
/// waits are, at their end with the thread's stack. Scheduling delays carry no stack: at a
/// resumption the stack is the executor's run loop, and the code that made the task ready is
/// not the task's (README).
std::vector<ProfileSample> profile_samples(ProfileType type);

}  // namespace stallscope
