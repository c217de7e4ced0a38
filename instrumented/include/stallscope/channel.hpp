#pragma once
/// stallscope::Channel<T>: a bounded MPMC channel that is honest about pressure.
///
///   stallscope::Channel<Record> records{"audit-writer", {.capacity = 256}};
///   auto r = co_await records.async_send(rec);          // from a coroutine (use_awaitable)
///   records.send(rec);                                    // from a thread (blocks while full)
///   Record got = co_await records.async_receive();      // or records.receive() on a thread
///
/// What a send does when the data lane is full is the channel's OverflowPolicy: wait, drop the
/// oldest, drop the newest, merge into a queued item, or shed (fail fast). Every send returns a
/// SendResult naming what happened, and every outcome is counted. A control lane
/// (send_control) is received before any queued data. close() refuses new sends (and wakes
/// waiting senders with their item back) but loses nothing queued: receivers get every item,
/// then see closed; drain() takes the rest out.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/recycling_allocator.hpp>
#include <boost/asio/system_executor.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/container/small_vector.hpp>
#include <boost/system/error_code.hpp>

#include "stallscope/clock.hpp"
#include "stallscope/config.hpp"
#include "stallscope/detail/async_support.hpp"
#include "stallscope/log.hpp"
#include "stallscope/registry.hpp"
#if STALLSCOPE_ENABLED
#include "stallscope/detail/channel_recorder.hpp"
#endif

