#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "ferry/common/error.hpp"
#include "ferry/common/redact.hpp"
#include "ferry/common/sql_ident.hpp"
#include "ferry/internal/http_auth.hpp"

TEST(ErrorTest, CarriesKindCodeFieldAndRetryability) {
    const ferry::error e(ferry::error_kind::retry_transaction, "outbox.connection", "lost",
                         "connection");
    EXPECT_EQ(e.kind(), ferry::error_kind::retry_transaction);
    EXPECT_EQ(e.code(), "outbox.connection");
    EXPECT_EQ(e.field(), "connection");
    EXPECT_STREQ(e.what(), "lost");
    EXPECT_TRUE(e.is_retryable());
    EXPECT_FALSE(ferry::error(ferry::error_kind::permanent, "x", "y").is_retryable());
    EXPECT_FALSE(ferry::error(ferry::error_kind::in_doubt, "x", "y").is_retryable());
    EXPECT_EQ(ferry::to_string(ferry::error_kind::in_doubt), "in_doubt");
}

TEST(SqlIdentTest, AcceptsOnlyPlainLowerCaseIdentifiers) {
    EXPECT_TRUE(ferry::is_valid_identifier("ferry"));
    EXPECT_TRUE(ferry::is_valid_identifier("_ferry_2"));
    EXPECT_TRUE(ferry::is_valid_identifier(std::string(63, 'a')));
    EXPECT_FALSE(ferry::is_valid_identifier(std::string(64, 'a')));
    EXPECT_FALSE(ferry::is_valid_identifier(""));
    EXPECT_FALSE(ferry::is_valid_identifier("Ferry"));
    EXPECT_FALSE(ferry::is_valid_identifier("9ferry"));
    EXPECT_FALSE(ferry::is_valid_identifier("ferry\"; drop schema public; --"));
    EXPECT_EQ(ferry::quote_identifier("ferry"), "\"ferry\"");
    try {
        (void)ferry::quote_identifier("bad name", "postgres.schema");
        FAIL();
    } catch (const ferry::error& e) {
        EXPECT_EQ(e.field(), "postgres.schema");
        EXPECT_NE(std::string(e.what()).find("postgres.schema"), std::string::npos);
    }
}

TEST(RedactTest, HidesPasswordsInKeyValueDsn) {
    const auto r = ferry::redact_dsn("host=db user=app password=s3cr3t dbname=orders");
    EXPECT_EQ(r, "host=db user=app password=*** dbname=orders");
    const auto q = ferry::redact_dsn(R"(host=db password='it\'s s3cr3t' user=app)");
    EXPECT_EQ(q.find("s3cr3t"), std::string::npos) << q;
    EXPECT_NE(q.find("user=app"), std::string::npos) << q;
}

TEST(RedactTest, HidesPasswordsInUris) {
    EXPECT_EQ(ferry::redact_dsn("postgresql://app:s3cr3t@db:5432/orders"),
              "postgresql://app:***@db:5432/orders");
    EXPECT_EQ(ferry::redact_dsn("postgresql://app@db/orders?password=s3cr3t&sslmode=require"),
              "postgresql://app@db/orders?password=***&sslmode=require");
    EXPECT_EQ(ferry::redact_url("redis://:s3cr3t@cache:6379/0"), "redis://:***@cache:6379/0");
    EXPECT_EQ(ferry::redact_url("redis://cache:6379/0"), "redis://cache:6379/0");
    // A password containing '@' still disappears entirely.
    const auto r = ferry::redact_url("redis://user:p@ss@cache:6379");
    EXPECT_EQ(r.find("p@ss"), std::string::npos) << r;
    const auto slash = ferry::redact_url("redis://:pa/ss@cache:6379/0");
    EXPECT_EQ(slash, "redis://:***@cache:6379/0");
}

TEST(RedactTest, RecognisesSecretPropertyNames) {
    EXPECT_TRUE(ferry::is_secret_key("sasl.password"));
    EXPECT_TRUE(ferry::is_secret_key("ssl.key.password"));
    EXPECT_TRUE(ferry::is_secret_key("sasl.oauthbearer.client.secret"));
    EXPECT_TRUE(ferry::is_secret_key("ssl.key.pem"));
    EXPECT_FALSE(ferry::is_secret_key("sasl.username"));
    EXPECT_FALSE(ferry::is_secret_key("linger.ms"));
    EXPECT_FALSE(ferry::is_secret_key("ssl.key.location"));
}

// Regressions found by tests/fuzz/fuzz_redact (libpq's own parser is its oracle); the inputs are
// in tests/fuzz/regressions/redact/.
TEST(RedactTest, LoneUserinfoIsMaskedExceptAsAPostgresUserName) {
    // Ferry's Redis client sends a user-info without ':' as the password; HTTP tokens travel so.
    EXPECT_EQ(ferry::redact_url("redis://s3cr3t@cache:6379/0"), "redis://***@cache:6379/0");
    EXPECT_EQ(ferry::redact_url("https://ghp_t0k3n@api.internal/check"),
              "https://***@api.internal/check");
    // For libpq it is the user name: kept.
    EXPECT_EQ(ferry::redact_dsn("postgresql://app@db/orders"), "postgresql://app@db/orders");
}

