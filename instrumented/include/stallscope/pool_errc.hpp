#pragma once
/// The error codes of stallscope::BlockingPool::run() (blocking_pool.hpp).

#include <string>

#include <boost/system/error_code.hpp>

namespace stallscope {

/// Why BlockingPool::run() refused a job (the job never ran). Category "stallscope.pool".
enum class PoolErrc {
  kQueueFull = 1,  ///< max_queue jobs were already waiting: shed
  kStopped = 2,    ///< the pool is being destroyed
};
inline const boost::system::error_category& pool_category() noexcept {
  struct Category final : boost::system::error_category {
    const char* name() const noexcept override { return "stallscope.pool"; }
    std::string message(int ev) const override {
      switch (static_cast<PoolErrc>(ev)) {
        case PoolErrc::kQueueFull:
          return "pool queue full";
        case PoolErrc::kStopped:
          return "pool stopped";
      }
      return "unknown";
    }
  };
  static const Category category;
  return category;
}
inline boost::system::error_code make_error_code(PoolErrc e) noexcept {
  return {static_cast<int>(e), pool_category()};
}

}  // namespace stallscope
