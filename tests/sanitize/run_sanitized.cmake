# Configures, builds and tests a second tree with FASTSOCK_SANITIZE=ON
# (AddressSanitizer and UndefinedBehaviorSanitizer in the core, the server,
# the C tests and all three language modules), as the `sanitize` test.
# The fuzzer has its own sanitizers and its own test in the main tree, and the
# portable paths are already tested once: neither is run again here.
set(args -S ${SOURCE_DIR} -B ${BINARY_DIR} -DFASTSOCK_SANITIZE=ON -DFASTSOCK_FUZZ=OFF
         -DFASTSOCK_PYTHON=${FASTSOCK_PYTHON} -DFASTSOCK_LUA=${FASTSOCK_LUA}
         -DFASTSOCK_RUBY=${FASTSOCK_RUBY})
if(Python3_EXECUTABLE)
  list(APPEND args -DPython3_EXECUTABLE=${Python3_EXECUTABLE})
endif()
foreach(step IN ITEMS configure build test)
  if(step STREQUAL "configure")
    set(cmd ${CMAKE_COMMAND} ${args})
  elseif(step STREQUAL "build")
    set(cmd ${CMAKE_COMMAND} --build ${BINARY_DIR} -j2)
  else()
    # The installed-module tests repeat the same code from another path.
    set(cmd ${CMAKE_CTEST_COMMAND} --test-dir ${BINARY_DIR} --output-on-failure -j2
            -E "^(portable_paths|.*_installed)$")
  endif()
  execute_process(COMMAND ${cmd} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "sanitizer build: ${step} failed (${rc})")
  endif()
endforeach()
