#pragma once
/// The vocabulary of stallscope::Channel<T> (channel.hpp): overflow policies, send outcomes and
/// results, options, and the error code of a receive on a closed channel.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include <boost/system/error_code.hpp>

#include "stallscope/detail/enum_names.hpp"

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
  static constexpr std::string_view kNames[] = {"enqueued",  "dropped_oldest", "dropped_newest",
                                                "merged",    "shed",           "closed",
                                                "cancelled", "timed_out"};  // SendOutcome's order
  return detail::enum_name(outcome, kNames);
}

inline std::string_view to_string(OverflowPolicy policy) noexcept {
  static constexpr std::string_view kNames[] = {"wait", "drop_oldest", "drop_newest", "merge",
                                                "shed"};  // OverflowPolicy's order
  return detail::enum_name(policy, kNames);
}

/// What became of one send. [[nodiscard]]: a refused item comes back in `item`, and dropping
/// the result would drop the item with it.
template <class T>
struct [[nodiscard]] SendResult {
  SendOutcome outcome = SendOutcome::kEnqueued;
  /// The item given back: the refused one, or for kDroppedOldest the evicted one.
  std::optional<T> item{};
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
  std::function<bool(T& queued, T& incoming)> merge{};
  /// kShed: also shed while the oldest queued item has waited longer than this (0: off).
  std::chrono::nanoseconds shed_after{0};
  /// Control-lane capacity, at least 1. A full control lane sheds (a control send never waits).
  std::size_t control_capacity = 16;
  /// Optional: the bytes one item stands for (a payload's size, not sizeof(T)). When set, the
  /// data lane records bytes sent (stallscope_channel_sent_bytes_total) and bytes queued now
  /// (stallscope_channel_queued_bytes); unset, nothing is measured and nothing costs more.
  /// Called under the channel's internal lock when an item is sent, queued, taken, dropped or
  /// merged (before and after): it must be cheap, must not throw (a throw ends the process), and
  /// must give the same size for an item while it is queued (merge changes are measured).
  std::function<std::size_t(const T& item)> size_of{};
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

}  // namespace stallscope
