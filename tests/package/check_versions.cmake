# The one version (the top-level VERSION file) as everything shows it: the
# CMake project, the gemspec, and the modules of this build at run time
# (fastsock.__version__, Fastsock::VERSION, Lua's fastsock._VERSION). The
# wheel, sdist, gem and rock built from the same file are checked by the
# package_* tests. -DSOURCE_DIR -DPROJECT_VERSION [-DPYTHON -DPYTHONPATH]
# [-DRUBY -DRUBYLIB] [-DLUA -DLUA_CPATH]. (The code given to -c/-e has no ';':
# CMake would split the argument there.)
file(STRINGS ${SOURCE_DIR}/VERSION version LIMIT_COUNT 1)
set(errors "")
function(expect what got want)
  if(got STREQUAL want)
    message(STATUS "${what}: ${got}")
  else()
    set(errors "${errors}\n  ${what}: '${got}', not '${want}'" PARENT_SCOPE)
  endif()
endfunction()
function(ask out)
  execute_process(COMMAND ${ARGN} OUTPUT_VARIABLE got ERROR_VARIABLE err
                  RESULT_VARIABLE rc OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT rc EQUAL 0)
    set(got "error ${rc}: ${err}")
  endif()
  set(${out} "${got}" PARENT_SCOPE)
endfunction()

expect("CMake project()" "${PROJECT_VERSION}" "${version}")
if(PYTHON)
  ask(got ${CMAKE_COMMAND} -E env PYTHONPATH=${PYTHONPATH}
      ${PYTHON} -B -c "import fastsock\nprint(fastsock.__version__)")
  expect("Python fastsock.__version__" "${got}" "${version}")
endif()
if(RUBY)
  ask(got ${CMAKE_COMMAND} -E env RUBYLIB=${RUBYLIB} ${RUBY} -e "require 'fastsock'\nprint Fastsock::VERSION")
  expect("Ruby Fastsock::VERSION" "${got}" "${version}")
  ask(got ${RUBY} -e "print Gem::Specification.load(ARGV[0]).version" ${SOURCE_DIR}/fastsock.gemspec)
  expect("fastsock.gemspec" "${got}" "${version}")
endif()
if(LUA)
  ask(got ${CMAKE_COMMAND} -E env "LUA_CPATH=${LUA_CPATH}" ${LUA} -e "io.write(require('fastsock')._VERSION)")
  expect("Lua fastsock._VERSION" "${got}" "fastsock ${version}")
endif()
if(errors)
  message(FATAL_ERROR "the versions disagree with VERSION (${version}):${errors}")
endif()
