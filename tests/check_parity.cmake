# Fails when a built runner does not know a case of cases.txt, or knows one
# the file lacks. Each runner's `--list` prints the names of the cases it can
# run; a runner must refuse keys and values it does not implement, so a new
# key in cases.txt shows up here as a missing case.
#
# The one staged exception: the progressive cases (op=*_steps) may be
# missing from the runners of the languages named here until their
# event-loop issue lands (Ruby: issue 14, Lua: issue 15). Nothing else may
# be pending.
set(progressive_pending)
cmake_policy(SET CMP0057 NEW) # if(IN_LIST) under cmake -P

file(STRINGS ${CASES} lines)
set(expected "")
set(progressive "")
foreach(line IN LISTS lines)
  if(line MATCHES "^([A-Za-z0-9_]+)[ \t]")
    set(name ${CMAKE_MATCH_1})
    list(APPEND expected ${name})
    if(line MATCHES "[ \t]op=[a-z_]+_steps[ \t]")
      list(APPEND progressive ${name})
    endif()
  endif()
endforeach()
list(SORT expected)
list(LENGTH expected n_expected)
if(n_expected EQUAL 0)
  message(FATAL_ERROR "no cases found in ${CASES}")
endif()

set(failed FALSE)
foreach(lang IN LISTS RUNNERS)
  include(${RUNNERS_DIR}/${lang}.cmake) # sets R_COMMAND and env
  execute_process(COMMAND ${CMAKE_COMMAND} -E env ${env} ${R_COMMAND} --list --cases ${CASES}
                  OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
  string(REGEX REPLACE "\n$" "" out "${out}")
  string(REPLACE "\n" ";" known "${out}")
  list(SORT known)
  set(missing ${expected})
  list(REMOVE_ITEM missing ${known})
  if(lang IN_LIST progressive_pending AND progressive)
    list(REMOVE_ITEM missing ${progressive})
  endif()
  set(extra ${known})
  list(REMOVE_ITEM extra ${expected})
  list(LENGTH known n_known)
  if(NOT rc EQUAL 0 OR missing OR extra)
    set(failed TRUE)
    message("${lang}: FAIL (exit ${rc}) knows ${n_known} of ${n_expected}; missing: ${missing}; unknown: ${extra}\n${err}")
  else()
    message("${lang}: knows all ${n_expected} cases")
  endif()
endforeach()
list(LENGTH RUNNERS n_runners)
if(n_runners EQUAL 0)
  message(FATAL_ERROR "no runner registered")
endif()
if(failed)
  message(FATAL_ERROR "parity check failed")
endif()
