# Install rules: headers, static libraries, the stallscope CMake package and stallscope-check.
#
#   cmake --install build/release --prefix /opt/stallscope
#   find_package(stallscope CONFIG REQUIRED)           # consumer, CMAKE_PREFIX_PATH=/opt/stallscope
#   target_link_libraries(app PRIVATE stallscope::stallscope)
#
# Included from the top-level CMakeLists.txt when STALLSCOPE_INSTALL is ON.
include(CMakePackageConfigHelpers)

set(STALLSCOPE_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/stallscope"
    CACHE STRING "Where stallscope-config.cmake is installed, relative to the prefix")
mark_as_advanced(STALLSCOPE_INSTALL_CMAKEDIR)

# Public headers of every layer share one prefix: include/stallscope/... (detail/ included: the
# templates need it). Private headers live in src/ and are not installed.
install(DIRECTORY "${PROJECT_SOURCE_DIR}/agent/include/"
                  "${PROJECT_SOURCE_DIR}/instrumented/include/"
                  "${PROJECT_SOURCE_DIR}/exporters/prometheus/include/"
                  "${PROJECT_SOURCE_DIR}/exporters/check/include/"
        DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}"
        COMPONENT stallscope_Development
        FILES_MATCHING PATTERN "*.hpp")

install(TARGETS stallscope_agent stallscope_instrumented stallscope_prometheus stallscope_check
                stallscope
        EXPORT stallscopeTargets
        ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}" COMPONENT stallscope_Development
        LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}" COMPONENT stallscope_Runtime
        RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}" COMPONENT stallscope_Runtime)

# The release check: `stallscope-check --url http://HOST:PORT` after a load test (README, "Release
# check"). Runtime component: a CI image needs only this, not the headers and libraries.
install(TARGETS stallscope-check
        RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}" COMPONENT stallscope_Runtime)

install(EXPORT stallscopeTargets
        NAMESPACE stallscope::
        DESTINATION "${STALLSCOPE_INSTALL_CMAKEDIR}"
        COMPONENT stallscope_Development)

configure_package_config_file(
  "${PROJECT_SOURCE_DIR}/cmake/stallscope-config.cmake.in"
  "${PROJECT_BINARY_DIR}/stallscope-config.cmake"
  INSTALL_DESTINATION "${STALLSCOPE_INSTALL_CMAKEDIR}"
  NO_SET_AND_CHECK_MACRO)

# 0.x: a minor release may break the API, so only the same major.minor is compatible.
write_basic_package_version_file(
  "${PROJECT_BINARY_DIR}/stallscope-config-version.cmake"
  VERSION "${PROJECT_VERSION}"
  COMPATIBILITY SameMinorVersion)

install(FILES "${PROJECT_BINARY_DIR}/stallscope-config.cmake"
              "${PROJECT_BINARY_DIR}/stallscope-config-version.cmake"
        DESTINATION "${STALLSCOPE_INSTALL_CMAKEDIR}"
        COMPONENT stallscope_Development)
