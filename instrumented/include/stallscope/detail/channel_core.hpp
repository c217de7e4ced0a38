#pragma once
// The machinery behind stallscope::Channel<T> (channel.hpp): the shared core that holds the
// lanes, the wait queues and the recorder, under one mutex. Not API.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/recycling_allocator.hpp>
#include <boost/container/small_vector.hpp>
#include <boost/system/error_code.hpp>

#include "stallscope/channel_types.hpp"
#include "stallscope/config.hpp"
#include "stallscope/detail/async_support.hpp"
#include "stallscope/detail/channel_recorder.hpp"
#include "stallscope/detail/waitfor_async.hpp"
#include "stallscope/log.hpp"

namespace stallscope {

namespace detail {

template <class T>
class ChannelCore final : public std::enable_shared_from_this<ChannelCore<T>>,
                          public WaitforSource {
 public:
  struct Waiter : WaitNode {
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
      post_completion_as(this->who, std::move(handler), std::move(this->result));
      work.reset();
    }
    WorkGuard<Handler> work;
    Handler handler;
  };
  template <class Handler, bool kOptional>
  struct AsyncRecv final : RecvWaiter {
    explicit AsyncRecv(Handler h) : work(make_work_guard_for(h)), handler(std::move(h)) {}
    void complete_async() override {
      complete_receive<kOptional>(std::move(handler), this->ec, std::move(this->item), this->who);
      work.reset();
    }
    WorkGuard<Handler> work;
    Handler handler;
  };

  // Posts a receive's completion. kOptional (async_next): void(error_code, std::optional<T>),
  // where a closed and drained channel is no error but an empty optional. Otherwise
  // void(error_code, T), with ChannelErrc::kClosed and a default T at the end.
  template <bool kOptional, class Handler>
  static void complete_receive(Handler&& handler, boost::system::error_code ec,
                               std::optional<T> item, Participant task) {
    if constexpr (kOptional) {
      if (ec == make_error_code(ChannelErrc::kClosed)) ec = {};
      post_completion_as(task, std::forward<Handler>(handler), ec, std::move(item));
    } else {
      post_completion_as(task, std::forward<Handler>(handler), ec, item ? std::move(*item) : T{});
    }
  }

  ChannelCore(std::string_view name, ChannelOptions<T> options)
      : options_(validate(std::move(options), name)), rec_(name, options_.capacity) {
    rec_.describe(to_string(options_.policy), options_.control_capacity);
    track();
  }

  ~ChannelCore() {
    untrack();
    const std::size_t left = data_.size() + control_.size();
    if (left == 0) return;
    rec_.fate(Lane::kData, ItemFate::kDropped, data_.size());
    rec_.fate(Lane::kControl, ItemFate::kDropped, control_.size());
    rec_.depth(0, async_now());
    clear_bytes();
    log(LogLevel::kWarning, "stallscope: channel \"" + std::string(rec_.name()) +
                                "\" destroyed with " + std::to_string(left) +
                                " items queued; counted as dropped (drain() it first)");
  }

  // ---- thread API ----
  SendResult<T> send(T item, Lane lane, bool may_wait,
                     std::optional<std::chrono::steady_clock::time_point> deadline) {
    const std::int64_t now = async_now();  // before the lock: not part of its hold time
    std::unique_lock lock(mu_);
    senders_seen_.unknown = true;  // a thread: see Peers
    Pending pending;
    std::optional<SendResult<T>> r = start_send(item, lane, may_wait, pending, now);
    if (r) {
      lock.unlock();
      pending.run();
      return std::move(*r);
    }
    SendWaiter w;
    w.item.emplace(std::move(item));
    w.who = sync_participant();
    w.task_series = current_task_series();
    enqueue_sender(w, now);
    if (!threads_.wait(lock, w, deadline)) {  // timed out while still queued
      unlink_sender(w);
      rec_.send_waited(async_now() - w.since_ns);
      rec_.fate(Lane::kData, ItemFate::kTimedOut);
      w.result = SendResult<T>{SendOutcome::kTimedOut, std::move(w.item)};
    }
    // Read before leaving: once left, the channel may be gone (the series lives on).
    const Series* series = rec_.profile_series();
    threads_.leave();
    lock.unlock();
    thread_waited(series, kOpSend, async_now() - w.since_ns);  // the block profile
    return std::move(w.result);
  }

