#pragma once
/// Instrumented Asio tasks: TaskExecutor, spawn() and TaskGroup.
///
///   stallscope::spawn(io.get_executor(), "parse", parse(req), asio::detached);
///
/// A task's coroutine runs on a TaskExecutor that wraps your executor (the shape of
/// asio::strand<Executor>). Each outermost execution of one of its handlers is a *slice* (one
/// resumption): its run time, its scheduling delay (ready, waiting for an executor thread:
/// a stall in the unified wait model, kind="task", op="schedule", also counted under its
/// executor, kind="executor"; see executor.hpp) and slow slices are
/// recorded under the task's name, with spawned / active / completed / failed / cancelled
/// counts, lifetimes and cancel-to-exit latency. Built with STALLSCOPE_ENABLED=0, the executor
/// hands handlers to the one it wraps unchanged and a task records and registers nothing (the
/// recorders in detail/task_recorder.hpp become empty no-op classes).

#include <algorithm>
#include <atomic>
#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_allocator.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/execution.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/require.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include "stallscope/cancellation.hpp"
#include "stallscope/clock.hpp"
#include "stallscope/config.hpp"
#include "stallscope/detail/async_support.hpp"
#include "stallscope/detail/service_map.hpp"
#include "stallscope/detail/task_recorder.hpp"
#include "stallscope/executor.hpp"
#include "stallscope/registry.hpp"

namespace stallscope {

namespace detail {

// While it lives, the slice running on this thread is attributed to `series`: a handler of another
// task run inline inside it (a strand or io_context dispatching inline, a completion delivered in
// the completing task's slice) is that task's code, for the users the live map records and the
// detectors; the slice's own time stays with the task it began as (restored before it ends).
class AttributeTo {
 public:
  AttributeTo(SliceContext* sc, TaskSeries* series) noexcept
      : sc_(sc != nullptr && sc->series != series ? sc : nullptr),
        outer_(sc_ != nullptr ? sc_->series : nullptr) {
    if (sc_ != nullptr) sc_->series = series;
  }
  ~AttributeTo() {
    if (sc_ != nullptr) sc_->series = outer_;
  }
  AttributeTo(const AttributeTo&) = delete;
  AttributeTo& operator=(const AttributeTo&) = delete;

 private:
  SliceContext* sc_;
  TaskSeries* outer_;
};

// A handler run inline inside the slice already running here, as `series`'s code.
template <class F>
struct InlineHandler {
  F f;
  TaskSeries* series;
  void operator()() {
    AttributeTo as(tls_slice, series);
    std::move(f)();
  }
};

// Runs one handler as a slice of `series` (or inside the slice already running on this thread).
template <class F>
struct SliceHandler {
  F f;
  TaskSeries* series;
  boost::asio::execution_context* context;  // the executor's, for its site; null: nested
  boost::asio::io_context* io;              // the same, when the executor says it is one
  std::int64_t submitted_ns;
  SliceScope::Ready ready;
  std::uint64_t task;  // the task's slot handle (task_state.hpp); 0: none

  void operator()() {
    SliceScope scope;
    if (tls_slice == nullptr) {
      ExecutorSite* site = context != nullptr ? executor_site(*context, io) : nullptr;
      if (ready == SliceScope::Ready::kReactor && site != nullptr && !site->probing()) {
        start_probe(*io);  // io is set whenever kReactor is
      }
      scope.begin(series, site, ready, submitted_ns, task);
    }
    struct End {
      SliceScope& s;
      ~End() { s.end(); }
    } end{scope};
    AttributeTo as(scope.active ? nullptr : tls_slice, series);  // nested: see AttributeTo
    std::move(f)();
  }
};
}  // namespace detail

/// An executor that records task slices, wrapping `Inner` (any Asio executor). Satisfies the
/// standard executor requirements: query is forwarded to the inner executor, require/prefer
/// re-wrap the result. Copyable and cheap (the inner executor plus one pointer), so it fits
/// any_io_executor's small buffer when Inner does (io_context's executor: 16 bytes).
/// Cost per execute: one clock read at submission, two at the slice's start and end, the delay
/// recorded under the task and its executor (one bucket lookup), the slice time, and a
/// thread-local lookup of the executor (see executor.hpp). A resumption posted is timed from the
/// post; one the io_context's reactor delivered (a timer, a socket) adds the executor's lag
/// estimate. Nested executions (a handler run inline from inside a slice, e.g. the two
/// executions a `co_await post` makes) belong to the outermost slice. An executor made by spawn()
/// also carries its task's handle, so the task dump sees the task queued (at each execute) and
/// running (in each slice): one store each, and a compare-exchange at the slice's end.
template <class Inner>
class TaskExecutor {
 public:
  using inner_executor_type = Inner;

