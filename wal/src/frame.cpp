#include "ferry/wal/frame.hpp"

#include <array>
#include <limits>

#include "bytes.hpp"
#include "ferry/common/error.hpp"

namespace ferry::wal {
namespace {

using detail::put_u32;
using detail::put_u64;
using detail::put_u8;

void put_field(std::string& out, std::string_view value, const char* name) {
    if (value.size() > std::numeric_limits<std::uint32_t>::max()) {
        throw ferry::error(error_kind::permanent, "wal.frame_too_large",
                           std::string("encode_frame: ") + name + ": " +
                               std::to_string(value.size()) + " bytes does not fit a frame field",
                           name);
    }
    put_u32(out, static_cast<std::uint32_t>(value.size()));
    out.append(value);
}

decoded_frame fail(std::string field, std::string error) {
    decoded_frame d;
    d.field = std::move(field);
    d.error = std::move(error);
    return d;
}

}  // namespace

std::string encode_frame(const wal_message& m) {
    std::string out;
    out.reserve(frame_fixed_size + 20 + m.schema.size() + m.topic.size() + m.key.size() +
                m.headers_json.size() + m.payload.size());
    put_u8(out, frame_version);
    put_u8(out, m.expires_at ? 1 : 0);
    for (auto b : m.id.bytes()) put_u8(out, b);
    put_u64(out, static_cast<std::uint64_t>(m.created_at.time_since_epoch().count()));
    put_u64(out, m.expires_at ? static_cast<std::uint64_t>(m.expires_at->time_since_epoch().count())
                              : 0);
    put_field(out, m.schema, "schema");
    put_field(out, m.topic, "topic");
    put_field(out, m.key, "key");
    put_field(out, m.headers_json, "headers");
    put_field(out, m.payload, "payload");
    return out;
}

decoded_frame decode_frame(std::string_view frame) {
    detail::reader r(frame);
    if (!r.has(1)) return fail("version", "empty frame: no version byte");
    const auto version = r.u8();
    if (version != frame_version) {
        return fail("version", "unsupported frame version " + std::to_string(version) +
                                   " (this build reads version " + std::to_string(frame_version) +
                                   ")");
    }
    if (!r.has(frame_fixed_size - 1)) {
        return fail("header", "frame truncated: the fixed header needs " +
                                  std::to_string(frame_fixed_size - 1) +
                                  " bytes after the version, " + std::to_string(r.left()) +
                                  " left");
    }
    const auto flags = r.u8();
    if ((flags & ~1u) != 0) {
        return fail("flags", "unknown flag bits in flags byte " + std::to_string(flags) +
                                 " (version 1 defines bit 0 only)");
    }
    wal_message m;
    std::array<std::uint8_t, 16> id{};
    for (auto& b : id) b = r.u8();
    m.id = outbox::message_id(id);
    const auto created = static_cast<std::int64_t>(r.u64());
    const auto expires = static_cast<std::int64_t>(r.u64());
    m.created_at = micros_time(std::chrono::microseconds(created));
    if (flags & 1u) {
        m.expires_at = micros_time(std::chrono::microseconds(expires));
    } else if (expires != 0) {
        return fail("expires_at", "expires_at is set but the flags say there is none");
    }
    if (m.id.is_nil()) return fail("message_id", "message_id is the nil UUID");

    struct field_ref {
        const char* name;
        std::string* target;
    };
    const std::array<field_ref, 5> fields = {{{"schema", &m.schema},
                                              {"topic", &m.topic},
                                              {"key", &m.key},
                                              {"headers", &m.headers_json},
                                              {"payload", &m.payload}}};
    for (const auto& f : fields) {
        if (!r.has(4)) {
            return fail(f.name, std::string("frame truncated: ") + f.name +
                                    " length needs 4 bytes, " + std::to_string(r.left()) + " left");
        }
        const auto n = r.u32();
        if (!r.has(n)) {
            return fail(f.name, std::string("frame truncated: ") + f.name + " needs " +
                                    std::to_string(n) + " bytes, " + std::to_string(r.left()) +
                                    " left");
        }
        f.target->assign(r.bytes(n));
    }
    if (r.left() != 0) {
        return fail("trailing bytes",
                    std::to_string(r.left()) + " bytes after the payload (a frame ends with it)");
    }
    if (m.schema.empty()) return fail("schema", "schema is empty");
    if (m.topic.empty()) return fail("topic", "topic is empty");
    if (m.headers_json.empty() || m.headers_json.front() != '{' || m.headers_json.back() != '}') {
        return fail("headers", "headers are not a JSON object");
    }
    decoded_frame d;
    d.message = std::move(m);
    return d;
}

}  // namespace ferry::wal
