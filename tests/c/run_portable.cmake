# Configures, builds and tests a second tree with FASTSOCK_PORTABLE=ON.
set(args -S ${SOURCE_DIR} -B ${BINARY_DIR} -DFASTSOCK_PORTABLE=ON
         -DFASTSOCK_PYTHON=${FASTSOCK_PYTHON} -DFASTSOCK_LUA=${FASTSOCK_LUA}
         -DFASTSOCK_RUBY=${FASTSOCK_RUBY} -DFASTSOCK_SANITIZE=${FASTSOCK_SANITIZE}
         # The main tree fuzzes for a minute; here a third of that covers the
         # portable paths without the suite's time growing by a whole minute.
         -DFASTSOCK_FUZZ_SECONDS=20)
if(Python3_EXECUTABLE)
  list(APPEND args -DPython3_EXECUTABLE=${Python3_EXECUTABLE})
endif()
foreach(step IN ITEMS configure build test)
  if(step STREQUAL "configure")
    set(cmd ${CMAKE_COMMAND} ${args})
  elseif(step STREQUAL "build")
    set(cmd ${CMAKE_COMMAND} --build ${BINARY_DIR} -j2)
  else()
    set(cmd ${CMAKE_CTEST_COMMAND} --test-dir ${BINARY_DIR} --output-on-failure -j2 -E "_installed$")
  endif()
  execute_process(COMMAND ${cmd} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "portable build: ${step} failed (${rc})")
  endif()
endforeach()
