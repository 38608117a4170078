// Unit tests of ferry::config: parsing, validation, ${VAR} substitution, environment overrides
// and redaction. No servers; the environment is a fake lookup so tests are hermetic.

#include "ferry/config/config.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <string>

#include "config_test_support.hpp"

namespace {

using namespace std::chrono_literals;
using ferry::config::diagnostic;
using ferry::config::env_lookup;
using ferry::config::load_result;
using ferry::config::load_string;
using testing::HasSubstr;
using testing::Not;

using ferry_config_test::all_messages;
using ferry_config_test::expect_at;
using ferry_config_test::fake_env;
using ferry_config_test::load;
using ferry_config_test::only_error_for;

TEST(ConfigTest, DefaultsWithoutFileOrEnvironment) {
    const auto r = ferry::config::load_defaults(fake_env());
    ASSERT_TRUE(r.ok()) << all_messages(r);
    const auto& c = r.config;
    EXPECT_EQ(c.postgres.dsn, "postgresql://127.0.0.1:5432/postgres");
    EXPECT_EQ(c.postgres.schema, "ferry");
    EXPECT_FALSE(c.postgres.migrate_on_start);
    EXPECT_EQ(c.postgres.connect_timeout, 5000ms);
    EXPECT_EQ(c.outbox.schema, "ferry");
    EXPECT_EQ(c.outbox.max_payload_bytes, 1024u * 1024u);
    EXPECT_EQ(c.outbox.max_key_bytes, 4096u);
    EXPECT_EQ(c.outbox.max_headers_bytes, 64u * 1024u);
    EXPECT_EQ(c.kafka.brokers, "127.0.0.1:9092");
    EXPECT_EQ(c.kafka.compression, "lz4");
    EXPECT_TRUE(c.kafka.topic_prefix.empty());
    EXPECT_TRUE(c.kafka.topic_map.empty());
    EXPECT_TRUE(c.kafka.properties.empty());
    EXPECT_EQ(c.redis.url, "redis://127.0.0.1:6379/0");
    EXPECT_EQ(c.redis.connect_timeout, 2000ms);
    EXPECT_EQ(c.http.listen, "127.0.0.1:9464");
    EXPECT_EQ(c.log.level, "info");
    EXPECT_EQ(c.log.format, "text");
}

TEST(ConfigTest, EmptyFileMeansDefaults) {
    for (const char* text : {"", "\n", "# nothing configured yet\n", "postgres:\nkafka:\n"}) {
        const auto r = load(text);
        ASSERT_TRUE(r.ok()) << "input: " << text << "\n" << all_messages(r);
        EXPECT_EQ(r.config.kafka.compression, "lz4");
        EXPECT_EQ(r.config.outbox.max_key_bytes, 4096u);
    }
}

TEST(ConfigTest, FullValidFile) {
    const auto r = load(R"(
postgres:
  dsn: host=db.internal port=5432 dbname=app user=ferry
  schema: ferry_outbox
  migrate_on_start: true
  connect_timeout: 1.5s
outbox:
  max_payload_bytes: 2MiB
  max_key_bytes: 512
  max_headers_bytes: 32KiB
kafka:
  brokers: k1:9092,k2:9092, k3:9092
  compression: zstd
  topic_prefix: prod.
  topic_map:
    orders: orders-v2
    billing.invoices: invoices
  properties:
    linger.ms: 5
    enable.idempotence: true
    security.protocol: SASL_SSL
redis:
  url: redis://cache.internal:6380/2
  connect_timeout: 250ms
http:
  listen: "[::1]:0"
log:
  level: debug
  format: json
)");
    ASSERT_TRUE(r.ok()) << all_messages(r);
    const auto& c = r.config;
    EXPECT_EQ(c.postgres.dsn, "host=db.internal port=5432 dbname=app user=ferry");
    EXPECT_EQ(c.postgres.schema, "ferry_outbox");
    EXPECT_EQ(c.outbox.schema, "ferry_outbox");  // copied for the writer
    EXPECT_TRUE(c.postgres.migrate_on_start);
    EXPECT_EQ(c.postgres.connect_timeout, 1500ms);
    EXPECT_EQ(c.outbox.max_payload_bytes, 2u * 1024u * 1024u);
    EXPECT_EQ(c.outbox.max_key_bytes, 512u);
    EXPECT_EQ(c.outbox.max_headers_bytes, 32u * 1024u);
    EXPECT_EQ(c.kafka.brokers, "k1:9092,k2:9092, k3:9092");
    EXPECT_EQ(c.kafka.compression, "zstd");
    EXPECT_EQ(c.kafka.topic_prefix, "prod.");
    EXPECT_EQ(c.kafka.topic_map, (std::map<std::string, std::string>{
                                     {"orders", "orders-v2"}, {"billing.invoices", "invoices"}}));
    EXPECT_EQ(c.kafka.properties,
              (std::map<std::string, std::string>{{"linger.ms", "5"},
                                                  {"enable.idempotence", "true"},
                                                  {"security.protocol", "SASL_SSL"}}));
    EXPECT_EQ(c.redis.url, "redis://cache.internal:6380/2");
    EXPECT_EQ(c.redis.connect_timeout, 250ms);
    EXPECT_EQ(c.http.listen, "[::1]:0");
    EXPECT_EQ(c.log.level, "debug");
    EXPECT_EQ(c.log.format, "json");
}

TEST(ConfigTest, LoadFileReadsFromDisk) {
    const std::string path = testing::TempDir() + "ferry_config_test_load.yaml";
    {
        std::ofstream out(path);
        out << "kafka:\n  compression: gzip\n  topic_prefix: x!\n";
    }
    const auto r = ferry::config::load_file(path, fake_env());
    std::remove(path.c_str());
    EXPECT_EQ(r.config.kafka.compression, "gzip");
    ASSERT_EQ(r.errors.size(), 1u) << all_messages(r);
    EXPECT_EQ(r.errors[0].source, path);
    expect_at(r.errors[0], 3, 17);
}

TEST(ConfigTest, MissingFileIsOneDiagnostic) {
    const auto r = ferry::config::load_file("/nonexistent/ferry.yaml", fake_env());
    ASSERT_EQ(r.errors.size(), 1u);
    EXPECT_EQ(r.errors[0].source, "/nonexistent/ferry.yaml");
    EXPECT_THAT(r.errors[0].message, HasSubstr("cannot open file"));
}

TEST(ConfigTest, SubstitutesEnvironmentWithAndWithoutDefault) {
    const auto r = load(R"(
postgres:
  dsn: postgresql://${PGUSER}:${PGPASSWORD}@${PGHOST:-localhost}:${PGPORT:-5432}/app
  schema: ${FERRY_SCHEMA:-ferry}
  migrate_on_start: ${MIGRATE:-false}
kafka:
  brokers: ${BROKERS}
  topic_prefix: ${PREFIX:-}
  properties:
    sasl.password: ${KAFKA_PASSWORD}
    client.id: literal-$${NOT_A_VAR}
redis:
  connect_timeout: ${REDIS_TIMEOUT:-3s}
)",
                        {{"PGUSER", "app"},
                         {"PGPASSWORD", "s3cret"},
                         {"PGPORT", ""},  // set but empty: ":-" falls back, as in the shell
                         {"MIGRATE", "true"},
                         {"BROKERS", "b1:9092,b2:9092"},
                         {"KAFKA_PASSWORD", "kpass"}});
    ASSERT_TRUE(r.ok()) << all_messages(r);
    EXPECT_EQ(r.config.postgres.dsn, "postgresql://app:s3cret@localhost:5432/app");
    EXPECT_EQ(r.config.postgres.schema, "ferry");
    EXPECT_TRUE(r.config.postgres.migrate_on_start);  // substituted before type conversion
    EXPECT_EQ(r.config.kafka.brokers, "b1:9092,b2:9092");
    EXPECT_EQ(r.config.kafka.topic_prefix, "");
    EXPECT_EQ(r.config.kafka.properties.at("sasl.password"), "kpass");
    EXPECT_EQ(r.config.kafka.properties.at("client.id"), "literal-${NOT_A_VAR}");
    EXPECT_EQ(r.config.redis.connect_timeout, 3000ms);
}

