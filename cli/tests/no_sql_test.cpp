// ferryctl reaches every table through its owning module's C++ API (issue 14): no SQL text, no
// statement execution and no quoted table names in cli/src (opening a transaction that a module
// API runs its statements in is fine). A new verb that needs a query adds it to the module that
// owns the table, with a test there.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

TEST(FerryctlSourceTest, RunsNoSqlOfItsOwn) {
    const std::regex sql(
        R"((\bSELECT\s|\bINSERT\s+INTO\b|\bUPDATE\s+\S+\s+SET\b|\bDELETE\s+FROM\b|\bCREATE\s+(TABLE|INDEX)\b|\bexec(_params)?\s*\(|\bquote_(name|identifier)\s*\())",
        std::regex::icase);
    int files = 0;
    for (const auto& entry : std::filesystem::directory_iterator(FERRY_CLI_SRC)) {
        const auto ext = entry.path().extension();
        if (ext != ".cpp" && ext != ".hpp") continue;
        ++files;
        std::ifstream in(entry.path());
        std::string line;
        int n = 0;
        while (std::getline(in, line)) {
            ++n;
            const auto comment = line.find("//");
            const auto code = comment == std::string::npos ? line : line.substr(0, comment);
            EXPECT_FALSE(std::regex_search(code, sql))
                << entry.path().filename().string() << ":" << n << ": " << line;
        }
    }
    EXPECT_GT(files, 10);
}
