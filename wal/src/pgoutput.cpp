#include "ferry/wal/pgoutput.hpp"

#include "bytes.hpp"
#include "ferry/common/error.hpp"

namespace ferry::wal {
namespace {

[[noreturn]] void protocol_error(std::string_view what, const std::string& detail) {
    throw ferry::error(error_kind::permanent, "wal.protocol", std::string(what) + ": " + detail);
}

// A bounds-checked reader that throws naming the message and field.
class checked {
public:
    checked(std::string_view data, std::string_view what) : _r(data), _what(what) {}

    void need(std::size_t n, const char* field) {
        if (!_r.has(n)) {
            protocol_error(_what, std::string("truncated: ") + field + " needs " +
                                      std::to_string(n) + " bytes, " + std::to_string(_r.left()) +
                                      " left");
        }
    }
    std::uint8_t u8(const char* field) {
        need(1, field);
        return _r.u8();
    }
    std::uint16_t u16(const char* field) {
        need(2, field);
        return _r.u16();
    }
    std::uint32_t u32(const char* field) {
        need(4, field);
        return _r.u32();
    }
    std::uint64_t u64(const char* field) {
        need(8, field);
        return _r.u64();
    }
    std::string_view bytes(std::size_t n, const char* field) {
        need(n, field);
        return _r.bytes(n);
    }
    std::string_view cstring(const char* field) {
        std::string_view s;
        if (!_r.cstring(s)) {
            protocol_error(_what,
                           std::string("truncated: ") + field + " is not terminated by a NUL byte");
        }
        return s;
    }
    void end() {
        if (_r.left() != 0) {
            protocol_error(_what,
                           std::to_string(_r.left()) + " unexpected bytes after the message");
        }
    }
    [[nodiscard]] std::size_t left() const noexcept { return _r.left(); }

private:
    detail::reader _r;
    std::string_view _what;
};

tuple_data read_tuple(checked& c) {
    const auto n = c.u16("tuple column count");
    tuple_data out;
    // Each column takes at least one byte: never reserve more than the input could hold.
    if (n > c.left()) {
        c.need(n, "tuple columns");
    }
    out.reserve(n);
    for (std::uint16_t i = 0; i < n; ++i) {
        tuple_value v;
        const auto k = c.u8("tuple column kind");
        switch (k) {
            case 'n':
                v.type = tuple_value::kind::null;
                break;
            case 'u':
                v.type = tuple_value::kind::unchanged_toast;
                break;
            case 't':
            case 'b': {
                v.type = k == 't' ? tuple_value::kind::text : tuple_value::kind::binary;
                const auto len = c.u32("tuple column length");
                v.data = c.bytes(len, "tuple column value");
                break;
            }
            default:
                throw ferry::error(error_kind::permanent, "wal.protocol",
                                   "tuple data: unknown column kind byte " + std::to_string(k) +
                                       " in column " + std::to_string(i));
        }
        out.push_back(v);
    }
    return out;
}

}  // namespace

copy_message parse_copy_data(std::string_view bytes) {
    if (bytes.empty()) protocol_error("CopyData", "empty message");
    switch (bytes[0]) {
        case 'w': {
            checked c(bytes.substr(1), "XLogData");
            xlog_data x;
            x.wal_start = c.u64("wal_start");
            x.wal_end = c.u64("wal_end");
            x.send_time = static_cast<pg_timestamp>(c.u64("send_time"));
            x.data = bytes.substr(25);
            if (x.data.empty()) protocol_error("XLogData", "no payload after the header");
            return x;
        }
        case 'k': {
            checked c(bytes.substr(1), "primary keepalive");
            primary_keepalive k;
            k.wal_end = c.u64("wal_end");
            k.send_time = static_cast<pg_timestamp>(c.u64("send_time"));
            k.reply_requested = c.u8("reply_requested") != 0;
            c.end();
            return k;
        }
        default:
            protocol_error("CopyData", "unknown message type byte " +
                                           std::to_string(static_cast<unsigned char>(bytes[0])) +
                                           " (expected 'w' XLogData or 'k' keepalive)");
    }
}

std::string encode_standby_status(lsn written, lsn flushed, lsn applied, pg_timestamp now,
                                  bool reply_requested) {
    std::string out;
    out.reserve(34);
    detail::put_u8(out, 'r');
    detail::put_u64(out, written);
    detail::put_u64(out, flushed);
    detail::put_u64(out, applied);
    detail::put_u64(out, static_cast<std::uint64_t>(now));
    detail::put_u8(out, reply_requested ? 1 : 0);
    return out;
}

pgoutput_message parse_pgoutput(std::string_view bytes) {
    if (bytes.empty()) protocol_error("pgoutput", "empty message");
    const char type = bytes[0];
    const auto body = bytes.substr(1);
    switch (type) {
        case 'B': {
            checked c(body, "Begin");
            begin_message m;
            m.final_lsn = c.u64("final_lsn");
            m.commit_time = static_cast<pg_timestamp>(c.u64("commit_time"));
            m.xid = c.u32("xid");
            c.end();
            return m;
        }
        case 'C': {
            checked c(body, "Commit");
            commit_message m;
            m.flags = c.u8("flags");
            m.commit_lsn = c.u64("commit_lsn");
            m.end_lsn = c.u64("end_lsn");
            m.commit_time = static_cast<pg_timestamp>(c.u64("commit_time"));
            c.end();
            return m;
        }
        case 'M': {
            checked c(body, "Message");
            logical_message m;
            const auto flags = c.u8("flags");
            if (flags > 1) {
                protocol_error("Message", "unknown flags " + std::to_string(flags) +
                                              " (only bit 0, transactional, is defined)");
            }
            m.transactional = flags == 1;
            m.message_lsn = c.u64("lsn");
            m.prefix = c.cstring("prefix");
            const auto len = c.u32("content length");
            m.content = c.bytes(len, "content");
            c.end();
            return m;
        }
        case 'R': {
            checked c(body, "Relation");
            relation_message m;
            m.relation_id = c.u32("relation_id");
            m.nspname = c.cstring("namespace");
            m.relname = c.cstring("relation name");
            m.replica_identity = static_cast<char>(c.u8("replica_identity"));
            const auto n = c.u16("column count");
            if (n > c.left()) c.need(n, "columns");
            m.columns.reserve(n);
            for (std::uint16_t i = 0; i < n; ++i) {
                relation_column col;
                col.part_of_key = (c.u8("column flags") & 1) != 0;
                col.name = c.cstring("column name");
                col.type_oid = c.u32("column type oid");
                col.type_modifier = static_cast<std::int32_t>(c.u32("column type modifier"));
                m.columns.push_back(std::move(col));
            }
            c.end();
            return m;
        }
        case 'I': {
            checked c(body, "Insert");
            insert_message m;
            m.relation_id = c.u32("relation_id");
            const auto n = c.u8("tuple marker");
            if (n != 'N') {
                protocol_error("Insert",
                               "expected 'N' before the new tuple, got byte " + std::to_string(n));
            }
            m.values = read_tuple(c);
            c.end();
            return m;
        }
        case 'U': {
            checked c(body, "Update");
            update_message m;
            m.relation_id = c.u32("relation_id");
            auto marker = c.u8("tuple marker");
            if (marker == 'K' || marker == 'O') {
                m.old_kind = static_cast<char>(marker);
                m.old_values = read_tuple(c);
                marker = c.u8("tuple marker");
            }
            if (marker != 'N') {
                protocol_error("Update", "expected 'N' before the new tuple, got byte " +
                                             std::to_string(marker));
            }
            m.new_values = read_tuple(c);
            c.end();
            return m;
        }
        case 'D': {
            checked c(body, "Delete");
            delete_message m;
            m.relation_id = c.u32("relation_id");
            const auto marker = c.u8("tuple marker");
            if (marker != 'K' && marker != 'O') {
                protocol_error("Delete", "expected 'K' or 'O' before the old tuple, got byte " +
                                             std::to_string(marker));
            }
            m.old_kind = static_cast<char>(marker);
            m.old_values = read_tuple(c);
            c.end();
            return m;
        }
        case 'T': {
            checked c(body, "Truncate");
            truncate_message m;
            const auto n = c.u32("relation count");
            m.options = c.u8("options");
            if (n > c.left() / 4) c.need(static_cast<std::size_t>(n) * 4, "relation ids");
            m.relation_ids.reserve(n);
            for (std::uint32_t i = 0; i < n; ++i) m.relation_ids.push_back(c.u32("relation id"));
            c.end();
            return m;
        }
        case 'O': {
            checked c(body, "Origin");
            origin_message m;
            m.origin_lsn = c.u64("origin_lsn");
            m.name = c.cstring("origin name");
            c.end();
            return m;
        }
        case 'Y': {
            checked c(body, "Type");
            type_message m;
            m.type_oid = c.u32("type oid");
            m.nspname = c.cstring("namespace");
            m.name = c.cstring("type name");
            c.end();
            return m;
        }
        case 'S':
        case 'E':
        case 'c':
        case 'A':
        case 'P':
        case 'K':
        case 'r':
        case 'b':
            protocol_error("pgoutput", std::string("message type '") + type +
                                           "' belongs to a later proto_version (streaming or "
                                           "two-phase); Ferry asks for proto_version 1");
        default:
            protocol_error("pgoutput", "unknown message type byte " +
                                           std::to_string(static_cast<unsigned char>(type)));
    }
}

std::string_view message_name(const pgoutput_message& m) noexcept {
    static constexpr std::string_view names[] = {"Begin",  "Commit", "Message", "Relation",
                                                 "Insert", "Update", "Delete",  "Truncate",
                                                 "Origin", "Type"};
    return names[m.index()];
}

}  // namespace ferry::wal
