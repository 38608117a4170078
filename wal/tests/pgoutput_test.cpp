// The pgoutput proto_version 1 parser and the CopyBoth framing, on bytes built from the protocol
// documentation. Truncated and malformed input must be a wal.protocol error naming the message.
#include "ferry/wal/pgoutput.hpp"

#include <gtest/gtest.h>

#include "ferry/common/error.hpp"
#include "wire.hpp"

namespace ferry::wal {
namespace {

using namespace test;

std::string protocol_error_of(std::string_view bytes, bool copy = false) {
    try {
        if (copy) {
            (void)parse_copy_data(bytes);
        } else {
            (void)parse_pgoutput(bytes);
        }
    } catch (const ferry::error& e) {
        EXPECT_EQ(e.code(), "wal.protocol");
        EXPECT_EQ(e.kind(), error_kind::permanent);
        return e.what();
    }
    return "";
}

TEST(PgoutputTest, LsnFormatsAndParsesLikePostgres) {
    EXPECT_EQ(format_lsn(0x16B374D848ULL), "16/B374D848");
    EXPECT_EQ(parse_lsn("16/B374D848"), 0x16B374D848ULL);
    EXPECT_EQ(parse_lsn("0/0"), 0u);
    EXPECT_FALSE(parse_lsn("16B374D848"));
    EXPECT_FALSE(parse_lsn("1/123456789"));
    EXPECT_FALSE(parse_lsn("x/1"));
}

TEST(PgoutputTest, XLogDataAndKeepalive) {
    // xlog_data::data views the bytes parsed, so they must outlive x (a temporary here was a
    // heap-use-after-free that only ASan saw: the freed bytes still compared equal).
    const std::string wire = xlog(0x100, 0x200, "B...");
    const auto x = parse_copy_data(wire);
    ASSERT_TRUE(std::holds_alternative<xlog_data>(x));
    EXPECT_EQ(std::get<xlog_data>(x).wal_start, 0x100u);
    EXPECT_EQ(std::get<xlog_data>(x).wal_end, 0x200u);
    EXPECT_EQ(std::get<xlog_data>(x).send_time, 12345);
    EXPECT_EQ(std::get<xlog_data>(x).data, "B...");

    std::string k = "k";
    be(k, 0xABCDEF, 8);
    be(k, 7, 8);
    be(k, 1, 1);
    const auto ka = parse_copy_data(k);
    ASSERT_TRUE(std::holds_alternative<primary_keepalive>(ka));
    EXPECT_EQ(std::get<primary_keepalive>(ka).wal_end, 0xABCDEFu);
    EXPECT_TRUE(std::get<primary_keepalive>(ka).reply_requested);

    EXPECT_NE(protocol_error_of(k.substr(0, 10), true).find("primary keepalive: truncated"),
              std::string::npos);
    EXPECT_NE(protocol_error_of(xlog(1, 2, "").substr(0, 20), true).find("XLogData: truncated"),
              std::string::npos);
    EXPECT_NE(protocol_error_of(xlog(1, 2, ""), true).find("no payload"), std::string::npos);
    EXPECT_NE(protocol_error_of("z", true).find("unknown message type"), std::string::npos);
    EXPECT_NE(protocol_error_of("", true).find("empty"), std::string::npos);
}

TEST(PgoutputTest, StandbyStatusUpdateLayout) {
    const auto s = encode_standby_status(1, 2, 3, 4, true);
    std::string expected = "r";
    be(expected, 1, 8);
    be(expected, 2, 8);
    be(expected, 3, 8);
    be(expected, 4, 8);
    be(expected, 1, 1);
    EXPECT_EQ(s, expected);
}

TEST(PgoutputTest, BeginMessageCommit) {
    const auto b = std::get<begin_message>(parse_pgoutput(begin_msg(0x5000, 99, 731)));
    EXPECT_EQ(b.final_lsn, 0x5000u);
    EXPECT_EQ(b.commit_time, 99);
    EXPECT_EQ(b.xid, 731u);

    const auto bytes = message_msg(true, 0x4000, "ferry", "abc");  // the views point into it
    const auto m = std::get<logical_message>(parse_pgoutput(bytes));
    EXPECT_TRUE(m.transactional);
    EXPECT_EQ(m.message_lsn, 0x4000u);
    EXPECT_EQ(m.prefix, "ferry");
    EXPECT_EQ(m.content, "abc");
    const auto lone = message_msg(false, 1, "p", "");
    EXPECT_FALSE(std::get<logical_message>(parse_pgoutput(lone)).transactional);

    const auto c = std::get<commit_message>(parse_pgoutput(commit_msg(0x5000, 0x5030, 99)));
    EXPECT_EQ(c.commit_lsn, 0x5000u);
    EXPECT_EQ(c.end_lsn, 0x5030u);
    EXPECT_EQ(c.commit_time, 99);
    EXPECT_EQ(message_name(parse_pgoutput(commit_msg(1, 2, 3))), "Commit");
}

TEST(PgoutputTest, RelationAndInsert) {
    std::string r = "R";
    be(r, 16384, 4);
    cstr(r, "ferry");
    cstr(r, "outbox");
    be(r, 'd', 1);
    be(r, 2, 2);
    be(r, 1, 1);
    cstr(r, "id");
    be(r, 20, 4);
    be(r, 0xffffffff, 4);
    be(r, 0, 1);
    cstr(r, "payload");
    be(r, 17, 4);
    be(r, 0xffffffff, 4);
    const auto rel = std::get<relation_message>(parse_pgoutput(r));
    EXPECT_EQ(rel.relation_id, 16384u);
    EXPECT_EQ(rel.nspname, "ferry");
    EXPECT_EQ(rel.relname, "outbox");
    ASSERT_EQ(rel.columns.size(), 2u);
    EXPECT_TRUE(rel.columns[0].part_of_key);
    EXPECT_EQ(rel.columns[1].name, "payload");
    EXPECT_EQ(rel.columns[1].type_oid, 17u);
    EXPECT_EQ(rel.columns[1].type_modifier, -1);

    std::string ins = "I";
    be(ins, 16384, 4);
    ins += 'N';
    be(ins, 3, 2);
    ins += 't';
    be(ins, 2, 4);
    ins += "42";
    ins += 'n';
    ins += 'u';
    const auto i = std::get<insert_message>(parse_pgoutput(ins));
    ASSERT_EQ(i.values.size(), 3u);
    EXPECT_EQ(i.values[0].type, tuple_value::kind::text);
    EXPECT_EQ(i.values[0].data, "42");
    EXPECT_EQ(i.values[1].type, tuple_value::kind::null);
    EXPECT_EQ(i.values[2].type, tuple_value::kind::unchanged_toast);

    EXPECT_NE(protocol_error_of(r.substr(0, r.size() - 2)).find("Relation: truncated"),
              std::string::npos);
    EXPECT_NE(protocol_error_of(ins.substr(0, 14)).find("Insert: truncated: tuple column value"),
              std::string::npos);
    std::string bad_kind = ins;
    bad_kind[8] = 'x';
    EXPECT_NE(protocol_error_of(bad_kind).find("unknown column kind"), std::string::npos);
    // A column count far beyond the bytes present is refused before anything is allocated.
    std::string many = "I";
    be(many, 1, 4);
    many += 'N';
    be(many, 0xffff, 2);
    EXPECT_NE(protocol_error_of(many).find("truncated"), std::string::npos);
}

TEST(PgoutputTest, OtherMessagesAreRecognised) {
    std::string u = "U";
    be(u, 7, 4);
    u += 'K';
    be(u, 1, 2);
    u += 'n';
    u += 'N';
    be(u, 1, 2);
    u += 'n';
    const auto up = std::get<update_message>(parse_pgoutput(u));
    EXPECT_EQ(up.old_kind, 'K');
    EXPECT_EQ(up.new_values.size(), 1u);

    std::string d = "D";
    be(d, 7, 4);
    d += 'O';
    be(d, 0, 2);
    EXPECT_EQ(std::get<delete_message>(parse_pgoutput(d)).old_kind, 'O');

    std::string t = "T";
    be(t, 2, 4);
    be(t, 1, 1);
    be(t, 10, 4);
    be(t, 11, 4);
    const auto tr = std::get<truncate_message>(parse_pgoutput(t));
    EXPECT_EQ(tr.relation_ids, (std::vector<std::uint32_t>{10, 11}));
    std::string t_huge = "T";
    be(t_huge, 0x7fffffff, 4);
    be(t_huge, 0, 1);
    EXPECT_NE(protocol_error_of(t_huge).find("Truncate: truncated"), std::string::npos);

    std::string o = "O";
    be(o, 0x99, 8);
    cstr(o, "node_a");
    EXPECT_EQ(std::get<origin_message>(parse_pgoutput(o)).name, "node_a");

    std::string y = "Y";
    be(y, 5000, 4);
    cstr(y, "public");
    cstr(y, "mood");
    EXPECT_EQ(std::get<type_message>(parse_pgoutput(y)).name, "mood");
}

TEST(PgoutputTest, MalformedMessagesNameTheCause) {
    EXPECT_NE(protocol_error_of("").find("empty"), std::string::npos);
    EXPECT_NE(protocol_error_of("Z").find("unknown message type"), std::string::npos);
    EXPECT_NE(protocol_error_of("S1234").find("later proto_version"), std::string::npos);
    EXPECT_NE(protocol_error_of(begin_msg(1, 2, 3).substr(0, 10)).find("Begin: truncated"),
              std::string::npos);
    EXPECT_NE(protocol_error_of(begin_msg(1, 2, 3) + "x").find("Begin: 1 unexpected bytes"),
              std::string::npos);
    EXPECT_NE(protocol_error_of(commit_msg(1, 2, 3).substr(0, 24)).find("Commit: truncated"),
              std::string::npos);
    // A prefix without its NUL terminator.
    std::string m = "M";
    be(m, 1, 1);
    be(m, 1, 8);
    m += "ferry";
    EXPECT_NE(protocol_error_of(m).find("prefix is not terminated"), std::string::npos);
    // Content length larger than the bytes present.
    auto big = message_msg(true, 1, "ferry", "abc");
    big[big.size() - 4] = '\x7f';
    EXPECT_NE(protocol_error_of(big).find("Message: truncated: content needs"), std::string::npos);
    auto flags = message_msg(true, 1, "ferry", "abc");
    flags[1] = 3;
    EXPECT_NE(protocol_error_of(flags).find("unknown flags"), std::string::npos);
}

TEST(PgoutputTest, EveryTruncationIsAnErrorNotACrash) {
    const std::vector<std::string> whole = {begin_msg(1, 2, 3), commit_msg(1, 2, 3),
                                            message_msg(true, 5, "ferry", "content")};
    for (const auto& w : whole) {
        for (std::size_t n = 0; n < w.size(); ++n) {
            EXPECT_FALSE(protocol_error_of(w.substr(0, n)).empty()) << w[0] << " cut at " << n;
        }
    }
}

}  // namespace
}  // namespace ferry::wal