namespace stallscope {

/// What a send does when the data lane is full.
enum class OverflowPolicy : std::uint8_t {
  kWait,        ///< the sender waits for room (a coroutine suspends, a thread blocks)
  kDropOldest,  ///< the oldest queued item is evicted (and handed back to this sender)
  kDropNewest,  ///< the new item is refused and handed back
  kMerge,       ///< ChannelOptions::merge combines the new item into a queued one
  kShed,        ///< the send fails fast; also when the oldest item is older than shed_after
};

/// What happened to one send.
enum class SendOutcome : std::uint8_t {
  kEnqueued,       ///< queued (or handed straight to a waiting receiver)
  kDroppedOldest,  ///< queued; the oldest item was evicted and is in SendResult::item
  kDroppedNewest,  ///< refused by kDropNewest; the item is returned
  kMerged,         ///< merged into a queued item
  kShed,           ///< refused fast (kShed, try_send while full, a merge that threw); returned
  kClosed,         ///< the channel is closed (also for senders that were waiting); returned
  kCancelled,      ///< an async send was cancelled while waiting; returned, never queued
  kTimedOut,       ///< send_for/send_until gave up; returned, never queued
};

inline std::string_view to_string(SendOutcome outcome) noexcept {
  switch (outcome) {
    case SendOutcome::kEnqueued:
      return "enqueued";
    case SendOutcome::kDroppedOldest:
      return "dropped_oldest";
    case SendOutcome::kDroppedNewest:
      return "dropped_newest";
    case SendOutcome::kMerged:
      return "merged";
    case SendOutcome::kShed:
      return "shed";
    case SendOutcome::kClosed:
      return "closed";
    case SendOutcome::kCancelled:
      return "cancelled";
    case SendOutcome::kTimedOut:
      return "timed_out";
  }
  return "unknown";
}

inline std::string_view to_string(OverflowPolicy policy) noexcept {
  switch (policy) {
    case OverflowPolicy::kWait:
      return "wait";
    case OverflowPolicy::kDropOldest:
      return "drop_oldest";
    case OverflowPolicy::kDropNewest:
      return "drop_newest";
    case OverflowPolicy::kMerge:
      return "merge";
    case OverflowPolicy::kShed:
      return "shed";
  }
  return "unknown";
}

template <class T>
struct SendResult {
  SendOutcome outcome = SendOutcome::kEnqueued;
  /// The item given back: the refused one, or for kDroppedOldest the evicted one.
  std::optional<T> item;
  /// The sent item is in the channel (queued, delivered or merged).
  bool accepted() const noexcept {
    return outcome == SendOutcome::kEnqueued || outcome == SendOutcome::kDroppedOldest ||
           outcome == SendOutcome::kMerged;
  }
};

template <class T>
struct ChannelOptions {
  /// Data-lane capacity, at least 1.
  std::size_t capacity = 0;
  OverflowPolicy policy = OverflowPolicy::kWait;
  /// kMerge: merge(queued, incoming) folds `incoming` into `queued` and returns true, or returns
  /// false to try the next queued item (newest first). No match (or a throw): shed.
  /// Called with the channel's internal lock held: keep it short and never touch the channel.
  std::function<bool(T& queued, T& incoming)> merge;
  /// kShed: also shed while the oldest queued item has waited longer than this (0: off).
  std::chrono::nanoseconds shed_after{0};
  /// Control-lane capacity, at least 1. A full control lane sheds (a control send never waits).
  std::size_t control_capacity = 16;
};

/// Error codes of async_receive.
enum class ChannelErrc { kClosed = 1 };
inline const boost::system::error_category& channel_category() noexcept {
  struct Category final : boost::system::error_category {
    const char* name() const noexcept override { return "stallscope.channel"; }
    std::string message(int ev) const override {
      return ev == static_cast<int>(ChannelErrc::kClosed) ? "channel closed" : "unknown";
    }
  };
  static const Category category;
  return category;
}
inline boost::system::error_code make_error_code(ChannelErrc e) noexcept {
  return {static_cast<int>(e), channel_category()};
}

namespace detail {

#if !STALLSCOPE_ENABLED
enum class ItemFate {
  kDelivered,
  kDropped,
  kMerged,
  kShed,
  kClosed,
  kCancelled,
  kTimedOut,
  kDrained
};
enum class Lane { kData, kControl };
#endif

#if STALLSCOPE_ENABLED
using ChannelRecorder = ChannelSite;
#else
// Compiled out: the same calls, doing nothing, reading no clock.
class ChannelRecorder {
 public:
  ChannelRecorder(std::string_view, std::size_t) {}
  void handed_off(Lane, std::int64_t) noexcept {}
  void queued(Lane) noexcept {}
  void taken(Lane, std::int64_t) noexcept {}
  void sent(Lane) noexcept {}
  void fate(Lane, ItemFate, std::uint64_t = 1) noexcept {}
  void merge_error() noexcept {}
  void send_no_wait() noexcept {}
  void send_waited(std::int64_t) noexcept {}
  void recv_idled(std::int64_t) noexcept {}
  void depth(std::size_t, std::int64_t) noexcept {}
  void send_waiters(std::size_t, std::int64_t) noexcept {}
  void recv_waiters(std::size_t) noexcept {}
  std::string_view name() const noexcept { return {}; }
};
#endif

inline std::int64_t channel_now() noexcept {
#if STALLSCOPE_ENABLED
  return now_ns();
#else
  return 0;
#endif
}

template <class T>
class ChannelCore final : public std::enable_shared_from_this<ChannelCore<T>> {
 public:
  struct Waiter {
    Waiter* prev = nullptr;
    Waiter* next = nullptr;
    bool linked = false;
    bool done = false;
    std::int64_t since_ns = 0;
    std::condition_variable* cv = nullptr;  // thread waiter
    // Async waiter: kept alive by `self` while linked; cancellation holds a weak_ptr.
    std::shared_ptr<Waiter> self;
  };
  struct SendWaiter : Waiter {
    std::optional<T> item;
    SendResult<T> result;
    virtual void complete_async() {}  // async waiters: post the handler with `result`
    virtual ~SendWaiter() = default;
  };
  struct RecvWaiter : Waiter {
    std::optional<T> item;
    boost::system::error_code ec;
    virtual void complete_async() {}
    virtual ~RecvWaiter() = default;
  };
  // One allocation per waiting async operation (the handler lives in the waiter), from Asio's
  // per-thread recycling allocator.
  template <class Handler>
  struct AsyncSend final : SendWaiter {
    explicit AsyncSend(Handler h) : work(make_work_guard_for(h)), handler(std::move(h)) {}
    void complete_async() override {
      post_completion(std::move(handler), std::move(this->result));
      work.reset();
    }
    WorkGuard<Handler> work;
    Handler handler;
  };
  template <class Handler>
  struct AsyncRecv final : RecvWaiter {
    explicit AsyncRecv(Handler h) : work(make_work_guard_for(h)), handler(std::move(h)) {}
    void complete_async() override {
      post_completion(std::move(handler), this->ec, this->item ? std::move(*this->item) : T{});
      work.reset();
    }
    WorkGuard<Handler> work;
    Handler handler;
  };

