#include "ferry/dedup/inbox.hpp"

#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "ferry/common/sql_ident.hpp"
#include "ferry/internal/pq.hpp"

namespace ferry::dedup {

inbox::inbox(std::string schema)
    : _schema(std::move(schema)), _table(quote_identifier(_schema, "schema") + ".inbox") {}

inbox_result inbox::insert(pqxx::work& tx, std::string_view group, std::string_view message_id,
                           std::chrono::milliseconds lock_wait) const {
    try {
        if (lock_wait.count() > 0) {
            tx.exec("SET LOCAL lock_timeout = " + std::to_string(lock_wait.count()));
        }
        const auto r = internal::exec_cached(
            tx, "ferry_inbox_insert_" + _schema,
            "INSERT INTO " + _table +
                " (group_id, message_id) VALUES ($1, $2::uuid) ON CONFLICT DO NOTHING",
            std::string(group), std::string(message_id));
        if (lock_wait.count() > 0) tx.exec("SET LOCAL lock_timeout = 0");
        return r.affected_rows() == 1 ? inbox_result::inserted : inbox_result::duplicate;
    } catch (const pqxx::sql_error& e) {
        if (e.sqlstate() == "55P03") return inbox_result::in_progress;  // lock_not_available
        try {
            throw;
        } catch (...) {
            internal::rethrow_translated("inbox insert", "dedup");
        }
    } catch (...) {
        internal::rethrow_translated("inbox insert", "dedup");
    }
}

namespace {

// A PostgreSQL array literal of canonical UUIDs (only hex digits and dashes: no quoting needed;
// anything else is refused so it can never reach the SQL text unchecked).
std::string uuid_array(const std::vector<std::string>& ids) {
    std::string out = "{";
    for (std::size_t i = 0; i < ids.size(); ++i) {
        for (char c : ids[i]) {
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
                  c == '-')) {
                throw ferry::error(error_kind::permanent, "dedup.message_id",
                                   "inbox: message id is not a UUID", "message_id");
            }
        }
        if (i > 0) out += ',';
        out += ids[i];
    }
    return out + "}";
}

}  // namespace

std::vector<bool> inbox::insert_batch(pqxx::work& tx, std::string_view group,
                                      const std::vector<std::string>& message_ids,
                                      std::chrono::milliseconds lock_wait) const {
    std::vector<bool> out(message_ids.size(), false);
    if (message_ids.empty()) return out;
    try {
        if (lock_wait.count() > 0) {
            tx.exec("SET LOCAL lock_timeout = " + std::to_string(lock_wait.count()));
        }
        const auto r = internal::exec_cached(
            tx, "ferry_inbox_insert_batch_" + _schema,
            "INSERT INTO " + _table +
                " (group_id, message_id) SELECT $1, u FROM unnest($2::uuid[]) AS u "
                "ON CONFLICT DO NOTHING RETURNING message_id::text",
            std::string(group), uuid_array(message_ids));
        if (lock_wait.count() > 0) tx.exec("SET LOCAL lock_timeout = 0");
        std::set<std::string> inserted;
        for (const auto& row : r) inserted.insert(row[0].as<std::string>());
        for (std::size_t i = 0; i < message_ids.size(); ++i) {
            // The first position of an id takes the insert; repeats are duplicates.
            out[i] = inserted.erase(message_ids[i]) == 1;
        }
        return out;
    } catch (const pqxx::sql_error& e) {
        if (e.sqlstate() == "55P03") {
            throw ferry::error(error_kind::retryable, "dedup.inbox_in_progress",
                               "inbox batch insert: another transaction holds a row of this batch");
        }
        try {
            throw;
        } catch (...) {
            internal::rethrow_translated("inbox batch insert", "dedup");
        }
    } catch (...) {
        internal::rethrow_translated("inbox batch insert", "dedup");
    }
}

void inbox::remove_batch(pqxx::work& tx, std::string_view group,
                         const std::vector<std::string>& message_ids) const {
    if (message_ids.empty()) return;
    try {
        (void)internal::exec(
            tx, "DELETE FROM " + _table + " WHERE group_id = $1 AND message_id = ANY($2::uuid[])",
            std::string(group), uuid_array(message_ids));
    } catch (...) {
        internal::rethrow_translated("inbox batch remove", "dedup");
    }
}

bool inbox::contains(pqxx::transaction_base& tx, std::string_view group,
                     std::string_view message_id) const {
    try {
        return !internal::exec(
                    tx,
                    "SELECT 1 FROM " + _table + " WHERE group_id = $1 AND message_id = $2::uuid",
                    std::string(group), std::string(message_id))
                    .empty();
    } catch (...) {
        internal::rethrow_translated("inbox contains", "dedup");
    }
}

