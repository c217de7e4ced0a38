#pragma once
/// Every wrapper, without the endpoint (target stallscope::instrumented; the umbrella
/// stallscope/stallscope.hpp adds the Agent and the Prometheus exporter).
///
///   #include <stallscope/wrappers.hpp>
///   stallscope::Mutex ledger{"ledger"};   // drop-in for std::mutex
///   std::lock_guard lock(ledger);

#include "stallscope/blocking_pool.hpp"       // IWYU pragma: export
#include "stallscope/cancellation.hpp"        // IWYU pragma: export
#include "stallscope/channel.hpp"             // IWYU pragma: export
#include "stallscope/condition_variable.hpp"  // IWYU pragma: export
#include "stallscope/config.hpp"              // IWYU pragma: export
#include "stallscope/detectors.hpp"           // IWYU pragma: export
#include "stallscope/executor.hpp"            // IWYU pragma: export
#include "stallscope/mutex.hpp"               // IWYU pragma: export
#include "stallscope/registry.hpp"            // IWYU pragma: export
#include "stallscope/retry.hpp"               // IWYU pragma: export
#include "stallscope/semaphore.hpp"           // IWYU pragma: export
#include "stallscope/task.hpp"                // IWYU pragma: export
#include "stallscope/watchdog.hpp"            // IWYU pragma: export
