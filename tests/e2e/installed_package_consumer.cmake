# Installs a stallscope build tree into a scratch prefix, then builds and runs a consumer project
# against it. Run by ctest (see CMakeLists.txt); by hand:
#
#   cmake -DBUILD_DIR=build/dev -DCONSUMER_SOURCE_DIR=tests/e2e/consumer \
#         -DWORK_DIR=/tmp/consumer-test -P tests/e2e/installed_package_consumer.cmake
#
# Optional: CONFIG (multi-config generators), GENERATOR, MAKE_PROGRAM, CXX_COMPILER, CXX_FLAGS,
# EXE_LINKER_FLAGS (to match the library's build, e.g. its sanitizer flags), WRAPPERS_ONLY (ON:
# the consumer must configure with the endpoint's dependencies made unfindable).
cmake_minimum_required(VERSION 3.25)

foreach(var IN ITEMS BUILD_DIR CONSUMER_SOURCE_DIR WORK_DIR)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "installed_package_consumer: pass -D${var}=...")
  endif()
  file(REAL_PATH "${${var}}" ${var})
endforeach()

set(prefix "${WORK_DIR}/prefix")
set(consumer_build "${WORK_DIR}/consumer-build")
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
# A DESTDIR from the caller's environment would install somewhere else than the prefix.
unset(ENV{DESTDIR})

function(run_step what)
  message(STATUS "installed_package_consumer: ${what}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "installed_package_consumer: ${what} failed (${rc})")
  endif()
endfunction()

set(config_args)
if(DEFINED CONFIG AND NOT "${CONFIG}" STREQUAL "")
  set(config_args --config "${CONFIG}")
endif()

run_step("install ${BUILD_DIR} into ${prefix}"
         "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${prefix}" ${config_args})

foreach(expected IN ITEMS include/stallscope/stallscope.hpp include/stallscope/wrappers.hpp
                          include/stallscope/detail/cells.hpp)
  if(NOT EXISTS "${prefix}/${expected}")
    message(FATAL_ERROR "installed_package_consumer: ${expected} was not installed")
  endif()
endforeach()
file(GLOB_RECURSE config_file "${prefix}/*/stallscope-config.cmake")
if(NOT config_file)
  message(FATAL_ERROR "installed_package_consumer: no stallscope-config.cmake under ${prefix}")
endif()

set(configure_args
    -S "${CONSUMER_SOURCE_DIR}" -B "${consumer_build}"
    "-DCMAKE_PREFIX_PATH=${prefix}"
    # Only the scratch prefix (and the system, for prometheus-cpp and fmt) may provide stallscope.
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
    -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF)
if(DEFINED GENERATOR AND NOT "${GENERATOR}" STREQUAL "")
  list(APPEND configure_args -G "${GENERATOR}")
endif()
if(DEFINED MAKE_PROGRAM AND NOT "${MAKE_PROGRAM}" STREQUAL "")
  list(APPEND configure_args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
endif()
if(DEFINED CXX_COMPILER AND NOT "${CXX_COMPILER}" STREQUAL "")
  list(APPEND configure_args "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}")
endif()
if(DEFINED CONFIG AND NOT "${CONFIG}" STREQUAL "")
  list(APPEND configure_args "-DCMAKE_BUILD_TYPE=${CONFIG}")
endif()
list(APPEND configure_args "-DCMAKE_CXX_FLAGS=${CXX_FLAGS}"
                           "-DCMAKE_EXE_LINKER_FLAGS=${EXE_LINKER_FLAGS}")
if(WRAPPERS_ONLY)
  # find_package of any of these fails the configure: the wrappers must not need them.
  foreach(pkg IN ITEMS prometheus-cpp civetweb yaml-cpp OpenSSL ZLIB)
    list(APPEND configure_args "-DCMAKE_DISABLE_FIND_PACKAGE_${pkg}=ON")
  endforeach()
endif()

run_step("configure the consumer" "${CMAKE_COMMAND}" ${configure_args})

# The package must come from the prefix just installed, not from anywhere else on the machine.
file(STRINGS "${consumer_build}/CMakeCache.txt" found_dir REGEX "^stallscope_DIR:")
string(REGEX REPLACE "^stallscope_DIR:[A-Z]*=" "" found_dir "${found_dir}")
file(REAL_PATH "${found_dir}" found_dir)
string(FIND "${found_dir}" "${prefix}/" at)
if(NOT at EQUAL 0)
  message(FATAL_ERROR "installed_package_consumer: stallscope found at ${found_dir}, "
                      "not under ${prefix}")
endif()

run_step("build the consumer" "${CMAKE_COMMAND}" --build "${consumer_build}" ${config_args})

find_program(consumer_exe consumer PATHS "${consumer_build}" "${consumer_build}/${CONFIG}"
             NO_DEFAULT_PATH NO_CACHE REQUIRED)
run_step("run ${consumer_exe}" "${consumer_exe}")
message(STATUS "installed_package_consumer: passed")