TEST(ConfigTest, SubstitutedValueIsValidatedLikeALiteral) {
    const auto r = load("log:\n  level: ${LEVEL}\n", {{"LEVEL", "loud"}});
    const auto d = only_error_for(r, "log.level");
    expect_at(d, 2, 10);
    EXPECT_THAT(d.message, HasSubstr("must be one of"));
}

TEST(ConfigTest, UnsetVariableIsAnErrorNamingVariableAndKey) {
    const auto r = load(R"(postgres:
  schema: ferry
  dsn: postgresql://app:${DB_PASSWORD}@db/app
redis:
  url: redis://${REDIS_HOST}:${REDIS_PORT}/0
)",
                        {{"REDIS_PORT", "6379"}});
    ASSERT_EQ(r.errors.size(), 2u) << all_messages(r);
    const auto dsn = only_error_for(r, "postgres.dsn");
    expect_at(dsn, 3, 8);
    EXPECT_THAT(dsn.message, HasSubstr("DB_PASSWORD"));
    EXPECT_THAT(dsn.message, HasSubstr("not set"));
    EXPECT_EQ(dsn.to_string(),
              "test.yaml:3:8: postgres.dsn: environment variable DB_PASSWORD is not set and has "
              "no default (use ${DB_PASSWORD:-default})");
    const auto url = only_error_for(r, "redis.url");
    expect_at(url, 5, 8);
    EXPECT_THAT(url.message, HasSubstr("REDIS_HOST"));
}

TEST(ConfigTest, MalformedVariableReferences) {
    const auto r = load("kafka:\n  brokers: ${BROKERS\n  topic_prefix: ${1BAD}\n");
    ASSERT_EQ(r.errors.size(), 2u) << all_messages(r);
    EXPECT_THAT(only_error_for(r, "kafka.brokers").message, HasSubstr("unterminated"));
    EXPECT_THAT(only_error_for(r, "kafka.topic_prefix").message,
                HasSubstr("invalid variable reference"));
}

TEST(ConfigTest, ReportsEveryErrorInOnePass) {
    const auto r = load(R"(postgres:
  schema: Bad-Schema
  connect_timeout: 0s
outbox:
  max_payload_bytes: 200MiB
  max_key_bytes: abc
kafka:
  compression: brotli
  colour: blue
log:
  level: loud
http:
  listen: "localhost:99999"
)");
    ASSERT_EQ(r.errors.size(), 8u) << all_messages(r);
    expect_at(only_error_for(r, "postgres.schema"), 2, 11);
    expect_at(only_error_for(r, "postgres.connect_timeout"), 3, 20);
    expect_at(only_error_for(r, "outbox.max_payload_bytes"), 5, 22);
    expect_at(only_error_for(r, "outbox.max_key_bytes"), 6, 18);
    expect_at(only_error_for(r, "kafka.compression"), 8, 16);
    expect_at(only_error_for(r, "kafka.colour"), 9, 3);
    expect_at(only_error_for(r, "log.level"), 11, 10);
    expect_at(only_error_for(r, "http.listen"), 13, 11);
    // Document order, so the output reads top to bottom.
    for (std::size_t i = 1; i < r.errors.size(); ++i) {
        EXPECT_LE(r.errors[i - 1].line, r.errors[i].line);
    }
}

