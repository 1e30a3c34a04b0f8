# The test environment of a FASTSOCK_SANITIZE build (included by
# tests/CMakeLists.txt, which hands FASTSOCK_TEST_ENV to every binding).
#
# The interpreters (python3, lua5.4, ruby) are not built with ASan, and
# ASan's runtime must be the first library of the process: preload it, and
# UBSan's, into every test. The C tests link them anyway; preloading the
# same libraries again is harmless.
foreach(lib asan ubsan)
  execute_process(COMMAND ${CMAKE_C_COMPILER} -print-file-name=lib${lib}.so
                  OUTPUT_VARIABLE _path OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT IS_ABSOLUTE "${_path}" OR NOT EXISTS "${_path}")
    message(FATAL_ERROR "FASTSOCK_SANITIZE: ${CMAKE_C_COMPILER} has no lib${lib}.so")
  endif()
  list(APPEND _preload "${_path}")
endforeach()
list(JOIN _preload ":" _preload)
list(APPEND FASTSOCK_TEST_ENV
  "LD_PRELOAD=${_preload}"
  # allocator_may_return_null: the nomem cases ask for a petabyte on purpose,
  # which must fail as malloc fails, not abort. Leak detection stays on: the
  # C tests and Lua (which frees everything at exit) run with it; Python and
  # Ruby, which keep their heaps to the end, turn it off in their own
  # environment.
  "ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=1"
  "LSAN_OPTIONS=suppressions=${CMAKE_CURRENT_LIST_DIR}/lsan.supp:print_suppressions=0"
  "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
