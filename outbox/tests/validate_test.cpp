// Validation of producer input, without a database: every bad input is rejected with a
// ferry::error naming the field, before any SQL is sent.
#include <gtest/gtest.h>

#include "ferry/common/error.hpp"
#include "ferry/outbox/writer.hpp"

using ferry::outbox::message;
using ferry::outbox::writer;
using ferry::outbox::writer_options;

namespace {

message valid() {
    message m;
    m.topic = "orders.v1";
    m.key = "order-42";
    m.payload = R"({"total":10})";
    m.headers = {{"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}};
    return m;
}

// Expects validate(m) to throw a permanent ferry::error with `code`, `field` and a message
// containing `text`.
void expect_rejected(const writer& w, const message& m, const std::string& code,
                     const std::string& field, const std::string& text) {
    try {
        w.validate(m);
        FAIL() << "expected " << code;
    } catch (const ferry::error& e) {
        EXPECT_EQ(e.kind(), ferry::error_kind::permanent);
        EXPECT_EQ(e.code(), code) << e.what();
        EXPECT_EQ(e.field(), field) << e.what();
        EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    }
}

}  // namespace

TEST(ValidateTest, AcceptsAValidMessage) {
    writer w{writer_options{}};
    EXPECT_NO_THROW(w.validate(valid()));
    auto no_key = valid();
    no_key.key.clear();
    EXPECT_NO_THROW(w.validate(no_key));
}

TEST(ValidateTest, RejectsTopicsKafkaRefuses) {
    writer w{writer_options{}};
    auto m = valid();
    m.topic = "";
    expect_rejected(w, m, "outbox.invalid_topic", "topic", "must not be empty");
    m.topic = std::string(250, 'a');
    expect_rejected(w, m, "outbox.invalid_topic", "topic", "249");
    m.topic = std::string(249, 'a');
    EXPECT_NO_THROW(w.validate(m));
    for (const char* bad : {"orders/v1", "orders v1", "ördérs", "a:b", "."}) {
        m.topic = bad;
        expect_rejected(w, m, "outbox.invalid_topic", "topic", "");
    }
    m.topic = "..";
    expect_rejected(w, m, "outbox.invalid_topic", "topic", "not allowed");
}

TEST(ValidateTest, RejectsOversizedPayload) {
    writer_options o;
    o.max_payload_bytes = 1024;
    writer w{o};
    auto m = valid();
    m.payload.assign(1024, 'x');
    EXPECT_NO_THROW(w.validate(m));
    m.payload.assign(1025, 'x');
    expect_rejected(w, m, "outbox.payload_too_large", "payload",
                    "1025 bytes is over the limit of 1024");
}

TEST(ValidateTest, DefaultPayloadLimitIsOneMebibyte) {
    writer w{writer_options{}};
    auto m = valid();
    m.payload.assign(1024 * 1024, 'x');
    EXPECT_NO_THROW(w.validate(m));
    m.payload.push_back('x');
    expect_rejected(w, m, "outbox.payload_too_large", "payload", "1048577 bytes");
}

TEST(ValidateTest, RejectsOversizedOrMalformedKey) {
    writer_options o;
    o.max_key_bytes = 16;
    writer w{o};
    auto m = valid();
    m.key.assign(17, 'k');
    expect_rejected(w, m, "outbox.key_too_large", "key", "17 bytes is over the limit of 16");
    m.key = std::string("a\0b", 3);
    expect_rejected(w, m, "outbox.invalid_key", "key", "UTF-8");
    m.key = "\xc3\x28";  // invalid UTF-8
    expect_rejected(w, m, "outbox.invalid_key", "key", "UTF-8");
}

TEST(ValidateTest, RejectsHeadersThatAreNotPlainStrings) {
    writer_options o;
    o.max_headers_bytes = 64;
    writer w{o};
    auto m = valid();
    m.headers = {{"", "x"}};
    expect_rejected(w, m, "outbox.invalid_header", "headers", "empty");
    m.headers = {{"ferry-message-id", "x"}};
    expect_rejected(w, m, "outbox.invalid_header", "headers[ferry-message-id]", "reserved");
    m.headers = {{"bin", std::string("\xff\xfe", 2)}};
    expect_rejected(w, m, "outbox.invalid_header", "headers[bin]", "UTF-8");
    m.headers = {{"big", std::string(100, 'v')}};
    expect_rejected(w, m, "outbox.headers_too_large", "headers", "over the limit of 64");
}

TEST(ValidateTest, RejectsImpossibleDelayAndExpiry) {
    writer w{writer_options{}};
    auto m = valid();
    m.deliver_after = std::chrono::milliseconds(-1);
    expect_rejected(w, m, "outbox.invalid_delay", "deliver_after", "negative");
    m.deliver_after.reset();
    m.expires_after = std::chrono::milliseconds(0);
    expect_rejected(w, m, "outbox.invalid_expiry", "expires_after", "positive");
    m.deliver_after = std::chrono::milliseconds(5000);
    m.expires_after = std::chrono::milliseconds(1000);
    expect_rejected(w, m, "outbox.invalid_expiry", "expires_after", "deliver_after");
}

TEST(ValidateTest, RejectsAnInvalidSchemaName) {
    for (const char* bad : {"", "Ferry", "ferry;drop table x", "1ferry", "fe rry"}) {
        writer_options o;
        o.schema = bad;
        try {
            writer w{o};
            FAIL() << "accepted schema '" << bad << "'";
        } catch (const ferry::error& e) {
            EXPECT_EQ(e.code(), "config.invalid_identifier");
            EXPECT_EQ(e.field(), "schema");
        }
    }
}
