# Installs the Ruby component into a fresh prefix, then runs the conformance
# runner and Ruby's own tests against it, with RUBYLIB cleared so that only
# `ruby -I <prefix>/<site dir>` can find the module: what users load.
file(REMOVE_RECURSE ${PREFIX})
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BINARY_DIR} --prefix ${PREFIX} --component ruby
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed (${rc})")
endif()
set(site ${PREFIX}/${INSTALL_DIR})
if(NOT EXISTS ${site}/fastsock.rb OR NOT EXISTS ${site}/fastsock/native.so)
  message(FATAL_ERROR "the install did not put fastsock.rb and fastsock/native.so in ${site}")
endif()

foreach(step
    "${RUBY};-w;-I;${site};${TESTS}/run_cases.rb;--server;${SERVER};--cases;${CASES}"
    "${RUBY};-w;-I;${site};${TESTS}/test_fastsock.rb")
  execute_process(COMMAND ${CMAKE_COMMAND} -E env --unset=RUBYLIB FASTSOCK_LOOPBACK_SERVER=${SERVER}
                          FASTSOCK_EXPECT_LOADED_FROM=${site} ${step}
                  RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed against the installed module (${rc}): ${step}")
  endif()
endforeach()
