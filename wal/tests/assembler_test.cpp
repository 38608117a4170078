// The transaction assembler: commit order and commit LSNs, rejected messages with reasons,
// other schemas and applications skipped but counted, protocol violations refused.
#include "ferry/wal/assembler.hpp"

#include <gtest/gtest.h>

#include "ferry/common/error.hpp"
#include "wire.hpp"

namespace ferry::wal {
namespace {

using namespace test;

std::string frame_for(const std::string& schema, const std::string& key, int n) {
    wal_message m;
    m.id = outbox::message_id::generate();
    m.schema = schema;
    m.topic = "orders";
    m.key = key;
    m.payload = "p" + std::to_string(n);
    return encode_frame(m);
}

std::vector<wal_event> run(transaction_assembler& a, const std::vector<std::string>& stream) {
    std::vector<wal_event> out;
    for (const auto& bytes : stream) {
        if (auto e = a.feed(parse_pgoutput(bytes))) out.push_back(std::move(*e));
    }
    return out;
}

TEST(AssemblerTest, YieldsMessagesWithTheirCommitLsnThenTheTransactionEnd) {
    transaction_assembler a("shop");
    const auto events = run(a, {
                                   begin_msg(0x200, 10, 700),
                                   message_msg(true, 0x150, "ferry", frame_for("shop", "k1", 1)),
                                   message_msg(true, 0x160, "ferry", frame_for("shop", "k1", 2)),
                                   commit_msg(0x200, 0x230, 10),
                                   begin_msg(0x300, 11, 699),
                                   message_msg(true, 0x120, "ferry", frame_for("shop", "k1", 3)),
                                   commit_msg(0x300, 0x330, 11),
                               });
    ASSERT_EQ(events.size(), 5u);
    const auto& m1 = std::get<committed_message>(events[0]);
    EXPECT_EQ(m1.commit_lsn, 0x200u);
    EXPECT_EQ(m1.message_lsn, 0x150u);
    EXPECT_EQ(m1.xid, 700u);
    EXPECT_EQ(m1.message.payload, "p1");
    EXPECT_EQ(std::get<committed_message>(events[1]).message.payload, "p2");
    const auto& end1 = std::get<transaction_end>(events[2]);
    EXPECT_EQ(end1.end_lsn, 0x230u);
    EXPECT_EQ(end1.messages, 2u);
    // The transaction that began first (lower xid) but committed later comes later.
    const auto& m3 = std::get<committed_message>(events[3]);
    EXPECT_EQ(m3.commit_lsn, 0x300u);
    EXPECT_EQ(m3.xid, 699u);
    EXPECT_EQ(a.stats().messages, 3u);
    EXPECT_EQ(a.stats().transactions, 2u);
    EXPECT_FALSE(a.in_transaction());
}

TEST(AssemblerTest, RejectsMalformedUnknownPrefixAndNonTransactionalWithReasons) {
    transaction_assembler a("shop");
    auto bad_version = frame_for("shop", "k", 1);
    bad_version[0] = 9;
    const auto events = run(a, {
                                   begin_msg(0x200, 10, 1),
                                   message_msg(true, 0x150, "ferry", bad_version),
                                   message_msg(true, 0x151, "ferry.v9", "whatever"),
                                   message_msg(true, 0x152, "someone_else", "ignored"),
                                   message_msg(true, 0x153, "ferry", frame_for("other", "k", 1)),
                                   commit_msg(0x200, 0x230, 10),
                                   message_msg(false, 0x400, "ferry", frame_for("shop", "k", 2)),
                               });
    ASSERT_EQ(events.size(), 4u);
    const auto& r1 = std::get<rejected_message>(events[0]);
    EXPECT_EQ(r1.field, "version");
    EXPECT_NE(r1.reason.find("unsupported frame version 9"), std::string::npos);
    EXPECT_EQ(r1.commit_lsn, 0x200u);
    EXPECT_EQ(r1.content, bad_version);
    const auto& r2 = std::get<rejected_message>(events[1]);
    EXPECT_EQ(r2.field, "prefix");
    EXPECT_NE(r2.reason.find("unknown message prefix \"ferry.v9\""), std::string::npos);
    EXPECT_EQ(std::get<transaction_end>(events[2]).rejected, 2u);
    const auto& r3 = std::get<rejected_message>(events[3]);
    EXPECT_EQ(r3.field, "transactional");
    EXPECT_EQ(r3.commit_lsn, 0x400u);
    EXPECT_EQ(a.stats().foreign_prefix, 1u);
    EXPECT_EQ(a.stats().other_schema, 1u);
    EXPECT_EQ(a.stats().rejected, 3u);
    EXPECT_EQ(a.stats().messages, 0u);
}

TEST(AssemblerTest, RowChangesAndMetadataAreCountedNotYielded) {
    transaction_assembler a("shop");
    std::string ins = "I";
    be(ins, 1, 4);
    ins += 'N';
    be(ins, 0, 2);
    std::string rel = "R";
    be(rel, 1, 4);
    cstr(rel, "public");
    cstr(rel, "t");
    be(rel, 'd', 1);
    be(rel, 0, 2);
    const auto events = run(a, {rel, begin_msg(5, 1, 1), ins, commit_msg(5, 6, 1)});
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(std::get<transaction_end>(events[0]).messages, 0u);
    EXPECT_EQ(a.stats().row_changes, 1u);
}

std::string violation(const std::vector<std::string>& stream) {
    transaction_assembler a("shop");
    try {
        (void)run(a, stream);
    } catch (const ferry::error& e) {
        EXPECT_EQ(e.code(), "wal.protocol");
        return e.what();
    }
    return "";
}

TEST(AssemblerTest, ProtocolViolationsAreErrors) {
    EXPECT_NE(violation({commit_msg(1, 2, 3)}).find("without Begin"), std::string::npos);
    EXPECT_NE(violation({begin_msg(1, 2, 3), begin_msg(4, 5, 6)}).find("inside transaction"),
              std::string::npos);
    EXPECT_NE(violation({begin_msg(1, 2, 3), commit_msg(9, 10, 3)}).find("does not match"),
              std::string::npos);
    EXPECT_NE(violation({message_msg(true, 1, "ferry", "x")}).find("outside a transaction"),
              std::string::npos);
}

TEST(AssemblerTest, ALargeTransactionStreamsWithoutBuffering) {
    // Each message is yielded on arrival: the assembler holds no per-transaction list.
    transaction_assembler a("shop");
    (void)a.feed(parse_pgoutput(begin_msg(0x9000, 1, 1)));
    const auto frame = frame_for("shop", "k", 0);
    for (int i = 0; i < 100000; ++i) {
        auto e = a.feed(
            parse_pgoutput(message_msg(true, 0x100 + static_cast<unsigned>(i), "ferry", frame)));
        ASSERT_TRUE(e && std::holds_alternative<committed_message>(*e)) << i;
    }
    auto end = a.feed(parse_pgoutput(commit_msg(0x9000, 0x9100, 1)));
    ASSERT_TRUE(end);
    EXPECT_EQ(std::get<transaction_end>(*end).messages, 100000u);
}

}  // namespace
}  // namespace ferry::wal
