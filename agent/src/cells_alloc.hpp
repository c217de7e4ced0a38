#pragma once
// Hands out blocks of cell indices. Blocks are never freed: series live for the process.
#include <cstdint>
#include <mutex>

#include "stallscope/detail/cells.hpp"

namespace stallscope::detail {

class CellAllocator {
 public:
  // A block of n contiguous cells inside one chunk, or kNoCell when the space is used up.
  std::uint32_t allocate(std::uint32_t n) noexcept;
  std::uint32_t used() const noexcept;

 private:
  mutable std::mutex mu_;
  std::uint32_t next_ = 0;
};

CellAllocator& cell_allocator() noexcept;

}  // namespace stallscope::detail
