# Builds and installs the rock with `luarocks make --tree <fresh tree>` from a
# copy of what the rockspec reads (so the source tree stays untouched and
# nothing else is reachable), then runs the whole conformance runner against
# the tree's fastsock.so: LUA_CPATH holds the tree and Lua's defaults (for
# LuaSocket), and the module must resolve into the tree. -DSOURCE_DIR
# -DWORK_DIR -DLUA -DLUAROCKS -DTESTS -DSERVER -DCASES.
file(STRINGS ${SOURCE_DIR}/VERSION version LIMIT_COUNT 1)
file(REMOVE_RECURSE ${WORK_DIR})
set(src ${WORK_DIR}/src)
set(tree ${WORK_DIR}/tree)
file(GLOB rockspecs ${SOURCE_DIR}/*.rockspec)
file(COPY ${rockspecs} ${SOURCE_DIR}/VERSION DESTINATION ${src})
foreach(dir core swig bindings/lua)
  get_filename_component(parent ${src}/${dir} DIRECTORY)
  file(COPY ${SOURCE_DIR}/${dir} DESTINATION ${parent})
endforeach()

function(step)
  string(REPLACE ";" " " shown "${ARGN}")
  message(STATUS "$ ${shown}")
  execute_process(COMMAND ${ARGN} WORKING_DIRECTORY ${WORK_DIR} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${shown}")
  endif()
endfunction()

message(STATUS "$ luarocks --lua-version 5.4 make --tree ${tree}")
execute_process(COMMAND ${LUAROCKS} --lua-version 5.4 make --tree ${tree}
                WORKING_DIRECTORY ${src} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "luarocks make failed (${rc})")
endif()

set(ENV{LUA_CPATH} "${tree}/lib/lua/5.4/?.so;;")
step(${LUA} -e "
  local where = package.searchpath('fastsock', package.cpath)
  assert(where and where:find('${tree}/', 1, true) == 1, 'fastsock not found in the tree: ' .. tostring(where))
  local fastsock = require 'fastsock'
  assert(fastsock._VERSION == 'fastsock ${version}',
         'fastsock._VERSION ' .. tostring(fastsock._VERSION) .. ', VERSION says ${version}')
  print(fastsock._VERSION .. ' from ' .. where)")
step(${LUA} ${TESTS}/run_cases.lua --server ${SERVER} --cases ${CASES})
file(REMOVE_RECURSE ${WORK_DIR})