  ChannelCore(std::string_view name, ChannelOptions<T> options)
      : options_(validate(std::move(options), name)), rec_(name, options_.capacity) {}

  ~ChannelCore() {
    const std::size_t left = data_.size() + control_.size();
    if (left == 0) return;
    rec_.fate(Lane::kData, ItemFate::kDropped, data_.size());
    rec_.fate(Lane::kControl, ItemFate::kDropped, control_.size());
    rec_.depth(0, channel_now());
    log(LogLevel::kWarning, "stallscope: channel \"" + std::string(rec_.name()) +
                                "\" destroyed with " + std::to_string(left) +
                                " items queued; counted as dropped (drain() it first)");
  }

  // ---- thread API ----
  SendResult<T> send(T item, Lane lane, bool may_wait,
                     std::optional<std::chrono::steady_clock::time_point> deadline) {
    const std::int64_t now = channel_now();  // before the lock: not part of its hold time
    std::unique_lock lock(mu_);
    Pending pending;
    std::optional<SendResult<T>> r = start_send(item, lane, may_wait, pending, now);
    if (r) {
      lock.unlock();
      pending.run();
      return std::move(*r);
    }
    std::condition_variable cv;
    SendWaiter w;
    w.cv = &cv;
    w.item.emplace(std::move(item));
    enqueue_sender(w, now);
    ++thread_waiters_;
    if (deadline) {
      cv.wait_until(lock, *deadline, [&] { return w.done; });
    } else {
      cv.wait(lock, [&] { return w.done; });
    }
    if (!w.done) {  // timed out while still queued
      unlink_sender(w);
      rec_.send_waited(channel_now() - w.since_ns);
      rec_.fate(Lane::kData, ItemFate::kTimedOut);
      w.result = SendResult<T>{SendOutcome::kTimedOut, std::move(w.item)};
    }
    leave_thread_wait();
    return std::move(w.result);
  }

  std::optional<T> receive(bool may_wait,
                           std::optional<std::chrono::steady_clock::time_point> deadline) {
    const std::int64_t now = channel_now();
    std::unique_lock lock(mu_);
    Pending pending;
    if (std::optional<T> v = take(pending, now)) {
      lock.unlock();
      pending.run();
      return v;
    }
    if (closed_ || !may_wait) return std::nullopt;
    std::condition_variable cv;
    RecvWaiter w;
    w.cv = &cv;
    enqueue_receiver(w, now);
    ++thread_waiters_;
    if (deadline) {
      cv.wait_until(lock, *deadline, [&] { return w.done; });
    } else {
      cv.wait(lock, [&] { return w.done; });
    }
    if (!w.done) {
      unlink_receiver(w);
      rec_.recv_idled(channel_now() - w.since_ns);
    }
    leave_thread_wait();
    return std::move(w.item);
  }

