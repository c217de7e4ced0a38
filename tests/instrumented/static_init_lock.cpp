// Half of the two-translation-unit static-initialization test (test_static_init.cpp): this unit
// defines the global lock, exactly as a plugin registry would, with no constinit. Because
// stallscope::Mutex has a constexpr constructor, the lock is constant-initialized, so
// static_init_user.cpp, initialized before this unit (it is linked first), can lock it.
#include "static_init.hpp"

stallscope::Mutex plugin_registry_mu{"static-init-plugins"};
stallscope::Mutex plugin_registry_unnamed_mu;
stallscope::SharedMutex plugin_audit_mu{"static-init-audit", {.hold_time = true}};
int plugin_count = 0;

namespace {
bool initialize_lock_unit() { return true; }
}  // namespace

// A dynamic initializer of this unit: still false while static_init_user.cpp's run.
bool lock_unit_initialized = initialize_lock_unit();