  // By value, moved in: require/prefer hand over a fresh inner executor, and copying an
  // outstanding_work.tracked one costs an atomic increment and decrement per resumption.
  TaskExecutor(Inner inner, detail::TaskSeries* series, std::uint64_t task = 0) noexcept
      : inner_(std::move(inner)), series_(series), task_(task) {}

  const Inner& get_inner_executor() const noexcept { return inner_; }
  detail::TaskSeries* task_series() const noexcept { return series_; }

  template <class Property>
  requires boost::asio::can_query<const Inner&, Property>::value decltype(auto) query(
      const Property& p) const
      noexcept(boost::asio::is_nothrow_query<const Inner&, Property>::value) {
    return boost::asio::query(inner_, p);
  }

  template <class Property>
  requires boost::asio::can_require<const Inner&, Property>::value auto require(const Property& p)
      const noexcept(boost::asio::is_nothrow_require<const Inner&, Property>::value) {
    using R = std::decay_t<typename boost::asio::require_result<const Inner&, Property>::type>;
    return TaskExecutor<R>(boost::asio::require(inner_, p), series_, task_);
  }

  template <class Property>
  requires boost::asio::can_prefer<const Inner&, Property>::value auto prefer(const Property& p)
      const noexcept(boost::asio::is_nothrow_prefer<const Inner&, Property>::value) {
    using R = std::decay_t<typename boost::asio::prefer_result<const Inner&, Property>::type>;
    return TaskExecutor<R>(boost::asio::prefer(inner_, p), series_, task_);
  }

  template <class F>
  void execute(F&& f) const {
    if constexpr (!detail::kRecordsTasks) {
      inner_.execute(std::forward<F>(f));  // recording compiled out: the inner executor alone
      return;
    }
    // A handler that will run inline inside the slice already running here has no scheduling
    // delay to measure: skip the clock read. One dispatched from outside any slice by a thread
    // running the io_context is a completion its reactor delivered (a timer, a socket): it was
    // ready before this call, by an amount only the executor's lag probe can estimate.
    auto* context = executor_context();
    if (detail::tls_slice != nullptr && runs_inline_in_slice()) {
      // Runs right here, inside this thread's slice: nothing to wrap, unless another task's
      // slice is running (then the handler runs as this task's code: AttributeTo).
      if (detail::tls_slice->series == series_) [[likely]] {
        inner_.execute(std::forward<F>(f));
      } else {
        inner_.execute(detail::InlineHandler<std::decay_t<F>>{std::forward<F>(f), series_});
      }
      return;
    }
    std::uint64_t task = task_;
    if (detail::tls_cancel_delivery) [[unlikely]] {
      detail::tls_cancel_delivery = false;
      task = 0;  // delivers a cancellation signal: the task's state stays
    }
    if (detail::tls_slice != nullptr) {
      const std::int64_t now = now_ns();
      detail::task_queued(task, now);
      inner_.execute(
          detail::SliceHandler<std::decay_t<F>>{std::forward<F>(f), series_, context, io_context(),
                                                now, detail::SliceScope::Ready::kPosted, task});
      return;
    }
    const auto ready = dispatched_by_reactor() ? detail::SliceScope::Ready::kReactor
                                               : detail::SliceScope::Ready::kPosted;
    const std::int64_t now = now_ns();
    detail::task_queued(task, now);
    inner_.execute(detail::SliceHandler<std::decay_t<F>>{std::forward<F>(f), series_, context,
                                                         io_context(), now, ready, task});
  }

  friend bool operator==(const TaskExecutor& a, const TaskExecutor& b) noexcept {
    return a.inner_ == b.inner_ && a.series_ == b.series_ && a.task_ == b.task_;
  }
  friend bool operator!=(const TaskExecutor& a, const TaskExecutor& b) noexcept {
    return !(a == b);
  }

