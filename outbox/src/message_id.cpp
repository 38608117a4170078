#include "ferry/outbox/message_id.hpp"

#include <chrono>
#include <mutex>
#include <random>

namespace ferry::outbox {
namespace {

// Per-thread generator: no lock on the hot path. Monotonicity within a millisecond is per
// thread; across threads ids of the same millisecond differ in their random bits.
struct generator_state {
    std::mt19937_64 rng{std::random_device{}()};
    std::uint64_t last_ms = 0;
    std::uint16_t counter = 0;  // 12 bits used
};

thread_local generator_state g_state;

int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

}  // namespace

message_id message_id::generate() {
    auto& st = g_state;
    auto now_ms =
        static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                       std::chrono::system_clock::now().time_since_epoch())
                                       .count());
    if (now_ms <= st.last_ms) {
        // Same millisecond (or the clock stepped back): keep ordering by bumping the counter,
        // borrowing the next millisecond when it overflows.
        now_ms = st.last_ms;
        if (++st.counter > 0x0fff) {
            ++now_ms;
            st.counter = static_cast<std::uint16_t>(st.rng() & 0x01ff);
        }
    } else {
        // Start low in the 12-bit space so the counter has room to grow.
        st.counter = static_cast<std::uint16_t>(st.rng() & 0x01ff);
    }
    st.last_ms = now_ms;

    std::array<std::uint8_t, 16> b{};
    for (int i = 0; i < 6; ++i) b[i] = static_cast<std::uint8_t>(now_ms >> (40 - 8 * i));
    b[6] = static_cast<std::uint8_t>(0x70 | ((st.counter >> 8) & 0x0f));
    b[7] = static_cast<std::uint8_t>(st.counter & 0xff);
    const std::uint64_t r = st.rng();
    b[8] = static_cast<std::uint8_t>(0x80 | ((r >> 56) & 0x3f));
    for (int i = 9; i < 16; ++i) b[i] = static_cast<std::uint8_t>(r >> (8 * (15 - i)));
    return message_id{b};
}

std::optional<message_id> message_id::parse(std::string_view text) noexcept {
    if (text.size() != 36) return std::nullopt;
    std::array<std::uint8_t, 16> b{};
    std::size_t out = 0;
    for (std::size_t i = 0; i < text.size();) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (text[i] != '-') return std::nullopt;
            ++i;
            continue;
        }
        const int hi = hex_value(text[i]);
        const int lo = hex_value(text[i + 1]);
        if (hi < 0 || lo < 0) return std::nullopt;
        b[out++] = static_cast<std::uint8_t>(hi << 4 | lo);
        i += 2;
    }
    return message_id{b};
}

std::string message_id::to_string() const {
    static constexpr char digits[] = "0123456789abcdef";
    std::string s;
    s.reserve(36);
    for (std::size_t i = 0; i < 16; ++i) {
        if (i == 4 || i == 6 || i == 8 || i == 10) s += '-';
        s += digits[_bytes[i] >> 4];
        s += digits[_bytes[i] & 0x0f];
    }
    return s;
}

std::uint64_t message_id::unix_ms() const noexcept {
    std::uint64_t ms = 0;
    for (int i = 0; i < 6; ++i) ms = (ms << 8) | _bytes[i];
    return ms;
}

}  // namespace ferry::outbox
