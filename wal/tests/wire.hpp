#pragma once
// Test-side builders of pgoutput and CopyData bytes, written from the protocol documentation
// (PostgreSQL 15, "Logical Replication Message Formats"), independent of the parser under test.

#include <cstdint>
#include <string>
#include <string_view>

namespace ferry::wal::test {

inline void be(std::string& out, std::uint64_t v, int bytes) {
    for (int i = bytes - 1; i >= 0; --i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}
inline void cstr(std::string& out, std::string_view s) {
    out.append(s);
    out += '\0';
}

inline std::string begin_msg(std::uint64_t final_lsn, std::int64_t ts, std::uint32_t xid) {
    std::string o = "B";
    be(o, final_lsn, 8);
    be(o, static_cast<std::uint64_t>(ts), 8);
    be(o, xid, 4);
    return o;
}
inline std::string commit_msg(std::uint64_t commit_lsn, std::uint64_t end_lsn, std::int64_t ts) {
    std::string o = "C";
    be(o, 0, 1);
    be(o, commit_lsn, 8);
    be(o, end_lsn, 8);
    be(o, static_cast<std::uint64_t>(ts), 8);
    return o;
}
inline std::string message_msg(bool transactional, std::uint64_t lsn, std::string_view prefix,
                               std::string_view content) {
    std::string o = "M";
    be(o, transactional ? 1 : 0, 1);
    be(o, lsn, 8);
    cstr(o, prefix);
    be(o, content.size(), 4);
    o.append(content);
    return o;
}
inline std::string xlog(std::uint64_t start, std::uint64_t end, std::string_view data) {
    std::string o = "w";
    be(o, start, 8);
    be(o, end, 8);
    be(o, 12345, 8);
    o.append(data);
    return o;
}

}  // namespace ferry::wal::test
