#include <gtest/gtest.h>

#include "ferry/checkback/resolver.hpp"
#include "ferry/common/error.hpp"

using ferry::checkback::check_decision;
using ferry::checkback::parse_decision;

// Booleans are not decisions: "false" is not proof of a rollback (issue 10, hole 8).
TEST(CheckbackParseTest, AcceptsTheThreeDecisionsOnly) {
    EXPECT_EQ(parse_decision("commit"), check_decision::commit);
    EXPECT_EQ(parse_decision("COMMITTED"), check_decision::commit);
    EXPECT_EQ(parse_decision("rollback"), check_decision::rollback);
    EXPECT_EQ(parse_decision("rolled_back"), check_decision::rollback);
    EXPECT_EQ(parse_decision("unknown"), check_decision::unknown);
    for (const char* b : {"t", "true", "f", "false", "0", "1", "no", "yes"}) {
        EXPECT_FALSE(parse_decision(b).has_value()) << b;
    }
    EXPECT_FALSE(parse_decision("").has_value());
    EXPECT_FALSE(parse_decision("maybe").has_value());
}

TEST(CheckbackParseTest, ResolversRejectMissingSettings) {
    EXPECT_THROW((void)ferry::checkback::make_http_resolver({}), ferry::error);
    EXPECT_THROW((void)ferry::checkback::make_sql_resolver({}), ferry::error);
}