 private:
  bool blocking_never() const noexcept {
    return boost::asio::query(inner_, boost::asio::execution::blocking) ==
           boost::asio::execution::blocking.never;
  }
  bool runs_inline_in_slice() const noexcept {
    if constexpr (requires(const Inner& i) {
                    { i.running_in_this_thread() } -> std::convertible_to<bool>;
                  }) {
      // io_context's and strand's executors run a non-blocking.never submission inline when
      // called from their own thread.
      return !blocking_never() && inner_.running_in_this_thread();
    } else {
      return false;
    }
  }
  // The io_context (or other execution context) behind the executor.
  boost::asio::execution_context* executor_context() const noexcept {
    if constexpr (boost::asio::can_query<const Inner&, boost::asio::execution::context_t>::value) {
      boost::asio::execution_context& c =
          boost::asio::query(inner_, boost::asio::execution::context);
      return &c;
    } else {
      return nullptr;
    }
  }
  static constexpr bool kOnIoContext = requires(const Inner& i) {
    {
      boost::asio::query(i, boost::asio::execution::context)
      } -> std::same_as<boost::asio::io_context&>;
  };
  boost::asio::io_context* io_context() const noexcept {
    if constexpr (kOnIoContext) {
      return &boost::asio::query(inner_, boost::asio::execution::context);
    } else if constexpr (std::is_same_v<Inner, boost::asio::any_io_executor>) {
      using IoEx = boost::asio::io_context::executor_type;
      if (const auto* e = inner_.template target<IoEx>()) {
        return &boost::asio::query(*e, boost::asio::execution::context);
      }
      if (const auto* e = inner_.template target<boost::asio::strand<IoEx>>()) {
        return &boost::asio::query(*e, boost::asio::execution::context);
      }
      return nullptr;
    } else {
      return nullptr;
    }
  }
  // Called from outside any slice, not as a post, by a thread that runs the executor's
  // io_context: the scheduler is handing over a completion (Asio dispatches completions through
  // the handler's executor with blocking.possibly).
  bool dispatched_by_reactor() const noexcept {
    if (blocking_never()) return false;
    boost::asio::io_context* io = io_context();
    return io != nullptr && io->get_executor().running_in_this_thread();
  }

  Inner inner_;
  detail::TaskSeries* series_;
  std::uint64_t task_;
};

namespace detail {

// Whether the calling thread is running handlers of `ex` or of the executor it wraps (a
// strand's thread is its io_context's or thread pool's); any_io_executor is looked into for the
// common kinds. False when that cannot be told.
template <class Executor>
bool runs_in_this_thread(const Executor& ex) noexcept {
  if constexpr (requires {
                  { ex.running_in_this_thread() } -> std::convertible_to<bool>;
                }) {
    if (ex.running_in_this_thread()) return true;
  }
  if constexpr (std::is_same_v<Executor, boost::asio::any_io_executor>) {
    using IoEx = boost::asio::io_context::executor_type;
    using PoolEx = boost::asio::thread_pool::executor_type;
    if (const auto* e = ex.template target<IoEx>()) return runs_in_this_thread(*e);
    if (const auto* e = ex.template target<boost::asio::strand<IoEx>>()) {
      return runs_in_this_thread(*e);
    }
    if (const auto* e = ex.template target<PoolEx>()) return runs_in_this_thread(*e);
    if (const auto* e = ex.template target<boost::asio::strand<PoolEx>>()) {
      return runs_in_this_thread(*e);
    }
    return false;
  } else if constexpr (requires { ex.get_inner_executor(); }) {
    return runs_in_this_thread(ex.get_inner_executor());
  } else {
    return false;
  }
}

template <class E>
struct IsTaskExecutor : std::false_type {};
template <class I>
struct IsTaskExecutor<TaskExecutor<I>> : std::true_type {};

// The executor to wrap: a TaskExecutor's inner one, so spawning from inside a task does not
// stack wrappers; any_io_executor holding a TaskExecutor of a common kind is unwrapped too.
template <class Executor>
auto unwrap(const Executor& ex) {
  if constexpr (IsTaskExecutor<Executor>::value) {
    return ex.get_inner_executor();
  } else if constexpr (std::is_same_v<Executor, boost::asio::any_io_executor>) {
    using IoEx = boost::asio::io_context::executor_type;
    if (const auto* t = ex.template target<TaskExecutor<IoEx>>()) {
      return boost::asio::any_io_executor(t->get_inner_executor());
    }
    if (const auto* t = ex.template target<TaskExecutor<boost::asio::strand<IoEx>>>()) {
      return boost::asio::any_io_executor(t->get_inner_executor());
    }
    if (const auto* t = ex.template target<TaskExecutor<boost::asio::any_io_executor>>()) {
      return t->get_inner_executor();
    }
    return ex;
  } else {
    return ex;
  }
}

// Per spawned task: the recorder state, the cancellation signal bound to the coroutine, and the
// token registration. Shared by the completion handler (owner) and cancellation callbacks (weak).
template <class Inner>
class TaskControl : public std::enable_shared_from_this<TaskControl<Inner>> {
 public:
  TaskControl(const Inner& inner, TaskSeries* series, const TaskBinding& binding)
      : inner_(inner), state_(series, binding) {}

