#pragma once
// Input validation shared by the writer (and later the half-message API). Every failure is a
// ferry::error(permanent) whose code is "outbox.<what>" and whose field names the input.

#include <string_view>

#include "ferry/outbox/message.hpp"
#include "ferry/outbox/options.hpp"

namespace ferry::outbox::detail {

[[nodiscard]] bool is_valid_utf8(std::string_view s) noexcept;
void validate_topic(std::string_view topic, std::string_view field);
void validate_message(const message& m, const writer_options& options);

}  // namespace ferry::outbox::detail
