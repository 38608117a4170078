#include <gtest/gtest.h>

#include "ferry/checkback/resolver.hpp"
#include "ferry/common/error.hpp"

using ferry::checkback::check_decision;
using ferry::checkback::parse_decision;

TEST(CheckbackParseTest, AcceptsDecisionsAndBooleans) {
    EXPECT_EQ(parse_decision("commit"), check_decision::commit);
    EXPECT_EQ(parse_decision("COMMITTED"), check_decision::commit);
    EXPECT_EQ(parse_decision("t"), check_decision::commit);
    EXPECT_EQ(parse_decision("true"), check_decision::commit);
    EXPECT_EQ(parse_decision("rollback"), check_decision::rollback);
    EXPECT_EQ(parse_decision("rolled_back"), check_decision::rollback);
    EXPECT_EQ(parse_decision("f"), check_decision::rollback);
    EXPECT_EQ(parse_decision("unknown"), check_decision::unknown);
    EXPECT_FALSE(parse_decision("").has_value());
    EXPECT_FALSE(parse_decision("maybe").has_value());
}

TEST(CheckbackParseTest, ResolversRejectMissingSettings) {
    EXPECT_THROW((void)ferry::checkback::make_http_resolver({}), ferry::error);
    EXPECT_THROW((void)ferry::checkback::make_sql_resolver({}), ferry::error);
}
