#pragma once
/// stallscope::RetryBudget and stallscope::retry(): retries that cannot turn an outage into a
/// retry storm, and that stop at once on cancellation.
///
///   stallscope::RetryBudget budget{"inventory", {.retry_share = 0.1}};  // +10% load, at most
///   Response r = co_await stallscope::retry(budget, token, policy, [&] { return call(req); });
///
/// The budget has the semantics of Finagle's RetryBudget and tower's TpsBudget: every request
/// deposits, every retry withdraws, deposits expire after `ttl`, and `min_retries_per_second`
/// retries are allowed whatever the traffic. retry() adds jittered exponential backoff whose sleep
/// ends the moment the CancellationToken is cancelled. Both record under the budget's name (kind
/// "retry"): requests, retries attempted, denied and abandoned, and the time spent in backoff.

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <numeric>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>

#include "stallscope/cancellation.hpp"
#include "stallscope/clock.hpp"
#include "stallscope/config.hpp"
#include "stallscope/detail/async_support.hpp"
#include "stallscope/detail/retry_recorder.hpp"
#include "stallscope/registry.hpp"

namespace stallscope {

namespace detail {
struct RetryAccess;
}  // namespace detail

/// Where a RetryBudget reads the time. Null (the default) is stallscope::now_ns(); a
/// simulation or a test passes a ManualRetryClock and moves time itself.
class RetryClock {
 public:
  virtual ~RetryClock() = default;
  /// Monotonic nanoseconds since any fixed epoch. Thread-safe.
  virtual std::int64_t now_ns() const noexcept = 0;
};

/// A RetryClock that only moves when told to. Thread-safe.
class ManualRetryClock final : public RetryClock {
 public:
  std::int64_t now_ns() const noexcept override { return ns_.load(std::memory_order_relaxed); }
  void advance(std::chrono::nanoseconds d) noexcept {
    ns_.fetch_add(d.count(), std::memory_order_relaxed);
  }

 private:
  std::atomic<std::int64_t> ns_{0};
};

/// How much a RetryBudget allows. Written with designated initializers:
/// `{.ttl = std::chrono::seconds(10), .min_retries_per_second = 10, .retry_share = 0.2}`.
struct RetryBudgetOptions {
  /// How long a deposit counts: whole seconds, 1 to 60 (Finagle's and tower's bounds).
  std::chrono::seconds ttl{10};
  /// Retries allowed per second however few requests there are (a reserve of
  /// `min_retries_per_second * ttl` retries per ttl window), so that a quiet service can still
  /// retry. 0 to 1,000,000.
  std::uint32_t min_retries_per_second = 10;
  /// Retries allowed per request deposited, as a fraction: 0.2 lets 20% of the requests of the
  /// last ttl be retried (Finagle's percentCanRetry, tower's retry_percent). 0 to 1000; kept to
  /// 0.001.
  double retry_share = 0.2;
  /// Allow every retry (still counted, and the budget shows in stallscope_retry_unlimited): to
  /// make an unbounded retry loop's amplification visible before bounding it. The other fields
  /// are then unused.
  bool unlimited = false;
  /// The clock; must outlive the budget. Null: stallscope::now_ns() (steady_clock's epoch).
  const RetryClock* clock = nullptr;
};

/// A retry budget: caps retries at `retry_share` of the requests of the last `ttl`, plus
/// `min_retries_per_second`. Records under `name` (kind "retry"). Thread-safe and lock-free:
/// deposit() is one clock read, one compare-and-swap on the current second's bucket and one
/// per-thread counter add; try_withdraw() also sums the ttl buckets (ttl loads). Exact under
/// concurrency: two threads never both take the last retry. Construction throws
/// std::invalid_argument naming the bad value; nothing else throws.
class RetryBudget final {
 public:
  explicit RetryBudget(std::string_view name, const RetryBudgetOptions& options = {})
      : recorder_(validate(name, options), options.unlimited),
        clock_(options.clock),
        unlimited_(options.unlimited),
        ttl_(static_cast<std::uint32_t>(options.ttl.count())),
        origin_ns_(read_clock(options.clock)) {
    // Retries per deposit in integer units: a deposit adds deposit_, a retry takes withdraw_,
    // with deposit_ / withdraw_ = retry_share to 0.001 (reduced, so that the 40-bit balance
    // holds over 5e8 deposits per second even at retry_share 1000).
    std::int64_t d = std::llround(options.retry_share * 1000);
    std::int64_t w = 1000;
    const std::int64_t g = d == 0 ? w : std::gcd(d, w);
    deposit_ = d / g;
    withdraw_ = w / g;
    reserve_ = static_cast<std::int64_t>(options.min_retries_per_second) * ttl_ * withdraw_;
  }
  RetryBudget(const RetryBudget&) = delete;
  RetryBudget& operator=(const RetryBudget&) = delete;