TEST(ConfigTest, UnknownKeysAtEveryLevelWithHints) {
    const auto r = load(R"(kafak:
  brokers: b:9092
kafka:
  compresion: zstd
  topic_map:
    orders: orders-v2
postgres:
  conect_timeout: 1s
  zzz_not_close: 1
)");
    ASSERT_EQ(r.errors.size(), 4u) << all_messages(r);
    const auto section = only_error_for(r, "kafak");
    expect_at(section, 1, 1);
    EXPECT_THAT(section.message, HasSubstr("did you mean \"kafka\"?"));
    const auto key = only_error_for(r, "kafka.compresion");
    expect_at(key, 4, 3);
    EXPECT_THAT(key.message, HasSubstr("did you mean \"compression\"?"));
    EXPECT_THAT(only_error_for(r, "postgres.conect_timeout").message,
                HasSubstr("did you mean \"connect_timeout\"?"));
    // Nothing close: list what is allowed instead.
    EXPECT_THAT(only_error_for(r, "postgres.zzz_not_close").message,
                HasSubstr("expected one of: dsn, schema, migrate_on_start, connect_timeout"));
    // Valid keys next to the unknown ones are still applied.
    EXPECT_EQ(r.config.kafka.topic_map.at("orders"), "orders-v2");
}

TEST(ConfigTest, WrongTypes) {
    const auto r = load(R"(postgres:
  dsn:
    host: db
  migrate_on_start: yes please
outbox:
  max_key_bytes: abc
log:
  level: [info, debug]
redis: just-a-string
kafka:
  topic_map: [a, b]
  properties:
    linger.ms: {nested: 1}
)");
    ASSERT_EQ(r.errors.size(), 7u) << all_messages(r);
    const auto dsn = only_error_for(r, "postgres.dsn");
    expect_at(dsn, 3, 5);
    EXPECT_THAT(dsn.message, HasSubstr("expected a single value, got a map"));
    const auto flag = only_error_for(r, "postgres.migrate_on_start");
    expect_at(flag, 4, 21);
    EXPECT_THAT(flag.message, HasSubstr("expected true or false, got \"yes please\""));
    EXPECT_THAT(only_error_for(r, "outbox.max_key_bytes").message,
                HasSubstr("expected a size in bytes"));
    EXPECT_THAT(only_error_for(r, "log.level").message, HasSubstr("got a list"));
    EXPECT_THAT(only_error_for(r, "redis").message, HasSubstr("expected a map"));
    EXPECT_THAT(only_error_for(r, "kafka.topic_map").message, HasSubstr("expected a map"));
    expect_at(only_error_for(r, "kafka.properties.linger.ms"), 13, 16);
}

TEST(ConfigTest, OutOfRangeValues) {
    const auto r = load(R"(postgres:
  connect_timeout: 11m
outbox:
  max_payload_bytes: 101MiB
  max_key_bytes: 0
  max_headers_bytes: 17MiB
redis:
  connect_timeout: 0ms
http:
  listen: 127.0.0.1:65536
log:
  format: xml
)");
    ASSERT_EQ(r.errors.size(), 7u) << all_messages(r);
    EXPECT_THAT(only_error_for(r, "postgres.connect_timeout").message,
                HasSubstr("must be between 1ms and 10m, got \"11m\""));
    EXPECT_THAT(only_error_for(r, "outbox.max_payload_bytes").message,
                HasSubstr("must be between 1 and 100MiB"));
    EXPECT_THAT(only_error_for(r, "outbox.max_key_bytes").message,
                HasSubstr("must be between 1 and 1MiB"));
    EXPECT_THAT(only_error_for(r, "outbox.max_headers_bytes").message,
                HasSubstr("must be between 1 and 16MiB"));
    EXPECT_THAT(only_error_for(r, "redis.connect_timeout").message, HasSubstr("between"));
    EXPECT_THAT(only_error_for(r, "http.listen").message, HasSubstr("0 to 65535"));
    EXPECT_THAT(only_error_for(r, "log.format").message, HasSubstr("text, json"));

    // The upper bounds themselves are accepted.
    const auto edge = load(R"(outbox:
  max_payload_bytes: 100MiB
  max_key_bytes: 1MiB
  max_headers_bytes: 16MiB
http:
  listen: 0.0.0.0:65535
)");
    EXPECT_TRUE(edge.ok()) << all_messages(edge);
}

TEST(ConfigTest, InvalidIdentifiersTopicsAndEndpoints) {
    const auto r = load(R"(postgres:
  schema: 1ferry
  dsn: nonsense
kafka:
  brokers: "a:9092,,b:9092"
  topic_prefix: "prod/"
  topic_map:
    "..": fine
    orders: "orders v2"
    ok: ok
  properties:
    bootstrap.servers: x:9092
redis:
  url: http://cache:6379
http:
  listen: "9464"
)");
    ASSERT_EQ(r.errors.size(), 9u) << all_messages(r);
    EXPECT_THAT(only_error_for(r, "postgres.schema").message, HasSubstr("SQL identifier"));
    EXPECT_THAT(only_error_for(r, "postgres.dsn").message, HasSubstr("key=value"));
    EXPECT_THAT(only_error_for(r, "kafka.brokers").message, HasSubstr("empty entry"));
    EXPECT_THAT(only_error_for(r, "kafka.topic_prefix").message, HasSubstr("[a-zA-Z0-9._-]"));
    expect_at(only_error_for(r, "kafka.topic_map.\"..\""), 8, 5);
    expect_at(only_error_for(r, "kafka.topic_map.orders"), 9, 13);
    EXPECT_THAT(only_error_for(r, "kafka.properties.bootstrap.servers").message,
                HasSubstr("kafka.brokers"));
    EXPECT_THAT(only_error_for(r, "redis.url").message, HasSubstr("unsupported scheme \"http\""));
    EXPECT_THAT(only_error_for(r, "http.listen").message, HasSubstr("host:port"));
    EXPECT_EQ(r.config.kafka.topic_map.count("ok"), 1u);
}

TEST(ConfigTest, DuplicateKeysAreErrors) {
    const auto r = load("kafka:\n  compression: gzip\n  compression: zstd\n");
    const auto d = only_error_for(r, "kafka.compression");
    expect_at(d, 3, 3);
    EXPECT_THAT(d.message, HasSubstr("duplicate key (first set at line 2)"));
    EXPECT_EQ(r.config.kafka.compression, "gzip");
}

