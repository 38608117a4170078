#pragma once
// JSON and text rendering of held messages (expired, parked, half) for ferryctl. Payloads are
// shown as text when they are valid UTF-8, otherwise base64 ("payload_encoding" says which).

#include <nlohmann/json.hpp>
#include <string>

#include "ferry/reconcile/held.hpp"

namespace ferry::cli {

inline bool valid_utf8(const std::string& s) {
    try {
        (void)nlohmann::json(s).dump();  // nlohmann rejects invalid UTF-8 (type_error 316)
        return true;
    } catch (const nlohmann::json::type_error&) {
        return false;
    }
}

inline std::string base64(const std::string& in) {
    static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    std::size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        const unsigned v = (static_cast<unsigned char>(in[i]) << 16) |
                           (static_cast<unsigned char>(in[i + 1]) << 8) |
                           static_cast<unsigned char>(in[i + 2]);
        out += {t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], t[v & 63]};
    }
    if (i < in.size()) {
        unsigned v = static_cast<unsigned char>(in[i]) << 16;
        if (i + 1 < in.size()) v |= static_cast<unsigned char>(in[i + 1]) << 8;
        out += t[v >> 18];
        out += t[(v >> 12) & 63];
        out += i + 1 < in.size() ? t[(v >> 6) & 63] : '=';
        out += '=';
    }
    return out;
}

inline void put_payload(nlohmann::json& j, const std::string& payload, const std::string& headers) {
    const bool text = valid_utf8(payload);
    j["payload_encoding"] = text ? "utf8" : "base64";
    j["payload"] = text ? payload : base64(payload);
    j["payload_bytes"] = payload.size();
    j["headers"] = nlohmann::json::parse(headers, nullptr, false);
}

/// `held_name`: "expired_at" or "parked_at".
inline nlohmann::json to_json(const reconcile::held_message& m, bool with_payload,
                              const char* held_name) {
    nlohmann::json j{
        {"id", m.id},
        {"message_id", m.message_id},
        {"topic", m.topic},
        {"key", m.key},
        {"created_at", m.created_at},
        {"available_at", m.available_at},
        {"expires_at", m.expires_at.empty() ? nlohmann::json() : nlohmann::json(m.expires_at)},
        {held_name, m.held_at}};
    if (!m.error_code.empty() || !m.reason.empty()) {
        j["reason"] = m.reason;
        j["error_code"] = m.error_code;
        j["attempts"] = m.attempts;
        j["held_back"] = m.held_back;
    }
    if (with_payload) {
        put_payload(j, m.payload, m.headers_json);
    } else {
        j["payload_bytes"] = m.payload.size();
    }
    return j;
}

}  // namespace ferry::cli