TEST(RedactTest, PasswordWithQueryOrFragmentCharactersIsMasked) {
    // libpq and the Redis client both read "pa?ss" / "pa#ss" as the password.
    EXPECT_EQ(ferry::redact_dsn("postgresql://app:pa?ss@db/orders"),
              "postgresql://app:***@db/orders");
    EXPECT_EQ(ferry::redact_url("redis://:pa#ss@cache:6379/0"), "redis://:***@cache:6379/0");
}

TEST(RedactTest, KeyValueDsnWithSchemeLikeValueIsNotReadAsAUri) {
    // Any "://" used to send the whole key=value string down the URI path, unredacted.
    EXPECT_EQ(ferry::redact_dsn("host=db password=s3://cr3t user=app"),
              "host=db password=*** user=app");
}

TEST(RedactTest, BackslashEscapedSpaceInUnquotedValueStaysInTheValue) {
    // libpq reads "a\ b" as one value "a b"; the redactor used to mask "a\" and leak " b".
    EXPECT_EQ(ferry::redact_dsn(R"(host=db password=s3\ cr3t user=app)"),
              "host=db password=*** user=app");
}

TEST(RedactTest, PercentEncodedSecretQueryKeyIsMasked) {
    // libpq decodes query keywords: %70assword is password.
    EXPECT_EQ(ferry::redact_dsn("postgresql://db/orders?%70assword=s3cr3t"),
              "postgresql://db/orders?%70assword=***");
}

TEST(RedactTest, DbnameHoldingAConnectionStringWithASecretIsMasked) {
    // PQconnectdb expands a dbname that is itself a connection string.
    EXPECT_EQ(ferry::redact_dsn("host=db dbname='user=app password=s3cr3t'"),
              "host=db dbname='***'");
    EXPECT_EQ(ferry::redact_dsn("host=db dbname=orders"), "host=db dbname=orders");
}

TEST(RedactTest, QuotedSecretStaysQuotedSoRedactingIsIdempotent) {
    // Text glued to a closing quote used to merge with the mask, and a second pass changed it.
    const auto once = ferry::redact_dsn("password='s3 cr3t'x=1 host=db");
    EXPECT_EQ(once, "password='***'x=1 host=db");
    EXPECT_EQ(ferry::redact_dsn(once), once);
}

TEST(RedactTest, QueryMaskingFirstKeepsUrlRedactionIdempotent) {
    // The user-info used to be found before the query was masked; masking "a@b" away then moved
    // the last '@', and a second redaction masked a different part.
    const auto once = ferry::redact_url("pgres://app@db/orders?password=s3cr3t://app@db");
    EXPECT_EQ(once, "pgres://***@db/orders?password=***");
    EXPECT_EQ(ferry::redact_url(once), once);
}

TEST(RedactTest, PasswordHoldingAQueryLikeSecretKeyIsMaskedWhole) {
    // Masking the query first (the previous fix) removed the '@' and left the password.
    const auto once = ferry::redact_url("https://user:pa?sslpassword=@api.internal/x");
    EXPECT_EQ(once.find("pa?"), std::string::npos) << once;
    EXPECT_EQ(ferry::redact_url(once), once);
}

TEST(RedactTest, UrlWithSeveralAtSignsIsRedactedToAFixpoint) {
    // One pass left "***@dX" for the next pass to mask (fuzz_redact input).
    const std::string url = "s://a3tt@dX@host?x=1&secret.ca:word=x@";
    const auto once = ferry::redact_url(url);
    EXPECT_EQ(ferry::redact_url(once), once);
    EXPECT_EQ(once.find("a3tt"), std::string::npos) << once;
}

TEST(RedactTest, PostgresQueryIsLookedForAfterTheUserInfoAsLibpqDoes) {
    // A '?' inside a postgres user name used to start a "query" that swallowed the host.
    EXPECT_EQ(ferry::redact_dsn("postgresql://a?token=b:s3cr3t@db/orders?password=x"),
              "postgresql://a?token=b:***@db/orders?password=***");
}

// The HTTP endpoints' shared helpers (ferry/internal/http_auth.hpp).
TEST(HttpAuthTest, BearerTokenComparisonAndJsonText) {
    using ferry::internal::bearer_token;
    EXPECT_EQ(bearer_token("Bearer abc"), std::optional<std::string>("abc"));
    EXPECT_EQ(bearer_token("bEaReR   abc  "), std::optional<std::string>("abc"));
    EXPECT_EQ(bearer_token("Basic abc"), std::nullopt);
    EXPECT_EQ(bearer_token("Bearer"), std::nullopt);
    EXPECT_EQ(bearer_token("Bearer "), std::optional<std::string>(""));
    using ferry::internal::constant_time_equal;
    EXPECT_TRUE(constant_time_equal("secret-token", "secret-token"));
    EXPECT_FALSE(constant_time_equal("secret-tokeN", "secret-token"));
    EXPECT_FALSE(constant_time_equal("secret", "secret-token"));
    EXPECT_FALSE(constant_time_equal("secret-token-and-more", "secret-token"));
    EXPECT_FALSE(constant_time_equal("", "x"));
    EXPECT_EQ(ferry::internal::json_string_body("a\"b\\c\nd"), "a\\\"b\\\\cd");
}
