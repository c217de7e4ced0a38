#pragma once
/// Compile-time configuration: the on/off switch, the version and thread-safety annotations.
///
/// STALLSCOPE_ENABLED (default 1) is set by the CMake option of the same name. With 0, nothing is
/// recorded and nothing registers: each lock wrapper keeps its type name and holds only its
/// primitive (same size, calls forwarded inline; README, "Locks"). The switch is read only by the
/// agent's recorder headers, which then declare empty recorders (detail/recording.hpp).

#ifndef STALLSCOPE_ENABLED
#define STALLSCOPE_ENABLED 1
#endif

#define STALLSCOPE_VERSION_MAJOR 0
#define STALLSCOPE_VERSION_MINOR 1
#define STALLSCOPE_VERSION_PATCH 0
#define STALLSCOPE_VERSION_STRING "0.1.0"

// Clang thread-safety analysis (-Wthread-safety); no-ops elsewhere.
#if defined(__clang__) && defined(__has_attribute)
#if __has_attribute(capability)
#define STALLSCOPE_TSA(x) __attribute__((x))
#endif
#endif
#ifndef STALLSCOPE_TSA
#define STALLSCOPE_TSA(x)
#endif

#define STALLSCOPE_CAPABILITY(x) STALLSCOPE_TSA(capability(x))
#define STALLSCOPE_SCOPED_CAPABILITY STALLSCOPE_TSA(scoped_lockable)
#define STALLSCOPE_GUARDED_BY(x) STALLSCOPE_TSA(guarded_by(x))
#define STALLSCOPE_ACQUIRE(...) STALLSCOPE_TSA(acquire_capability(__VA_ARGS__))
#define STALLSCOPE_ACQUIRE_SHARED(...) STALLSCOPE_TSA(acquire_shared_capability(__VA_ARGS__))
#define STALLSCOPE_RELEASE(...) STALLSCOPE_TSA(release_capability(__VA_ARGS__))
#define STALLSCOPE_RELEASE_SHARED(...) STALLSCOPE_TSA(release_shared_capability(__VA_ARGS__))
#define STALLSCOPE_TRY_ACQUIRE(...) STALLSCOPE_TSA(try_acquire_capability(__VA_ARGS__))
#define STALLSCOPE_TRY_ACQUIRE_SHARED(...) \
  STALLSCOPE_TSA(try_acquire_shared_capability(__VA_ARGS__))
#define STALLSCOPE_EXCLUDES(...) STALLSCOPE_TSA(locks_excluded(__VA_ARGS__))
