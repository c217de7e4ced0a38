#pragma once
// Pieces every async primitive (Channel, Semaphore, AsyncMutex, BlockingPool, TaskGroup) needs
// the same way: completion posting, the wait queue and its waiters, blocking a thread on a
// waiter, cancellation through a slot, the clock, and completion signatures.
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <utility>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/system_executor.hpp>

#include "stallscope/clock.hpp"
#include "stallscope/config.hpp"
#include "stallscope/detail/profile_hooks.hpp"
#include "stallscope/detail/recording.hpp"
#include "stallscope/detail/task_state.hpp"

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

// Installed in an async operation's cancellation slot. Holds the primitive's core and the
// waiter weakly: the slot may fire after the operation completed or the primitive is gone, and
// then does nothing. Otherwise calls core->cancel(waiter), which must ignore a waiter that has
// already left the queue.
//
// A constructor, not an aggregate: cancellation_slot::emplace() initializes it with parentheses,
// which clang before 16 does not accept for aggregates (P0960).
template <class Core, class Waiter>
struct CancelWaiter {
  CancelWaiter(std::weak_ptr<Core> c, std::weak_ptr<Waiter> w) noexcept
      : core(std::move(c)), waiter(std::move(w)) {}
  std::weak_ptr<Core> core;
  std::weak_ptr<Waiter> waiter;
  void operator()(boost::asio::cancellation_type type) const {
    if (!is_cancellation(type)) return;
    auto c = core.lock();
    auto w = waiter.lock();
    if (c && w) c->cancel(*w);
  }
};

// The completion signature of an operation that reports an error of type Error and yields R:
// void(Error, R), or void(Error) when R is void (as co_spawn's).
template <class Error, class R>
struct CompletionSignature {
  using type = void(Error, R);
};
template <class Error>
struct CompletionSignature<Error, void> {
  using type = void(Error);
};

// One entry of a primitive's wait queue (IntrusiveFifo<WaitNode>), guarded by the primitive's
// lock. A blocked thread points `cv` at a condition variable on its own stack; an async
// operation leaves it null and is completed through its derived type.
struct WaitNode {
  WaitNode* prev = nullptr;
  WaitNode* next = nullptr;
  bool linked = false;
  bool done = false;  // left the queue with its answer (granted, handed an item, aborted)
  std::int64_t since_ns = 0;
  std::condition_variable* cv = nullptr;
  // The waiter in the wait-for graph (detail/waitfor.hpp): a thread or a task; 0 when unknown.
  std::uintptr_t who = 0;
  std::uint32_t task_series = 0;
  // The block profile's draw for an async wait (profile_hooks.hpp); empty for threads.
  [[no_unique_address]] WaitTicket profile;
};

// Threads blocked inside a primitive, so that its destructor can wake them and wait until the
// last has left before the memory they touch goes away. Guarded by the primitive's lock.
class ThreadWaits {
 public:
  // Blocks on a stack condition variable until `w` is done (woken with notify_done) or the
  // deadline passes; returns w.done. `w` must already be queued.
  template <class Lock>
  bool wait(Lock& lock, WaitNode& w,
            const std::optional<std::chrono::steady_clock::time_point>& deadline) {
    std::condition_variable cv;
    w.cv = &cv;
    ++inside_;
    if (deadline) {
      cv.wait_until(lock, *deadline, [&] { return w.done; });
    } else {
      cv.wait(lock, [&] { return w.done; });
    }
    return w.done;
  }
  // Called by the thread once it has finished with the primitive's state, still under the lock.
  void leave() {
    if (--inside_ == 0) all_out_.notify_all();
  }
  // Marks a thread waiter done and wakes it. Under the lock: the waiter cannot return (and free
  // its condition variable) before this returns.
  static void notify_done(WaitNode& w) noexcept {
    w.done = true;
    w.cv->notify_one();
  }
  // Blocks until every thread has left (after they were all woken).
  template <class Lock>
  void wait_all_out(Lock& lock) {
    all_out_.wait(lock, [&] { return inside_ == 0; });
  }

 private:
  std::size_t inside_ = 0;
  std::condition_variable all_out_;
};

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