TEST(ConfigTest, YamlSyntaxErrorHasLineAndColumn) {
    const auto r = load("kafka:\n  brokers: b:9092\n  topic_map: {a: b\nlog:\n  level: info\n");
    ASSERT_EQ(r.errors.size(), 1u) << all_messages(r);
    EXPECT_EQ(r.errors[0].line, 4);
    EXPECT_GT(r.errors[0].column, 0);
    EXPECT_THAT(r.errors[0].message, HasSubstr("YAML syntax error"));

    const auto bad_indent = load("postgres:\n  schema: a\n dsn: b\n");
    ASSERT_EQ(bad_indent.errors.size(), 1u) << all_messages(bad_indent);
    expect_at(bad_indent.errors[0], 3, 2);
}

TEST(ConfigTest, RootMustBeAMap) {
    for (const char* text : {"just a string\n", "- a\n- b\n"}) {
        const auto r = load(text);
        ASSERT_EQ(r.errors.size(), 1u) << all_messages(r);
        EXPECT_THAT(r.errors[0].message, HasSubstr("root must be a map"));
        EXPECT_EQ(r.errors[0].line, 1);
    }
    const auto two_docs = load("log:\n  level: info\n---\nlog:\n  level: debug\n");
    ASSERT_EQ(two_docs.errors.size(), 1u) << all_messages(two_docs);
    EXPECT_EQ(two_docs.errors[0].line, 4);
}

TEST(ConfigTest, EnvironmentOverridesWinOverFile) {
    const auto r = load(R"(postgres:
  dsn: postgresql://file-host/app
kafka:
  brokers: file:9092
redis:
  url: redis://file-host:6379/0
http:
  listen: 127.0.0.1:1000
)",
                        {{"FERRY_POSTGRES_DSN", "host=env-host dbname=app"},
                         {"FERRY_KAFKA_BROKERS", "env1:9092,env2:9092"},
                         {"FERRY_REDIS_URL", "redis://env-host:6379/1"},
                         {"FERRY_HTTP_LISTEN", "0.0.0.0:9999"}});
    ASSERT_TRUE(r.ok()) << all_messages(r);
    EXPECT_EQ(r.config.postgres.dsn, "host=env-host dbname=app");
    EXPECT_EQ(r.config.kafka.brokers, "env1:9092,env2:9092");
    EXPECT_EQ(r.config.redis.url, "redis://env-host:6379/1");
    EXPECT_EQ(r.config.http.listen, "0.0.0.0:9999");

    const auto defaults =
        ferry::config::load_defaults(fake_env({{"FERRY_KAFKA_BROKERS", "only-env:9092"}}));
    ASSERT_TRUE(defaults.ok());
    EXPECT_EQ(defaults.config.kafka.brokers, "only-env:9092");
}

TEST(ConfigTest, HttpSecurityKeys) {
    const auto d = load("");
    ASSERT_TRUE(d.ok());
    EXPECT_TRUE(d.config.http.token_env.empty());
    EXPECT_FALSE(d.config.http.token_for_metrics);
    EXPECT_EQ(d.config.http.max_body_bytes, 16u * 1024);
    EXPECT_EQ(d.config.http.max_uri_bytes, 4096u);
    EXPECT_EQ(d.config.http.reports_max_limit, 1000u);
    EXPECT_EQ(d.config.http.report_connections, 2u);
    EXPECT_EQ(d.config.http.report_pool_wait, 2000ms);

    const auto r = load(R"(
http:
  token_env: FERRY_HTTP_TOKEN
  token_for_metrics: true
  max_body_bytes: 1KiB
  max_uri_bytes: 2048
  reports_max_limit: 200
  report_connections: 4
  report_pool_wait: 500ms
)");
    ASSERT_TRUE(r.ok()) << all_messages(r);
    EXPECT_EQ(r.config.http.token_env, "FERRY_HTTP_TOKEN");
    EXPECT_TRUE(r.config.http.token_for_metrics);
    EXPECT_EQ(r.config.http.max_body_bytes, 1024u);
    EXPECT_EQ(r.config.http.max_uri_bytes, 2048u);
    EXPECT_EQ(r.config.http.reports_max_limit, 200u);
    EXPECT_EQ(r.config.http.report_connections, 4u);
    EXPECT_EQ(r.config.http.report_pool_wait, 500ms);
    // The variable's name, not its value, is what render_redacted shows and loads back.
    const auto again = load(render_redacted(r.config));
    ASSERT_TRUE(again.ok()) << all_messages(again);
    EXPECT_EQ(again.config.http.token_env, "FERRY_HTTP_TOKEN");

    const auto bad = load(R"(
http:
  token_env: "s3cr3t-token value"
  max_uri_bytes: 100000
  reports_max_limit: 0
  report_connections: 65
)");
    ASSERT_EQ(bad.errors.size(), 4u) << all_messages(bad);
    EXPECT_THAT(only_error_for(bad, "http.token_env").message,
                HasSubstr("must name an environment variable"));
    EXPECT_THAT(all_messages(bad), Not(HasSubstr("s3cr3t")));
    EXPECT_THAT(only_error_for(bad, "http.max_uri_bytes").message, HasSubstr("between"));
    EXPECT_THAT(only_error_for(bad, "http.reports_max_limit").message, HasSubstr("between"));
    EXPECT_THAT(only_error_for(bad, "http.report_connections").message, HasSubstr("between"));
}

