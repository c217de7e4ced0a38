#pragma once
/// stallscope::Channel<T>: a bounded MPMC channel that is honest about pressure.
///
///   stallscope::Channel<Record> records{"audit-writer", {.capacity = 256}};
///   auto r = co_await records.async_send(rec);          // from a coroutine (use_awaitable)
///   records.send(rec);                                    // from a thread (blocks while full)
///   Record got = co_await records.async_receive();      // or records.receive() on a thread
///   while (auto r = co_await records.async_next()) ...  // every item until closed and drained
///
/// What a send does when the data lane is full is the channel's OverflowPolicy: wait, drop the
/// oldest, drop the newest, merge into a queued item, or shed (fail fast). Every send returns a
/// SendResult naming what happened, and every outcome is counted. A control lane
/// (send_control) is received before any queued data. close() refuses new sends (and wakes
/// waiting senders with their item back) but loses nothing queued: receivers get every item,
/// then see closed; drain() takes the rest out.

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <boost/asio/async_result.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/error_code.hpp>

#include "stallscope/channel_types.hpp"
#include "stallscope/detail/channel_core.hpp"

namespace stallscope {

/// A bounded multi-producer multi-consumer channel recording under `name` (kind "channel"):
/// send wait (stallscope_wait_seconds{op="send"}, a stall), receive idle time (not a stall),
/// depth, capacity, high water, time at capacity, queue time, and what became of every item;
/// the distinct task names sending on the data lane (up to 16), and with ChannelOptions::size_of
/// the bytes sent and queued.
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
    // The block profile draws here, in the caller's frames, when the send may wait.
    detail::WaitTicket ticket;
    if (core_->may_queue()) [[unlikely]]
      ticket = core_->draw();
    return boost::asio::async_initiate<Token, void(SendResult<T>)>(
        [core = core_.get(), t = std::move(ticket)](auto handler, T v) mutable {
          core->async_send(std::move(handler), std::move(v), std::move(t));
        },
        token, std::move(item));
  }
  /// Completion signature void(error_code, T): ChannelErrc::kClosed once closed and empty,
  /// operation_aborted when cancelled (a cancelled receive never takes an item).
  template <class Token = boost::asio::use_awaitable_t<>>
  requires std::is_default_constructible_v<T>
  auto async_receive(Token&& token = {}) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, T)>(
        [core = core_.get()](auto handler) {
          core->template async_receive<false>(std::move(handler));
        },
        token);
  }
  /// Receive until closed, with no error at the end: completion signature
  /// void(error_code, std::optional<T>): the next item (control first), or an empty optional
  /// once the channel is closed and drained; operation_aborted when cancelled (with
  /// use_awaitable it throws, so a cancelled consumer unwinds). The consumer loop:
  ///
  ///   while (std::optional<Record> r = co_await records.async_next()) write(*r);
  template <class Token = boost::asio::use_awaitable_t<>>
  auto async_next(Token&& token = {}) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, std::optional<T>)>(
        [core = core_.get()](auto handler) {
          core->template async_receive<true>(std::move(handler));
        },
        token);
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