  std::optional<T> receive(bool may_wait,
                           std::optional<std::chrono::steady_clock::time_point> deadline) {
    const std::int64_t now = async_now();
    std::unique_lock lock(mu_);
    receivers_seen_.unknown = true;  // a thread: see Peers
    Pending pending;
    if (std::optional<T> v = take(pending, now)) {
      lock.unlock();
      pending.run();
      return v;
    }
    if (closed_ || !may_wait) return std::nullopt;
    RecvWaiter w;
    w.who = sync_participant();
    w.task_series = current_task_series();
    enqueue_receiver(w, now);
    if (!threads_.wait(lock, w, deadline)) {
      unlink_receiver(w);
      rec_.recv_idled(async_now() - w.since_ns);
    }
    threads_.leave();
    return std::move(w.item);
  }

  // ---- async API ----
  // Whether a send now would likely wait (a hint, read without the mutex).
  bool may_queue() const noexcept {
    return options_.policy == OverflowPolicy::kWait && rec_.full();
  }
  // The block profile's draw for a send that may wait, made by the caller (profile_hooks.hpp).
  WaitTicket draw() const noexcept {
    WaitTicket t;
    t.draw(rec_.hint());
    return t;
  }

  template <class Handler>
  void async_send(Handler handler, T item, WaitTicket ticket = {}) {
    auto slot = boost::asio::get_associated_cancellation_slot(handler);
    const std::int64_t now = async_now();
    const Participant task = task_of(handler);
    in_task(task);
    std::unique_lock lock(mu_);
    senders_seen_.note(task != kNoParticipant ? task : kUnknownHolder);
    Pending pending;
    std::optional<SendResult<T>> r = start_send(item, Lane::kData, true, pending, now);
    if (r) {
      lock.unlock();
      pending.run();
      post_completion_as(task, std::move(handler), std::move(*r));
      return;
    }
    auto w = std::allocate_shared<AsyncSend<Handler>>(
        boost::asio::recycling_allocator<AsyncSend<Handler>>(), std::move(handler));
    w->item.emplace(std::move(item));
    w->self = w;
    w->who = task;
    w->task_series = current_task_series();
    w->profile = std::move(ticket);
    w->profile.draw(rec_.hint());  // not drawn by the caller: the hint said there was room
    task_waits(TaskWaitOp::kSend, rec_, now);
    enqueue_sender(*w, now);
    if (slot.is_connected()) {
      slot.template emplace<CancelWaiter<ChannelCore, SendWaiter>>(this->weak_from_this(),
                                                                   std::weak_ptr<SendWaiter>(w));
    }
  }

  template <bool kOptional, class Handler>
  void async_receive(Handler handler) {
    auto slot = boost::asio::get_associated_cancellation_slot(handler);
    const std::int64_t now = async_now();
    const Participant task = task_of(handler);
    in_task(task);
    std::unique_lock lock(mu_);
    receivers_seen_.note(task != kNoParticipant ? task : kUnknownHolder);
    Pending pending;
    std::optional<T> v = take(pending, now);
    if (v || closed_) {
      const bool closed = !v;
      lock.unlock();
      pending.run();
      complete_receive<kOptional>(
          std::move(handler),
          closed ? make_error_code(ChannelErrc::kClosed) : boost::system::error_code{},
          std::move(v), task);
      return;
    }
    auto w = std::allocate_shared<AsyncRecv<Handler, kOptional>>(
        boost::asio::recycling_allocator<AsyncRecv<Handler, kOptional>>(), std::move(handler));
    w->self = w;
    w->who = task;
    w->task_series = current_task_series();
    task_waits(TaskWaitOp::kReceive, rec_, now);
    enqueue_receiver(*w, now);
    if (slot.is_connected()) {
      slot.template emplace<CancelWaiter<ChannelCore, RecvWaiter>>(this->weak_from_this(),
                                                                   std::weak_ptr<RecvWaiter>(w));
    }
  }