TEST(ConfigTest, InvalidEnvironmentOverrideIsReported) {
    const auto r = load("log:\n  level: loud\n",
                        {{"FERRY_HTTP_LISTEN", "no-port-here"}, {"FERRY_REDIS_URL", ""}});
    ASSERT_EQ(r.errors.size(), 3u) << all_messages(r);
    const auto listen = only_error_for(r, "http.listen");
    EXPECT_EQ(listen.source, "env");
    EXPECT_EQ(listen.line, 0);
    EXPECT_EQ(listen.column, 0);
    EXPECT_THAT(listen.message, HasSubstr("FERRY_HTTP_LISTEN"));
    EXPECT_EQ(listen.to_string(), "env: http.listen: " + listen.message);
    EXPECT_THAT(only_error_for(r, "redis.url").message, HasSubstr("FERRY_REDIS_URL"));
    // The file's own error is still there: one pass reports everything.
    EXPECT_EQ(only_error_for(r, "log.level").source, "test.yaml");
}

TEST(ConfigTest, DiagnosticFormat) {
    const diagnostic d{"ferry.yaml", 3, 5, "kafka.compression", "must be one of x"};
    EXPECT_EQ(d.to_string(), "ferry.yaml:3:5: kafka.compression: must be one of x");
    const diagnostic no_key{"ferry.yaml", 1, 2, "", "YAML syntax error: oops"};
    EXPECT_EQ(no_key.to_string(), "ferry.yaml:1:2: YAML syntax error: oops");
}

TEST(ConfigTest, RenderRedactedHidesEverySecret) {
    auto r = load(R"(postgres:
  dsn: postgresql://app:uri-hunter2@db:5432/app?sslmode=require
kafka:
  properties:
    sasl.username: ferry
    sasl.password: kafka-hunter2
    ssl.key.password: ${KEY_PASSWORD}
redis:
  url: redis://:redis-hunter2@cache:6379/0
)",
                  {{"KEY_PASSWORD", "keystore-hunter2"}});
    ASSERT_TRUE(r.ok()) << all_messages(r);
    const auto uri_text = ferry::config::render_redacted(r.config);
    EXPECT_THAT(uri_text, Not(HasSubstr("hunter2")));
    EXPECT_THAT(uri_text, HasSubstr("postgresql://app:***@db:5432/app?sslmode=require"));
    EXPECT_THAT(uri_text, HasSubstr("redis://:***@cache:6379/0"));
    EXPECT_THAT(uri_text, HasSubstr("sasl.username: ferry"));
    EXPECT_THAT(uri_text, HasSubstr("sasl.password: \"***\""));

    r.config.postgres.dsn = "host=db user=app password=kv-hunter2 dbname=app";
    const auto kv_text = ferry::config::render_redacted(r.config);
    EXPECT_THAT(kv_text, Not(HasSubstr("hunter2")));
    EXPECT_THAT(kv_text, HasSubstr("host=db user=app password=*** dbname=app"));
}

TEST(ConfigTest, RenderRedactedLoadsBackToTheSameConfig) {
    const auto r = load(R"(postgres:
  schema: app_outbox
  connect_timeout: 1.5s
outbox:
  max_payload_bytes: 3000000
kafka:
  topic_prefix: ""
  topic_map: {a: b}
  properties: {linger.ms: "5", enable.idempotence: "true"}
http:
  listen: "[::]:9464"
)");
    ASSERT_TRUE(r.ok()) << all_messages(r);
    const auto text = ferry::config::render_redacted(r.config);
    const auto again = load(text);
    ASSERT_TRUE(again.ok()) << text << "\n" << all_messages(again);
    EXPECT_EQ(ferry::config::render_redacted(again.config), text);
    EXPECT_EQ(again.config.postgres.connect_timeout, 1500ms);
    EXPECT_EQ(again.config.outbox.max_payload_bytes, 3000000u);
    EXPECT_EQ(again.config.kafka.properties, r.config.kafka.properties);
    EXPECT_EQ(again.config.http.listen, "[::]:9464");
}

TEST(ConfigTest, DiagnosticsNeverContainSecrets) {
    const auto r = load(R"(postgres:
  dsn: mysql://app:dsn-hunter2@db/app
redis:
  url: http://:url-hunter2@cache:6379
kafka:
  properties:
    sasl.password: {value: map-hunter2}
    ssl.key.password: [list-hunter2]
    sasl.oauthbearer.client.secret: ${UNSET_SECRET}
  topic_map:
    orders: "orders tok-hunter2"
  typo_password: typo-hunter2
)",
                        {});
    EXPECT_EQ(r.errors.size(), 7u) << all_messages(r);
    const auto env = load("", {{"FERRY_POSTGRES_DSN", "oracle://u:env-hunter2@h/db"},
                               {"FERRY_REDIS_URL", "ftp://:env-hunter2@h"}});
    EXPECT_EQ(env.errors.size(), 2u) << all_messages(env);
    for (const auto* result : {&r, &env}) {
        for (const auto& d : result->errors) {
            // The topic name is not a secret, but nothing else may leak.
            if (d.key == "kafka.topic_map.orders") continue;
            EXPECT_THAT(d.to_string(), Not(HasSubstr("hunter2")));
        }
    }
}

