#pragma once
// Big-endian reading and writing with bounds checks (private to ferry::wal). A reader never reads
// past its input: a short read reports which field did not fit, so callers can name the cause.

#include <cstdint>
#include <string>
#include <string_view>

namespace ferry::wal::detail {

inline void put_u8(std::string& out, std::uint8_t v) { out += static_cast<char>(v); }
inline void put_u32(std::string& out, std::uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>((v >> shift) & 0xff);
}
inline void put_u64(std::string& out, std::uint64_t v) {
    for (int shift = 56; shift >= 0; shift -= 8) out += static_cast<char>((v >> shift) & 0xff);
}

class reader {
public:
    explicit reader(std::string_view data) noexcept : _data(data) {}

    [[nodiscard]] std::size_t left() const noexcept { return _data.size() - _pos; }
    [[nodiscard]] std::size_t pos() const noexcept { return _pos; }
    [[nodiscard]] bool has(std::size_t n) const noexcept { return left() >= n; }

    // Callers check has() first; these assume the bytes are there.
    std::uint8_t u8() noexcept { return static_cast<std::uint8_t>(_data[_pos++]); }
    std::uint16_t u16() noexcept { return static_cast<std::uint16_t>(uint_be(2)); }
    std::uint32_t u32() noexcept { return static_cast<std::uint32_t>(uint_be(4)); }
    std::uint64_t u64() noexcept { return uint_be(8); }
    std::string_view bytes(std::size_t n) noexcept {
        auto s = _data.substr(_pos, n);
        _pos += n;
        return s;
    }
    /// A NUL-terminated string; false when no NUL follows.
    bool cstring(std::string_view& out) noexcept {
        const auto end = _data.find('\0', _pos);
        if (end == std::string_view::npos) return false;
        out = _data.substr(_pos, end - _pos);
        _pos = end + 1;
        return true;
    }

private:
    std::uint64_t uint_be(int n) noexcept {
        std::uint64_t v = 0;
        for (int i = 0; i < n; ++i) v = (v << 8) | static_cast<std::uint8_t>(_data[_pos++]);
        return v;
    }

    std::string_view _data;
    std::size_t _pos = 0;
};

}  // namespace ferry::wal::detail