  // From any thread: stamps the request, then emits on the task's executor (the signal must not
  // be emitted concurrently with the coroutine touching its slot). Before the task has started
  // the request waits for started(): emitted into a coroutine that has not run yet, Boost 1.81's
  // co_spawn throws "co_await: Operation canceled" out of run() at its entry point's first
  // co_await, outside its try block, and never calls the handler.
  void request_cancel(boost::asio::cancellation_type type) {
    state_.cancel_requested();
    pending_.fetch_or(static_cast<unsigned>(type));
    if (!started_.load()) return;  // started() emits it (seq_cst: one of the two sees the other)
    boost::asio::post(inner_, [weak = this->weak_from_this()] {
      if (auto self = weak.lock()) self->emit_pending();
    });
  }
  // On the coroutine's own context (the user's slot fired): emit at once, once started.
  void cancel_now(boost::asio::cancellation_type type) {
    state_.cancel_requested();
    pending_.fetch_or(static_cast<unsigned>(type));
    if (started_.load()) emit_pending();
  }
  // In the task, before the user's code: from here on requests are emitted. One that came
  // before is posted now, as request_cancel() would have: the task runs to its first co_await,
  // which the emission then cancels.
  void started() {
    started_.store(true);
    if (pending_.load() == 0) return;
    boost::asio::post(inner_, [weak = this->weak_from_this()] {
      if (auto self = weak.lock()) self->emit_pending();
    });
  }
  void bind(const CancellationToken& token) {
    // The task keeps its scope alive: a parent holds only weak references to its children, so a
    // scope passed as a temporary (`root.child()`) would otherwise die with the spawn call and
    // never hear the parent's cancel.
    token_ = token;
    registration_ = token.on_cancel([weak = this->weak_from_this()] {
      if (auto self = weak.lock()) self->request_cancel(boost::asio::cancellation_type::terminal);
    });
  }
  void finished(const std::exception_ptr& e) noexcept {
    bool aborted = false;
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const boost::system::system_error& se) {
        aborted = se.code() == boost::asio::error::operation_aborted;
      } catch (...) {
      }
    }
    state_.finished(e != nullptr && !aborted, aborted);
  }
  boost::asio::cancellation_slot slot() noexcept { return signal_.slot(); }
  const Inner& inner() const noexcept { return inner_; }
  std::uint64_t task_handle() const noexcept { return state_.handle(); }

 private:
  // co_spawn forwards the signal to the coroutine through its executor (detail::
  // tls_cancel_delivery says why that execution leaves the task's state alone).
  // Emits what was requested and not yet emitted: each request is emitted once, by whichever of
  // started(), cancel_now() and the posted emission takes it.
  void emit_pending() {
    const unsigned type = pending_.exchange(0);
    if (type == 0) return;
    if constexpr (kRecordsTasks) tls_cancel_delivery = true;
    signal_.emit(static_cast<boost::asio::cancellation_type>(type));
    if constexpr (kRecordsTasks) tls_cancel_delivery = false;
  }

  Inner inner_;
  [[no_unique_address]] TaskRecord state_;  // nothing when recording is compiled out
  boost::asio::cancellation_signal signal_;
  std::atomic<bool> started_{false};
  std::atomic<unsigned> pending_{0};  // cancellation_type bits requested, not yet emitted
  CancellationToken token_ = CancellationToken::none();  // the scope, alive as long as the task
  CancellationToken::Registration registration_;         // declared last: unregistered first
};

// Forwards a user's cancellation slot (bound to their completion token) into the task.
template <class Inner>
struct ForwardCancel {
  std::weak_ptr<TaskControl<Inner>> control;
  void operator()(boost::asio::cancellation_type type) {
    if (auto c = control.lock()) c->cancel_now(type);
  }
};

// co_spawn's completion handler: records the exit, then calls the user's handler. It exposes the
// user's associated executor and allocator, and the task's own cancellation slot.
template <class Handler, class Inner>
class SpawnCompletion {
 public:
  SpawnCompletion(Handler h, std::shared_ptr<TaskControl<Inner>> c)
      : handler_(std::move(h)), control_(std::move(c)) {}

  using executor_type = boost::asio::associated_executor_t<Handler, Inner>;
  executor_type get_executor() const noexcept {
    return boost::asio::get_associated_executor(handler_, control_->inner());
  }
  using allocator_type = boost::asio::associated_allocator_t<Handler>;
  allocator_type get_allocator() const noexcept {
    return boost::asio::get_associated_allocator(handler_);
  }
  using cancellation_slot_type = boost::asio::cancellation_slot;
  cancellation_slot_type get_cancellation_slot() const noexcept { return control_->slot(); }

  template <class... Args>
  void operator()(std::exception_ptr e, Args&&... args) {
    control_->finished(e);
    auto keep = std::move(control_);  // alive until the handler returns
    std::move(handler_)(std::move(e), std::forward<Args>(args)...);
  }

 private:
  Handler handler_;
  std::shared_ptr<TaskControl<Inner>> control_;
};

