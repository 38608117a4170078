// PostgreSQL's binary array format as the WAL source's marks send it (binary_array.hpp),
// byte for byte. No servers: the round
// trip through PostgreSQL's receive functions is binary_session_itest.cpp.

#include "binary_array.hpp"

#include <gtest/gtest.h>

#include <string>

namespace {

using ferry::relay::detail::binary_array;
using ferry::relay::detail::pg_oid;

std::string be32(std::uint32_t v) {
    return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
            static_cast<char>(v)};
}

TEST(BinaryArrayTest, OneDimensionWithLengthsAndBigEndianValues) {
    binary_array a(pg_oid::int4);
    a.add_int4(1);
    a.add_int4(-2);
    const std::string expected = be32(1) + be32(0) + be32(23) + be32(2) + be32(1) +  // header
                                 be32(4) + be32(1) + be32(4) + be32(0xfffffffeu);
    EXPECT_EQ(std::move(a).take(), expected);
}

TEST(BinaryArrayTest, Int8AndTimestamptzFromTheUnixEpoch) {
    binary_array a(pg_oid::timestamptz);
    // 2000-01-01T00:00:00.000001Z is 1 microsecond after PostgreSQL's epoch.
    a.add_timestamptz_unix_us(946'684'800'000'001);
    a.add_timestamptz_unix_us(0);  // 1970: negative
    const std::string expected = be32(1) + be32(0) + be32(1184) + be32(2) + be32(1) + be32(8) +
                                 be32(0) + be32(1) + be32(8) + be32(0xfffca2feu) +
                                 be32(0xc4c82000u);  // -946684800000000
    EXPECT_EQ(std::move(a).take(), expected);
}

TEST(BinaryArrayTest, NullsSetTheFlagAndTextElementsAreTheirBytes) {
    binary_array a(pg_oid::text);
    a.add_bytes("a\"{,}\\");
    a.add_null();
    a.add_bytes("");
    const std::string expected = be32(1) + be32(1) + be32(25) + be32(3) + be32(1) + be32(6) +
                                 "a\"{,}\\" + be32(0xffffffffu) + be32(0);
    EXPECT_EQ(std::move(a).take(), expected);
}

TEST(BinaryArrayTest, EmptyArrayHasNoDimensions) {
    binary_array a(pg_oid::uuid);
    EXPECT_EQ(std::move(a).take(), be32(0) + be32(0) + be32(2950));
}

}  // namespace