  /// A request is being made (its first attempt): adds to the budget and counts the request.
  void deposit() noexcept {
    recorder_.requested();
    if (unlimited_ || deposit_ == 0) return;
    const std::uint32_t sec = second();
    std::atomic<std::uint64_t>& b = buckets_[sec & kSlotMask];
    std::uint64_t cur = b.load(std::memory_order_relaxed);
    while (!b.compare_exchange_weak(cur, pack(sec, balance_at(cur, sec) + deposit_),
                                    std::memory_order_relaxed)) {
    }
  }

  /// Takes one retry if the budget allows it: true (counted as attempted) or false (counted as
  /// denied). For callers that retry on their own; retry() does this for you.
  bool try_withdraw() noexcept {
    const bool ok = take();
    if (ok) {
      recorder_.attempted();
    } else {
      recorder_.denied();
    }
    return ok;
  }

  /// Retries the budget would allow now (a snapshot). With `unlimited`: the largest int64.
  std::int64_t balance() const noexcept {
    if (unlimited_) return std::numeric_limits<std::int64_t>::max();
    const std::uint32_t sec = second();
    std::int64_t sum = reserve_;
    for (std::uint32_t k = 0; k < ttl_; ++k) sum += live(buckets_[(sec - k) & kSlotMask], sec);
    return sum > 0 ? sum / withdraw_ : 0;
  }

  /// The resource name this budget records under ("" when recording is compiled out).
  std::string_view name() const noexcept { return recorder_.name(); }

 private:
  friend struct detail::RetryAccess;

  // A bucket is one 64-bit word: the second it belongs to (24 bits, modulo 2^24: 194 days) over
  // its balance (40-bit two's complement). One word, so that "reset a stale bucket" and "add to
  // it" are one compare-and-swap and a writer can never add to a bucket another writer is
  // recycling. A slot is reused 64 seconds later, so a bucket whose second is not within the
  // last ttl is stale and counts as 0. Ordering: relaxed is
  // enough; the buckets are independent counters, and the compare-and-swap on the current
  // second's bucket is what makes a withdrawal exact (it fails if the balance it was decided on
  // changed). Buckets of past seconds do not change any more, except for a writer that read the
  // clock just before the second turned: at worst one operation lands one second late.
  static constexpr int kBalanceBits = 40;
  static constexpr std::uint64_t kBalanceMask = (std::uint64_t{1} << kBalanceBits) - 1;
  static constexpr std::uint32_t kSecondMask = (1u << 24) - 1;
  // Second s lives in slot s % 64: a power of two (no division on the hot path) above the
  // longest ttl, so the ttl seconds of a window never share a slot.
  static constexpr std::uint32_t kSlots = 64;
  static constexpr std::uint32_t kSlotMask = kSlots - 1;

  static std::uint64_t pack(std::uint32_t sec, std::int64_t balance) noexcept {
    return (static_cast<std::uint64_t>(sec & kSecondMask) << kBalanceBits) |
           (static_cast<std::uint64_t>(balance) & kBalanceMask);
  }
  static std::uint32_t second_of(std::uint64_t v) noexcept {
    return static_cast<std::uint32_t>(v >> kBalanceBits);
  }
  static std::int64_t balance_of(std::uint64_t v) noexcept {
    return static_cast<std::int64_t>(v << (64 - kBalanceBits)) >> (64 - kBalanceBits);
  }
  // The balance of `v` for second `sec`: 0 if the word belongs to an earlier second.
  static std::int64_t balance_at(std::uint64_t v, std::uint32_t sec) noexcept {
    return second_of(v) == (sec & kSecondMask) ? balance_of(v) : 0;
  }
  // What bucket `b` adds to the window that ends at `sec`.
  std::int64_t live(const std::atomic<std::uint64_t>& b, std::uint32_t sec) const noexcept {
    const std::uint64_t v = b.load(std::memory_order_relaxed);
    const std::uint32_t age = ((sec & kSecondMask) - second_of(v)) & kSecondMask;
    return age < ttl_ ? balance_of(v) : 0;
  }