  // ---- lifecycle ----
  void close() {
    std::unique_lock lock(mu_);
    Pending pending;
    if (!closed_) {
      closed_ = true;
      while (WaitNode* w = senders_.front()) {
        auto& s = static_cast<SendWaiter&>(*w);
        unlink_sender(s);
        rec_.fate(Lane::kData, ItemFate::kClosed);
        rec_.send_waited(s.profile, async_now() - s.since_ns);
        finish_send(s, SendResult<T>{SendOutcome::kClosed, std::move(s.item)}, pending);
      }
      while (WaitNode* w = receivers_.front()) {
        auto& r = static_cast<RecvWaiter&>(*w);
        unlink_receiver(r);
        rec_.recv_idled(async_now() - r.since_ns);
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
    clear_bytes();  // before the items are moved out
    for (auto& s : control_) out.push_back(std::move(s.value));
    for (auto& s : data_) out.push_back(std::move(s.value));
    control_.clear();
    data_.clear();
    rec_.depth(0, async_now());
    return out;
  }

  // Waits until no thread is blocked inside; called by ~Channel after close().
  void wait_threads_out() {
    std::unique_lock lock(mu_);
    threads_.wait_all_out(lock);
  }

  // A waiting async operation is cancelled (through CancelWaiter): it leaves the queue and
  // completes with its item back (send) or operation_aborted (receive). No-op once completed.
  void cancel(SendWaiter& w) {
    std::unique_lock lock(mu_);
    if (!w.linked) return;  // already completed
    unlink_sender(w);
    rec_.fate(Lane::kData, ItemFate::kCancelled);
    rec_.send_waited(w.profile, async_now() - w.since_ns);
    Pending pending;
    finish_send(w, SendResult<T>{SendOutcome::kCancelled, std::move(w.item)}, pending);
    lock.unlock();
    pending.run();
  }
  void cancel(RecvWaiter& w) {
    std::unique_lock lock(mu_);
    if (!w.linked) return;  // already has its item: nothing is lost
    unlink_receiver(w);
    rec_.recv_idled(async_now() - w.since_ns);
    w.ec = boost::asio::error::operation_aborted;
    Pending pending;
    finish_recv(w, pending);
    lock.unlock();
    pending.run();
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

#if STALLSCOPE_ENABLED
  // The wait-for graph: a blocked sender waits for the channel's receivers (any one of them), a
  // blocked receiver for its senders.
  void describe(WaitforBuilder& out) override {
    std::lock_guard lock(mu_);
    auto side = [&](const WaitList& waiting, const Peers& others, std::string_view what) {
      if (waiting.size == 0) return;
      const std::uint32_t res = out.resource(ResourceKind::kChannel, rec_.name(), what, true);
      for (std::size_t i = 0; i < Peers::kSize; ++i) {
        if (others.who[i] != 0) out.holder(res, others.who[i], 0);
      }
      if (others.unknown) out.holder(res, kUnknownHolder, 0);
      for (const WaitNode* w = waiting.front(); w != nullptr; w = w->next) {
        out.waiter(res, w->who, w->task_series, w->since_ns, what, w->profile.pcs());
      }
    };
    side(senders_, receivers_seen_, "send");
    side(receivers_, senders_seen_, "receive");
  }
#endif

 private:
  // The last few distinct participants that sent (received), for the wait-for graph; under mu_.
  // An operation whose participant is not known is noted as kUnknownHolder, a peer that can
  // always move: no cycle is found through it.
  // Once a fifth distinct peer came, or a thread used the side (its identity is not taken on the
  // thread API's fast path, to keep it at one store), the side also has an unknown peer, which
  // may still move: no cycle is closed through it.
  struct Peers {
    static constexpr std::size_t kSize = 4;
    Participant who[kSize] = {};
    std::size_t last = 0;
    bool unknown = false;
    void note(Participant p) noexcept {
      if (who[last] == p) [[likely]]
        return;
      note_new(p);
    }
    void note_new(Participant p) noexcept {
      for (std::size_t i = 0; i < kSize; ++i) {
        if (who[i] == p) {
          last = i;
          return;
        }
      }
      const std::size_t next = (last + 1) % kSize;
      unknown = unknown || who[next] != 0;
      who[next] = p;
      last = next;
    }
  };

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

  using WaitList = IntrusiveFifo<WaitNode>;

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

  // Tries to complete a send without waiting. nullopt: the caller must wait (kWait, full).
  // The two common paths (handed to a waiting receiver, queued) count themselves in one cell;
  // every other path counts rec_.sent() and its fate.
  // `now` is the caller's clock read, taken before the lock so the lock is held for less.
  std::optional<SendResult<T>> start_send(T& item, Lane lane, bool may_wait, Pending& pending,
                                          std::int64_t now) {
    if (lane == Lane::kData) {  // who sends, and how much (counted like rec_.sent: every send)
      rec_.data_sender();
      if (options_.size_of) [[unlikely]]
        rec_.bytes_sent(options_.size_of(item));
    }
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
      push_data(std::move(item), now);
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
        std::optional<T> evicted(pop_data());
        rec_.fate(lane, ItemFate::kDropped);
        push_data(std::move(item), now);
        return SendResult<T>{SendOutcome::kDroppedOldest, std::move(evicted)};
      }
      case OverflowPolicy::kDropNewest:
        rec_.fate(lane, ItemFate::kDropped);
        return SendResult<T>{SendOutcome::kDroppedNewest, std::move(item)};
      case OverflowPolicy::kMerge:
        for (auto it = data_.rbegin(); it != data_.rend(); ++it) {
          bool merged = false;
          // With a size function, the queued item's size change (merged or not) is counted.
          const std::int64_t before = options_.size_of ? bytes(it->value) : 0;
          try {
            merged = options_.merge(it->value, item);
          } catch (...) {
            if (options_.size_of) rec_.bytes_queued(bytes(it->value) - before);
            rec_.merge_error();
            rec_.fate(lane, ItemFate::kShed);
            return SendResult<T>{SendOutcome::kShed, std::move(item)};
          }
          if (options_.size_of) rec_.bytes_queued(bytes(it->value) - before);
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
    WaitNode* front = receivers_.front();
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
    rec_.taken(lane, now - q->front().enqueued_ns);
    if (lane == Lane::kControl) {
      std::optional<T> v(std::move(q->front().value));
      q->pop_front();
      return v;
    }
    std::optional<T> v(pop_data());
    if (WaitNode* front = senders_.front()) {
      auto& s = static_cast<SendWaiter&>(*front);
      unlink_sender(s);
      rec_.send_waited(s.profile, now - s.since_ns);
      push_data(std::move(*s.item), now);
      s.item.reset();
      finish_send(s, SendResult<T>{}, pending);
    }
    rec_.depth(data_.size(), now);
    return v;
  }

  // The data lane's queue, keeping ChannelOptions::size_of's queued bytes.
  void push_data(T&& item, std::int64_t now) {
    if (options_.size_of) [[unlikely]]
      rec_.bytes_queued(bytes(item));
    data_.push_back(Slot{std::move(item), now});
  }
  std::optional<T> pop_data() {
    std::optional<T> v(std::move(data_.front().value));
    if (options_.size_of) [[unlikely]]
      rec_.bytes_queued(-bytes(*v));
    data_.pop_front();
    return v;
  }
  std::int64_t bytes(const T& item) const noexcept {
    return static_cast<std::int64_t>(options_.size_of(item));
  }
  // Every data item leaves at once (drain, destruction).
  void clear_bytes() noexcept {
    if (!options_.size_of) return;
    std::int64_t sum = 0;
    for (const Slot& s : data_) sum += bytes(s.value);
    rec_.bytes_queued(-sum);
  }

  void enqueue_sender(SendWaiter& w, std::int64_t now) {
    w.since_ns = now;
    senders_.push(w);
    publish_senders();
    rec_.waiting_sender();  // the live map: every waiting sender is noted
  }
  void unlink_sender(SendWaiter& w) {
    senders_.erase(w);
    publish_senders();
  }
  void publish_senders() {
    const WaitNode* f = senders_.front();
    rec_.send_waiters(senders_.size, f ? f->since_ns : 0);
  }
  void enqueue_receiver(RecvWaiter& w, std::int64_t now) {
    w.since_ns = now;
    receivers_.push(w);
    rec_.recv_waiters(receivers_.size);
    rec_.waiting_receiver();  // the live map: every waiting receiver is noted
  }
  void unlink_receiver(RecvWaiter& w) {
    receivers_.erase(w);
    rec_.recv_waiters(receivers_.size);
  }

  void finish_send(SendWaiter& w, SendResult<T> result, Pending& pending) {
    w.result = std::move(result);
    if (w.cv != nullptr) {
      ThreadWaits::notify_done(w);
    } else {
      w.done = true;
      pending.sends.push_back(std::static_pointer_cast<SendWaiter>(std::move(w.self)));
    }
  }
  void finish_recv(RecvWaiter& w, Pending& pending) {
    if (w.cv != nullptr) {
      ThreadWaits::notify_done(w);
    } else {
      w.done = true;
      pending.recvs.push_back(std::static_pointer_cast<RecvWaiter>(std::move(w.self)));
    }
  }

  const ChannelOptions<T> options_;
  mutable std::mutex mu_;
  ChannelSite rec_;
  std::deque<Slot> data_;
  std::deque<Slot> control_;
  WaitList senders_;
  WaitList receivers_;
  bool closed_ = false;
  ThreadWaits threads_;
  Peers senders_seen_;
  Peers receivers_seen_;
};

}  // namespace detail

}  // namespace stallscope