template <class A>
struct IsAwaitable : std::false_type {};
template <class T, class E>
struct IsAwaitable<boost::asio::awaitable<T, E>> : std::true_type {};

// What spawn accepts: an awaitable, or a function object returning one (co_spawn keeps the
// function object alive in the coroutine frame: use it for lambdas with captures).
template <class Task>
struct TaskTraits;
template <class T, class E>
struct TaskTraits<boost::asio::awaitable<T, E>> {
  using value_type = T;
  using executor_type = E;
};
template <class Task>
requires std::is_invocable_v<Task&> &&
    IsAwaitable<std::invoke_result_t<Task&>>::value struct TaskTraits<Task> {
  using value_type = typename std::invoke_result_t<Task&>::value_type;
  using executor_type = typename std::invoke_result_t<Task&>::executor_type;
};

// The user's awaitable: the task itself, or what its function object returns.
template <class Task>
auto start_task(Task& task) {
  if constexpr (IsAwaitable<Task>::value) {
    return std::move(task);
  } else {
    return task();
  }
}

// Every task runs inside this coroutine. Boost 1.81's co_spawn (co_spawn_entry_point in
// boost/asio/impl/co_spawn.hpp) ends a task that never switched context with a
// `co_await post(...)` outside its try block; if the task's cancellation was emitted before or
// during its run (spawned on a cancelled scope, or a slot emitted from the task's own code), that
// co_await throws "co_await: Operation canceled" out of io_context::run() and the completion
// handler never runs (examples/demo/boost181_cospawn_repro.cpp). So: requests made before the
// task starts are held back until started() (TaskControl), called here before the user's code;
// and throw_if_cancelled is turned off once the user's code has ended,
// which leaves the user's own co_awaits as they were and lets the entry point finish. `task` is
// a parameter, not a lambda capture: it lives in this frame (GCC 12 destroys a coroutine
// lambda's captures with the closure).
template <class E, class Control, class Task>
boost::asio::awaitable<void, E> shielded_void(Control* control, Task task) {
  control->started();
  std::exception_ptr error;
  try {
    co_await start_task(task);
  } catch (...) {
    error = std::current_exception();
  }
  co_await boost::asio::this_coro::throw_if_cancelled(false);
  if (error) std::rethrow_exception(error);
}

template <class T, class E, class Control, class Task>
boost::asio::awaitable<T, E> shielded_value(Control* control, Task task) {
  control->started();
  std::exception_ptr error;
  std::optional<T> value;
  try {
    value.emplace(co_await start_task(task));
  } catch (...) {
    error = std::current_exception();
  }
  co_await boost::asio::this_coro::throw_if_cancelled(false);
  if (error) std::rethrow_exception(error);
  co_return std::move(*value);
}

template <class Control, class Task>
auto shielded(Control* control, Task task) {
  using Traits = TaskTraits<Task>;
  using T = typename Traits::value_type;
  using E = typename Traits::executor_type;
  if constexpr (std::is_void_v<T>) {
    return shielded_void<E>(control, std::move(task));
  } else {
    return shielded_value<T, E>(control, std::move(task));
  }
}

template <class Task>
concept SpawnableTask = requires {
  typename TaskTraits<std::decay_t<Task>>::value_type;
};

template <class Executor, class Task, class Token>
auto spawn_impl(const Executor& executor, TaskSeries* series, const CancellationToken* cancel,
                Task&& task, Token&& token, std::shared_ptr<const TaskGroupInfo> group = nullptr) {
  using Inner = decltype(unwrap(executor));
  using T = typename TaskTraits<std::decay_t<Task>>::value_type;
  return boost::asio::async_initiate<Token,
                                     typename CompletionSignature<std::exception_ptr, T>::type>(
      [](auto handler, Inner inner, TaskSeries* s, CancellationToken c, std::decay_t<Task> t,
         std::shared_ptr<const TaskGroupInfo> g) {
        TaskBinding binding;
        if constexpr (kRecordsTasks) binding = {c.scope_name(), std::move(g)};
        auto control = std::make_shared<TaskControl<Inner>>(inner, s, binding);
        if (c.bindable()) control->bind(c);
        auto user_slot = boost::asio::get_associated_cancellation_slot(handler);
        if (user_slot.is_connected()) {
          user_slot.template emplace<ForwardCancel<Inner>>(ForwardCancel<Inner>{control});
        }
        using H = std::decay_t<decltype(handler)>;
        const std::uint64_t handle = control->task_handle();
        // `control` lives until the handler runs, after the task (SpawnCompletion owns it).
        TaskControl<Inner>* raw = control.get();
        boost::asio::co_spawn(TaskExecutor<Inner>(inner, s, handle), shielded(raw, std::move(t)),
                              SpawnCompletion<H, Inner>(std::move(handler), std::move(control)));
      },
      token, unwrap(executor), series, cancel != nullptr ? *cancel : CancellationToken::none(),
      std::forward<Task>(task), std::move(group));
}

}  // namespace detail