TEST(ConfigTest, RelaySectionDefaultsAndValues) {
    const auto defaults = ferry::config::load_defaults(fake_env());
    ASSERT_TRUE(defaults.ok()) << all_messages(defaults);
    EXPECT_EQ(defaults.config.relay.lease_groups, 1u);
    EXPECT_EQ(defaults.config.relay.lease_ttl, 10s);
    EXPECT_EQ(defaults.config.relay.batch_size, 500u);
    EXPECT_EQ(defaults.config.relay.poll_min, 1ms);
    EXPECT_EQ(defaults.config.relay.poll_max, 100ms);
    EXPECT_EQ(defaults.config.relay.shutdown_timeout, 10s);
    EXPECT_TRUE(defaults.config.relay.instance_id.empty());
    EXPECT_TRUE(defaults.config.relay.ledger_payloads);
    EXPECT_EQ(defaults.config.relay.mark_lanes, 1u);

    const auto r = load(R"(relay:
  instance_id: relay-a
  lease_groups: 8
  lease_ttl: 3s
  batch_size: 1000
  poll_min: 2ms
  poll_max: 50ms
  delivery_timeout: 20s
  shutdown_timeout: 5s
  published_retention: 24h
  ledger_payloads: false
  mark_lanes: 2
)");
    ASSERT_TRUE(r.ok()) << all_messages(r);
    EXPECT_EQ(r.config.relay.mark_lanes, 2u);
    EXPECT_FALSE(r.config.relay.ledger_payloads);
    EXPECT_EQ(r.config.relay.instance_id, "relay-a");
    EXPECT_EQ(r.config.relay.lease_groups, 8u);
    EXPECT_EQ(r.config.relay.lease_ttl, 3s);
    EXPECT_EQ(r.config.relay.batch_size, 1000u);
    EXPECT_EQ(r.config.relay.poll_min, 2ms);
    EXPECT_EQ(r.config.relay.poll_max, 50ms);
    EXPECT_EQ(r.config.relay.delivery_timeout, 20s);
    EXPECT_EQ(r.config.relay.shutdown_timeout, 5s);
    EXPECT_EQ(r.config.relay.published_retention, 24h);

    // Round trip through render_redacted.
    const auto again = load(ferry::config::render_redacted(r.config));
    ASSERT_TRUE(again.ok()) << all_messages(again);
    EXPECT_EQ(again.config.relay.batch_size, 1000u);
    EXPECT_EQ(again.config.relay.lease_groups, 8u);
    EXPECT_FALSE(again.config.relay.ledger_payloads);
    EXPECT_EQ(again.config.relay.mark_lanes, 2u);
    EXPECT_THAT(
        only_error_for(load("relay:\n  ledger_payloads: sometimes\n"), "relay.ledger_payloads")
            .message,
        HasSubstr("expected true or false"));
}

TEST(ConfigTest, RelaySectionRejectsOutOfRangeAndUnknownKeys) {
    const auto r = load(R"(relay:
  lease_groups: 0
  lease_ttl: 10ms
  batch_size: abc
  batch_sise: 10
  mark_lanes: 9
)");
    EXPECT_THAT(only_error_for(r, "relay.lease_groups").message, HasSubstr("between"));
    expect_at(only_error_for(r, "relay.lease_ttl"), 3, 14);
    EXPECT_THAT(only_error_for(r, "relay.batch_size").message,
                HasSubstr("expected a whole number"));
    EXPECT_THAT(only_error_for(r, "relay.batch_sise").message,
                HasSubstr("did you mean \"batch_size\""));
    EXPECT_THAT(only_error_for(r, "relay.mark_lanes").message, HasSubstr("between"));
}

// WAL mode's keys (ADR 0070): relay.source, relay.wal_slot, relay.wal_publication and the
// writer's outbox.mode, with defaults, round trip and named errors.
TEST(ConfigTest, WalModeKeys) {
    const auto defaults = load("");
    ASSERT_TRUE(defaults.ok()) << all_messages(defaults);
    EXPECT_EQ(defaults.config.relay.source, "polling");
    EXPECT_EQ(defaults.config.relay.wal_slot, "ferry_relay");
    EXPECT_EQ(defaults.config.relay.wal_publication, "ferry");
    EXPECT_EQ(defaults.config.outbox.mode, ferry::outbox::emit_mode::table);

    const auto r = load(R"(outbox:
  mode: wal
relay:
  source: wal
  wal_slot: orders_slot
  wal_publication: orders_pub
)");
    ASSERT_TRUE(r.ok()) << all_messages(r);
    EXPECT_EQ(r.config.relay.source, "wal");
    EXPECT_EQ(r.config.relay.wal_slot, "orders_slot");
    EXPECT_EQ(r.config.relay.wal_publication, "orders_pub");
    EXPECT_EQ(r.config.outbox.mode, ferry::outbox::emit_mode::wal);
    const auto again = load(ferry::config::render_redacted(r.config));
    ASSERT_TRUE(again.ok()) << all_messages(again);
    EXPECT_EQ(again.config.relay.source, "wal");
    EXPECT_EQ(again.config.outbox.mode, ferry::outbox::emit_mode::wal);

    const auto bad = load(R"(outbox:
  mode: logical
relay:
  source: logical
  wal_slot: Bad-Slot
)");
    EXPECT_THAT(only_error_for(bad, "outbox.mode").message, HasSubstr("table or wal"));
    EXPECT_THAT(only_error_for(bad, "relay.source").message, HasSubstr("polling"));
    EXPECT_THAT(only_error_for(bad, "relay.wal_slot").message, HasSubstr("[a-z0-9_]"));
}

TEST(ParseDurationTest, AcceptsUnits) {
    using ferry::config::parse_duration;
    EXPECT_EQ(parse_duration("250ms"), 250ms);
    EXPECT_EQ(parse_duration("6s"), 6000ms);
    EXPECT_EQ(parse_duration("1m"), 60000ms);
    EXPECT_EQ(parse_duration("2h"), 7200000ms);
    EXPECT_EQ(parse_duration("1.5s"), 1500ms);
    EXPECT_EQ(parse_duration("0.25m"), 15000ms);
    EXPECT_EQ(parse_duration("0s"), 0ms);  // parses; the range check rejects it per key
}

TEST(ParseDurationTest, RejectsMalformed) {
    using ferry::config::parse_duration;
    for (const char* bad : {"", "5", "s", "5 s", "5sec", "-1s", "+1s", "1.s", ".5s", "1.5.0s",
                            "1e3ms", "0.5ms", "1S", "99999999999999999999h", "9999999999999999h"}) {
        EXPECT_EQ(parse_duration(bad), std::nullopt) << bad;
    }
}

