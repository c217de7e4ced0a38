#pragma once
// The wait-for graph's view of async operations (agent's detail/waitfor.hpp): which task an
// operation belongs to, and the slice it resumes knowing that task. Not API.
#include <cstring>
#include <type_traits>
#include <utility>

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/system_executor.hpp>

#include "stallscope/config.hpp"
#include "stallscope/detail/async_support.hpp"
#include "stallscope/detail/waitfor.hpp"

namespace stallscope::detail {

#if STALLSCOPE_ENABLED
// The task an async operation belongs to: the identity of its coroutine's cancellation state,
// which Asio keeps for the life of a co_spawn'ed coroutine (stallscope::spawn always connects
// one), tagged odd so it never equals a thread. 0 when the handler has no slot.
template <class Handler>
Participant task_of(const Handler& h) noexcept {
  auto slot = boost::asio::get_associated_cancellation_slot(h);
  if constexpr (std::is_same_v<decltype(slot), boost::asio::cancellation_slot> &&
                sizeof(slot) == sizeof(Participant)) {
    if (!slot.is_connected()) return kNoParticipant;
    Participant p = 0;
    std::memcpy(&p, &slot, sizeof p);  // the signal's handler slot: its address is its identity
    return p | 1u;
  } else {
    return kNoParticipant;
  }
}

// The slice running here belongs to `task` (0: no change). Locks the slice took before the task
// was known are re-attributed from the thread to the task, which may suspend holding them.
void adopt_task(SliceContext& slice, Participant task) noexcept;
inline void in_task(Participant task) noexcept {
  if (task == kNoParticipant) return;
  if (SliceContext* sc = tls_slice; sc != nullptr && sc->task != task) adopt_task(*sc, task);
}
// The caller of a synchronous (thread) operation, and its task series when in a slice.
inline Participant sync_participant() noexcept { return current_participant(); }
#else
// Compiled out: no identities, nothing recorded (an inline namespace of its own, as the
// recorders' compiled-out classes, so that on and off code can share one program).
inline namespace off {
template <class Handler>
Participant task_of(const Handler&) noexcept {
  return kNoParticipant;
}
inline void in_task(Participant) noexcept {}
inline Participant sync_participant() noexcept { return kNoParticipant; }
inline std::uint32_t current_task_series() noexcept { return 0; }
}  // namespace off
#endif

// post_completion (async_support.hpp) for an operation of `task`: the slice the completion runs
// in knows its task. Defined per mode (the in_task it calls differs).
#if STALLSCOPE_ENABLED
template <class Handler, class... Args>
void post_completion_as(Participant task, Handler&& handler, Args&&... args) {
  auto ex = boost::asio::get_associated_executor(handler, boost::asio::system_executor());
  boost::asio::post(
      ex, [task, h = std::forward<Handler>(handler), ... a = std::forward<Args>(args)]() mutable {
        in_task(task);
        std::move(h)(std::move(a)...);
      });
}
#else
inline namespace off {
template <class Handler, class... Args>
void post_completion_as(Participant, Handler&& handler, Args&&... args) {
  post_completion(std::forward<Handler>(handler), std::forward<Args>(args)...);
}
}  // namespace off
#endif

}  // namespace stallscope::detail
