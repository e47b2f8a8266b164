# Runs PROGRAM with ARGS (a ;-list) and passes when it exits non-zero with MESSAGE in its output.
execute_process(COMMAND ${PROGRAM} ${ARGS} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 50)
string(FIND "${out}${err}" "${MESSAGE}" at)
if(rc EQUAL 0 OR at EQUAL -1)
  message(FATAL_ERROR "expected a non-zero exit with '${MESSAGE}'; got exit ${rc}:\n${out}${err}")
endif()