  // stallscope's clock (the TSC where it is invariant: about 8 ns against 17-23 ns for
  // steady_clock), on steady_clock's epoch.
  static std::int64_t read_clock(const RetryClock* clock) noexcept {
    return clock != nullptr ? clock->now_ns() : stallscope::now_ns();
  }
  std::uint32_t second() const noexcept {
    const std::int64_t ns = read_clock(clock_) - origin_ns_;
    return static_cast<std::uint32_t>(ns > 0 ? ns / 1'000'000'000 : 0);
  }

  // Takes one retry, recording nothing.
  bool take() noexcept {
    if (unlimited_) return true;
    const std::uint32_t sec = second();
    std::atomic<std::uint64_t>& b = buckets_[sec & kSlotMask];
    std::uint64_t cur = b.load(std::memory_order_relaxed);
    for (;;) {
      std::int64_t others = reserve_;
      for (std::uint32_t k = 1; k < ttl_; ++k) others += live(buckets_[(sec - k) & kSlotMask], sec);
      const std::int64_t mine = balance_at(cur, sec);
      if (others + mine < withdraw_) return false;
      if (b.compare_exchange_weak(cur, pack(sec, mine - withdraw_), std::memory_order_relaxed)) {
        return true;
      }
    }
  }
  // Gives back a retry taken by take() that was never made (retry() cancelled in its backoff).
  void refund() noexcept {
    if (unlimited_) return;
    const std::uint32_t sec = second();
    std::atomic<std::uint64_t>& b = buckets_[sec & kSlotMask];
    std::uint64_t cur = b.load(std::memory_order_relaxed);
    while (!b.compare_exchange_weak(cur, pack(sec, balance_at(cur, sec) + withdraw_),
                                    std::memory_order_relaxed)) {
    }
  }

  static std::string_view validate(std::string_view name, const RetryBudgetOptions& o) {
    auto bad = [&](const std::string& what) {
      throw std::invalid_argument("RetryBudget \"" + std::string(name) + "\": " + what);
    };
    if (o.unlimited) return name;
    if (o.ttl < std::chrono::seconds(1) || o.ttl > std::chrono::seconds(60)) {
      bad("ttl must be 1 to 60 seconds, got " + std::to_string(o.ttl.count()) + " s");
    }
    if (o.min_retries_per_second > 1'000'000) {
      bad("min_retries_per_second must be at most 1000000, got " +
          std::to_string(o.min_retries_per_second));
    }
    if (!(o.retry_share >= 0 && o.retry_share <= 1000)) {  // NaN fails too
      bad("retry_share must be 0 to 1000, got " + std::to_string(o.retry_share));
    }
    return name;
  }

  detail::RetrySite recorder_;
  const RetryClock* clock_;
  bool unlimited_;
  std::uint32_t ttl_;
  std::int64_t origin_ns_;
  std::int64_t deposit_ = 0;
  std::int64_t withdraw_ = 1;
  std::int64_t reserve_ = 0;
  std::array<std::atomic<std::uint64_t>, kSlots> buckets_{};
};

/// Why retry() gave up without the operation's own result or error.
enum class RetryErrc {
  kBudgetExhausted = 1,  ///< the budget refused the next retry
};

/// The error category of RetryErrc ("stallscope.retry").
inline const boost::system::error_category& retry_category() noexcept {
  struct Category final : boost::system::error_category {
    const char* name() const noexcept override { return "stallscope.retry"; }
    std::string message(int ev) const override {
      return ev == static_cast<int>(RetryErrc::kBudgetExhausted) ? "retry budget exhausted"
                                                                 : "unknown retry error";
    }
  };
  static const Category category;
  return category;
}
inline boost::system::error_code make_error_code(RetryErrc e) noexcept {
  return {static_cast<int>(e), retry_category()};
}

/// Thrown by retry() when it stops for a reason of its own: code() is
/// RetryErrc::kBudgetExhausted (the budget refused a retry) or boost::asio::error::
/// operation_aborted (cancelled before or during a backoff: a task ending with it counts as
/// cancelled, not failed). last_error() is the last attempt's exception (null if it returned a
/// result the policy retries); attempts() how many attempts were made.
class RetryError final : public boost::system::system_error {
 public:
  RetryError(boost::system::error_code code, const std::string& what, std::uint32_t attempts,
             std::exception_ptr last)
      : boost::system::system_error(code, what), attempts_(attempts), last_(std::move(last)) {}
  std::uint32_t attempts() const noexcept { return attempts_; }
  const std::exception_ptr& last_error() const noexcept { return last_; }

