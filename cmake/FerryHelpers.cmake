include_guard(GLOBAL)

# Warnings for Ferry's own targets. -Werror only with FERRY_WERROR (on in CI), so a service that
# embeds Ferry never inherits it.
function(ferry_set_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor)
  if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    # clang's -Wpedantic flags the GNU statement expressions inside librdkafka's RD_KAFKA_V_*
    # macros (rd_kafka_producev), which expand in our code; g++ does not (the ASan preset is clang).
    target_compile_options(${target} PRIVATE -Wno-gnu-statement-expression)
  endif()
  if(CMAKE_UNITY_BUILD AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    # g++ exempts only the main file from -Wsubobject-linkage (a class with a member of a type
    # from an anonymous namespace); in a unity build every source is an included file, so the
    # warning fires on code that is fine in its own translation unit.
    target_compile_options(${target} PRIVATE -Wno-subobject-linkage)
  endif()
  if(FERRY_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

# ferry_add_module(<name> SOURCES ... [PUBLIC_DEPS ...] [PRIVATE_DEPS ...])
# Creates library ferry_<name> with alias ferry::<name>, public headers in <name>/include.
function(ferry_add_module name)
  cmake_parse_arguments(ARG "" "" "SOURCES;PUBLIC_DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(ferry_${name} ${ARG_SOURCES})
  add_library(ferry::${name} ALIAS ferry_${name})
  set_target_properties(ferry_${name} PROPERTIES EXPORT_NAME ${name} OUTPUT_NAME ferry_${name})
  target_include_directories(ferry_${name} PUBLIC
    $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_include_directories(ferry_${name} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
  target_link_libraries(ferry_${name} PUBLIC ${ARG_PUBLIC_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
  target_compile_features(ferry_${name} PUBLIC cxx_std_20)
  ferry_set_warnings(ferry_${name})
  set_property(GLOBAL APPEND PROPERTY FERRY_EXPORTED_TARGETS ferry_${name})
endfunction()

# Which suites `all` builds, by label. CI's normal stage sets "fault": its unit and integration
# suites run in the ASan+UBSan stage instead (ADR 0050), so compiling them at -O2 too would be
# spent for nothing. A suite left out is still defined and is built when named as a target
# (scripts/test --sanitize builds the selected suites by name).
set(FERRY_ALL_TEST_LABELS "unit;integration;fault" CACHE STRING
  "Labels of the ferry_add_test suites that the default target builds (unit, integration, fault)")

# Suites that use the test servers ask ctest for them as a resource, "servers": a set of servers
# (PostgreSQL, Redis, embedded Kafka) with FERRY_TEST_SERVER_SLOTS slots. An integration suite
# takes one slot and shares its set; a fault suite takes every slot, so nothing else uses the
# servers it stops and restarts. With one set (the default spec below, written into the build)
# that is what RUN_SERIAL gave the fault suites, without also holding back the unit suites;
# scripts/test can start more sets (FERRY_TEST_SERVER_SETS, two in CI's normal stage) and pass
# ctest a spec that lists them, so that fault suites run side by side, each on its own set.
# tests/support/with-servers points each suite at the set ctest chose. ADR 0081.
set(FERRY_TEST_SERVER_SLOTS 8)
set(FERRY_WITH_SERVERS ${PROJECT_SOURCE_DIR}/tests/support/with-servers)

# ferry_test_servers(<test> SHARED|EXCLUSIVE [COST seconds])
# The test's share of a server set, and optionally its usual run time in seconds (ctest starts
# the costliest first, which balances the sets in a fresh build without timing history). The
# test's command must run under ${FERRY_WITH_SERVERS} (ferry_add_test does that).
function(ferry_test_servers test mode)
  cmake_parse_arguments(ARG "" "COST" "" ${ARGN})
  if(mode STREQUAL "SHARED")
    set(slots 1)
  elseif(mode STREQUAL "EXCLUSIVE")
    set(slots ${FERRY_TEST_SERVER_SLOTS})
  else()
    message(FATAL_ERROR "ferry_test_servers(${test} ${mode}): expected SHARED or EXCLUSIVE")
  endif()
  set_tests_properties(${test} PROPERTIES RESOURCE_GROUPS "servers:${slots}")
  if(ARG_COST)
    set_tests_properties(${test} PROPERTIES COST ${ARG_COST})
  endif()
endfunction()

# ferry_add_test(<file.cpp> [LIBS ...] [TIMEOUT s] [COST s])
# The file's suffix names its kind and ctest label:
#   *_test.cpp       -> unit         (starts no server)
#   *_itest.cpp      -> integration  (real PostgreSQL, Redis, embedded Kafka)
#   *_faulttest.cpp  -> fault        (kills, restarts, partitions, injected errors)
# Integration suites share a server set, fault suites take one to themselves (above); COST is
# the suite's usual run time in seconds, for ctest's ordering.
function(ferry_add_test file)
  cmake_parse_arguments(ARG "" "TIMEOUT;COST" "LIBS" ${ARGN})
  get_filename_component(stem ${file} NAME_WE)
  if(stem MATCHES "_faulttest$")
    set(label fault)
    set(default_timeout 600)
  elseif(stem MATCHES "_itest$")
    set(label integration)
    set(default_timeout 300)
  elseif(stem MATCHES "_test$")
    set(label unit)
    set(default_timeout 60)
  else()
    message(FATAL_ERROR "test file ${file} must end in _test, _itest or _faulttest")
  endif()
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT ${default_timeout})
  endif()
  add_executable(${stem} ${file})
  if(NOT label IN_LIST FERRY_ALL_TEST_LABELS)
    set_target_properties(${stem} PROPERTIES EXCLUDE_FROM_ALL TRUE)
  endif()
  target_link_libraries(${stem} PRIVATE ${ARG_LIBS} GTest::gtest GTest::gmock GTest::gtest_main)
  ferry_set_warnings(${stem})
  set_target_properties(${stem} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/tests)
  if(label STREQUAL "unit")
    add_test(NAME ${stem} COMMAND ${stem} --gtest_color=no)
  else()
    add_test(NAME ${stem} COMMAND ${FERRY_WITH_SERVERS} $<TARGET_FILE:${stem}> --gtest_color=no)
  endif()
  set_tests_properties(${stem} PROPERTIES LABELS ${label} TIMEOUT ${ARG_TIMEOUT})
  if(label STREQUAL "integration")
    ferry_test_servers(${stem} SHARED COST "${ARG_COST}")
  elseif(label STREQUAL "fault")
    ferry_test_servers(${stem} EXCLUSIVE COST "${ARG_COST}")
  endif()
endfunction()
