#pragma once
// Pieces every async primitive (Channel, Semaphore, BlockingPool) needs the same way.
#include <cstddef>
#include <utility>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/system_executor.hpp>

namespace stallscope::detail {

// Posts handler(args...) to the handler's associated executor (system_executor if it has none):
// an async operation never completes inline, and never under the primitive's lock.
template <class Handler, class... Args>
void post_completion(Handler&& handler, Args&&... args) {
  auto ex = boost::asio::get_associated_executor(handler, boost::asio::system_executor());
  boost::asio::post(
      ex, [h = std::forward<Handler>(handler), ... a = std::forward<Args>(args)]() mutable {
        std::move(h)(std::move(a)...);
      });
}

// Outstanding work on a handler's associated executor while its operation waits.
template <class Handler>
using WorkGuard = boost::asio::executor_work_guard<
    boost::asio::associated_executor_t<Handler, boost::asio::system_executor>>;

template <class Handler>
WorkGuard<Handler> make_work_guard_for(const Handler& h) {
  return WorkGuard<Handler>(
      boost::asio::get_associated_executor(h, boost::asio::system_executor()));
}

// Leaving a wait queue has no side effects, so every kind of cancellation is honoured.
inline bool is_cancellation(boost::asio::cancellation_type type) noexcept {
  using boost::asio::cancellation_type;
  return (type & (cancellation_type::terminal | cancellation_type::partial |
                  cancellation_type::total)) != cancellation_type::none;
}

// An intrusive FIFO of waiters. Node has members `Node* prev`, `Node* next`, `bool linked`.
// Not thread-safe: the owner's lock guards it.
template <class Node>
struct IntrusiveFifo {
  Node* head = nullptr;
  Node* tail = nullptr;
  std::size_t size = 0;

  Node* front() const noexcept { return head; }
  void push(Node& w) noexcept {
    w.prev = tail;
    w.next = nullptr;
    (tail != nullptr ? tail->next : head) = &w;
    tail = &w;
    w.linked = true;
    ++size;
  }
  void erase(Node& w) noexcept {
    (w.prev != nullptr ? w.prev->next : head) = w.next;
    (w.next != nullptr ? w.next->prev : tail) = w.prev;
    w.prev = w.next = nullptr;
    w.linked = false;
    --size;
  }
};

}  // namespace stallscope::detail
