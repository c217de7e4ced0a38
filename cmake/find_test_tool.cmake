# Finds a program that a test runs, into the cache variable VAR, and sets OUT to its path, or
# to "" when it is missing: configuring then warns which Debian package provides it, and the
# test fails with a message saying so (it does not skip).
#
#   stallscope_find_test_tool(VAR OUT NAMES name... PACKAGE debian-package FOR "the X test")
function(stallscope_find_test_tool var out)
  cmake_parse_arguments(PARSE_ARGV 2 arg "" "PACKAGE;FOR" "NAMES")
  list(GET arg_NAMES 0 name)
  find_program(${var} NAMES ${arg_NAMES} DOC "${name}, for ${arg_FOR}")
  if(${var})
    set(${out} "${${var}}" PARENT_SCOPE)
  else()
    set(${out} "" PARENT_SCOPE)
    message(WARNING "${name} not found: ${arg_FOR} will fail (apt-get install ${arg_PACKAGE})")
  endif()
endfunction()
