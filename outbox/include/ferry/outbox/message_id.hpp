#pragma once
// UUIDv7 message identifiers (RFC 9562): 48-bit Unix milliseconds, then randomness, so ids sort by
// creation time and index well. Within one process, ids generated in the same millisecond are
// strictly increasing (the 12-bit rand_a field is a counter seeded at random each millisecond).
//
// Thread-safety: message_id is a value type; generate() may be called from any thread.

#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ferry::outbox {

class message_id {
public:
    constexpr message_id() noexcept = default;
    explicit constexpr message_id(std::array<std::uint8_t, 16> bytes) noexcept : _bytes(bytes) {}

    /// A fresh UUIDv7.
    [[nodiscard]] static message_id generate();
    /// Parses the canonical 36-character form (case-insensitive). nullopt if malformed.
    [[nodiscard]] static std::optional<message_id> parse(std::string_view text) noexcept;

    /// Canonical lower-case form, "0190b6a4-...".
    [[nodiscard]] std::string to_string() const;
    [[nodiscard]] const std::array<std::uint8_t, 16>& bytes() const noexcept { return _bytes; }
    [[nodiscard]] int version() const noexcept { return _bytes[6] >> 4; }
    /// Milliseconds since the Unix epoch encoded in a v7 id.
    [[nodiscard]] std::uint64_t unix_ms() const noexcept;
    [[nodiscard]] bool is_nil() const noexcept { return _bytes == std::array<std::uint8_t, 16>{}; }

    friend auto operator<=>(const message_id&, const message_id&) = default;

private:
    std::array<std::uint8_t, 16> _bytes{};
};

}  // namespace ferry::outbox
