// binary_session's binary parameters (binary_array.hpp) against the real PostgreSQL: every
// element type the WAL source's marks send is read back by the server's own receive functions,
// element by element, including the texts a text array literal must escape, NULLs, empty
// arrays and timestamps on both sides of either epoch. And a COMMIT of a failed transaction
// answers "ROLLBACK", which the WAL mark checks for.

#include <gtest/gtest.h>

#include "binary_array.hpp"
#include "binary_session.hpp"
#include "ferry/common/error.hpp"
#include "ferry/outbox/message_id.hpp"
#include "ferry/test/env.hpp"

namespace {

using ferry::relay::detail::binary_array;
using ferry::relay::detail::binary_session;
using ferry::relay::detail::pg_oid;

binary_session::param bin(binary_array&& a) { return {std::move(a).take(), true, false}; }

struct session_env {
    session_env() { options.dsn = ferry::test::pg_dsn(); }
    ferry::relay::relay_options options;
    ferry::metrics::registry registry;
    ferry::metrics::counter reconnects =
        registry.add_counter("test_reconnects_total", "reconnects");
};

TEST(BinarySessionTest, ServerReadsEveryBinaryArrayElementAsSent) {
    session_env env;
    binary_session s(env.options, env.reconnects, "test");

    binary_array texts(pg_oid::text);
    texts.add_bytes("a\"{,}\\ NULL");
    texts.add_null();
    texts.add_bytes("");
    texts.add_bytes("\xc3\xa9t\xc3\xa9");  // UTF-8
    binary_array uuids(pg_oid::uuid);
    const auto u = ferry::outbox::message_id::parse("01234567-89ab-cdef-0123-456789abcdef");
    ASSERT_TRUE(u.has_value());
    uuids.add_bytes(
        std::string_view(reinterpret_cast<const char*>(u->bytes().data()), u->bytes().size()));
    binary_array times(pg_oid::timestamptz);
    times.add_timestamptz_unix_us(1'796'225'400'123'456);  // 2026-12-02T15:30:00.123456Z
    times.add_timestamptz_unix_us(-1);                     // 1969-12-31T23:59:59.999999Z
    times.add_timestamptz_unix_us(946'684'799'999'999);    // just before 2000
    binary_array int8s(pg_oid::int8);
    int8s.add_int8(-9'007'199'254'740'993);
    binary_array int4s(pg_oid::int4);
    int4s.add_int4(-2'147'483'647);
    binary_array empty(pg_oid::int4);
    binary_array jsons(static_cast<pg_oid>(3802));
    jsons.add_bytes(std::string("\x01") + R"({"b": [1, 2], "a": "x\"y"})");

    const auto r = s.exec_params(
        "binary_roundtrip",
        "SELECT ($1::text[])[1], ($1::text[])[2] IS NULL, ($1::text[])[3], ($1::text[])[4], "
        "cardinality($1::text[])::int8, ($2::uuid[])[1]::text, "
        "($3::timestamptz[])[1] = timestamptz '2026-12-02 15:30:00.123456+00', "
        "($3::timestamptz[])[2] = timestamptz '1969-12-31 23:59:59.999999+00', "
        "($3::timestamptz[])[3] = timestamptz '1999-12-31 23:59:59.999999+00', "
        "($4::int8[])[1], ($5::int4[])[1]::int8, cardinality($6::int4[])::int8, "
        "($7::jsonb[])[1]::text, $8::text IS NULL, $9::text",
        {bin(std::move(texts)),
         bin(std::move(uuids)),
         bin(std::move(times)),
         bin(std::move(int8s)),
         bin(std::move(int4s)),
         bin(std::move(empty)),
         bin(std::move(jsons)),
         {"", false, true},
         {"plain text", false, false}});
    ASSERT_EQ(r.rows(), 1);
    EXPECT_EQ(r.bytes(0, 0), "a\"{,}\\ NULL");
    EXPECT_TRUE(r.boolean(0, 1));
    EXPECT_EQ(r.bytes(0, 2), "");
    EXPECT_EQ(r.bytes(0, 3), "\xc3\xa9t\xc3\xa9");
    EXPECT_EQ(r.int8(0, 4), 4);
    EXPECT_EQ(r.bytes(0, 5), "01234567-89ab-cdef-0123-456789abcdef");
    EXPECT_TRUE(r.boolean(0, 6));
    EXPECT_TRUE(r.boolean(0, 7));
    EXPECT_TRUE(r.boolean(0, 8));
    EXPECT_EQ(r.int8(0, 9), -9'007'199'254'740'993);
    EXPECT_EQ(r.int8(0, 10), -2'147'483'647);
    EXPECT_EQ(r.int8(0, 11), 0);
    EXPECT_EQ(r.bytes(0, 12), R"({"a": "x\"y", "b": [1, 2]})");
    EXPECT_TRUE(r.boolean(0, 13));
    EXPECT_EQ(r.bytes(0, 14), "plain text");
}

TEST(BinarySessionTest, CommitOfAFailedTransactionAnswersRollback) {
    session_env env;
    binary_session s(env.options, env.reconnects, "test");
    EXPECT_EQ(s.command("BEGIN"), "BEGIN");
    EXPECT_THROW((void)s.exec_params("fails", "SELECT 1 / $1::int", {{"0", false, false}}),
                 ferry::error);
    EXPECT_EQ(s.command("COMMIT"), "ROLLBACK");
    EXPECT_EQ(s.command("BEGIN"), "BEGIN");
    EXPECT_EQ(s.command("COMMIT"), "COMMIT");
}

}  // namespace
