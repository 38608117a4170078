// ferryctl wal against a real PostgreSQL (wal_level = logical): setup is idempotent and makes
// enqueue_wal usable, status reports the slot and exits 1 when it is missing, drop unregisters
// (producers then refuse to emit) and a lost slot is reported by setup, never recreated.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include "ferry/outbox/migrate.hpp"
#include "ferry/test/env.hpp"
#include "ferry/test/run_command.hpp"
#include "ferry/test/scoped_schema.hpp"
#include "ferry/test/unique_name.hpp"
#include "ferry/wal/slot.hpp"

namespace {

class FerryctlWalTest : public ::testing::Test {
protected:
    void SetUp() override {
        pqxx::connection conn{ferry::test::pg_dsn()};
        (void)ferry::outbox::migrate(conn, _schema.name());
        _config = "/tmp/" + ferry::test::unique_name("ferryctl_wal") + ".yaml";
        std::ofstream f(_config);
        f << "postgres:\n  dsn: ${FERRY_TEST_PG_DSN}\n  schema: " << _schema.name()
          << "\nrelay:\n  source: wal\n  wal_slot: " << _slot << "\n  wal_publication: " << _pub
          << "\n";
    }
    void TearDown() override {
        std::remove(_config.c_str());
        try {
            pqxx::connection conn{ferry::test::pg_dsn()};
            (void)ferry::wal::drop_slot(conn, _slot);
            (void)ferry::wal::drop_publication(conn, _pub);
        } catch (const std::exception& e) {
            ADD_FAILURE() << "cleanup: " << e.what();
        }
    }

    ferry::test::command_result ctl(const std::string& args) {
        return ferry::test::run_command(FERRY_CTL_PATH " --config " + _config + " " + args +
                                        " 2>&1");
    }
    // Whether enqueue_wal may emit now (the producers' slot guard, migration 0071).
    bool can_emit() {
        pqxx::connection conn{ferry::test::pg_dsn()};
        pqxx::work tx{conn};
        try {
            tx.exec("SELECT \"" + _schema.name() + "\".enqueue_wal('t', 'k', 'p'::bytea)");
            return true;
        } catch (const pqxx::sql_error&) {
            return false;
        }
    }

    ferry::test::scoped_schema _schema{"ctlwal"};
    std::string _slot = ferry::test::unique_name("ctl_slot");
    std::string _pub = ferry::test::unique_name("ctl_pub");
    std::string _config;
};

}  // namespace

TEST_F(FerryctlWalTest, SetupIsIdempotentAndLetsProducersEmit) {
    EXPECT_FALSE(can_emit()) << "no slot yet: enqueue_wal must refuse";
    auto r = ctl("wal status");
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("missing"), std::string::npos) << r.output;

    r = ctl("wal setup");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("slot " + _slot + " created"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("publication " + _pub + " created"), std::string::npos) << r.output;
    r = ctl("wal setup");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("slot " + _slot + " exists"), std::string::npos) << r.output;
    EXPECT_TRUE(can_emit());

    r = ctl("wal status --json");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto j = nlohmann::json::parse(r.output);
    EXPECT_EQ(j["slot"]["name"], _slot);
    EXPECT_EQ(j["slot"]["plugin"], "pgoutput");
    EXPECT_EQ(j["slot"]["lost"], false);
    EXPECT_TRUE(j["slot"]["lag_bytes"].is_number());
    EXPECT_TRUE(j["publication_exists"].get<bool>());
    EXPECT_TRUE(j["registered"].get<bool>());
}

TEST_F(FerryctlWalTest, SlotDropUnregistersSoProducersRefuseToEmit) {
    ASSERT_EQ(ctl("wal setup").exit_code, 0);
    ASSERT_TRUE(can_emit());
    auto r = ctl("wal slot drop");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("dropped"), std::string::npos) << r.output;
    EXPECT_FALSE(can_emit()) << "a dropped slot must not leave producers writing into the void";
    r = ctl("wal publication drop");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = ctl("wal slot create");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = ctl("wal slot create");
    EXPECT_NE(r.exit_code, 0) << "creating an existing slot is refused: " << r.output;
    EXPECT_NE(r.output.find(_slot), std::string::npos) << r.output;
}

TEST_F(FerryctlWalTest, RefusesAnInvalidSlotNameNamingIt) {
    const auto r = ctl("wal --slot Bad-Name status");
    EXPECT_NE(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("slot"), std::string::npos) << r.output;
}
