#pragma once
// The clock the wrappers read for their recorders, whether recording is compiled in or out.
//
// STALLSCOPE_ENABLED=0 is handled in the agent's headers only: each recorder header
// (lock_recorder.hpp, channel_recorder.hpp, semaphore_recorder.hpp, pool_recorder.hpp) then
// declares an empty class of the recorder's name and interface whose members do nothing, and
// this header a clock that reads nothing. The wrappers call them unconditionally and have no #if.
// The compiled-out declarations live in the inline namespace `off`, so a program that links the
// agent (always built with recording) into code compiled with it off holds no two definitions of
// one name.
#include <cstdint>

#include "stallscope/clock.hpp"
#include "stallscope/config.hpp"

namespace stallscope::detail {

#if STALLSCOPE_ENABLED
// The clock every async primitive reads for its recorder: now_ns().
inline std::int64_t async_now() noexcept { return now_ns(); }
#else
inline namespace off {
// Compiled out: 0, no read at all.
inline std::int64_t async_now() noexcept { return 0; }
}  // namespace off
#endif

}  // namespace stallscope::detail
