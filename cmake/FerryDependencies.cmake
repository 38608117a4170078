# Locates Ferry's third-party dependencies and gives each one a stable imported target name
# (ferry_deps::<name>), whatever way the installed version exposes itself. Installed with the
# package, so find_package(ferry) resolves them the same way in a service's build.
include_guard(GLOBAL)
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)

# libpqxx: 7.x ships a CMake package, 6.4 (Debian bookworm) only a pkg-config file.
if(NOT TARGET ferry_deps::pqxx)
  find_package(libpqxx CONFIG QUIET)
  add_library(ferry_deps::pqxx INTERFACE IMPORTED)
  if(TARGET libpqxx::pqxx)
    target_link_libraries(ferry_deps::pqxx INTERFACE libpqxx::pqxx)
  else()
    pkg_check_modules(FERRY_PQXX REQUIRED IMPORTED_TARGET libpqxx)
    pkg_check_modules(FERRY_PQ REQUIRED IMPORTED_TARGET libpq)
    target_link_libraries(ferry_deps::pqxx INTERFACE PkgConfig::FERRY_PQXX PkgConfig::FERRY_PQ)
  endif()
endif()

if(NOT TARGET ferry_deps::rdkafka)
  pkg_check_modules(FERRY_RDKAFKA REQUIRED IMPORTED_TARGET rdkafka)
  add_library(ferry_deps::rdkafka INTERFACE IMPORTED)
  target_link_libraries(ferry_deps::rdkafka INTERFACE PkgConfig::FERRY_RDKAFKA)
endif()

if(NOT TARGET ferry_deps::hiredis)
  pkg_check_modules(FERRY_HIREDIS REQUIRED IMPORTED_TARGET hiredis)
  add_library(ferry_deps::hiredis INTERFACE IMPORTED)
  target_link_libraries(ferry_deps::hiredis INTERFACE PkgConfig::FERRY_HIREDIS)
endif()

if(NOT TARGET ferry_deps::yamlcpp)
  find_package(yaml-cpp REQUIRED)
  add_library(ferry_deps::yamlcpp INTERFACE IMPORTED)
  if(TARGET yaml-cpp::yaml-cpp)
    target_link_libraries(ferry_deps::yamlcpp INTERFACE yaml-cpp::yaml-cpp)
  else()
    target_link_libraries(ferry_deps::yamlcpp INTERFACE yaml-cpp)
  endif()
endif()

find_package(fmt REQUIRED)
find_package(spdlog REQUIRED)
find_package(nlohmann_json 3 REQUIRED)

if(NOT TARGET ferry_deps::curl)
  pkg_check_modules(FERRY_CURL REQUIRED IMPORTED_TARGET libcurl)
  add_library(ferry_deps::curl INTERFACE IMPORTED)
  target_link_libraries(ferry_deps::curl INTERFACE PkgConfig::FERRY_CURL)
endif()

if(NOT TARGET ferry_deps::httplib)
  pkg_check_modules(FERRY_DEP_HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)
  add_library(ferry_deps::httplib INTERFACE IMPORTED)
  target_link_libraries(ferry_deps::httplib INTERFACE PkgConfig::FERRY_DEP_HTTPLIB)
endif()

# prometheus-cpp (Debian prometheus-cpp-dev): the metrics registry in ferry::common. Only the
# core library is linked (serialization to text); HTTP is served by cpp-httplib.
if(NOT TARGET ferry_deps::prometheus)
  find_package(prometheus-cpp CONFIG REQUIRED)
  add_library(ferry_deps::prometheus INTERFACE IMPORTED)
  target_link_libraries(ferry_deps::prometheus INTERFACE prometheus-cpp::core)
endif()
