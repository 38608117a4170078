#include "encode.hpp"

#include <cstdint>

namespace ferry::outbox::detail {
namespace {

constexpr char k_hex[] = "0123456789abcdef";

void append_json_string(std::string& out, std::string_view s) {
    out += '"';
    for (unsigned char c : s) {
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\t':
                out += "\\t";
                break;
            default:
                if (c < 0x20) {
                    out += "\\u00";
                    out += k_hex[c >> 4];
                    out += k_hex[c & 0x0f];
                } else {
                    out += static_cast<char>(c);
                }
        }
    }
    out += '"';
}

}  // namespace

void append_hex(std::string& out, std::string_view bytes) {
    const auto start = out.size();
    out.resize(start + bytes.size() * 2);
    char* p = out.data() + start;
    for (unsigned char c : bytes) {
        *p++ = k_hex[c >> 4];
        *p++ = k_hex[c & 0x0f];
    }
}

std::string bytea_literal(std::string_view bytes) {
    std::string out;
    out.reserve(2 + bytes.size() * 2);
    out += "\\x";
    append_hex(out, bytes);
    return out;
}

std::string headers_json(const std::map<std::string, std::string>& headers) {
    std::string out = "{";
    bool first = true;
    for (const auto& [name, value] : headers) {
        if (!first) out += ',';
        first = false;
        append_json_string(out, name);
        out += ':';
        append_json_string(out, value);
    }
    out += '}';
    return out;
}

std::string wal_frame_tail(std::string_view schema, std::string_view topic, std::string_view key,
                           std::string_view headers_json, std::string_view payload) {
    std::string out;
    out.reserve(20 + schema.size() + topic.size() + key.size() + headers_json.size() +
                payload.size());
    for (const auto field : {schema, topic, key, headers_json, payload}) {
        // Sizes are bounded far below 4 GiB by the writer's limits (validate_message).
        const auto n = static_cast<std::uint32_t>(field.size());
        out += static_cast<char>((n >> 24) & 0xff);
        out += static_cast<char>((n >> 16) & 0xff);
        out += static_cast<char>((n >> 8) & 0xff);
        out += static_cast<char>(n & 0xff);
        out.append(field);
    }
    return out;
}

}  // namespace ferry::outbox::detail
