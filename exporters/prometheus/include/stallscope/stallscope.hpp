#pragma once
/// Umbrella header: every wrapper and the embedded endpoint (target stallscope::stallscope).
///
///   #include <stallscope/stallscope.hpp>
///   stallscope::Agent agent;               // serves /metrics on STALLSCOPE_LISTEN
///   (127.0.0.1:9464) stallscope::Mutex ledger{"ledger"};    // drop-in for std::mutex
///   std::lock_guard lock(ledger);
///
/// Code that links only the wrappers (stallscope::instrumented) includes stallscope/wrappers.hpp.

#include "stallscope/agent.hpp"       // IWYU pragma: export
#include "stallscope/prometheus.hpp"  // IWYU pragma: export
#include "stallscope/trace.hpp"       // IWYU pragma: export
#include "stallscope/wrappers.hpp"    // IWYU pragma: export
