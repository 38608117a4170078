#pragma once
// Shared fixture for the WAL integration and fault tests: a migrated unique schema, an empty
// publication and a pgoutput slot of its own on the harness's PostgreSQL (wal_level=logical),
// plus a reader that drives a replication_stream through a transaction_assembler.
// The slot and publication are dropped when the test ends (a leftover slot would pin WAL).

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <pqxx/pqxx>
#include <string>
#include <thread>
#include <vector>

#include "ferry/common/error.hpp"
#include "ferry/outbox/migrate.hpp"
#include "ferry/test/env.hpp"
#include "ferry/test/scoped_schema.hpp"
#include "ferry/test/unique_name.hpp"
#include "ferry/wal/assembler.hpp"
#include "ferry/wal/slot.hpp"
#include "ferry/wal/stream.hpp"

namespace ferry::wal::test {

using namespace std::chrono_literals;

/// What a reader saw: every committed message in arrival order, and the transaction ends.
struct seen {
    std::vector<committed_message> messages;
    std::vector<rejected_message> rejected;
    std::vector<transaction_end> ends;
};

class WalFixture : public ::testing::Test {
protected:
    void SetUp() override {
        _schema = std::make_unique<ferry::test::scoped_schema>("wal");
        _conn = std::make_unique<pqxx::connection>(ferry::test::pg_dsn());
        (void)outbox::migrate(*_conn, schema());
        _slot = ferry::test::unique_name("wal_slot");
        _publication = ferry::test::unique_name("wal_pub");
        ASSERT_TRUE(ensure_publication(*_conn, _publication));
        (void)create_slot(*_conn, _slot);
        register_slot(*_conn, schema(), _slot);
    }

    void TearDown() override {
        try {
            pqxx::connection c(ferry::test::pg_dsn());
            // The walsender of a closed stream may take a moment to release the slot.
            for (int i = 0; i < 100; ++i) {
                try {
                    (void)drop_slot(c, _slot);
                    break;
                } catch (const ferry::error& e) {
                    if (e.code() != "wal.slot_in_use") throw;
                    std::this_thread::sleep_for(100ms);
                }
            }
            (void)drop_publication(c, _publication);
        } catch (const std::exception& e) {
            ADD_FAILURE() << "cleanup: " << e.what();
        }
    }

    const std::string& schema() const { return _schema->name(); }
    const std::string& slot() const { return _slot; }
    const std::string& publication() const { return _publication; }
    pqxx::connection& conn() { return *_conn; }
    std::string q() const { return "\"" + schema() + "\""; }

    stream_options options() const {
        stream_options o;
        o.dsn = ferry::test::pg_dsn();
        o.slot = _slot;
        o.publication = _publication;
        o.status_interval = 1000ms;
        return o;
    }

    std::unique_ptr<replication_stream> open_stream(lsn from = 0) {
        auto s = std::make_unique<replication_stream>(options());
        s->start(from);
        return s;
    }

    /// Emits `n` messages in one transaction on `c` (each payload "<tag>-<i>", key `key`).
    void emit(pqxx::connection& c, const std::string& key, const std::string& tag, int n = 1) {
        pqxx::work tx{c};
        tx.exec("SELECT " + q() + ".enqueue_wal('orders', " + tx.quote(key) + ", convert_to(" +
                tx.quote(tag) + " || '-' || i, 'UTF8')) FROM generate_series(0, " +
                std::to_string(n - 1) + ") AS i");
        tx.commit();
    }
    void emit(const std::string& key, const std::string& tag, int n = 1) {
        emit(conn(), key, tag, n);
    }

    /// Reads events until `done(seen)` holds or `timeout` passes (then fails the test).
    /// `ack` (default: every transaction end) decides which transaction ends are acknowledged.
    void read_until(replication_stream& s, transaction_assembler& a, seen& out,
                    const std::function<bool(const seen&)>& done,
                    std::chrono::milliseconds timeout = 120s,
                    const std::function<bool(const transaction_end&)>& ack = nullptr) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (!done(out)) {
            ASSERT_LT(std::chrono::steady_clock::now(), deadline)
                << "timed out: " << out.messages.size() << " messages, " << out.ends.size()
                << " transactions seen";
            auto item = s.next(200ms);
            if (!item) continue;
            auto ev = a.feed(item->message());
            if (!ev) continue;
            if (auto* m = std::get_if<committed_message>(&*ev)) {
                out.messages.push_back(std::move(*m));
            } else if (auto* r = std::get_if<rejected_message>(&*ev)) {
                out.rejected.push_back(std::move(*r));
            } else {
                const auto& e = std::get<transaction_end>(*ev);
                out.ends.push_back(e);
                if (!ack || ack(e)) s.acknowledge(e.end_lsn);
            }
        }
    }

    /// Emits a marker message, then reads from the slot's confirmed position until it arrives.
    seen read_to_marker() {
        emit("k", "marker");
        auto s = open_stream();
        transaction_assembler a(schema());
        seen got;
        read_until(*s, a, got, [](const seen& x) {
            for (const auto& m : x.messages)
                if (m.message.payload == "marker-0") return true;
            return false;
        });
        return got;
    }

    /// What a client saw that received `received` transactions and acknowledged the first
    /// `acknowledged` of them (its stream stays open for the caller to kill or close).
    struct partial_read {
        std::unique_ptr<replication_stream> stream;
        seen got;
        lsn acked = 0;
        std::size_t acked_messages = 0;
    };
    partial_read receive_acknowledging_first(std::size_t received, std::size_t acknowledged) {
        partial_read r;
        r.stream = open_stream();
        transaction_assembler a(schema());
        read_until(
            *r.stream, a, r.got, [&](const seen& x) { return x.ends.size() >= received; }, 120s,
            [&](const transaction_end& e) {
                if (r.got.ends.size() > acknowledged) return false;  // ends holds this one
                r.acked = e.end_lsn;
                r.acked_messages += e.messages;
                return true;
            });
        r.stream->send_status();
        wait_confirmed(r.acked);
        return r;
    }

    /// Waits until the slot's confirmed_flush_lsn reaches `target`.
    void wait_confirmed(lsn target, std::chrono::milliseconds timeout = 30s) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            const auto info = inspect_slot(conn(), _slot);
            ASSERT_TRUE(info.has_value());
            if (info->confirmed_flush_lsn.value_or(0) >= target) return;
            ASSERT_LT(std::chrono::steady_clock::now(), deadline)
                << "slot confirmed " << format_lsn(info->confirmed_flush_lsn.value_or(0))
                << ", waiting for " << format_lsn(target);
            std::this_thread::sleep_for(50ms);
        }
    }

    static std::string payload(const committed_message& m) { return m.message.payload; }

private:
    std::unique_ptr<ferry::test::scoped_schema> _schema;
    std::unique_ptr<pqxx::connection> _conn;
    std::string _slot;
    std::string _publication;
};

}  // namespace ferry::wal::test
