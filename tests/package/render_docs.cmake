# The in-source API documentation renders with Debian's tools, warning-free:
# YARD over bindings/ruby/lib (every object documented: `yard stats`), LDoc
# over bindings/lua's C (its config.ld when the binding has one). Output goes
# to WORK_DIR, never into the source tree. -DSOURCE_DIR -DWORK_DIR [-DYARD]
# [-DLDOC].
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})
set(errors "")

# Runs a tool from WORK_DIR; any diagnostic line ("file:line: ...",
# "[warn]", "[error]") or a failing exit counts.
function(render what pattern)
  execute_process(COMMAND ${ARGN} WORKING_DIRECTORY ${WORK_DIR}
                  OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
  string(REPLACE ";" " " shown "${ARGN}")
  message(STATUS "$ ${shown}\n${out}${err}")
  if(NOT rc EQUAL 0 OR "${out}${err}" MATCHES "${pattern}")
    set(errors "${errors}\n  ${what}" PARENT_SCOPE)
  endif()
endfunction()

if(YARD)
  file(GLOB_RECURSE rb ${SOURCE_DIR}/bindings/ruby/lib/*.rb)
  render("yard doc" "\\[(warn|error)\\]"
         ${YARD} doc --no-save --no-cache -q -o ${WORK_DIR}/yard ${rb})
  render("yard stats: undocumented objects" "\\[(warn|error)\\]|Undocumented Objects"
         ${YARD} stats --no-save --no-cache --list-undoc ${rb})
  if(NOT EXISTS ${WORK_DIR}/yard/Fastsock.html)
    set(errors "${errors}\n  yard wrote no Fastsock.html")
  endif()
endif()

if(LDOC)
  set(lua ${SOURCE_DIR}/bindings/lua)
  if(EXISTS ${lua}/config.ld)
    render("ldoc" "[^\n]+:[0-9]+: " ${CMAKE_COMMAND} -E chdir ${lua}
           ${LDOC} -c ${lua}/config.ld --dir ${WORK_DIR}/ldoc .)
  else()
    render("ldoc" "[^\n]+:[0-9]+: " ${LDOC} --dir ${WORK_DIR}/ldoc --project fastsock ${lua})
  endif()
  if(NOT EXISTS ${WORK_DIR}/ldoc/index.html)
    set(errors "${errors}\n  ldoc wrote no index.html")
  endif()
endif()

file(REMOVE_RECURSE ${WORK_DIR})
if(errors)
  message(FATAL_ERROR "the API documentation does not render cleanly:${errors}")
endif()
