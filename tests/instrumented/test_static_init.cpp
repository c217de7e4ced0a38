// Locks in static storage: constant-initialized like std::mutex, usable from other units'
// static initializers, constinit-able.
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>

#include <catch2/catch.hpp>

#include "stallscope/condition_variable.hpp"
#include "stallscope/mutex.hpp"
#include "static_init.hpp"
#include "support/metrics.hpp"

using namespace stallscope::testing;

namespace {

// Each of these is a compile-time test: constinit fails to compile unless the constructor is a
// constant expression.
constinit stallscope::Mutex registry_mu{"constinit-registry"};
constinit stallscope::Mutex unnamed_mu;
constinit stallscope::Mutex timed_holds_mu{"constinit-holds", {.hold_time = true}};
constinit stallscope::SharedMutex shared_mu{"constinit-shared"};
constinit stallscope::RecursiveMutex recursive_mu{"constinit-recursive"};
constinit stallscope::TimedMutex timed_mu{"constinit-timed"};
constinit stallscope::RecursiveTimedMutex recursive_timed_mu{"constinit-recursive-timed"};
constinit stallscope::SharedTimedMutex shared_timed_mu{"constinit-shared-timed"};

}  // namespace

TEST_CASE("a global lock used by another unit's static initializer works like std::mutex",
          "[locks][static-init]") {
  // The scenario really happened: the user unit ran first (link order), and locked the lock
  // before this unit's own dynamic initializers.
  REQUIRE_FALSE(lock_unit_initialized_at_first_use);
  REQUIRE(lock_unit_initialized);
  {
    std::lock_guard g(plugin_registry_mu);
    CHECK(plugin_count == 2);
  }
  // Locked during static initialization and still locked: nothing constructed over it.
  bool got = true;
  std::thread([&] { got = plugin_registry_unnamed_mu.try_lock(); }).join();
  CHECK_FALSE(got);
  plugin_registry_unnamed_mu.unlock();
  if constexpr (!STALLSCOPE_ENABLED) return;
  // The initializers' acquisitions were recorded under the lock's name: two, plus this test's.
  CHECK(value("stallscope_lock_acquisitions_total", lock_labels("static-init-plugins")) == 3);
  CHECK(plugin_registry_unnamed_mu.name() == "static_init_lock.cpp:8");
  // A global with options is constant-initialized too, its options kept for registration.
  const auto audit = stallscope::testing::histogram("stallscope_lock_hold_seconds",
                                                    lock_labels("static-init-audit", "shared"));
  REQUIRE(audit.has_value());
  CHECK(audit->count == 2);
}

TEST_CASE("constinit locks work and register under their names on first use",
          "[locks][static-init]") {
  { std::lock_guard g(registry_mu); }
  { std::lock_guard g(unnamed_mu); }
  { std::lock_guard g(timed_holds_mu); }
  { std::shared_lock g(shared_mu); }
  { std::lock_guard g(recursive_mu); }
  CHECK(timed_mu.try_lock_for(std::chrono::milliseconds(1)));
  timed_mu.unlock();
  { std::lock_guard g(recursive_timed_mu); }
  { std::shared_lock g(shared_timed_mu); }
  if constexpr (!STALLSCOPE_ENABLED) return;
  CHECK(value("stallscope_lock_acquisitions_total", lock_labels("constinit-registry")) == 1);
  CHECK(value("stallscope_lock_acquisitions_total", lock_labels("constinit-shared", "shared")) ==
        1);
  const auto holds = stallscope::testing::histogram("stallscope_lock_hold_seconds",
                                                    lock_labels("constinit-holds"));
  REQUIRE(holds.has_value());
  CHECK(holds->count == 1);
  CHECK(registry_mu.name() == "constinit-registry");
  CHECK(unnamed_mu.name().starts_with("test_static_init.cpp:"));
}
