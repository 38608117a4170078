#include "ferry/wal/assembler.hpp"

#include <utility>

#include "ferry/common/error.hpp"

namespace ferry::wal {
namespace {

[[noreturn]] void protocol_error(const std::string& detail) {
    throw ferry::error(error_kind::permanent, "wal.protocol", "transaction stream: " + detail);
}

}  // namespace

transaction_assembler::transaction_assembler(std::string schema) : _schema(std::move(schema)) {
    if (_schema.empty()) {
        throw ferry::error(error_kind::permanent, "wal.invalid_options",
                           "transaction_assembler: schema must not be empty", "schema");
    }
}

std::optional<wal_event> transaction_assembler::feed(const pgoutput_message& m) {
    if (const auto* b = std::get_if<begin_message>(&m)) {
        if (_in_tx) {
            protocol_error("Begin of xid " + std::to_string(b->xid) + " inside transaction " +
                           std::to_string(_begin.xid) + " (no Commit in between)");
        }
        _in_tx = true;
        _begin = *b;
        _tx_messages = 0;
        _tx_rejected = 0;
        return std::nullopt;
    }
    if (const auto* c = std::get_if<commit_message>(&m)) {
        if (!_in_tx) protocol_error("Commit at " + format_lsn(c->commit_lsn) + " without Begin");
        if (c->commit_lsn != _begin.final_lsn) {
            protocol_error("Commit at " + format_lsn(c->commit_lsn) +
                           " does not match its Begin (" + format_lsn(_begin.final_lsn) + ")");
        }
        _in_tx = false;
        ++_stats.transactions;
        transaction_end e;
        e.commit_lsn = c->commit_lsn;
        e.end_lsn = c->end_lsn;
        e.xid = _begin.xid;
        e.commit_time = c->commit_time;
        e.messages = _tx_messages;
        e.rejected = _tx_rejected;
        return e;
    }
    if (const auto* lm = std::get_if<logical_message>(&m)) return on_message(*lm);
    if (std::holds_alternative<insert_message>(m) || std::holds_alternative<update_message>(m) ||
        std::holds_alternative<delete_message>(m) || std::holds_alternative<truncate_message>(m)) {
        if (!_in_tx) protocol_error(std::string(message_name(m)) + " outside a transaction");
        ++_stats.row_changes;
        return std::nullopt;
    }
    // Relation, Type, Origin: metadata that message mode does not need.
    return std::nullopt;
}

std::optional<wal_event> transaction_assembler::on_message(const logical_message& m) {
    const bool ours = m.prefix == message_prefix;
    if (!ours && m.prefix.substr(0, message_prefix.size()) != message_prefix) {
        ++_stats.foreign_prefix;
        return std::nullopt;
    }
    if (m.transactional && !_in_tx) {
        protocol_error("transactional Message at " + format_lsn(m.message_lsn) +
                       " outside a transaction");
    }
    auto reject = [&](std::string field, std::string reason) -> wal_event {
        rejected_message r;
        r.commit_lsn = m.transactional ? _begin.final_lsn : m.message_lsn;
        r.message_lsn = m.message_lsn;
        r.xid = m.transactional ? _begin.xid : 0;
        r.prefix = std::string(m.prefix);
        r.content = std::string(m.content);
        r.field = std::move(field);
        r.reason = std::move(reason);
        ++_stats.rejected;
        if (m.transactional) ++_tx_rejected;
        return r;
    };
    if (!ours) {
        return reject("prefix", "unknown message prefix \"" + std::string(m.prefix) +
                                    "\" (Ferry emits \"" + std::string(message_prefix) + "\")");
    }
    auto decoded = decode_frame(m.content);
    if (decoded.ok() && decoded.message->schema != _schema) {
        ++_stats.other_schema;
        return std::nullopt;
    }
    if (!m.transactional) {
        return reject("transactional",
                      "a Ferry message emitted with transactional = false is not bound to a "
                      "commit; Ferry publishes only transactional messages");
    }
    if (!decoded.ok()) return reject(decoded.field, "malformed frame: " + decoded.error);
    committed_message c;
    c.commit_lsn = _begin.final_lsn;
    c.message_lsn = m.message_lsn;
    c.xid = _begin.xid;
    c.commit_time = _begin.commit_time;
    c.message = std::move(*decoded.message);
    ++_stats.messages;
    ++_tx_messages;
    return c;
}

}  // namespace ferry::wal
