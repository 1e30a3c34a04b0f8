# Installs the Lua module alone into a fresh prefix, then runs the Lua tests
# against it with nothing but that prefix's standard layout on LUA_CPATH.
file(REMOVE_RECURSE ${PREFIX})
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BINARY_DIR} --component lua --prefix ${PREFIX}
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed (${rc})")
endif()
set(ENV{LUA_CPATH} "${PREFIX}/${INSTALL_DIR}/?.so;;")

execute_process(COMMAND ${LUA} -e "
  local where = package.searchpath('fastsock', package.cpath)
  assert(where and where:find('${PREFIX}', 1, true) == 1, 'fastsock not found in the prefix: ' .. tostring(where))
  assert(require('fastsock').buffer, 'not the fastsock module')
  print('loads ' .. where)"
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the installed module does not load")
endif()

set(failed "")
foreach(test run_cases test_luasocket test_buffer test_send_ranges test_cqueues test_waiter)
  set(args --server ${SERVER})
  if(test STREQUAL "run_cases")
    list(APPEND args --cases ${CASES})
  endif()
  execute_process(COMMAND ${LUA} ${TESTS}/${test}.lua ${args} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    list(APPEND failed ${test})
  endif()
endforeach()
if(failed)
  message(FATAL_ERROR "failed against the installed module: ${failed}")
endif()
