// PostgreSQL's binary array format as the WAL source's marks send it (binary_array.hpp),
// byte for byte, and the canonical UUID text it converts to binary. No servers: the round
// trip through PostgreSQL's receive functions is binary_session_itest.cpp.

#include "binary_array.hpp"

#include <gtest/gtest.h>

#include <string>

namespace {

using ferry::relay::detail::binary_array;
using ferry::relay::detail::pg_oid;
using ferry::relay::detail::uuid_bytes;

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

TEST(BinaryArrayTest, UuidBytesAcceptOnlyTheCanonicalForm) {
    const auto b = uuid_bytes("0123456789ab-CDEF-0123-456789abcdef" + std::string());
    EXPECT_FALSE(b.has_value()) << "dashes in the wrong places";
    const auto ok = uuid_bytes("01234567-89ab-CDEF-0123-456789abcdef");
    ASSERT_TRUE(ok.has_value());
    const unsigned char want[16] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
                                    0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef};
    EXPECT_EQ(std::string(ok->data(), 16), std::string(reinterpret_cast<const char*>(want), 16));
    EXPECT_FALSE(uuid_bytes("01234567-89ab-cdef-0123-456789abcdeg").has_value()) << "not hex";
    EXPECT_FALSE(uuid_bytes("01234567-89ab-cdef-0123-456789abcde").has_value()) << "short";
    EXPECT_FALSE(uuid_bytes("{01234567-89ab-cdef-0123-456789abcdef}").has_value());
    EXPECT_FALSE(uuid_bytes("").has_value());
}

}  // namespace