  // ---- async API ----
  template <class Handler>
  void async_send(Handler handler, T item) {
    auto slot = boost::asio::get_associated_cancellation_slot(handler);
    const std::int64_t now = channel_now();
    std::unique_lock lock(mu_);
    Pending pending;
    std::optional<SendResult<T>> r = start_send(item, Lane::kData, true, pending, now);
    if (r) {
      lock.unlock();
      pending.run();
      post_completion(std::move(handler), std::move(*r));
      return;
    }
    auto w = std::allocate_shared<AsyncSend<Handler>>(
        boost::asio::recycling_allocator<AsyncSend<Handler>>(), std::move(handler));
    w->item.emplace(std::move(item));
    w->self = w;
    enqueue_sender(*w, now);
    if (slot.is_connected()) {
      slot.template emplace<CancelSend>(this->weak_from_this(), std::weak_ptr<SendWaiter>(w));
    }
  }

  template <class Handler>
  void async_receive(Handler handler) {
    auto slot = boost::asio::get_associated_cancellation_slot(handler);
    const std::int64_t now = channel_now();
    std::unique_lock lock(mu_);
    Pending pending;
    std::optional<T> v = take(pending, now);
    if (v || closed_) {
      const bool closed = !v;
      lock.unlock();
      pending.run();
      if (closed) {
        post_completion(std::move(handler), make_error_code(ChannelErrc::kClosed), T{});
      } else {
        post_completion(std::move(handler), boost::system::error_code{}, std::move(*v));
      }
      return;
    }
    auto w = std::allocate_shared<AsyncRecv<Handler>>(
        boost::asio::recycling_allocator<AsyncRecv<Handler>>(), std::move(handler));
    w->self = w;
    enqueue_receiver(*w, now);
    if (slot.is_connected()) {
      slot.template emplace<CancelRecv>(this->weak_from_this(), std::weak_ptr<RecvWaiter>(w));
    }
  }

  // ---- lifecycle ----
  void close() {
    std::unique_lock lock(mu_);
    Pending pending;
    if (!closed_) {
      closed_ = true;
      while (Waiter* w = senders_.front()) {
        auto& s = static_cast<SendWaiter&>(*w);
        unlink_sender(s);
        rec_.fate(Lane::kData, ItemFate::kClosed);
        rec_.send_waited(channel_now() - s.since_ns);
        finish_send(s, SendResult<T>{SendOutcome::kClosed, std::move(s.item)}, pending);
      }
      while (Waiter* w = receivers_.front()) {
        auto& r = static_cast<RecvWaiter&>(*w);
        unlink_receiver(r);
        rec_.recv_idled(channel_now() - r.since_ns);
        r.ec = make_error_code(ChannelErrc::kClosed);
        finish_recv(r, pending);
      }
    }
    lock.unlock();
    pending.run();
  }

  std::vector<T> drain() {
    std::lock_guard lock(mu_);
    std::vector<T> out;
    out.reserve(control_.size() + data_.size());
    rec_.fate(Lane::kControl, ItemFate::kDrained, control_.size());
    rec_.fate(Lane::kData, ItemFate::kDrained, data_.size());
    for (auto& s : control_) out.push_back(std::move(s.value));
    for (auto& s : data_) out.push_back(std::move(s.value));
    control_.clear();
    data_.clear();
    rec_.depth(0, channel_now());
    return out;
  }

  // Waits until no thread is blocked inside; called by ~Channel after close().
  void wait_threads_out() {
    std::unique_lock lock(mu_);
    threads_out_.wait(lock, [&] { return thread_waiters_ == 0; });
  }

  bool closed() const {
    std::lock_guard lock(mu_);
    return closed_;
  }
  std::size_t size() const {
    std::lock_guard lock(mu_);
    return data_.size();
  }
  std::size_t control_size() const {
    std::lock_guard lock(mu_);
    return control_.size();
  }
  const ChannelOptions<T>& options() const noexcept { return options_; }
  std::string_view name() const noexcept { return rec_.name(); }

