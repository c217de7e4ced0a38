// The other half of the two-translation-unit static-initialization test: dynamic initializers
// that lock the other unit's global lock before that unit's own initializers ran, and leave it
// locked for the test to find.
#include <mutex>
#include <shared_mutex>

#include "static_init.hpp"

bool lock_unit_initialized_at_first_use = true;

namespace {

bool register_plugin() {
  lock_unit_initialized_at_first_use = lock_unit_initialized;
  std::lock_guard g(plugin_registry_mu);
  ++plugin_count;
  std::shared_lock audit(plugin_audit_mu);
  return true;
}

bool registered_a = register_plugin();
bool registered_b = register_plugin();
// Locked during static initialization and still held when main() starts: a lock that was
// constructed (again) after this would have forgotten it.
bool left_locked = [] {
  plugin_registry_unnamed_mu.lock();
  return true;
}();

}  // namespace