/// Spawns `task` (an awaitable, or a function object returning one, as co_spawn takes) as a
/// task named `name` on `executor`, with co_spawn semantics: the completion token gets
/// void(exception_ptr) or void(exception_ptr, T); exceptions propagate to it. A cancellation
/// slot bound to the token cancels the task. Throws std::invalid_argument on a bad name.
/// Pass lambdas with captures uncalled: `spawn(ex, "n", [&]() -> awaitable<void> {...}, tok)`,
/// since a called lambda's captures die with the temporary closure.
/// On a multi-threaded io_context, spawn on a strand if you cancel tasks: Asio cancellation
/// signals must not be emitted concurrently with the coroutine itself.
template <class Executor, detail::SpawnableTask Task, class Token>
auto spawn(const Executor& executor, std::string_view name, Task&& task, Token&& token) {
  return detail::spawn_impl(executor, detail::task_to_record(name), nullptr,
                            std::forward<Task>(task), std::forward<Token>(token));
}

/// Like spawn(), bound to `cancel`: cancelling the token (or an ancestor) cancels whatever the
/// task awaits at once (timers, channels, sockets: anything honouring Asio cancellation slots).
template <class Executor, detail::SpawnableTask Task, class Token>
auto spawn(const Executor& executor, std::string_view name, const CancellationToken& cancel,
           Task&& task, Token&& token) {
  return detail::spawn_impl(executor, detail::task_to_record(name), &cancel,
                            std::forward<Task>(task), std::forward<Token>(token));
}

/// What TaskGroup::shutdown() saw.
struct ShutdownReport {
  /// Every child exited within the grace period.
  bool clean = true;
  /// Children still running when the grace period ended, by task name.
  std::vector<std::string> lingering;
  /// How long the shutdown took.
  double seconds = 0;
};

/// A set of child tasks bound to one cancellation scope, shut down in order: cancel (every
/// child wakes from what it awaits), stop new input (spawn() refuses), let in-flight work
/// finish and join, and give up after a grace period, reporting who lingers instead of hanging.
/// Thread-safe. Destroying the group cancels its children and does not wait for them.
/// The task dump shows each child's group (its id, and its name when given) and token path.
template <class Executor = boost::asio::any_io_executor>
class TaskGroup final {
 public:
  /// `parent`: the scope the group's own scope descends from.
  explicit TaskGroup(const Executor& executor,
                     const CancellationToken& parent = CancellationToken())
      : state_(std::make_shared<State>(executor, parent, parent.child(), std::string_view())) {
    state_->weak_self = state_;
  }
  /// A group named `name` (a resource name; std::invalid_argument naming it otherwise): the live
  /// map (/stallz/map) shows groups by name, those of one name together (unnamed ones as
  /// "unnamed"), and its scope is `parent.child(name)`, so its children's token path (the task
  /// dump, /stallz/tasks) ends in the name.
  TaskGroup(const Executor& executor, std::string_view name,
            const CancellationToken& parent = CancellationToken())
      : state_(std::make_shared<State>(executor, parent, parent.child(name), name)) {
    state_->weak_self = state_;
  }
  ~TaskGroup() { state_->token.cancel(); }
  TaskGroup(const TaskGroup&) = delete;
  TaskGroup& operator=(const TaskGroup&) = delete;

  /// Spawns a child bound to the group's scope, on the group's executor. Returns false,
  /// spawning nothing, once the group is closed. Throws std::invalid_argument on a bad name.
  template <detail::SpawnableTask Task>
  bool spawn(std::string_view name, Task&& task) {
    return spawn(state_->executor, name, std::forward<Task>(task));
  }

  /// The same, on another executor (a strand per connection, another io_context): one group
  /// can cancel, join and shut down children that run in different places.
  template <class ChildExecutor, detail::SpawnableTask Task>
  requires(boost::asio::execution::is_executor<ChildExecutor>::value ||
           boost::asio::is_executor<ChildExecutor>::value) bool spawn(const ChildExecutor& executor,
                                                                      std::string_view name,
                                                                      Task&& task) {
    detail::TaskSeries* series = detail::task_to_record(name);
    std::uint64_t id;
    {
      std::lock_guard lock(state_->mu);
      if (state_->closed) return false;
      id = state_->next_id++;
      state_->children.emplace(id, std::string(name));
      state_->spawned(name);
    }
    detail::spawn_impl(
        executor, series, &state_->token, std::forward<Task>(task),
        [s = state_, id](std::exception_ptr e, auto&&...) { s->child_done(id, e); }, state_->info);
    return true;
  }