 private:
  struct Slot {
    T value;
    std::int64_t enqueued_ns;
  };

  // Async completions gathered under the lock, run after it is released.
  // Inline room for the usual one or two completions: no allocation per operation.
  struct Pending {
    boost::container::small_vector<std::shared_ptr<SendWaiter>, 2> sends;
    boost::container::small_vector<std::shared_ptr<RecvWaiter>, 2> recvs;
    void run() {
      for (auto& s : sends) s->complete_async();
      for (auto& r : recvs) r->complete_async();
    }
  };

  using WaitList = IntrusiveFifo<Waiter>;

  // Constructors, not aggregates: emplace() initializes them with parentheses, which clang
  // before 16 does not accept for aggregates (P0960).
  struct CancelSend {
    CancelSend(std::weak_ptr<ChannelCore> c, std::weak_ptr<SendWaiter> w)
        : core(std::move(c)), waiter(std::move(w)) {}
    std::weak_ptr<ChannelCore> core;
    std::weak_ptr<SendWaiter> waiter;
    void operator()(boost::asio::cancellation_type type) {
      if (!is_cancellation(type)) return;
      auto c = core.lock();
      auto w = waiter.lock();
      if (c && w) c->cancel_send(*w);
    }
  };
  struct CancelRecv {
    CancelRecv(std::weak_ptr<ChannelCore> c, std::weak_ptr<RecvWaiter> w)
        : core(std::move(c)), waiter(std::move(w)) {}
    std::weak_ptr<ChannelCore> core;
    std::weak_ptr<RecvWaiter> waiter;
    void operator()(boost::asio::cancellation_type type) {
      if (!is_cancellation(type)) return;
      auto c = core.lock();
      auto w = waiter.lock();
      if (c && w) c->cancel_recv(*w);
    }
  };

  static ChannelOptions<T> validate(ChannelOptions<T> o, std::string_view name) {
    auto bad = [&](const std::string& what) {
      return std::invalid_argument("stallscope: channel \"" + std::string(name) + "\": " + what);
    };
    if (o.capacity == 0) {
      throw bad("capacity 0 is not allowed (a channel holds at least 1 item)");
    }
    if (o.control_capacity == 0) throw bad("control_capacity 0 is not allowed");
    if (o.policy == OverflowPolicy::kMerge && !o.merge) {
      throw bad("policy merge needs ChannelOptions::merge");
    }
    if (o.shed_after.count() < 0) {
      throw bad("shed_after " + std::to_string(o.shed_after.count()) + " ns is negative");
    }
    if (o.shed_after.count() > 0 && o.policy != OverflowPolicy::kShed) {
      throw bad("shed_after is only meaningful with policy shed, not " +
                std::string(to_string(o.policy)));
    }
    return o;
  }

  void cancel_send(SendWaiter& w) {
    std::unique_lock lock(mu_);
    if (!w.linked) return;  // already completed
    unlink_sender(w);
    rec_.fate(Lane::kData, ItemFate::kCancelled);
    rec_.send_waited(channel_now() - w.since_ns);
    Pending pending;
    finish_send(w, SendResult<T>{SendOutcome::kCancelled, std::move(w.item)}, pending);
    lock.unlock();
    pending.run();
  }

  void cancel_recv(RecvWaiter& w) {
    std::unique_lock lock(mu_);
    if (!w.linked) return;  // already has its item: nothing is lost
    unlink_receiver(w);
    rec_.recv_idled(channel_now() - w.since_ns);
    w.ec = boost::asio::error::operation_aborted;
    Pending pending;
    finish_recv(w, pending);
    lock.unlock();
    pending.run();
  }

