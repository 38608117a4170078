#include "ferry/common/error.hpp"

#include <utility>

namespace ferry {

std::string_view to_string(error_kind kind) noexcept {
    switch (kind) {
        case error_kind::retryable:
            return "retryable";
        case error_kind::retry_transaction:
            return "retry_transaction";
        case error_kind::permanent:
            return "permanent";
        case error_kind::in_doubt:
            return "in_doubt";
    }
    return "unknown";
}

error::error(error_kind kind, std::string code, std::string message, std::string field)
    : std::runtime_error(std::move(message)),
      _kind(kind),
      _code(std::move(code)),
      _field(std::move(field)) {}

}  // namespace ferry
