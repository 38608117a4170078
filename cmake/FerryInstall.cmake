# Installs Ferry's libraries, headers, SQL migrations and CMake package. The package has one
# component per library (find_package(ferry COMPONENTS outbox)): a component brings the Ferry
# libraries it links and finds only the third-party packages those libraries use, so a service
# that links ferry::outbox needs libpqxx (and prometheus-cpp under ferry::common), not
# librdkafka, hiredis or yaml-cpp. The component table is computed here from the targets' own
# link lists, so it cannot drift from the build.
include(CMakePackageConfigHelpers)
get_property(_ferry_targets GLOBAL PROPERTY FERRY_EXPORTED_TARGETS)
install(TARGETS ${_ferry_targets} EXPORT ferryTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
foreach(_t IN LISTS _ferry_targets)
  get_target_property(_dir ${_t} SOURCE_DIR)
  install(DIRECTORY ${_dir}/include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
endforeach()
install(EXPORT ferryTargets NAMESPACE ferry:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/ferry)

# Each module's migrations, as the embedded migrator sees them (ADR 0015): share/ferry/sql/<module>/.
get_property(_ferry_sql_modules GLOBAL PROPERTY FERRY_SQL_MODULES)
foreach(_m IN LISTS _ferry_sql_modules)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/${_m}/sql/ DESTINATION ${CMAKE_INSTALL_DATADIR}/ferry/sql/${_m}
    FILES_MATCHING PATTERN "*.sql")
endforeach()

# The component table: for each exported library, the Ferry components and the third-party
# packages (FerryDependencies.cmake names) it links directly.
set(FERRY_COMPONENT_TABLE "set(_ferry_components")
foreach(_t IN LISTS _ferry_targets)
  get_target_property(_name ${_t} EXPORT_NAME)
  string(APPEND FERRY_COMPONENT_TABLE " ${_name}")
endforeach()
string(APPEND FERRY_COMPONENT_TABLE ")\n")
foreach(_t IN LISTS _ferry_targets)
  get_target_property(_name ${_t} EXPORT_NAME)
  get_target_property(_links ${_t} LINK_LIBRARIES)
  set(_components "")
  set(_packages "")
  foreach(_l IN LISTS _links)
    if(_l MATCHES "^\\$<[A-Z_]+:(.*)>$")
      set(_l "${CMAKE_MATCH_1}")
    endif()
    if(_l MATCHES "^ferry_deps::(.+)$")
      list(APPEND _packages ${CMAKE_MATCH_1})
    elseif(_l MATCHES "^ferry::(.+)$")
      list(APPEND _components ${CMAKE_MATCH_1})
    elseif(_l MATCHES "^ferry_(.+)$")
      list(APPEND _components ${CMAKE_MATCH_1})
    elseif(_l STREQUAL "Threads::Threads")
      list(APPEND _packages Threads)
    elseif(_l MATCHES "^(fmt|spdlog|nlohmann_json)::")
      list(APPEND _packages ${CMAKE_MATCH_1})
    elseif(NOT _l STREQUAL "" AND NOT _l MATCHES "-NOTFOUND$")
      message(FATAL_ERROR "${_t} links ${_l}, which cmake/FerryInstall.cmake cannot map to a "
        "package that FerryDependencies.cmake finds; add it there and here")
    endif()
  endforeach()
  list(REMOVE_DUPLICATES _components)
  list(REMOVE_DUPLICATES _packages)
  string(APPEND FERRY_COMPONENT_TABLE
    "set(_ferry_component_${_name}_components \"${_components}\")\n"
    "set(_ferry_component_${_name}_packages \"${_packages}\")\n")
endforeach()

configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/ferryConfig.cmake.in
  ${PROJECT_BINARY_DIR}/ferryConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/ferry)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/ferryConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/ferryConfig.cmake ${PROJECT_BINARY_DIR}/ferryConfigVersion.cmake
  ${PROJECT_SOURCE_DIR}/cmake/FerryDependencies.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/ferry)