  // Tries to complete a send without waiting. nullopt: the caller must wait (kWait, full).
  // The two common paths (handed to a waiting receiver, queued) count themselves in one cell;
  // every other path counts rec_.sent() and its fate.
  // `now` is the caller's clock read, taken before the lock so the lock is held for less.
  std::optional<SendResult<T>> start_send(T& item, Lane lane, bool may_wait, Pending& pending,
                                          std::int64_t now) {
    if (closed_) {
      rec_.sent(lane);
      rec_.fate(lane, ItemFate::kClosed);
      return SendResult<T>{SendOutcome::kClosed, std::move(item)};
    }
    if (lane == Lane::kControl) {
      if (hand_to_receiver(item, lane, now, pending)) return SendResult<T>{};
      if (control_.size() >= options_.control_capacity) {
        rec_.sent(lane);
        rec_.fate(lane, ItemFate::kShed);
        return SendResult<T>{SendOutcome::kShed, std::move(item)};
      }
      control_.push_back(Slot{std::move(item), now});
      rec_.queued(lane);
      return SendResult<T>{};
    }
    if (hand_to_receiver(item, lane, now, pending)) return SendResult<T>{};
    if (options_.policy == OverflowPolicy::kShed && options_.shed_after.count() > 0 &&
        !data_.empty() && now - data_.front().enqueued_ns > options_.shed_after.count()) {
      rec_.sent(lane);
      rec_.fate(lane, ItemFate::kShed);
      return SendResult<T>{SendOutcome::kShed, std::move(item)};
    }
    if (data_.size() < options_.capacity) {
      data_.push_back(Slot{std::move(item), now});
      rec_.queued(lane);
      rec_.depth(data_.size(), now);
      return SendResult<T>{};
    }
    rec_.sent(lane);
    switch (options_.policy) {
      case OverflowPolicy::kWait:
        if (may_wait) return std::nullopt;
        rec_.fate(lane, ItemFate::kShed);
        return SendResult<T>{SendOutcome::kShed, std::move(item)};
      case OverflowPolicy::kDropOldest: {
        rec_.send_no_wait();
        std::optional<T> evicted(std::move(data_.front().value));
        data_.pop_front();
        rec_.fate(lane, ItemFate::kDropped);
        data_.push_back(Slot{std::move(item), now});
        return SendResult<T>{SendOutcome::kDroppedOldest, std::move(evicted)};
      }
      case OverflowPolicy::kDropNewest:
        rec_.fate(lane, ItemFate::kDropped);
        return SendResult<T>{SendOutcome::kDroppedNewest, std::move(item)};
      case OverflowPolicy::kMerge:
        for (auto it = data_.rbegin(); it != data_.rend(); ++it) {
          bool merged = false;
          try {
            merged = options_.merge(it->value, item);
          } catch (...) {
            rec_.merge_error();
            rec_.fate(lane, ItemFate::kShed);
            return SendResult<T>{SendOutcome::kShed, std::move(item)};
          }
          if (merged) {
            rec_.send_no_wait();
            rec_.fate(lane, ItemFate::kMerged);
            return SendResult<T>{SendOutcome::kMerged, std::nullopt};
          }
        }
        rec_.fate(lane, ItemFate::kShed);
        return SendResult<T>{SendOutcome::kShed, std::move(item)};
      case OverflowPolicy::kShed:
        rec_.fate(lane, ItemFate::kShed);
        return SendResult<T>{SendOutcome::kShed, std::move(item)};
    }
    return std::nullopt;
  }

  bool hand_to_receiver(T& item, Lane lane, std::int64_t now, Pending& pending) {
    Waiter* front = receivers_.front();
    if (front == nullptr) return false;
    auto& r = static_cast<RecvWaiter&>(*front);
    unlink_receiver(r);
    rec_.handed_off(lane, now - r.since_ns);
    r.item.emplace(std::move(item));
    finish_recv(r, pending);
    return true;
  }