TEST(ParseSizeTest, AcceptsPlainBytesAndUnits) {
    using ferry::config::parse_size;
    EXPECT_EQ(parse_size("1048576"), 1048576u);
    EXPECT_EQ(parse_size("10B"), 10u);
    EXPECT_EQ(parse_size("512KiB"), 512u * 1024u);
    EXPECT_EQ(parse_size("512 KiB"), 512u * 1024u);
    EXPECT_EQ(parse_size("1MiB"), 1024u * 1024u);
    EXPECT_EQ(parse_size("1GiB"), 1024u * 1024u * 1024u);
    EXPECT_EQ(parse_size("1KB"), 1000u);
    EXPECT_EQ(parse_size("1MB"), 1000u * 1000u);
    EXPECT_EQ(parse_size("1GB"), 1000u * 1000u * 1000u);
}

TEST(ParseSizeTest, RejectsMalformed) {
    using ferry::config::parse_size;
    for (const char* bad : {"", "abc", "MiB", "1.5MiB", "-1", "1kib", "1 ", "1TiB", "1 MiB x",
                            "99999999999999999999", "99999999999GiB"}) {
        EXPECT_EQ(parse_size(bad), std::nullopt) << bad;
    }
}

}  // namespace

TEST(ConfigTest, CheckbackSectionWithEveryResolverKind) {
    const auto r = load(R"(
checkback:
  first_after: 2s
  interval: 10s
  max_checks: 4
  tick: 200ms
  batch_size: 16
  groups:
    payments:
      resolver: callback
      timeout: 3s
      liveness: 2s
    ledger:
      resolver: sql
      dsn: postgresql://ledger:${LEDGER_PW}@db/ledger
      query: SELECT status = 'paid' FROM payments WHERE tx_ref = $1
    partner:
      resolver: http
      url: https://partner.example/check
      headers:
        Authorization: Bearer ${PARTNER_TOKEN}
      verify_tls: false
)",
                        {{"LEDGER_PW", "pw-secret-1"}, {"PARTNER_TOKEN", "tok-secret-2"}});
    ASSERT_TRUE(r.ok()) << r.errors.front().to_string();
    const auto& c = r.config.checkback;
    EXPECT_EQ(c.first_after, std::chrono::seconds(2));
    EXPECT_EQ(c.max_checks, 4u);
    EXPECT_EQ(c.batch_size, 16u);
    // The producer side takes the schedule from the same section.
    EXPECT_EQ(r.config.outbox.check_first_after, std::chrono::seconds(2));
    EXPECT_EQ(r.config.outbox.check_interval, std::chrono::seconds(10));
    EXPECT_EQ(r.config.outbox.max_checks, 4);
    ASSERT_EQ(c.groups.size(), 3u);
    EXPECT_EQ(c.groups.at("payments").resolver, "callback");
    EXPECT_EQ(c.groups.at("payments").liveness, std::chrono::seconds(2));
    EXPECT_EQ(c.groups.at("ledger").dsn, "postgresql://ledger:pw-secret-1@db/ledger");
    EXPECT_EQ(c.groups.at("partner").headers.at("Authorization"), "Bearer tok-secret-2");
    EXPECT_FALSE(c.groups.at("partner").verify_tls);

    const auto shown = render_redacted(r.config);
    EXPECT_EQ(shown.find("pw-secret-1"), std::string::npos) << shown;
    EXPECT_EQ(shown.find("tok-secret-2"), std::string::npos) << shown;
    EXPECT_NE(shown.find("partner.example"), std::string::npos) << shown;
    // What is shown loads back to the same schedule and resolvers.
    const auto again = load(shown);
    ASSERT_TRUE(again.ok()) << again.errors.front().to_string();
    EXPECT_EQ(again.config.checkback.groups.size(), 3u);
    EXPECT_EQ(again.config.checkback.max_checks, 4u);
}

TEST(ConfigTest, CheckbackGroupErrorsAreAllReported) {
    const auto r = load(R"(
checkback:
  max_checks: lots
  groups:
    a:
      resolver: carrier-pigeon
    b:
      resolver: http
    c:
      resolver: sql
      dsn: postgresql://db/x
    d:
      resolver: callback
      tiemout: 3s
    e:
      timeout: 1s
)");
    EXPECT_FALSE(r.ok());
    std::string all;
    for (const auto& d : r.errors) all += d.to_string() + "\n";
    EXPECT_NE(all.find(":3:"), std::string::npos) << all;                       // max_checks
    EXPECT_NE(all.find("carrier-pigeon"), std::string::npos) << all;            // resolver kind
    EXPECT_NE(all.find("groups.b.url"), std::string::npos) << all;              // http without url
    EXPECT_NE(all.find("groups.c.query"), std::string::npos) << all;            // sql without query
    EXPECT_NE(all.find("did you mean \"timeout\""), std::string::npos) << all;  // misspelled key
    EXPECT_NE(all.find("groups.e.resolver"), std::string::npos) << all;         // resolver missing
    EXPECT_EQ(r.errors.size(), 6u) << all;  // one per problem, no follow-on noise
}

TEST(ConfigTest, CountsRenderAsPlainNumbers) {
    const auto r = load("relay:\n  batch_size: 1024\n  lease_groups: 4\n");
    ASSERT_TRUE(r.ok());
    const auto shown = render_redacted(r.config);
    EXPECT_NE(shown.find("batch_size: 1024"), std::string::npos) << shown;
    EXPECT_EQ(load("relay:\n  batch_size: 1KiB\n").ok(), false);
}

