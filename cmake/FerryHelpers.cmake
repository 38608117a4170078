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

# ferry_add_test(<file.cpp> [LIBS ...] [TIMEOUT s])
# The file's suffix names its kind and ctest label:
#   *_test.cpp       -> unit         (starts no server)
#   *_itest.cpp      -> integration  (real PostgreSQL, Redis, embedded Kafka)
#   *_faulttest.cpp  -> fault        (kills, restarts, partitions, injected errors)
function(ferry_add_test file)
  cmake_parse_arguments(ARG "" "TIMEOUT" "LIBS" ${ARGN})
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
  add_test(NAME ${stem} COMMAND ${stem} --gtest_color=no)
  set_tests_properties(${stem} PROPERTIES LABELS ${label} TIMEOUT ${ARG_TIMEOUT})
endfunction()
