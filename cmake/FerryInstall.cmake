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
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/ferryConfig.cmake.in
  ${PROJECT_BINARY_DIR}/ferryConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/ferry)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/ferryConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/ferryConfig.cmake ${PROJECT_BINARY_DIR}/ferryConfigVersion.cmake
  ${PROJECT_SOURCE_DIR}/cmake/FerryDependencies.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/ferry)
