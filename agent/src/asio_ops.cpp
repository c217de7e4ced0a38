// The names of the Asio operations tasks await (task_state.hpp, asio_tracking.hpp).
#include <atomic>
#include <mutex>

#include "stallscope/detail/task_state.hpp"

namespace stallscope::detail {

namespace {

constexpr std::size_t kAsioOpNames = 256;

// Append-only: entries [0, count) are set before count covers them, and never change.
struct AsioOpNames {
  AsioOpName names[kAsioOpNames] = {};
  std::atomic<std::size_t> count{0};
  std::mutex mu;  // appends only
};
constinit AsioOpNames g_names;
constinit const AsioOpName kOther{"asio", "operation"};
constinit std::atomic<bool> g_tracking{false};

const AsioOpName* find(const char* object, const char* op, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) {
    if (g_names.names[i].object == object && g_names.names[i].op == op) return &g_names.names[i];
  }
  return nullptr;
}

}  // namespace

const AsioOpName* asio_op_name(const char* object, const char* op) noexcept {
  if (const AsioOpName* hit = find(object, op, g_names.count.load(std::memory_order_acquire))) {
    return hit;
  }
  // A literal of another translation unit may have another address: the same text under a new
  // pair of pointers is a new entry (a handful per program).
  std::lock_guard lock(g_names.mu);
  const std::size_t n = g_names.count.load(std::memory_order_relaxed);
  if (const AsioOpName* hit = find(object, op, n)) return hit;
  if (n == kAsioOpNames) return &kOther;
  g_names.names[n] = AsioOpName{object, op};
  g_names.count.store(n + 1, std::memory_order_release);
  return &g_names.names[n];
}

void note_asio_tracking() noexcept { g_tracking.store(true, std::memory_order_relaxed); }
bool asio_tracking() noexcept { return g_tracking.load(std::memory_order_relaxed); }

}  // namespace stallscope::detail