  // Takes the next item (control first); refills the data lane from a waiting sender.
  std::optional<T> take(Pending& pending, std::int64_t now) {
    std::deque<Slot>* q = !control_.empty() ? &control_ : (!data_.empty() ? &data_ : nullptr);
    if (q == nullptr) return std::nullopt;
    const Lane lane = q == &control_ ? Lane::kControl : Lane::kData;
    std::optional<T> v(std::move(q->front().value));
    rec_.taken(lane, now - q->front().enqueued_ns);
    q->pop_front();
    if (lane == Lane::kData) {
      if (Waiter* front = senders_.front()) {
        auto& s = static_cast<SendWaiter&>(*front);
        unlink_sender(s);
        rec_.send_waited(now - s.since_ns);
        data_.push_back(Slot{std::move(*s.item), now});
        s.item.reset();
        finish_send(s, SendResult<T>{}, pending);
      }
      rec_.depth(data_.size(), now);
    }
    return v;
  }

  void enqueue_sender(SendWaiter& w, std::int64_t now) {
    w.since_ns = now;
    senders_.push(w);
    publish_senders();
  }
  void unlink_sender(SendWaiter& w) {
    senders_.erase(w);
    publish_senders();
  }
  void publish_senders() {
    const Waiter* f = senders_.front();
    rec_.send_waiters(senders_.size, f ? f->since_ns : 0);
  }
  void enqueue_receiver(RecvWaiter& w, std::int64_t now) {
    w.since_ns = now;
    receivers_.push(w);
    rec_.recv_waiters(receivers_.size);
  }
  void unlink_receiver(RecvWaiter& w) {
    receivers_.erase(w);
    rec_.recv_waiters(receivers_.size);
  }

  void finish_send(SendWaiter& w, SendResult<T> result, Pending& pending) {
    w.result = std::move(result);
    w.done = true;
    if (w.cv != nullptr) {
      w.cv->notify_one();  // under the lock: the waiter cannot return (and free cv) before this
    } else {
      pending.sends.push_back(std::static_pointer_cast<SendWaiter>(std::move(w.self)));
    }
  }
  void finish_recv(RecvWaiter& w, Pending& pending) {
    w.done = true;
    if (w.cv != nullptr) {
      w.cv->notify_one();
    } else {
      pending.recvs.push_back(std::static_pointer_cast<RecvWaiter>(std::move(w.self)));
    }
  }
  void leave_thread_wait() {
    if (--thread_waiters_ == 0) threads_out_.notify_all();
  }

  const ChannelOptions<T> options_;
  mutable std::mutex mu_;
  ChannelRecorder rec_;
  std::deque<Slot> data_;
  std::deque<Slot> control_;
  WaitList senders_;
  WaitList receivers_;
  bool closed_ = false;
  std::size_t thread_waiters_ = 0;
  std::condition_variable threads_out_;
};

}  // namespace detail

/// A bounded multi-producer multi-consumer channel recording under `name` (kind "channel"):
/// send wait (stallscope_wait_seconds{op="send"}, a stall), receive idle time (not a stall),
/// depth, capacity, high water, time at capacity, queue time, and what became of every item.
///
/// Thread-safe: any mix of threads and coroutines may send and receive. Cost per operation: one
/// internal mutex, two clock reads per item (queue time, or a waiting receiver's idle time), read
/// outside the lock, no allocation for thread sends and receives that do not wait. Asio completion
/// handlers run on their associated executor (the coroutine's for use_awaitable; system_executor
/// for a plain callback), never inline. Destruction closes the channel and waits for blocked
/// threads to leave; pending async operations complete with kClosed / ChannelErrc::kClosed; items
/// still queued are counted as dropped and logged. As with Asio's own I/O objects, an async
/// operation must be started (a stored awaitable co_awaited, a deferred operation launched) while
/// the channel still exists. T must be nothrow move constructible (and default constructible for
/// async_receive).
template <class T>
class Channel final {
  static_assert(std::is_nothrow_move_constructible_v<T>,
                "stallscope::Channel<T> needs a nothrow move constructible T");

