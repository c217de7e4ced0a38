#pragma once
/// Umbrella header: every wrapper and the embedded endpoint.
///
///   #include <stallscope/stallscope.hpp>
///   stallscope::Agent agent;               // serves /metrics on STALLSCOPE_LISTEN
///   (127.0.0.1:9464) stallscope::Mutex ledger{"ledger"};    // drop-in for std::mutex
///   std::lock_guard lock(ledger);

#include "stallscope/agent.hpp"               // IWYU pragma: export
#include "stallscope/blocking_pool.hpp"       // IWYU pragma: export
#include "stallscope/cancellation.hpp"        // IWYU pragma: export
#include "stallscope/channel.hpp"             // IWYU pragma: export
#include "stallscope/condition_variable.hpp"  // IWYU pragma: export
#include "stallscope/config.hpp"              // IWYU pragma: export
#include "stallscope/detectors.hpp"           // IWYU pragma: export
#include "stallscope/executor.hpp"            // IWYU pragma: export
#include "stallscope/mutex.hpp"               // IWYU pragma: export
#include "stallscope/prometheus.hpp"          // IWYU pragma: export
#include "stallscope/registry.hpp"            // IWYU pragma: export
#include "stallscope/retry.hpp"               // IWYU pragma: export
#include "stallscope/semaphore.hpp"           // IWYU pragma: export
#include "stallscope/task.hpp"                // IWYU pragma: export
#include "stallscope/watchdog.hpp"            // IWYU pragma: export
