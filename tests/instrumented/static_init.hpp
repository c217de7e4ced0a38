#pragma once
// Shared by static_init_lock.cpp, static_init_user.cpp and test_static_init.cpp.
#include "stallscope/mutex.hpp"

extern stallscope::Mutex plugin_registry_mu;
extern stallscope::Mutex plugin_registry_unnamed_mu;
extern stallscope::SharedMutex plugin_audit_mu;
extern int plugin_count;                         // guarded by plugin_registry_mu
extern bool lock_unit_initialized;               // static_init_lock.cpp's dynamic init ran
extern bool lock_unit_initialized_at_first_use;  // ... before the first registration
