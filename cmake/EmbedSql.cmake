# Generates a C++ source holding the SQL migrations of every module, so the library can migrate a
# database without any files on disk. Each module owns its migrations in <module>/sql/ (ADR 0015);
# a migration's module is the folder it lives in. Versions are unique across all folders.
# Run with -DSOURCE_ROOT=... -DMODULES=outbox,relay,... -DOUTPUT=... -DNAMESPACE=...
string(REPLACE "," ";" MODULES "${MODULES}")
set(_entries "")
foreach(_module IN LISTS MODULES)
  file(GLOB _files "${SOURCE_ROOT}/${_module}/sql/*.sql")
  foreach(_f IN LISTS _files)
    get_filename_component(_name ${_f} NAME_WE)
    if(NOT _name MATCHES "^[0-9][0-9][0-9][0-9]_[a-z0-9_]+$")
      message(FATAL_ERROR "${_f}: a migration is named NNNN_name.sql (lower case, digits, _)")
    endif()
    string(SUBSTRING ${_name} 0 4 _key)
    if(DEFINED _seen_${_key})
      message(FATAL_ERROR "migration version ${_key} is used twice: ${_seen_${_key}} and ${_f}")
    endif()
    set(_seen_${_key} ${_f})
    list(APPEND _entries "${_key}|${_module}|${_f}")
  endforeach()
endforeach()
list(SORT _entries)
set(_body "")
foreach(_e IN LISTS _entries)
  string(REPLACE "|" ";" _parts "${_e}")
  list(GET _parts 0 _key)
  list(GET _parts 1 _module)
  list(GET _parts 2 _f)
  get_filename_component(_name ${_f} NAME_WE)
  math(EXPR _ver "${_key} + 0")
  string(SUBSTRING ${_name} 5 -1 _label)
  file(READ ${_f} _sql)
  string(APPEND _body
    "        {${_ver}, \"${_label}\", R\"ferrysql(${_sql})ferrysql\", \"${_module}\"},\n")
endforeach()
file(WRITE "${OUTPUT}.tmp"
"// Generated from the <module>/sql/ folders by cmake/EmbedSql.cmake. Do not edit.\n"
"#include \"ferry/outbox/migrate.hpp\"\n\n"
"namespace ${NAMESPACE} {\n"
"const std::vector<migration>& migrations() {\n"
"    static const std::vector<migration> all = {\n${_body}    };\n"
"    return all;\n"
"}\n"
"}  // namespace ${NAMESPACE}\n")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
