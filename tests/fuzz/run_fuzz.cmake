# Runs the fuzzer for SECONDS from the committed seeds, with a fresh scratch
# corpus each time (so a run does not depend on the one before), and prints
# libFuzzer's final statistics (the number of executions among them).
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK}/corpus ${WORK}/artifacts)
execute_process(
  COMMAND ${FUZZER} -max_total_time=${SECONDS} -timeout=20 -rss_limit_mb=2048
          -print_final_stats=1 -artifact_prefix=${WORK}/artifacts/
          ${WORK}/corpus ${SEEDS}
  RESULT_VARIABLE rc
  OUTPUT_VARIABLE out
  ERROR_VARIABLE out)
# libFuzzer's progress lines are noise in a test log; the end matters.
string(REGEX REPLACE "\n#[0-9]+\t(NEW|REDUCE|pulse)[^\n]*" "" out "${out}")
message("${out}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the fuzzer failed (${rc}); the input is in ${WORK}/artifacts")
endif()
