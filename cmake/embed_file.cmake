# Embeds a text file in C++ at build time, as `inline constexpr std::string_view NAME` (in
# stallscope::detail) in a generated header, so that a page's CSS and script stay real files in
# the source tree.
#
#   include(embed_file)
#   stallscope_embed_file(TARGET FILE NAME HEADER)
#
# adds the build-tree header HEADER (relative to the target's binary dir, which is put on its
# include path) to TARGET's sources; the header is regenerated whenever FILE (or this script)
# changes, and the sources that include it rebuild. Run with -P, the same file is the generator:
#
#   cmake -DINPUT=in.js -DOUTPUT=out.hpp -DNAME=kScript -P embed_file.cmake
#
# The text goes in one raw string literal, byte for byte; a file that contains the literal's
# delimiter is refused. The output is rewritten only when it changes.

if(CMAKE_SCRIPT_MODE_FILE)
  foreach(var INPUT OUTPUT NAME)
    if(NOT DEFINED ${var})
      message(FATAL_ERROR "embed_file.cmake: -D${var}=... is required")
    endif()
  endforeach()
  file(READ "${INPUT}" text)
  set(delimiter "stallscope_embed")
  string(FIND "${text}" ")${delimiter}\"" at)
  if(NOT at EQUAL -1)
    message(FATAL_ERROR "embed_file.cmake: ${INPUT} contains )${delimiter}\" at offset ${at}")
  endif()
  get_filename_component(input_name "${INPUT}" NAME)
  file(WRITE "${OUTPUT}.tmp"
       "// Generated from ${input_name} by cmake/embed_file.cmake; edit that file, not this one.\n"
       "#pragma once\n#include <string_view>\n\nnamespace stallscope::detail {\n\n"
       "inline constexpr std::string_view ${NAME} = R\"${delimiter}(${text})${delimiter}\";\n\n"
       "}  // namespace stallscope::detail\n")
  file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
  file(REMOVE "${OUTPUT}.tmp")
  return()
endif()

set(_stallscope_embed_script "${CMAKE_CURRENT_LIST_FILE}")

function(stallscope_embed_file target file name header)
  get_filename_component(input "${file}" ABSOLUTE)
  set(output "${CMAKE_CURRENT_BINARY_DIR}/${header}")
  add_custom_command(
    OUTPUT "${output}"
    COMMAND "${CMAKE_COMMAND}" "-DINPUT=${input}" "-DOUTPUT=${output}" "-DNAME=${name}" -P
            "${_stallscope_embed_script}"
    DEPENDS "${input}" "${_stallscope_embed_script}"
    COMMENT "Embedding ${file} as ${name}"
    VERBATIM)
  target_sources(${target} PRIVATE "${output}")
  target_include_directories(${target} PRIVATE "${CMAKE_CURRENT_BINARY_DIR}")
endfunction()
