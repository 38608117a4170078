# Unit test (ctest fault_points_default_test): a plain configure of the source tree, with no
# -D options, must leave FERRY_FAULT_POINTS OFF, so an ordinary build or install never ships the
# fault-injection switches (issue 10, hole 10). Run as: cmake -DSRC=<source> -DBIN=<scratch> -P.
file(REMOVE_RECURSE "${BIN}")
execute_process(
  COMMAND "${CMAKE_COMMAND}" -S "${SRC}" -B "${BIN}" -G Ninja
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "plain configure failed (${rc}):\n${out}\n${err}")
endif()
file(STRINGS "${BIN}/CMakeCache.txt" line REGEX "^FERRY_FAULT_POINTS:BOOL=")
file(REMOVE_RECURSE "${BIN}")
if(NOT line STREQUAL "FERRY_FAULT_POINTS:BOOL=OFF")
  message(FATAL_ERROR "a plain configure has '${line}'; expected FERRY_FAULT_POINTS:BOOL=OFF")
endif()
message(STATUS "plain configure: ${line}")
