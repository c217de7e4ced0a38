# Installs the runtime component of a build tree into PREFIX and runs the installed
# stallscope-check --help: the tool a CI image gets from the package.
cmake_minimum_required(VERSION 3.25)
file(REMOVE_RECURSE "${PREFIX}")
set(config_args)
if(DEFINED CONFIG AND NOT "${CONFIG}" STREQUAL "")
  set(config_args --config "${CONFIG}")
endif()
execute_process(COMMAND "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${PREFIX}"
                        --component stallscope_Runtime ${config_args}
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "check_tool_installed: cmake --install failed (${rc})")
endif()
execute_process(COMMAND "${PREFIX}/bin/stallscope-check" --help
                RESULT_VARIABLE rc OUTPUT_VARIABLE out)
if(NOT rc EQUAL 0 OR NOT out MATCHES "usage: stallscope-check --url")
  message(FATAL_ERROR "check_tool_installed: ${PREFIX}/bin/stallscope-check --help: ${rc}\n${out}")
endif()
