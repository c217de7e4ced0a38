#pragma once
/// Asio's custom handler tracking, pointed at stallscope: the task dump (/stallz/tasks) then
/// names the Asio operation a suspended task awaits ("deadline_timer async_wait", "socket
/// async_receive", "resolver async_resolve"), in Asio's own words.
///
/// Opt-in, for the whole program: configure stallscope with -DSTALLSCOPE_ASIO_TRACKING=ON, which
/// compiles every target that links stallscope (its own libraries included) with
///
///   BOOST_ASIO_CUSTOM_HANDLER_TRACKING="stallscope/asio_tracking.hpp"
///
/// Never include this header yourself, and never give the definition to some translation units
/// only: it adds a base (8 bytes) to every Asio operation object, so translation units compiled
/// with and without it disagree on the layout of Asio's classes (an ODR violation that crashes).
///
/// Cost: when Asio creates an operation, a thread-local load (outside task slices, nothing
/// more); inside a task's slice, for an async_* operation, a pointer-compare lookup of its names
/// and two stores to the task's slot. When an operation completes, a load, and for a task's
/// operation a compare-exchange. Measured in bench/README.md ("Asio operation tracking").
/// Thread-safe.

#include <cstdint>

#include "stallscope/detail/task_state.hpp"

namespace stallscope::detail {

// The base Asio gives every operation object: the task that started it (its slot handle), 0
// when none.
class AsioTrackedOp {
 public:
  std::uint64_t stallscope_task_ = 0;

 protected:
  AsioTrackedOp() = default;
  ~AsioTrackedOp() = default;
};

template <class Context, class Object, class Native>
inline void asio_creation(Context&, AsioTrackedOp& h, const char* object, Object, Native,
                          const char* op) noexcept {
  h.stallscope_task_ = asio_op_started(&h, object, op);
}

inline void asio_completion(const AsioTrackedOp& h) noexcept {
  asio_op_done(h.stallscope_task_, &h);
}

// The hooks stallscope does not use: their arguments are evaluated as Asio's own tracking would,
// and dropped.
template <class... Args>
constexpr void asio_ignore(const Args&...) noexcept {}

// Tells the task dump that the opt-in is on (once per program, before main()).
inline const bool kAsioTrackingNoted = (note_asio_tracking(), true);

}  // namespace stallscope::detail

#define BOOST_ASIO_INHERIT_TRACKED_HANDLER : public ::stallscope::detail::AsioTrackedOp
#define BOOST_ASIO_ALSO_INHERIT_TRACKED_HANDLER , public ::stallscope::detail::AsioTrackedOp
#define BOOST_ASIO_HANDLER_TRACKING_INIT (void)0
#define BOOST_ASIO_HANDLER_LOCATION(args) ::stallscope::detail::asio_ignore args
#define BOOST_ASIO_HANDLER_CREATION(args) ::stallscope::detail::asio_creation args
#define BOOST_ASIO_HANDLER_COMPLETION(args) ::stallscope::detail::asio_completion args
#define BOOST_ASIO_HANDLER_INVOCATION_BEGIN(args) ::stallscope::detail::asio_ignore args
#define BOOST_ASIO_HANDLER_INVOCATION_END (void)0
#define BOOST_ASIO_HANDLER_OPERATION(args) ::stallscope::detail::asio_ignore args
#define BOOST_ASIO_HANDLER_REACTOR_REGISTRATION(args) ::stallscope::detail::asio_ignore args
#define BOOST_ASIO_HANDLER_REACTOR_DEREGISTRATION(args) ::stallscope::detail::asio_ignore args
#define BOOST_ASIO_HANDLER_REACTOR_READ_EVENT 1
#define BOOST_ASIO_HANDLER_REACTOR_WRITE_EVENT 2
#define BOOST_ASIO_HANDLER_REACTOR_ERROR_EVENT 4
#define BOOST_ASIO_HANDLER_REACTOR_EVENTS(args) ::stallscope::detail::asio_ignore args
#define BOOST_ASIO_HANDLER_REACTOR_OPERATION(args) ::stallscope::detail::asio_ignore args
