#include "envelope.hpp"

namespace ferry::consumer::detail {

std::string canonical_uuid(std::string_view s) {
    if (s.size() != 36) return {};
    std::string out(s);
    for (std::size_t i = 0; i < out.size(); ++i) {
        const char c = out[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-') return {};
            continue;
        }
        if (c >= 'A' && c <= 'F') {
            out[i] = static_cast<char>(c - 'A' + 'a');
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return {};
        }
    }
    return out;
}

envelope parse_envelope(const std::vector<raw_header>& headers, const envelope_limits& limits) {
    envelope e;
    e.headers.reserve(headers.size());
    std::string limit;  // the first header limit the record breaks
    if (headers.size() > limits.max_headers) {
        limit = "header limit: the record has " + std::to_string(headers.size()) +
                " headers, more than max_headers=" + std::to_string(limits.max_headers);
    }
    std::size_t ids = 0;
    const header* id = nullptr;
    for (std::size_t i = 0; i < headers.size(); ++i) {
        const auto& r = headers[i];
        header h;
        h.name = std::string(r.name);
        if (r.value != nullptr) h.value = std::string(r.value, r.size);
        const auto hb = r.name.size() + (r.value != nullptr ? r.size : 0);
        if (limit.empty() && hb > limits.max_header_bytes) {
            limit = "header limit: header #" + std::to_string(i + 1) + " is " + std::to_string(hb) +
                    " bytes (name + value), more than " +
                    "max_header_bytes=" + std::to_string(limits.max_header_bytes);
        }
        e.header_bytes += hb;
        e.headers.push_back(std::move(h));
        if (r.name == id_header) ++ids;
    }
    for (const auto& h : e.headers) {
        if (h.name == id_header) {
            id = &h;
            break;
        }
    }
    if (ids == 1 && id->value) e.message_id = canonical_uuid(*id->value);
    if (!limit.empty()) {
        e.malformed = std::move(limit);
        e.problem = envelope_problem::header_limit;
        e.malformed_code = "consumer.header_limit";
    } else if (ids == 0 || (ids == 1 && !id->value)) {
        e.malformed = "malformed envelope: no ferry-message-id header";
        e.problem = envelope_problem::malformed;
        e.malformed_code = "consumer.malformed";
    } else if (ids > 1) {
        e.malformed = "malformed envelope: " + std::to_string(ids) +
                      " ferry-message-id headers (exactly one is allowed)";
        e.problem = envelope_problem::malformed;
        e.malformed_code = "consumer.malformed";
    } else if (e.message_id.empty()) {
        e.malformed = "malformed envelope: ferry-message-id is not a UUID";
        e.problem = envelope_problem::malformed;
        e.malformed_code = "consumer.malformed";
    }
    return e;
}

}  // namespace ferry::consumer::detail
