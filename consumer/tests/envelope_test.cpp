// The envelope of a received record (consumer/src/envelope.hpp): ids, header limits, and
// headers kept whole. No servers.
#include "envelope.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace {

using ferry::consumer::detail::envelope_limits;
using ferry::consumer::detail::parse_envelope;
using ferry::consumer::detail::raw_header;

const std::string id = "01A22AD1-CD4B-7FE1-8429-D744D3A9C4CC";

raw_header h(std::string_view name, const std::string& value) {
    return {name, value.data(), value.size()};
}

TEST(EnvelopeTest, AValidIdIsCanonicalAndEveryHeaderIsKeptInOrder) {
    const std::string trace = "abc", empty;
    const auto e = parse_envelope(
        {h("trace", trace), h("ferry-message-id", id), {"nullv", nullptr, 0}, h("e", empty)}, {});
    EXPECT_EQ(e.malformed, "");
    EXPECT_EQ(e.message_id, "01a22ad1-cd4b-7fe1-8429-d744d3a9c4cc");
    ASSERT_EQ(e.headers.size(), 4u);
    EXPECT_EQ(e.headers[0].name, "trace");
    EXPECT_EQ(e.headers[0].value, "abc");
    EXPECT_EQ(e.headers[2].name, "nullv");
    EXPECT_FALSE(e.headers[2].value.has_value());
    EXPECT_EQ(e.headers[3].value, "");
    EXPECT_EQ(e.header_bytes, 5u + 3u + 16u + 36u + 5u + 1u);
}

TEST(EnvelopeTest, MissingOrNullIdIsMalformed) {
    const std::string v = "x";
    for (const auto& headers : {std::vector<raw_header>{h("trace", v)},
                                std::vector<raw_header>{{"ferry-message-id", nullptr, 0}}}) {
        const auto e = parse_envelope(headers, {});
        EXPECT_EQ(e.malformed, "malformed envelope: no ferry-message-id header");
        EXPECT_EQ(e.malformed_code, "consumer.malformed");
        EXPECT_EQ(e.problem, ferry::consumer::detail::envelope_problem::malformed);
        EXPECT_EQ(e.message_id, "");
    }
}

TEST(EnvelopeTest, TwoIdHeadersAreAmbiguousNeverResolvedByPosition) {
    // A foreign producer can add a second id; taking either one could absorb the wrong message
    // as a duplicate, so the record is a dead letter naming the count.
    const std::string other = "01a22ad1-cd4b-7fe1-8429-000000000000";
    const auto e = parse_envelope({h("ferry-message-id", id), h("ferry-message-id", other)}, {});
    EXPECT_EQ(e.malformed,
              "malformed envelope: 2 ferry-message-id headers (exactly one is allowed)");
    EXPECT_EQ(e.message_id, "");
    EXPECT_EQ(e.headers.size(), 2u);
}

TEST(EnvelopeTest, AnIdThatIsNotAUuidIsMalformed) {
    const std::vector<std::string> bads{"", "01a22ad1cd4b7fe18429d744d3a9c4cc",
                                        "01a22ad1-cd4b-7fe1-8429-d744d3a9c4cg",
                                        "01a22ad1-cd4b-7fe1-8429_d744d3a9c4cc", id + " "};
    for (const auto& bad : bads) {
        const auto e = parse_envelope({h("ferry-message-id", bad)}, {});
        EXPECT_EQ(e.malformed, "malformed envelope: ferry-message-id is not a UUID") << bad;
    }
}

TEST(EnvelopeTest, HeaderLimitsAreNamedAndTheHeadersKeptWhole) {
    const envelope_limits limits{3, 20};
    const std::string v = "v", big(16, 'b');
    auto e = parse_envelope({h("ferry-message-id", id), h("a", v), h("b", v), h("c", v)}, limits);
    EXPECT_EQ(e.malformed, "header limit: the record has 4 headers, more than max_headers=3");
    EXPECT_EQ(e.malformed_code, "consumer.header_limit");
    EXPECT_EQ(e.problem, ferry::consumer::detail::envelope_problem::header_limit);
    EXPECT_EQ(e.headers.size(), 4u);
    e = parse_envelope({h("a", v), h("trace", big)}, limits);
    EXPECT_EQ(e.malformed,
              "header limit: header #2 is 21 bytes (name + value), more than max_header_bytes=20");
    EXPECT_EQ(e.headers[1].value, big);
}

TEST(EnvelopeTest, ExactlyAtTheLimitsIsAccepted) {
    const envelope_limits limits{2, 52};  // "ferry-message-id" (16) + 36 = 52
    const std::string v = "v";
    const auto e = parse_envelope({h("ferry-message-id", id), h("a", v)}, limits);
    EXPECT_EQ(e.malformed, "");
    EXPECT_EQ(e.message_id.size(), 36u);
}

}  // namespace