TEST(ConfigTest, ReconcileSectionWithGroups) {
    const auto r = load(R"(
reconcile:
  enabled: true
  interval: 10m
  window: 2h
  grace: 1m
  stuck_unpublished: 90s
  redrive: false
  redrive_cap: 50
  chunk_size: 5000
  retention: 168h
  groups:
    billing:
      topics: [orders, payments]
      dsn: postgresql://billing:${BILLING_PW}@db/billing
      schema: ferry_billing
    mailer:
      topics: [orders]
      dedup: redis
      redis_url: redis://127.0.0.1:6380/1
      redis_key_prefix: mail
)",
                        {{"BILLING_PW", "pw-secret-9"}});
    ASSERT_TRUE(r.ok()) << r.errors.front().to_string();
    const auto& c = r.config.reconcile;
    EXPECT_TRUE(c.enabled);
    EXPECT_EQ(c.interval, std::chrono::minutes(10));
    EXPECT_EQ(c.window, std::chrono::hours(2));
    EXPECT_EQ(c.grace, std::chrono::minutes(1));
    EXPECT_EQ(c.stuck_unpublished, std::chrono::seconds(90));
    EXPECT_FALSE(c.redrive);
    EXPECT_EQ(c.redrive_cap, 50u);
    EXPECT_EQ(c.chunk_size, 5000u);
    EXPECT_EQ(c.retention, std::chrono::hours(24 * 7));
    ASSERT_EQ(c.groups.size(), 2u);
    EXPECT_EQ(c.groups.at("billing").topics, (std::vector<std::string>{"orders", "payments"}));
    EXPECT_EQ(c.groups.at("billing").dedup, "inbox");
    EXPECT_EQ(c.groups.at("billing").schema, "ferry_billing");
    EXPECT_EQ(c.groups.at("mailer").dedup, "redis");
    EXPECT_EQ(c.groups.at("mailer").redis_key_prefix, "mail");

    const auto shown = render_redacted(r.config);
    EXPECT_EQ(shown.find("pw-secret-9"), std::string::npos) << shown;
    const auto again = load(shown);
    ASSERT_TRUE(again.ok()) << again.errors.front().to_string() << "\n" << shown;
    EXPECT_EQ(again.config.reconcile.groups.size(), 2u);
    EXPECT_EQ(again.config.reconcile.groups.at("billing").topics.size(), 2u);
    EXPECT_EQ(again.config.reconcile.window, std::chrono::hours(2));
}

TEST(ConfigTest, ReconcileDefaultsAndErrors) {
    const auto d = load("");
    ASSERT_TRUE(d.ok());
    EXPECT_FALSE(d.config.reconcile.enabled);
    EXPECT_TRUE(d.config.reconcile.redrive);
    EXPECT_EQ(d.config.reconcile.grace, std::chrono::minutes(5));

    const auto r = load(R"(
reconcile:
  chunk_size: 0
  groups:
    g1:
      topics: ["bad topic"]
      dedup: sometimes
      colour: blue
)");
    EXPECT_FALSE(r.ok());
    std::set<std::string> keys;
    for (const auto& e : r.errors) keys.insert(e.key);
    EXPECT_TRUE(keys.count("reconcile.chunk_size")) << r.errors.front().to_string();
    EXPECT_TRUE(keys.count("reconcile.groups.g1.topics"));
    EXPECT_TRUE(keys.count("reconcile.groups.g1.dedup"));
    EXPECT_TRUE(keys.count("reconcile.groups.g1.colour"));
}

// retention: (issue 14): every key, its default, its range, and a round trip.
TEST(ConfigTest, RetentionSectionDefaultsValuesAndErrors) {
    const auto d = load("");
    ASSERT_TRUE(d.ok());
    const auto& def = d.config.retention;
    EXPECT_EQ(def.interval, std::chrono::minutes(1));
    EXPECT_EQ(def.batch, 5000u);
    EXPECT_EQ(def.half_message, std::chrono::hours(24 * 7));
    EXPECT_EQ(def.expired, std::chrono::hours(24 * 30));
    EXPECT_EQ(def.dead_letter, std::chrono::hours(24 * 30));
    EXPECT_EQ(def.check_request, std::chrono::hours(1));

    const auto r = load(R"(
retention:
  interval: 0ms
  batch: 200
  half_message: 48h
  expired: 90m
  dead_letter: 720h
  check_request: 2h
)");
    ASSERT_TRUE(r.ok()) << all_messages(r);
    const auto& c = r.config.retention;
    EXPECT_EQ(c.interval, std::chrono::milliseconds(0));
    EXPECT_EQ(c.batch, 200u);
    EXPECT_EQ(c.half_message, std::chrono::hours(48));
    EXPECT_EQ(c.expired, std::chrono::minutes(90));
    EXPECT_EQ(c.dead_letter, std::chrono::hours(720));
    EXPECT_EQ(c.check_request, std::chrono::hours(2));
    const auto again = load(ferry::config::render_redacted(r.config));
    ASSERT_TRUE(again.ok()) << all_messages(again);
    EXPECT_EQ(again.config.retention.expired, std::chrono::minutes(90));
    EXPECT_EQ(again.config.retention.batch, 200u);

    const auto bad = load(R"(
retention:
  batch: 0
  expired: 10s
  dead_letters: 1h
)");
    EXPECT_FALSE(bad.ok());
    EXPECT_NE(only_error_for(bad, "retention.batch").message.find("between 1 and 100000"),
              std::string::npos);
    EXPECT_NE(only_error_for(bad, "retention.expired").message.find("between 1m"),
              std::string::npos);
    EXPECT_NE(only_error_for(bad, "retention.dead_letters").message.find("dead_letter"),
              std::string::npos);
}

// Found by fuzz_config: a literal "${" (written "$${" in the file) was rendered unescaped, so
// render_redacted() output failed to load ("unterminated ${") or loaded another value.
TEST(ConfigTest, RenderedLiteralDollarBraceLoadsBackUnchangedFoundByFuzzConfig) {
    const auto r = load(R"(relay:
  instance_id: "a$${b}c"
kafka:
  properties: {client.id: "x$${y"}
)");
    ASSERT_TRUE(r.ok()) << all_messages(r);
    ASSERT_EQ(r.config.relay.instance_id, "a${b}c");
    const auto text = ferry::config::render_redacted(r.config);
    const auto again = load(text);
    ASSERT_TRUE(again.ok()) << text << "\n" << all_messages(again);
    EXPECT_EQ(again.config.relay.instance_id, "a${b}c");
    EXPECT_EQ(again.config.kafka.properties, r.config.kafka.properties);
    EXPECT_EQ(ferry::config::render_redacted(again.config), text);
}
