# Generates a C++ source holding the SQL migrations of a folder, so the library can migrate a
# database without any files on disk. Run with -DSQL_DIR=... -DOUTPUT=... -DNAMESPACE=...
file(GLOB _files "${SQL_DIR}/[0-9][0-9][0-9][0-9]_*.sql")
list(SORT _files)
set(_body "")
foreach(_f IN LISTS _files)
  get_filename_component(_name ${_f} NAME_WE)
  string(SUBSTRING ${_name} 0 4 _ver)
  math(EXPR _ver "${_ver} + 0")
  string(SUBSTRING ${_name} 5 -1 _label)
  file(READ ${_f} _sql)
  string(APPEND _body "        {${_ver}, \"${_label}\", R\"ferrysql(${_sql})ferrysql\"},\n")
endforeach()
file(WRITE "${OUTPUT}.tmp"
"// Generated from ${SQL_DIR} by cmake/EmbedSql.cmake. Do not edit.\n"
"#include \"ferry/outbox/migrate.hpp\"\n\n"
"namespace ${NAMESPACE} {\n"
"const std::vector<migration>& migrations() {\n"
"    static const std::vector<migration> all = {\n${_body}    };\n"
"    return all;\n"
"}\n"
"}  // namespace ${NAMESPACE}\n")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