  const CancellationToken& token() const noexcept { return state_->token; }
  void cancel() noexcept { state_->token.cancel(); }
  /// Stops new spawns; running children go on.
  void close() {
    std::lock_guard lock(state_->mu);
    state_->closed = true;
  }
  std::size_t active() const {
    std::lock_guard lock(state_->mu);
    return state_->children.size();
  }
  /// Children that ended with an exception other than a cancellation.
  std::size_t failures() const {
    std::lock_guard lock(state_->mu);
    return state_->failures;
  }

  /// Waits until no child is running. Completion: void(error_code); operation_aborted when
  /// cancelled through the token's cancellation slot.
  template <class Token = boost::asio::use_awaitable_t<>>
  auto async_join(Token&& token = {}) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
        [s = state_](auto handler) { s->join(std::move(handler)); }, token);
  }

  /// The shutdown sequence; see the class comment. For a coroutine.
  boost::asio::awaitable<ShutdownReport> shutdown(std::chrono::nanoseconds grace) {
    using namespace boost::asio::experimental::awaitable_operators;
    const auto start = std::chrono::steady_clock::now();
    state_->shutting_down();
    cancel();
    close();
    boost::asio::steady_timer timer(state_->executor, grace);
    co_await (async_join(boost::asio::use_awaitable) ||
              timer.async_wait(boost::asio::use_awaitable));
    std::lock_guard lock(state_->mu);
    co_return state_->report(start);
  }

  /// The same sequence, blocking the calling thread (a plain thread, main()) until every child
  /// has exited or `grace` has passed. Throws std::logic_error, changing nothing, when called
  /// from a thread that is running the group's executor: the children need that thread to run
  /// to their exit, so the wait could only end in the grace period with all of them lingering
  /// (use `co_await shutdown(grace)` there). Children spawned on other executors are not
  /// checked: do not call it from a thread those run on.
  ShutdownReport shutdown_and_wait(std::chrono::nanoseconds grace) {
    if (detail::runs_in_this_thread(state_->executor)) {
      throw std::logic_error(
          "stallscope: TaskGroup::shutdown_and_wait() called from a thread running the group's "
          "executor, which its children need to exit; co_await shutdown() there instead");
    }
    using Clock = std::chrono::steady_clock;
    const auto start = Clock::now();
    // Saturated: a grace of nanoseconds::max() waits for ever instead of overflowing.
    const auto deadline =
        grace >= Clock::time_point::max() - start ? Clock::time_point::max() : start + grace;
    state_->shutting_down();
    cancel();
    std::unique_lock lock(state_->mu);
    state_->closed = true;
    state_->emptied.wait_until(lock, deadline, [&] { return state_->children.empty(); });
    return state_->report(start);
  }

 private:
  struct Joiner {
    virtual ~Joiner() = default;
    virtual void complete(boost::system::error_code ec) = 0;
    bool linked = true;
  };
  template <class Handler>
  struct HandlerJoiner final : Joiner {
    HandlerJoiner(Handler h, Executor fallback)
        : handler(std::move(h)),
          work(boost::asio::prefer(boost::asio::get_associated_executor(handler, fallback),
                                   boost::asio::execution::outstanding_work.tracked)) {}
    void complete(boost::system::error_code ec) override {
      auto ex = boost::asio::get_associated_executor(handler, work);
      boost::asio::post(ex, [h = std::move(handler), ec]() mutable { std::move(h)(ec); });
    }
    Handler handler;
    std::decay_t<decltype(boost::asio::prefer(
        std::declval<boost::asio::associated_executor_t<Handler, Executor>>(),
        boost::asio::execution::outstanding_work.tracked))>
        work;
  };

  // The group's state, and what the live map reads of it (detail::GroupEntry): linked while it
  // lives when recording is compiled in. `own`: the group's scope; `n`: its name ("" unnamed).
  struct State final : detail::GroupEntry {
    State(const Executor& ex, const CancellationToken& p, CancellationToken own, std::string_view n)
        : executor(ex),
          parent(p),
          token(std::move(own)),
          info(std::make_shared<const detail::TaskGroupInfo>(
              detail::TaskGroupInfo{detail::next_task_group_id(), std::string(n)})),
          name(n.empty() ? "unnamed" : n) {
      if (!n.empty()) validate_resource_name(n);
      if constexpr (detail::kRecordsTasks) detail::link_group(this);
    }
    ~State() {
      if constexpr (detail::kRecordsTasks) detail::unlink_group(this);
    }
    // Caller holds mu.
    void spawned(std::string_view task) {
      if constexpr (detail::kRecordsTasks) {
        auto it =
            std::find_if(tasks.begin(), tasks.end(), [&](const Task& t) { return t.name == task; });
        if (it != tasks.end()) {
          ++it->spawned;
        } else if (tasks.size() < kMaxTaskNames) {
          tasks.push_back(Task{std::string(task), 0, 1});
        } else {
          ++more_tasks;
        }
      }
    }
    void shutting_down() {
      if constexpr (detail::kRecordsTasks) {
        std::lock_guard lock(mu);
        if (shutdown_seq == 0) shutdown_seq = detail::next_shutdown_seq();
      }
    }
    Info describe() const override {
      Info i;
      i.name = name;
      i.token = token.id();
      i.parent_token = parent.id();
      i.cancelled = token.cancelled();
      std::lock_guard lock(mu);
      i.closed = closed;
      i.shutdown_seq = shutdown_seq;
      i.tasks = tasks;
      i.more_tasks = more_tasks;
      for (Task& t : i.tasks) {
        t.live = static_cast<std::uint64_t>(std::count_if(
            children.begin(), children.end(), [&](const auto& c) { return c.second == t.name; }));
      }
      return i;
    }

    void child_done(std::uint64_t id, const std::exception_ptr& e) {
      std::vector<std::shared_ptr<Joiner>> done;
      {
        std::lock_guard lock(mu);
        children.erase(id);
        if (e) {
          try {
            std::rethrow_exception(e);
          } catch (const boost::system::system_error& se) {
            if (se.code() != boost::asio::error::operation_aborted) ++failures;
          } catch (...) {
            ++failures;
          }
        }
        if (children.empty()) {
          done.swap(joiners);
          for (auto& j : done) j->linked = false;
          emptied.notify_all();
        }
      }
      for (auto& j : done) j->complete({});
    }
    // Caller holds mu.
    ShutdownReport report(std::chrono::steady_clock::time_point start) const {
      ShutdownReport r;
      for (const auto& c : children) r.lingering.push_back(c.second);
      std::sort(r.lingering.begin(), r.lingering.end());
      r.clean = r.lingering.empty();
      r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      return r;
    }
    template <class Handler>
    void join(Handler handler) {
      auto slot = boost::asio::get_associated_cancellation_slot(handler);
      auto j = std::make_shared<HandlerJoiner<Handler>>(std::move(handler), executor);
      {
        std::lock_guard lock(mu);
        if (!children.empty()) {
          joiners.push_back(j);
          if (slot.is_connected()) {
            slot.template emplace<CancelJoin>(CancelJoin{weak_self, std::weak_ptr<Joiner>(j)});
          }
          return;
        }
        j->linked = false;
      }
      j->complete({});
    }
    void cancel_join(const std::shared_ptr<Joiner>& j) {
      {
        std::lock_guard lock(mu);
        if (!j->linked) return;
        j->linked = false;
        std::erase(joiners, j);
      }
      j->complete(boost::asio::error::operation_aborted);
    }

    Executor executor;
    // Kept alive with the group: a parent holds only weak references to its children, so a
    // temporary parent (`root.child()`) would otherwise die and cut the group off from root.
    CancellationToken parent;
    CancellationToken token;
    std::shared_ptr<const detail::TaskGroupInfo> info;  // what the task dump names it
    mutable std::mutex mu;
    std::condition_variable emptied;  // notified when the last child exits
    bool closed = false;
    std::uint64_t next_id = 1;
    std::size_t failures = 0;
    std::unordered_map<std::uint64_t, std::string> children;  // by spawn id: O(1) exit
    std::vector<std::shared_ptr<Joiner>> joiners;
    std::weak_ptr<State> weak_self;
    std::string name;         // for the live map
    std::vector<Task> tasks;  // spawns by task name (live counted at describe())
    std::uint64_t more_tasks = 0;
    std::uint64_t shutdown_seq = 0;  // 0: shutdown not begun
  };
  struct CancelJoin {
    std::weak_ptr<State> state;
    std::weak_ptr<Joiner> joiner;
    void operator()(boost::asio::cancellation_type) {
      auto s = state.lock();
      auto j = joiner.lock();
      if (s && j) s->cancel_join(j);
    }
  };

  std::shared_ptr<State> state_;
};

template <class Executor>
TaskGroup(const Executor&) -> TaskGroup<Executor>;
template <class Executor>
TaskGroup(const Executor&, const CancellationToken&) -> TaskGroup<Executor>;
template <class Executor>
TaskGroup(const Executor&, std::string_view) -> TaskGroup<Executor>;
template <class Executor>
TaskGroup(const Executor&, std::string_view, const CancellationToken&) -> TaskGroup<Executor>;

}  // namespace stallscope
