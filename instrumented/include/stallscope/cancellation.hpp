#pragma once
/// stallscope::CancellationToken: a tree of cancellation scopes for tasks.
///
///   stallscope::CancellationToken root;
///   auto requests = root.child();       // cancelled when root is, or on its own
///   stallscope::spawn(ex, "handler", requests, serve, asio::detached);
///   root.cancel();                      // every task bound below root wakes from what it awaits
///
/// cancel() is thread-safe and idempotent. A callback registered with on_cancel() runs exactly
/// once: on the thread that cancels, or at once on the registering thread if the scope is
/// already cancelled. Destroying a Registration unregisters; if its callback is running on
/// another thread right then, the destructor waits for it to return (so the callback never
/// outlives what it captured). A token is a cheap shared handle: copies share one scope, which
/// lives as long as one of them does. A parent holds its children weakly (a scope nobody holds
/// cannot be cancelled by anyone, so it is dropped); spawn() and TaskGroup hold the token they
/// are given for as long as the task or group lives, so `spawn(ex, "n", root.child(), ...)`
/// is cancelled by `root.cancel()`.
/// A scope may be named (`CancellationToken root("server")`, `root.child("conn")`): path() is
/// the names from the root down ("server/conn", "~" for an unnamed scope), which the task dump
/// (task_dump.hpp) shows for every task bound to it.
/// (Not built on std::stop_callback: libstdc++ 12's can hang in that wait, GCC PR 104928.)

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "stallscope/detail/task_state.hpp"
#include "stallscope/registry.hpp"

namespace stallscope {

class CancellationToken final {
  struct State;

 public:
  /// Unregisters its callback on destruction. Movable.
  class [[nodiscard]] Registration {
   public:
    Registration() = default;
    Registration(Registration&&) noexcept = default;
    Registration& operator=(Registration&& other) noexcept {
      if (this != &other) {
        reset();
        state_ = std::move(other.state_);
        id_ = std::exchange(other.id_, 0);
      }
      return *this;
    }
    ~Registration() { reset(); }
    void reset() {
      if (auto s = state_.lock()) s->unregister(id_);
      state_.reset();
      id_ = 0;
    }

   private:
    friend class CancellationToken;
    Registration(std::weak_ptr<State> s, std::uint64_t id) : state_(std::move(s)), id_(id) {}
    std::weak_ptr<State> state_;
    std::uint64_t id_ = 0;
  };

  /// A new root scope.
  CancellationToken() : state_(std::make_shared<State>()) {}
  /// A new root scope named `name` (a resource name: std::invalid_argument naming it otherwise).
  explicit CancellationToken(std::string_view name) : CancellationToken() {
    validate_resource_name(name);
    state_->scope =
        std::make_shared<const detail::ScopeName>(detail::ScopeName{std::string(name), {}});
  }

  /// No scope at all: never cancelled, cancel() and on_cancel() do nothing, child() is a new
  /// root. Allocates nothing (what spawn() uses for a task bound to no token).
  static CancellationToken none() noexcept { return CancellationToken(nullptr); }
  /// False only for none().
  bool bindable() const noexcept { return state_ != nullptr; }

  /// A child scope: cancelled when this one is (at once if it already is), or by itself.
  CancellationToken child() const { return child_scope(std::string()); }
  /// The same, named `name` (validated as a resource name: std::invalid_argument naming it).
  CancellationToken child(std::string_view name) const {
    validate_resource_name(name);
    return child_scope(std::string(name));
  }

  /// The names from the root down to this scope, "/"-separated, "~" for an unnamed one (unnamed
  /// scopes above the first named one are left out); "" for none().
  std::string path() const { return state_ ? scope_name()->path() : std::string(); }

  /// Cancels this scope and all its descendants. Thread-safe, idempotent.
  void cancel() const {
    if (state_) state_->cancel();
  }
  bool cancelled() const {
    if (!state_) return false;
    std::lock_guard lock(state_->mu);
    return state_->cancelled;
  }

  /// Runs `fn` once when this scope is cancelled (at once if it already is). Keep the
  /// Registration alive for as long as `fn` may run.
  Registration on_cancel(std::function<void()> fn) const {
    if (!state_) return {};
    std::unique_lock lock(state_->mu);
    if (state_->cancelled) {
      lock.unlock();
      fn();
      return {};
    }
    const std::uint64_t id = state_->next_id++;
    state_->callbacks.emplace(id, std::move(fn));
    return Registration(state_, id);
  }

  /// An identity of the scope (copies share it; nullptr for none()), for display only.
  const void* id() const noexcept { return state_.get(); }

  friend bool operator==(const CancellationToken& a, const CancellationToken& b) noexcept {
    return a.state_ == b.state_;
  }

  /// The scope's name node, for the task dump (null for none()). Not API.
  std::shared_ptr<const detail::ScopeName> scope_name() const {
    if (!state_) return nullptr;
    if (state_->scope) return state_->scope;
    static const auto kUnnamed = std::make_shared<const detail::ScopeName>();
    return kUnnamed;
  }

 private:
  CancellationToken child_scope(std::string name) const {
    CancellationToken c;
    if (!state_) return c;
    if (!name.empty() || state_->scope) {
      c.state_->scope = std::make_shared<const detail::ScopeName>(
          detail::ScopeName{std::move(name), state_->scope});
    }
    bool born_cancelled = false;
    {
      std::lock_guard lock(state_->mu);
      if (state_->cancelled) {
        born_cancelled = true;
      } else {
        if (state_->children.size() >= state_->prune_at) {
          std::erase_if(state_->children, [](const auto& w) { return w.expired(); });
          state_->prune_at = 2 * state_->children.size() + 8;
        }
        state_->children.push_back(c.state_);
      }
    }
    if (born_cancelled) c.cancel();
    return c;
  }

  struct State {
    std::mutex mu;
    std::condition_variable done;
    bool cancelled = false;
    std::thread::id canceller;
    std::uint64_t running = 0;  // id of the callback running now
    std::uint64_t next_id = 1;
    std::map<std::uint64_t, std::function<void()>> callbacks;
    std::vector<std::weak_ptr<State>> children;
    std::size_t prune_at = 8;
    // Its name and its ancestors' (null: unnamed, under no named scope): set once, before the
    // token is shared, then read-only.
    std::shared_ptr<const detail::ScopeName> scope;

    void cancel() {
      std::unique_lock lock(mu);
      if (cancelled) return;
      cancelled = true;
      canceller = std::this_thread::get_id();
      while (!callbacks.empty()) {
        auto it = callbacks.begin();
        running = it->first;
        std::function<void()> fn = std::move(it->second);
        callbacks.erase(it);
        lock.unlock();
        fn();  // unlocked: it may register, cancel or unregister freely
        lock.lock();
        running = 0;
        done.notify_all();
      }
      std::vector<std::weak_ptr<State>> kids = std::move(children);
      lock.unlock();
      for (auto& w : kids) {
        if (auto k = w.lock()) k->cancel();
      }
    }
    void unregister(std::uint64_t id) {
      std::unique_lock lock(mu);
      if (callbacks.erase(id) != 0) return;
      if (canceller != std::this_thread::get_id()) {
        done.wait(lock, [&] { return running != id; });
      }
    }
  };

  explicit CancellationToken(std::nullptr_t) noexcept {}

  std::shared_ptr<State> state_;
};

}  // namespace stallscope