 public:
  using value_type = T;

  /// Throws std::invalid_argument on a bad name, capacity 0, merge without a function, ...
  Channel(std::string_view name, ChannelOptions<T> options)
      : core_(std::make_shared<detail::ChannelCore<T>>(name, std::move(options))) {}
  Channel(std::string_view name, std::size_t capacity,
          OverflowPolicy policy = OverflowPolicy::kWait)
      : Channel(name, make_options(capacity, policy)) {}
  ~Channel() {
    core_->close();
    core_->wait_threads_out();
  }
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  // ---- from threads ----
  /// Applies the policy; with kWait blocks while full. Returns what happened.
  SendResult<T> send(T item) { return core_->send(std::move(item), lane_data(), true, {}); }
  /// Never blocks: with kWait a full channel sheds.
  SendResult<T> try_send(T item) { return core_->send(std::move(item), lane_data(), false, {}); }
  template <class Rep, class Period>
  SendResult<T> send_for(T item, std::chrono::duration<Rep, Period> timeout) {
    return core_->send(
        std::move(item), lane_data(), true,
        std::chrono::steady_clock::now() +
            std::chrono::duration_cast<std::chrono::steady_clock::duration>(timeout));
  }
  /// The control lane: received before any data; never waits; sheds when the lane is full.
  SendResult<T> send_control(T item) {
    return core_->send(std::move(item), lane_control(), false, {});
  }
  /// Blocks until an item arrives (control first) or the channel is closed and empty (nullopt).
  std::optional<T> receive() { return core_->receive(true, {}); }
  std::optional<T> try_receive() { return core_->receive(false, {}); }
  template <class Rep, class Period>
  std::optional<T> receive_for(std::chrono::duration<Rep, Period> timeout) {
    return core_->receive(
        true, std::chrono::steady_clock::now() +
                  std::chrono::duration_cast<std::chrono::steady_clock::duration>(timeout));
  }

  // ---- from coroutines and callbacks ----
  /// Completion signature void(SendResult<T>): never an error code, so the item comes back
  /// even when the send is cancelled (kCancelled) or the channel closes (kClosed).
  template <class Token = boost::asio::use_awaitable_t<>>
  auto async_send(T item, Token&& token = {}) {
    return boost::asio::async_initiate<Token, void(SendResult<T>)>(
        [core = core_.get()](auto handler, T v) {
          core->async_send(std::move(handler), std::move(v));
        },
        token, std::move(item));
  }
  /// Completion signature void(error_code, T): ChannelErrc::kClosed once closed and empty,
  /// operation_aborted when cancelled (a cancelled receive never takes an item).
  template <class Token = boost::asio::use_awaitable_t<>>
  requires std::is_default_constructible_v<T>
  auto async_receive(Token&& token = {}) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, T)>(
        [core = core_.get()](auto handler) { core->async_receive(std::move(handler)); }, token);
  }

  // ---- lifecycle ----
  /// Idempotent. New and waiting sends complete kClosed with their item; queued items stay
  /// for receivers.
  void close() { core_->close(); }
  /// Takes every queued item out (control first), counted as drained.
  std::vector<T> drain() { return core_->drain(); }
  bool closed() const { return core_->closed(); }
  /// Data items queued now.
  std::size_t size() const { return core_->size(); }
  std::size_t capacity() const noexcept { return core_->options().capacity; }
  OverflowPolicy policy() const noexcept { return core_->options().policy; }

 private:
  static ChannelOptions<T> make_options(std::size_t capacity, OverflowPolicy policy) {
    ChannelOptions<T> o;
    o.capacity = capacity;
    o.policy = policy;
    return o;
  }
  static constexpr auto lane_data() { return detail::Lane::kData; }
  static constexpr auto lane_control() { return detail::Lane::kControl; }
  std::shared_ptr<detail::ChannelCore<T>> core_;
};

}  // namespace stallscope
