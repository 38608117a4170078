#include "validate.hpp"

#include <string>

#include "ferry/common/error.hpp"

namespace ferry::outbox::detail {
namespace {

[[noreturn]] void reject(std::string code, std::string field, std::string message) {
    throw ferry::error(error_kind::permanent, "outbox." + code, field + ": " + message, field);
}

// A printable, bounded rendition of user input for error messages.
std::string shown(std::string_view s) {
    constexpr std::size_t limit = 60;
    std::string out;
    for (unsigned char c : s.substr(0, limit)) {
        if (c < 0x20 || c == 0x7f) {
            out += '?';
        } else {
            out += static_cast<char>(c);
        }
    }
    if (s.size() > limit) out += "...";
    return out;
}

}  // namespace

bool is_valid_utf8(std::string_view s) noexcept {
    std::size_t i = 0;
    const auto n = s.size();
    while (i < n) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
            ++i;
            continue;
        }
        int len;
        std::uint32_t cp;
        if ((c & 0xe0) == 0xc0) {
            len = 2;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + static_cast<std::size_t>(len) > n) return false;
        for (int k = 1; k < len; ++k) {
            const auto cc = static_cast<unsigned char>(s[i + static_cast<std::size_t>(k)]);
            if ((cc & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (cc & 0x3f);
        }
        // Overlong forms, surrogates and values past U+10FFFF are invalid.
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) {
            return false;
        }
        i += static_cast<std::size_t>(len);
    }
    return true;
}

void validate_topic(std::string_view topic, std::string_view field_in) {
    const std::string field(field_in);
    if (topic.empty()) reject("invalid_topic", field, "must not be empty");
    if (topic.size() > 249) {
        reject("invalid_topic", field,
               std::to_string(topic.size()) + " characters is over Kafka's limit of 249");
    }
    if (topic == "." || topic == "..") {
        reject("invalid_topic", field, "\"" + std::string(topic) + "\" is not allowed by Kafka");
    }
    for (char c : topic) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
        if (!ok) {
            reject("invalid_topic", field,
                   "\"" + shown(topic) +
                       "\" has characters Kafka refuses (allowed: A-Z a-z 0-9 . _ -)");
        }
    }
}

void validate_message(const message& m, const writer_options& o) {
    validate_topic(m.topic, "topic");

    if (m.key.size() > o.max_key_bytes) {
        reject("key_too_large", "key",
               std::to_string(m.key.size()) + " bytes is over the limit of " +
                   std::to_string(o.max_key_bytes) + " bytes");
    }
    if (m.key.find('\0') != std::string::npos || !is_valid_utf8(m.key)) {
        reject("invalid_key", "key", "must be valid UTF-8 text without NUL bytes");
    }

    if (m.payload.size() > o.max_payload_bytes) {
        reject("payload_too_large", "payload",
               std::to_string(m.payload.size()) + " bytes is over the limit of " +
                   std::to_string(o.max_payload_bytes) + " bytes (outbox.max_payload_bytes)");
    }

    std::size_t header_bytes = 0;
    for (const auto& [name, value] : m.headers) {
        const std::string field = "headers[" + shown(name) + "]";
        if (name.empty()) reject("invalid_header", "headers", "a header name is empty");
        if (name.size() >= 6 && name.compare(0, 6, "ferry-") == 0) {
            reject("invalid_header", field,
                   "names starting with \"ferry-\" are reserved for Ferry's own headers");
        }
        if (name.find('\0') != std::string::npos || !is_valid_utf8(name) ||
            value.find('\0') != std::string::npos || !is_valid_utf8(value)) {
            reject("invalid_header", field,
                   "header names and values must be valid UTF-8 text without NUL bytes");
        }
        header_bytes += name.size() + value.size();
    }
    if (header_bytes > o.max_headers_bytes) {
        reject("headers_too_large", "headers",
               std::to_string(header_bytes) + " bytes is over the limit of " +
                   std::to_string(o.max_headers_bytes) + " bytes");
    }

    if (m.deliver_after && m.deliver_after->count() < 0) {
        reject("invalid_delay", "deliver_after", "must not be negative");
    }
    if (m.expires_after) {
        if (m.expires_after->count() <= 0) {
            reject("invalid_expiry", "expires_after", "must be positive");
        }
        if (m.deliver_after && *m.deliver_after >= *m.expires_after) {
            reject("invalid_expiry", "expires_after",
                   "must be later than deliver_after, or the message could never be delivered");
        }
    }
}

}  // namespace ferry::outbox::detail
