// The WAL message frame (ADR 0070): round trip, the exact byte layout, and malformed input
// reported with its cause (never a crash, never a silent partial message).
#include "ferry/wal/frame.hpp"

#include <gtest/gtest.h>

#include "wire.hpp"

namespace ferry::wal {
namespace {

wal_message sample() {
    wal_message m;
    m.id = *outbox::message_id::parse("0190b6a4-1c2d-7e3f-8a9b-0c1d2e3f4a5b");
    m.schema = "ferry";
    m.topic = "orders";
    m.key = "order-1";
    m.headers_json = R"({"traceparent": "00-abc"})";
    m.payload = std::string("\x00\xff\x01payload", 10);
    m.created_at = micros_time(std::chrono::microseconds(1'700'000'000'123'456));
    m.expires_at = micros_time(std::chrono::microseconds(1'700'000'060'123'456));
    return m;
}

TEST(FrameTest, RoundTripKeepsEveryField) {
    const auto m = sample();
    const auto d = decode_frame(encode_frame(m));
    ASSERT_TRUE(d.ok()) << d.error;
    EXPECT_EQ(*d.message, m);

    auto no_expiry = m;
    no_expiry.expires_at.reset();
    no_expiry.key.clear();
    no_expiry.payload.clear();
    const auto d2 = decode_frame(encode_frame(no_expiry));
    ASSERT_TRUE(d2.ok()) << d2.error;
    EXPECT_EQ(*d2.message, no_expiry);
    EXPECT_FALSE(d2.message->expires_at.has_value());
}

TEST(FrameTest, LayoutIsVersionFlagsIdTimesThenLengthPrefixedFields) {
    auto m = sample();
    m.expires_at.reset();
    m.headers_json = "{}";
    m.payload = "p";
    const auto f = encode_frame(m);
    std::string expected;
    test::be(expected, 1, 1);  // version
    test::be(expected, 0, 1);  // flags
    expected.append(reinterpret_cast<const char*>(m.id.bytes().data()), 16);
    test::be(expected, 1'700'000'000'123'456ULL, 8);
    test::be(expected, 0, 8);
    for (std::string_view s : {"ferry", "orders", "order-1", "{}", "p"}) {
        test::be(expected, s.size(), 4);
        expected.append(s);
    }
    EXPECT_EQ(f, expected);
}

struct malformed_case {
    std::string name;
    std::string bytes;
    std::string field;
    std::string error_part;
};

TEST(FrameTest, MalformedInputNamesTheCause) {
    const auto good = encode_frame(sample());
    std::vector<malformed_case> cases = {
        {"empty", "", "version", "empty frame"},
        {"version 2", std::string("\x02") + good.substr(1), "version",
         "unsupported frame version 2"},
        {"short header", good.substr(0, 20), "header", "fixed header needs 33 bytes"},
        {"unknown flags", good.substr(0, 1) + "\x04" + good.substr(2), "flags", "unknown flag"},
        {"truncated payload", good.substr(0, good.size() - 3), "payload",
         "payload needs 10 bytes, 7 left"},
        {"missing payload length", good.substr(0, good.size() - 12), "payload",
         "payload length needs 4 bytes"},
        {"trailing bytes", good + "xx", "trailing bytes", "2 bytes after the payload"},
    };
    // A topic length that claims more than the frame holds (must not allocate or read it).
    {
        std::string huge = good;
        const std::size_t topic_len_at = frame_fixed_size + 4 + 5;  // after schema "ferry"
        huge[topic_len_at] = '\xff';
        cases.push_back({"huge length", huge, "topic", "topic needs"});
    }
    {
        auto m = sample();
        m.id = outbox::message_id{};
        cases.push_back({"nil id", encode_frame(m), "message_id", "nil UUID"});
    }
    {
        auto m = sample();
        m.topic.clear();
        cases.push_back({"empty topic", encode_frame(m), "topic", "topic is empty"});
    }
    {
        auto m = sample();
        m.headers_json = "[]";
        cases.push_back({"headers not an object", encode_frame(m), "headers", "not a JSON object"});
    }
    {
        std::string noflag = good;
        noflag[1] = '\0';  // expires_at bytes still set
        cases.push_back({"expiry without flag", noflag, "expires_at", "flags say there is none"});
    }
    for (const auto& c : cases) {
        const auto d = decode_frame(c.bytes);
        EXPECT_FALSE(d.ok()) << c.name;
        EXPECT_EQ(d.field, c.field) << c.name << ": " << d.error;
        EXPECT_NE(d.error.find(c.error_part), std::string::npos) << c.name << ": " << d.error;
    }
}

TEST(FrameTest, EveryTruncationOfAValidFrameIsAnErrorNotACrash) {
    const auto good = encode_frame(sample());
    for (std::size_t n = 0; n < good.size(); ++n) {
        const auto d = decode_frame(good.substr(0, n));
        EXPECT_FALSE(d.ok()) << "prefix of " << n << " bytes decoded";
        EXPECT_FALSE(d.error.empty());
    }
}

TEST(FrameTest, RandomBytesNeverCrash) {
    std::uint64_t x = 88172645463325252ULL;
    int decoded = 0;
    for (int i = 0; i < 20000; ++i) {
        std::string s(static_cast<std::size_t>(x % 120), '\0');
        for (auto& c : s) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c = static_cast<char>(x);
        }
        if (!s.empty()) s[0] = '\x01';
        const auto d = decode_frame(s);
        if (d.ok())
            ++decoded;
        else
            EXPECT_FALSE(d.field.empty());
    }
    EXPECT_EQ(decoded, 0);
}

}  // namespace
}  // namespace ferry::wal