 private:
  std::uint32_t attempts_;
  std::exception_ptr last_;
};

/// How retry() retries an operation returning asio::awaitable<T>. Sleep k (after attempt k) is
/// min(max_backoff, initial_backoff * multiplier^(k-1)), shortened by a random share of up to
/// `jitter` of itself (0: no jitter; 1: "full jitter", anywhere from 0 to the full delay).
template <class T>
struct RetryPolicy {
  std::chrono::nanoseconds initial_backoff = std::chrono::milliseconds(10);
  std::chrono::nanoseconds max_backoff = std::chrono::seconds(1);
  double multiplier = 2.0;
  double jitter = 0.5;
  /// Attempts in all, the first included: 1 means never retry.
  std::uint32_t max_attempts = 3;
  /// Whether to retry an attempt's outcome: `result` points at what it returned (null when it
  /// threw; a void pointer when T is void), `error` is what it threw (null when it returned).
  /// Empty: retry every exception except a cancellation (operation_aborted), no result.
  std::function<bool(const std::conditional_t<std::is_void_v<T>, void, T>* result,
                     const std::exception_ptr& error)>
      retry_if;
};

namespace detail {

inline bool is_aborted(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const boost::system::system_error& se) {
    return se.code() == boost::asio::error::operation_aborted;
  } catch (...) {
    return false;
  }
}

template <class T>
void validate_policy(const RetryPolicy<T>& p) {
  auto bad = [](const std::string& what) {
    throw std::invalid_argument("stallscope::retry: " + what);
  };
  if (p.max_attempts < 1) bad("max_attempts must be at least 1, got 0");
  if (p.initial_backoff.count() < 0) {
    bad("initial_backoff must not be negative, got " + std::to_string(p.initial_backoff.count()) +
        " ns");
  }
  if (p.max_backoff < p.initial_backoff) {
    bad("max_backoff (" + std::to_string(p.max_backoff.count()) +
        " ns) must be at least initial_backoff (" + std::to_string(p.initial_backoff.count()) +
        " ns)");
  }
  if (!(p.multiplier >= 1 && p.multiplier <= 1e6)) {
    bad("multiplier must be 1 to 1e6, got " + std::to_string(p.multiplier));
  }
  if (!(p.jitter >= 0 && p.jitter <= 1))
    bad("jitter must be 0 to 1, got " + std::to_string(p.jitter));
}

// The sleep before retry `k` (1-based), jitter applied.
template <class T>
std::chrono::nanoseconds backoff(const RetryPolicy<T>& p, std::uint32_t k) {
  double d = static_cast<double>(p.initial_backoff.count()) *
             std::pow(p.multiplier, static_cast<double>(k - 1));
  d = std::min(d, static_cast<double>(p.max_backoff.count()));
  if (p.jitter > 0) {
    thread_local std::minstd_rand rng{std::random_device{}()};
    d *= 1 - p.jitter * std::uniform_real_distribution<double>(0, 1)(rng);
  }
  return std::chrono::nanoseconds(static_cast<std::int64_t>(d));
}

// A backoff sleep that a CancellationToken can end from any thread. The token's callback and the
// coroutine's start of the wait both touch the timer under `mu`, so a cancel either finds the
// wait armed and cancels it, or comes first and the wait is never armed: a cancel is never lost
// between "checked the token" and "started sleeping" (the article's shutdown bug).
struct BackoffSleep {
  explicit BackoffSleep(const boost::asio::any_io_executor& ex) : timer(ex) {}
  std::mutex mu;
  boost::asio::steady_timer timer;
  bool cancelled = false;

