#pragma once
// Private: one-dimensional arrays in PostgreSQL's binary wire format, for statements sent with
// binary parameters (binary_session::exec_binary). The server then reads each element with the
// type's receive function instead of parsing a text literal (array_in, uuid_in, int8in): for
// the WAL source's ledger row of 1000 messages, the text form cost the server more than the
// insert itself (ADR 0070, twenty-first session).
//
// The format (PostgreSQL's array_recv): int32 number of dimensions (1, or 0 for an empty
// array), int32 "has nulls" flag, uint32 element type OID, then per dimension int32 length and
// int32 lower bound (1), then per element int32 byte length (-1 for NULL) and the bytes. Every
// integer is in network byte order.

#include <cstdint>
#include <string>
#include <string_view>

namespace ferry::relay::detail {

/// Element type OIDs (pg_type.oid, fixed for built-in types).
enum class pg_oid : std::uint32_t {
    int4 = 23,
    int8 = 20,
    text = 25,
    timestamptz = 1184,
    uuid = 2950,
};

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 00:00:00 UTC): a binary
/// timestamptz is microseconds since the latter.
inline constexpr std::int64_t k_pg_epoch_unix_us = 946'684'800'000'000;

class binary_array {
public:
    explicit binary_array(pg_oid element, std::size_t expected_bytes = 0) : _oid(element) {
        _buf.reserve(20 + expected_bytes);
        put32(1);  // dimensions (rewritten as 0 when empty)
        put32(0);  // has nulls (rewritten)
        put32(static_cast<std::uint32_t>(element));
        put32(0);  // length (rewritten)
        put32(1);  // lower bound
    }

    void add_bytes(std::string_view bytes) {
        put32(static_cast<std::uint32_t>(bytes.size()));
        _buf.append(bytes);
        ++_count;
    }
    void add_int4(std::int32_t v) {
        put32(4);
        put32(static_cast<std::uint32_t>(v));
        ++_count;
    }
    void add_int8(std::int64_t v) {
        put32(8);
        put64(static_cast<std::uint64_t>(v));
        ++_count;
    }
    /// A timestamptz from microseconds since the Unix epoch, exactly.
    void add_timestamptz_unix_us(std::int64_t unix_us) { add_int8(unix_us - k_pg_epoch_unix_us); }
    void add_null() {
        put32(0xffffffffu);
        _has_nulls = true;
        ++_count;
    }

    [[nodiscard]] std::size_t size() const noexcept { return _count; }
    [[nodiscard]] pg_oid element() const noexcept { return _oid; }

    /// The finished parameter value. The builder is spent afterwards.
    [[nodiscard]] std::string take() && {
        if (_count == 0) {
            // An empty array has no dimensions: the 12-byte header alone.
            _buf.resize(12);
            write32(0, 0);
            write32(4, 0);
            return std::move(_buf);
        }
        write32(4, _has_nulls ? 1 : 0);
        write32(12, static_cast<std::uint32_t>(_count));
        return std::move(_buf);
    }

private:
    void put32(std::uint32_t v) {
        const char b[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                           static_cast<char>(v >> 8), static_cast<char>(v)};
        _buf.append(b, 4);
    }
    void put64(std::uint64_t v) {
        put32(static_cast<std::uint32_t>(v >> 32));
        put32(static_cast<std::uint32_t>(v));
    }
    void write32(std::size_t at, std::uint32_t v) {
        _buf[at] = static_cast<char>(v >> 24);
        _buf[at + 1] = static_cast<char>(v >> 16);
        _buf[at + 2] = static_cast<char>(v >> 8);
        _buf[at + 3] = static_cast<char>(v);
    }

    pg_oid _oid;
    std::string _buf;
    std::size_t _count = 0;
    bool _has_nulls = false;
};

}  // namespace ferry::relay::detail
