#pragma once
// The one exception type Ferry throws at API and start-up boundaries.
//
// Every error says what the caller should do next, in the manner of absl::StatusCode:
//   retryable          - repeat the same call later (broker down, connection refused);
//   retry_transaction  - the surrounding transaction is dead; run it again from the start
//                        (serialization failure, deadlock, connection lost mid-transaction);
//   permanent          - nothing will change until the input or configuration is fixed;
//   in_doubt           - the outcome is unknown (connection lost during COMMIT): check before
//                        repeating.
// `code` is a stable, machine-readable identifier ("outbox.payload_too_large"); `field` names the
// offending input field or config key when there is one. Messages never contain secrets.
//
// Thread-safety: immutable after construction; safe to share.

#include <stdexcept>
#include <string>
#include <string_view>

namespace ferry {

enum class error_kind { retryable, retry_transaction, permanent, in_doubt };

[[nodiscard]] std::string_view to_string(error_kind kind) noexcept;

class error : public std::runtime_error {
public:
    error(error_kind kind, std::string code, std::string message, std::string field = {});

    [[nodiscard]] error_kind kind() const noexcept { return _kind; }
    [[nodiscard]] const std::string& code() const noexcept { return _code; }
    [[nodiscard]] const std::string& field() const noexcept { return _field; }
    /// True when repeating the call or the transaction may succeed.
    [[nodiscard]] bool is_retryable() const noexcept {
        return _kind == error_kind::retryable || _kind == error_kind::retry_transaction;
    }

private:
    error_kind _kind;
    std::string _code;
    std::string _field;
};

}  // namespace ferry