long long inbox::prune(pqxx::transaction_base& tx, std::chrono::milliseconds older_than,
                       long long limit) const {
    try {
        const auto r = internal::exec(
            tx,
            "DELETE FROM " + _table + " WHERE ctid IN (SELECT ctid FROM " + _table +
                " WHERE processed_at < now() - $1::bigint * interval '1 millisecond' LIMIT $2)",
            static_cast<long long>(older_than.count()), limit);
        return static_cast<long long>(r.affected_rows());
    } catch (...) {
        internal::rethrow_translated("inbox prune", "dedup");
    }
}

// ---------------------------------------------------------------------------------------------

struct inbox_store::impl {
    inbox_store_options o;
    inbox box;
    std::mutex mutex;
    std::vector<std::unique_ptr<pqxx::connection>> idle;
    struct open_claim {
        std::unique_ptr<pqxx::connection> conn;
        std::unique_ptr<pqxx::work> tx;
    };
    std::map<std::string, open_claim> open;  // token -> its transaction
    std::atomic<unsigned long long> counter{0};

    explicit impl(inbox_store_options opts) : o(std::move(opts)), box(o.schema) {}

    std::unique_ptr<pqxx::connection> get_conn() {
        {
            std::lock_guard lock(mutex);
            if (!idle.empty()) {
                auto c = std::move(idle.back());
                idle.pop_back();
                return c;
            }
        }
        try {
            return std::make_unique<pqxx::connection>(internal::with_connect_timeout(
                o.dsn, static_cast<long>(o.connect_timeout.count() / 1000)));
        } catch (const std::exception& e) {
            throw ferry::error(error_kind::retryable, "dedup.connect",
                               std::string("cannot connect to PostgreSQL: ") + e.what(),
                               "postgres.dsn");
        }
    }
    void put_conn(std::unique_ptr<pqxx::connection> c) {
        if (!c || !c->is_open()) return;
        std::lock_guard lock(mutex);
        idle.push_back(std::move(c));
    }
    std::optional<open_claim> take(const std::string& token) {
        std::lock_guard lock(mutex);
        auto it = open.find(token);
        if (it == open.end()) return std::nullopt;
        auto oc = std::move(it->second);
        open.erase(it);
        return oc;
    }
};

inbox_store::inbox_store(inbox_store_options options)
    : _impl(std::make_unique<impl>(std::move(options))) {}

inbox_store::~inbox_store() {
    std::lock_guard lock(_impl->mutex);
    for (auto& [token, oc] : _impl->open) {
        try {
            oc.tx->abort();
        } catch (...) {
        }
    }
}

claim inbox_store::try_claim(std::string_view group, std::string_view message_id,
                             std::chrono::milliseconds) {
    claim c;
    c.group = std::string(group);
    c.message_id = std::string(message_id);
    auto conn = _impl->get_conn();
    impl::open_claim oc;
    try {
        auto tx = std::make_unique<pqxx::work>(*conn);
        const auto r = _impl->box.insert(*tx, group, message_id, _impl->o.lock_wait);
        if (r != inbox_result::inserted) {
            tx->abort();
            tx.reset();
            _impl->put_conn(std::move(conn));
            c.status =
                r == inbox_result::duplicate ? claim_status::done : claim_status::in_progress;
            return c;
        }
        oc.tx = std::move(tx);
    } catch (const pqxx::broken_connection&) {
        internal::rethrow_translated("inbox claim", "dedup");
    }
    c.status = claim_status::fresh;
    c.token = "tx:" + std::to_string(_impl->counter.fetch_add(1));
    oc.conn = std::move(conn);
    std::lock_guard lock(_impl->mutex);
    _impl->open.emplace(c.token, std::move(oc));
    return c;
}

complete_status inbox_store::complete(const claim& c) {
    auto oc = _impl->take(c.token);
    if (!oc) return complete_status::lease_lost;
    try {
        oc->tx->commit();
    } catch (...) {
        internal::rethrow_translated("inbox complete", "dedup");
    }
    oc->tx.reset();
    _impl->put_conn(std::move(oc->conn));
    return complete_status::completed;
}

bool inbox_store::release(const claim& c) {
    auto oc = _impl->take(c.token);
    if (!oc) return false;
    try {
        oc->tx->abort();
    } catch (...) {
    }
    oc->tx.reset();
    _impl->put_conn(std::move(oc->conn));
    return true;
}

}  // namespace ferry::dedup
