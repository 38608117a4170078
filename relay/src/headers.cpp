#include "headers.hpp"

#include <nlohmann/json.hpp>

namespace ferry::relay::detail {

namespace {

// A SAX handler that keeps each member's value text as written: nlohmann hands the source text
// of every floating-point number, and integers are exact in 64 bits. Nested values are
// re-serialized compactly from the same pieces.
class header_sax {
public:
    using json = nlohmann::json;

    explicit header_sax(header_list& out) : _out(out) {}

    bool null() { return scalar("null", false); }
    bool boolean(bool v) { return scalar(v ? "true" : "false", false); }
    bool number_integer(json::number_integer_t v) { return scalar(std::to_string(v), false); }
    bool number_unsigned(json::number_unsigned_t v) { return scalar(std::to_string(v), false); }
    bool number_float(json::number_float_t, const json::string_t& text) {
        return scalar(text, false);
    }
    bool string(json::string_t& v) { return scalar(v, true); }
    bool binary(json::binary_t&) { return fail("binary values are not JSON"); }

    bool start_object(std::size_t) {
        if (_stack.empty() && !_top) {
            _top = true;
            _depth = 1;
            return true;
        }
        if (!before_value()) return false;
        _nested += '{';
        _stack.push_back({false, true});
        ++_depth;
        return true;
    }
    bool key(json::string_t& k) {
        if (_depth == 1) {
            _key = k;
            return true;
        }
        auto& level = _stack.back();
        if (!level.first) _nested += ',';
        level.first = false;
        _nested += json(k).dump();
        _nested += ':';
        return true;
    }
    bool end_object() {
        --_depth;
        if (_depth == 0) return true;
        _nested += '}';
        _stack.pop_back();
        after_value();
        return true;
    }
    bool start_array(std::size_t) {
        if (!before_value()) return false;
        _nested += '[';
        _stack.push_back({true, true});
        ++_depth;
        return true;
    }
    bool end_array() {
        --_depth;
        _nested += ']';
        _stack.pop_back();
        after_value();
        return true;
    }
    bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) {
        return fail(e.what());
    }

    [[nodiscard]] const std::string& error() const { return _error; }

private:
    struct frame {
        bool is_array;
        bool first;
    };

    bool fail(const std::string& why) {
        if (_error.empty()) _error = "headers: " + why;
        return false;
    }
    bool before_value() {
        if (_depth == 0) return fail("not a JSON object");
        if (_depth == 1) {
            _nested.clear();
            return true;
        }
        auto& l = _stack.back();
        if (l.is_array) {
            if (!l.first) _nested += ',';
            l.first = false;
        }
        return true;
    }
    void after_value() {
        if (_depth == 1) _out.emplace_back(_key, _nested);
    }
    bool scalar(const std::string& text, bool is_string) {
        if (_depth == 0) return fail("not a JSON object");
        if (_depth == 1) {
            _out.emplace_back(_key, text);
            return true;
        }
        if (!before_value()) return false;
        _nested += is_string ? json(text).dump() : text;
        return true;
    }

    header_list& _out;
    std::vector<frame> _stack;
    std::string _key;
    std::string _nested;
    std::string _error;
    int _depth = 0;
    bool _top = false;
};

}  // namespace

std::string decode_headers(std::string_view json_text, header_list& out) {
    if (json_text == "{}") return {};  // the common case: no headers (jsonb renders it so)
    header_sax sax(out);
    bool ok = false;
    try {
        ok = nlohmann::json::sax_parse(json_text, &sax);
    } catch (const std::exception& e) {
        return std::string("headers: ") + e.what();
    }
    if (ok) return {};
    return sax.error().empty() ? "headers: cannot be parsed" : sax.error();
}

}  // namespace ferry::relay::detail