  void cancel() {
    std::lock_guard lock(mu);
    cancelled = true;
    timer.cancel();
  }
  // Completion: void(error_code); operation_aborted if cancelled (by the token or by the
  // awaiting coroutine's own cancellation slot).
  template <class Token>
  auto async_wait(std::chrono::nanoseconds d, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
        [this, d](auto handler) {
          std::lock_guard lock(mu);
          if (cancelled) {
            post_completion(std::move(handler),
                            boost::system::error_code(boost::asio::error::operation_aborted));
            return;
          }
          timer.expires_after(d);
          timer.async_wait(std::move(handler));
        },
        token);
  }
};

struct RetryAccess {
  static bool take(RetryBudget& b) noexcept { return b.take(); }
  static void refund(RetryBudget& b) noexcept { b.refund(); }
  static RetrySite& recorder(RetryBudget& b) noexcept { return b.recorder_; }
};

template <class Op>
using RetryResultOf = typename std::invoke_result_t<Op&>::value_type;

template <class T, class Op>
boost::asio::awaitable<T> retry_loop(RetryBudget& budget, CancellationToken token,
                                     RetryPolicy<T> policy, Op op) {
  RetrySite& rec = RetryAccess::recorder(budget);
  auto give_up = [&](boost::system::error_code code, const char* why, std::uint32_t attempts,
                     std::exception_ptr last) -> RetryError {
    return RetryError(code,
                      "stallscope::retry \"" + std::string(budget.name()) + "\": " + why +
                          " after " + std::to_string(attempts) + " attempt" +
                          (attempts == 1 ? "" : "s"),
                      attempts, std::move(last));
  };
  budget.deposit();
  std::unique_ptr<BackoffSleep> sleep;
  CancellationToken::Registration registration;
  for (std::uint32_t attempt = 1;; ++attempt) {
    std::optional<std::conditional_t<std::is_void_v<T>, bool, T>> result;
    std::exception_ptr error;
    try {
      if constexpr (std::is_void_v<T>) {
        co_await op();
        result.emplace(true);
      } else {
        result.emplace(co_await op());
      }
    } catch (...) {
      error = std::current_exception();
    }
    bool again;
    if (policy.retry_if) {
      if constexpr (std::is_void_v<T>) {
        again = policy.retry_if(result ? static_cast<const void*>(&*result) : nullptr, error);
      } else {
        again = policy.retry_if(result ? &*result : nullptr, error);
      }
    } else {
      again = error != nullptr && !is_aborted(error);
    }
    auto finish = [&]() -> T {
      if (error) std::rethrow_exception(error);
      if constexpr (!std::is_void_v<T>) return std::move(*result);
    };
    if (!again || attempt >= policy.max_attempts) co_return finish();

    if (token.cancelled()) {
      rec.abandoned();
      throw give_up(boost::asio::error::operation_aborted, "cancelled", attempt, error);
    }
    if (!RetryAccess::take(budget)) {
      rec.denied();
      throw give_up(make_error_code(RetryErrc::kBudgetExhausted), "retry budget exhausted", attempt,
                    error);
    }
    const std::chrono::nanoseconds delay = backoff(policy, attempt);
    if (delay.count() > 0) {
      if (!sleep) {
        sleep = std::make_unique<BackoffSleep>(co_await boost::asio::this_coro::executor);
        registration = token.on_cancel([s = sleep.get()] { s->cancel(); });
      }
      const std::int64_t start = async_now();
      auto [ec] =
          co_await sleep->async_wait(delay, boost::asio::as_tuple(boost::asio::use_awaitable));
      rec.backed_off(async_now() - start);
      if (ec || token.cancelled()) {
        RetryAccess::refund(budget);
        rec.abandoned();
        throw give_up(boost::asio::error::operation_aborted, "cancelled during backoff", attempt,
                      error);
      }
    }
    rec.attempted();
  }
}

}  // namespace detail

/// Runs `operation()` (returning asio::awaitable<T>) until it succeeds, retrying what `policy`
/// says to retry with jittered exponential backoff, while `budget` allows and `token` is not
/// cancelled. Returns the last attempt's result, or rethrows its exception, when it is not to be
/// retried or max_attempts is reached; throws RetryError when the budget refuses a retry
/// (RetryErrc::kBudgetExhausted) or the token is cancelled before or during a backoff
/// (operation_aborted: the sleep ends at once, from any thread). The awaiting coroutine's own
/// cancellation also ends the sleep. The token is not passed to the operation: bind it there
/// yourself (spawn with the token). `budget` must outlive the returned awaitable; the operation
/// and token are copied into it. Throws std::invalid_argument naming a bad policy value, before
/// any attempt. Records a request, then per retry: attempted, denied or abandoned, and the backoff
/// time.
template <class Op, class T = detail::RetryResultOf<Op>>
boost::asio::awaitable<T> retry(RetryBudget& budget, const CancellationToken& token,
                                const RetryPolicy<std::type_identity_t<T>>& policy, Op operation) {
  detail::validate_policy(policy);
  return detail::retry_loop<T>(budget, token, policy, std::move(operation));
}

}  // namespace stallscope

namespace boost::system {
template <>
struct is_error_code_enum<stallscope::RetryErrc> : std::true_type {};
}  // namespace boost::system
