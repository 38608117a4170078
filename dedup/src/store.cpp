#include "ferry/dedup/store.hpp"

namespace ferry::dedup {

std::string_view to_string(claim_status s) noexcept {
    switch (s) {
        case claim_status::fresh:
            return "fresh";
        case claim_status::in_progress:
            return "in_progress";
        case claim_status::done:
            return "done";
    }
    return "unknown";
}

std::vector<claim> store::try_claim_batch(std::string_view group,
                                          const std::vector<std::string>& message_ids,
                                          std::chrono::milliseconds lease) {
    std::vector<claim> out;
    out.reserve(message_ids.size());
    for (const auto& id : message_ids) out.push_back(try_claim(group, id, lease));
    return out;
}

}  // namespace ferry::dedup
