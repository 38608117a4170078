// Loading of Ferry's YAML configuration.
//
// The reader is table-driven: every section is a `section_spec` listing its keys, and every key
// is a `key_spec` that knows how to parse, validate, store and render its value. Adding a
// section (relay:, consumer:, ...) means adding a struct to ferry_config and one entry to
// `sections()`; the walk over the YAML tree, unknown-key detection, ${VAR} substitution,
// environment overrides and render_redacted() all follow from the table.
//
// Loading never stops at the first problem. Every diagnostic is collected in one pass and
// carries the 1-based line:column of the offending node (yaml-cpp marks are 0-based).
//
// Secrets: no diagnostic echoes the value of a DSN, a URL or a secret-looking key. Messages
// that quote a value go through `shown()`, which masks secret keys.

#include "ferry/config/config.hpp"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <mutex>
#include <sstream>
#include <utility>

#include "ferry/common/redact.hpp"
#include "ferry/common/sql_ident.hpp"
#include "ferry/internal/redis_url.hpp"
#include "parse_guard.hpp"
#include "units.hpp"

namespace ferry::config {
namespace {

using namespace std::chrono_literals;

constexpr std::size_t k_kib = 1024;
constexpr std::size_t k_mib = 1024 * k_kib;
constexpr std::size_t k_max_topic_length = 249;
constexpr std::size_t k_max_shown_length = 80;

// ---------------------------------------------------------------------------------------------
// Small helpers

// A value quoted for a message, truncated so a pasted blob does not flood the terminal, and
// masked when the key looks like it holds a secret.
std::string shown(std::string_view key, std::string_view value) {
    if (is_secret_key(key)) return "\"***\"";
    std::string out = "\"";
    out += value.substr(0, k_max_shown_length);
    if (value.size() > k_max_shown_length) out += "...";
    out += '"';
    return out;
}

std::string join(std::initializer_list<std::string_view> items, std::string_view sep) {
    std::string out;
    for (auto item : items) {
        if (!out.empty()) out += sep;
        out += item;
    }
    return out;
}

std::string lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) {
        return static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    });
    return out;
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<std::size_t> row(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        std::size_t diagonal = row[0];
        row[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const std::size_t above = row[j];
            row[j] =
                std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
            diagonal = above;
        }
    }
    return row[b.size()];
}

// "unknown key "compresion" (did you mean "compression"?)" - or the list of known keys when
// nothing is close, so the user never has to open the docs to find the right spelling.
std::string unknown_key_message(std::string_view what, std::string_view name,
                                const std::vector<std::string_view>& known) {
    std::string_view best;
    std::size_t best_distance = 3;
    for (auto candidate : known) {
        const auto d = edit_distance(lower(name), candidate);
        if (d < best_distance) {
            best = candidate;
            best_distance = d;
        }
    }
    std::string message = "unknown " + std::string(what) + " " + shown("", name);
    if (!best.empty()) return message + " (did you mean \"" + std::string(best) + "\"?)";
    message += " (expected one of: ";
    for (std::size_t i = 0; i < known.size(); ++i) {
        if (i > 0) message += ", ";
        message += known[i];
    }
    return message + ")";
}

bool is_topic_char(char c) noexcept {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

// Kafka's topic rule, checked here rather than through ferry::outbox::validate_topic so that a
// bad name becomes a diagnostic value instead of an exception, and config does not need the
// outbox library to link. Keep in sync with ferry::outbox::validate_topic.
std::optional<std::string> topic_problem(std::string_view topic) {
    if (topic.empty()) return "topic name must not be empty";
    if (topic.size() > k_max_topic_length) {
        return "topic name is longer than " + std::to_string(k_max_topic_length) + " characters";
    }
    if (topic == "." || topic == "..") return "topic name must not be \".\" or \"..\"";
    for (char c : topic) {
        if (!is_topic_char(c)) {
            return shown("", topic) +
                   " is not a valid Kafka topic name (use 1-249 characters of "
                   "[a-zA-Z0-9._-])";
        }
    }
    return std::nullopt;
}

std::string_view scheme_of(std::string_view url) {
    const auto pos = url.find("://");
    return pos == std::string_view::npos ? std::string_view{} : url.substr(0, pos);
}

// ---------------------------------------------------------------------------------------------
// Validators. Each returns a message, or nullopt when the value is acceptable.

using check_fn = std::function<std::optional<std::string>(const std::string&)>;

std::optional<std::string> check_dsn(const std::string& dsn) {
    if (dsn.empty()) return "must not be empty";
    // Only the scheme is ever quoted: a DSN carries a password, and a malformed one may not be
    // parseable enough for redact_dsn to find it.
    if (dsn.find("://") != std::string::npos) {
        const auto scheme = scheme_of(dsn);
        if (scheme != "postgresql" && scheme != "postgres") {
            return "unsupported scheme " + shown("", scheme) +
                   " (expected a postgresql:// URI or libpq key=value pairs)";
        }
        return std::nullopt;
    }
    if (dsn.find('=') == std::string::npos) {
        return "expected a postgresql:// URI or libpq key=value pairs";
    }
    return std::nullopt;
}

// The same parser the Redis clients use (ferry::internal::parse_redis_url), so config accepts
// exactly the URLs they can connect with; its problems never quote the user-info.
std::optional<std::string> check_redis_url(const std::string& url) {
    auto parsed = internal::parse_redis_url(url);
    if (parsed.ok()) return std::nullopt;
    return std::move(parsed.problem);
}

std::optional<std::string> check_listen(const std::string& listen) {
    const auto colon = listen.rfind(':');
    if (colon == std::string::npos || colon == 0) {
        return shown("", listen) + " is not host:port (for example 127.0.0.1:9464)";
    }
    const auto host = std::string_view(listen).substr(0, colon);
    const auto port = std::string_view(listen).substr(colon + 1);
    // An IPv6 address must be bracketed, or its own colons would be read as the port separator.
    const bool bracketed = host.front() == '[';
    if (bracketed ? (host.size() < 3 || host.back() != ']')
                  : host.find_first_of(":[] \t") != std::string_view::npos) {
        return shown("", listen) + " is not host:port (write IPv6 addresses as [::1]:9464)";
    }
    if (port.empty() || port.size() > 5 ||
        !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
        std::stoul(std::string(port)) > 65535) {
        return "port in " + shown("", listen) + " must be a number from 0 to 65535";
    }
    return std::nullopt;
}

// http.token_env names an environment variable (its value is the secret, read by the relay).
std::optional<std::string> check_env_name(const std::string& name) {
    if (name.empty()) return std::nullopt;
    const bool ok = name.size() <= 128 && !(name[0] >= '0' && name[0] <= '9') &&
                    std::all_of(name.begin(), name.end(), [](char c) {
                        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                               (c >= '0' && c <= '9') || c == '_';
                    });
    if (ok) return std::nullopt;
    return "must name an environment variable ([A-Za-z_][A-Za-z0-9_]*, for example "
           "FERRY_HTTP_TOKEN); the token itself never goes in the file";
}

std::optional<std::string> check_brokers(const std::string& brokers) {
    if (brokers.empty()) return "must not be empty";
    std::size_t start = 0;
    while (start <= brokers.size()) {
        auto end = brokers.find(',', start);
        if (end == std::string::npos) end = brokers.size();
        auto entry = std::string_view(brokers).substr(start, end - start);
        while (!entry.empty() && entry.front() == ' ') entry.remove_prefix(1);
        while (!entry.empty() && entry.back() == ' ') entry.remove_suffix(1);
        if (entry.empty()) return "empty entry in broker list " + shown("", brokers);
        if (entry.find_first_of(" \t") != std::string_view::npos) {
            return "broker list " + shown("", brokers) + " must be comma-separated host:port";
        }
        start = end + 1;
    }
    return std::nullopt;
}

std::optional<std::string> check_identifier(const std::string& name) {
    if (is_valid_identifier(name)) return std::nullopt;
    return shown("", name) +
           " is not a valid SQL identifier (use 1-63 characters of [a-z0-9_], not starting with "
           "a digit)";
}

std::optional<std::string> check_topic_prefix(const std::string& prefix) {
    if (prefix.empty()) return std::nullopt;
    if (prefix.size() >= k_max_topic_length) {
        return "must be shorter than " + std::to_string(k_max_topic_length) + " characters";
    }
    if (!std::all_of(prefix.begin(), prefix.end(), is_topic_char)) {
        return shown("", prefix) + " may only contain [a-zA-Z0-9._-]";
    }
    return std::nullopt;
}

check_fn one_of(std::initializer_list<std::string_view> allowed) {
    std::vector<std::string> values(allowed.begin(), allowed.end());
    std::string listed = join(allowed, ", ");
    return [values, listed](const std::string& v) -> std::optional<std::string> {
        if (std::find(values.begin(), values.end(), v) != values.end()) return std::nullopt;
        return "must be one of " + listed + ", got " + shown("", v);
    };
}

// ---------------------------------------------------------------------------------------------
// The reader: walks the YAML tree and reports into a diagnostic list.

class reader;

/// Parses, validates and stores one scalar value (already ${VAR}-substituted). Returns the
/// problem, or nullopt when the value was stored. Messages must not contain secrets.
template <class Cfg>
using basic_scalar_setter = std::function<std::optional<std::string>(Cfg&, const std::string&)>;
/// Reads a value that is itself a map or a list (kafka.topic_map, kafka.properties, consumers)
/// and reports its own diagnostics. `path` is the dotted key of the value.
template <class Cfg>
using basic_node_reader =
    std::function<void(reader&, const YAML::Node&, const std::string& path, Cfg&)>;
/// Writes the key's effective value, secrets masked, as the value of a YAML map entry.
template <class Cfg>
using basic_value_emitter = std::function<void(YAML::Emitter&, const Cfg&)>;

/// One key of a map of settings. `Cfg` is the struct the map fills: ferry_config for the
/// sections, consumer_config for an entry of `consumers:`.
template <class Cfg>
struct basic_key_spec {
    std::string_view name;
    basic_scalar_setter<Cfg> set;     // for scalar keys
    basic_node_reader<Cfg> read_map;  // for map/list-valued keys; exactly one of set/read_map
    basic_value_emitter<Cfg> emit;
};

using key_spec = basic_key_spec<ferry_config>;
using node_reader = basic_node_reader<ferry_config>;
using value_emitter = basic_value_emitter<ferry_config>;

template <class Cfg>
std::vector<std::string_view> key_names(const std::vector<basic_key_spec<Cfg>>& keys) {
    std::vector<std::string_view> out;
    for (const auto& k : keys) out.push_back(k.name);
    return out;
}

struct section_spec {
    std::string_view name;
    std::vector<key_spec> keys;
    /// A section whose value is not a map of keys (the `consumers:` list): it reads and
    /// renders the whole value itself, and `keys` stays empty.
    node_reader read_whole = {};
    value_emitter emit_whole = {};

    [[nodiscard]] const key_spec* find(std::string_view key) const {
        for (const auto& k : keys) {
            if (k.name == key) return &k;
        }
        return nullptr;
    }
    [[nodiscard]] std::vector<std::string_view> names() const { return key_names(keys); }
};

int one_based(int zero_based) { return zero_based >= 0 ? zero_based + 1 : 0; }

// A map key as one segment of a dotted diagnostic path. Keys such as "weird: key" or ".." are
// quoted so the "file:line:col: key: message" line still splits unambiguously.
std::string path_segment(std::string_view name) {
    const bool plain = !name.empty() && name.front() != '.' && name.back() != '.' &&
                       name.find("..") == std::string_view::npos &&
                       std::all_of(name.begin(), name.end(), [](char c) {
                           return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                                  (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
                       });
    return plain ? std::string(name) : shown("", name);
}

class reader {
public:
    reader(std::string source, const env_lookup& env, std::vector<diagnostic>& errors)
        : _source(std::move(source)), _env(env), _errors(errors) {}

    [[nodiscard]] std::size_t error_count() const { return _errors.size(); }

    void error(const YAML::Mark& mark, std::string key, std::string message) {
        _errors.push_back(diagnostic{_source, one_based(mark.line), one_based(mark.column),
                                     std::move(key), std::move(message)});
    }

    // Where to point at for a map entry's value. yaml-cpp marks an empty value ("key:" with
    // nothing after it) at the *next* token, often on a later line, so use the key instead.
    static YAML::Mark where(const YAML::Node& key, const YAML::Node& value) {
        return value.IsNull() ? key.Mark() : value.Mark();
    }

    /// Calls fn(name, key_node, value_node) for each entry of a map, reporting non-string and
    /// duplicate keys (yaml-cpp accepts both silently; the second "dsn:" would otherwise be
    /// ignored without a word).
    template <class Fn>
    void for_each_entry(const YAML::Node& map, const std::string& path, Fn&& fn) {
        std::vector<std::pair<std::string, YAML::Mark>> seen;
        for (auto it = map.begin(); it != map.end(); ++it) {
            const YAML::Node key = it->first;
            const YAML::Node value = it->second;
            if (!key.IsScalar()) {
                error(key.Mark(), path, "keys must be plain strings");
                continue;
            }
            const std::string& name = key.Scalar();
            const auto full = path.empty() ? path_segment(name) : path + "." + path_segment(name);
            const auto dup = std::find_if(seen.begin(), seen.end(),
                                          [&](const auto& s) { return s.first == name; });
            if (dup != seen.end()) {
                error(key.Mark(), full,
                      "duplicate key (first set at line " +
                          std::to_string(one_based(dup->second.line)) + ")");
                continue;
            }
            seen.emplace_back(name, key.Mark());
            fn(name, key, value, full);
        }
    }

    /// The text of a scalar value after ${VAR} substitution, or nullopt after reporting why
    /// there is none (a map or list where a single value belongs, an unset variable).
    std::optional<std::string> scalar_text(const YAML::Node& key, const YAML::Node& value,
                                           const std::string& path) {
        if (value.IsNull()) return std::string{};
        if (value.IsMap() || value.IsSequence()) {
            error(
                value.Mark(), path,
                std::string("expected a single value, got a ") + (value.IsMap() ? "map" : "list"));
            return std::nullopt;
        }
        return substitute(value.Scalar(), where(key, value), path);
    }

    void read_root(const YAML::Node& root, ferry_config& cfg);

private:
    void read_section(const section_spec& section, const YAML::Node& key, const YAML::Node& node,
                      ferry_config& cfg);
    std::optional<std::string> substitute(std::string_view text, const YAML::Mark& mark,
                                          const std::string& path);

    std::string _source;
    const env_lookup& _env;
    std::vector<diagnostic>& _errors;
};

bool is_var_name(std::string_view name) {
    if (name.empty()) return false;
    const auto first = name.front();
    if (!(first == '_' || (first >= 'A' && first <= 'Z') || (first >= 'a' && first <= 'z'))) {
        return false;
    }
    return std::all_of(name.begin(), name.end(), [](char c) {
        return c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
               (c >= '0' && c <= '9');
    });
}

// ${VAR} and ${VAR:-default} anywhere in the value, any number of times; "$${" is a literal
// "${". As in the shell, ":-" also applies when VAR is set but empty. Substituted text is not
// scanned again, so a secret that happens to contain "${" stays as it is.
std::optional<std::string> reader::substitute(std::string_view text, const YAML::Mark& mark,
                                              const std::string& path) {
    std::string out;
    bool ok = true;
    std::size_t i = 0;
    while (i < text.size()) {
        if (text.compare(i, 3, "$${") == 0) {
            out += "${";
            i += 3;
            continue;
        }
        if (text.compare(i, 2, "${") != 0) {
            out += text[i++];
            continue;
        }
        const auto close = text.find('}', i + 2);
        if (close == std::string_view::npos) {
            error(mark, path,
                  "unterminated \"${\" (close it with \"}\", or write \"$${\" for a "
                  "literal \"${\")");
            return std::nullopt;
        }
        const auto body = text.substr(i + 2, close - i - 2);
        const auto sep = body.find(":-");
        const auto name = body.substr(0, sep);
        i = close + 1;
        if (!is_var_name(name)) {
            error(mark, path,
                  "invalid variable reference " + shown("", name) +
                      " (expected ${NAME} or ${NAME:-default})");
            ok = false;
            continue;
        }
        const auto value = _env ? _env(std::string(name)) : std::nullopt;
        if (sep != std::string_view::npos && (!value || value->empty())) {
            out += body.substr(sep + 2);
        } else if (value) {
            out += *value;
        } else {
            error(mark, path,
                  "environment variable " + std::string(name) +
                      " is not set and has no default (use ${" + std::string(name) + ":-default})");
            ok = false;
        }
    }
    if (!ok) return std::nullopt;
    return out;
}

const std::vector<section_spec>& sections();

std::vector<std::string_view> section_names() {
    std::vector<std::string_view> out;
    for (const auto& s : sections()) out.push_back(s.name);
    return out;
}

void reader::read_root(const YAML::Node& root, ferry_config& cfg) {
    if (!root.IsDefined() || root.IsNull()) return;  // empty document: all defaults
    if (!root.IsMap()) {
        error(root.Mark(), "", "the root must be a map of sections (postgres:, kafka:, ...)");
        return;
    }
    for_each_entry(
        root, "",
        [&](const std::string& name, const YAML::Node& key, const YAML::Node& value,
            const std::string& full) {
            const auto& all = sections();
            const auto it = std::find_if(all.begin(), all.end(),
                                         [&](const section_spec& s) { return s.name == name; });
            if (it == all.end()) {
                error(key.Mark(), full, unknown_key_message("section", name, section_names()));
                return;
            }
            read_section(*it, key, value, cfg);
        });
}

// Reads a map of settings against its key table: unknown keys (with a hint), map- and
// list-valued keys through their own reader, scalars through their setter. `key` is the node
// naming the map, for the place of a "not a map" error.
template <class Cfg>
void read_keys(reader& r, const std::vector<basic_key_spec<Cfg>>& keys, const YAML::Node& key,
               const YAML::Node& node, const std::string& path, Cfg& cfg) {
    if (node.IsNull()) return;  // "kafka:" with nothing under it: defaults
    if (!node.IsMap()) {
        r.error(reader::where(key, node), path, "expected a map of keys");
        return;
    }
    r.for_each_entry(
        node, path,
        [&](const std::string& name, const YAML::Node& k, const YAML::Node& value,
            const std::string& full) {
            const auto spec = std::find_if(keys.begin(), keys.end(),
                                           [&](const auto& s) { return s.name == name; });
            if (spec == keys.end()) {
                r.error(k.Mark(), full, unknown_key_message("key", name, key_names(keys)));
                return;
            }
            if (spec->read_map) {
                spec->read_map(r, value, full, cfg);
                return;
            }
            const auto text = r.scalar_text(k, value, full);
            if (!text) return;
            if (auto problem = spec->set(cfg, *text))
                r.error(reader::where(k, value), full, std::move(*problem));
        });
}

// Writes a map of settings (render_redacted), in table order.
template <class Cfg>
void emit_keys(YAML::Emitter& out, const std::vector<basic_key_spec<Cfg>>& keys, const Cfg& cfg) {
    out << YAML::BeginMap;
    for (const auto& key : keys) {
        out << YAML::Key << std::string(key.name) << YAML::Value;
        key.emit(out, cfg);
    }
    out << YAML::EndMap;
}

void reader::read_section(const section_spec& section, const YAML::Node& key,
                          const YAML::Node& node, ferry_config& cfg) {
    const std::string path(section.name);
    if (section.read_whole) {
        section.read_whole(*this, node, path, cfg);
        return;
    }
    read_keys(*this, section.keys, key, node, path, cfg);
}

// ---------------------------------------------------------------------------------------------
// Key builders. `get` is a generic lambda returning a reference to the field, used both to
// store (non-const config) and to render (const config).

using redactor = std::string (*)(std::string_view);

std::string no_redaction(std::string_view s) { return std::string(s); }

// A loaded value holds a literal "${" where the file had "$${"; rendering writes it back
// escaped, so render_redacted() output loads to the same values (found by fuzz_config).
std::string escape_substitution(const std::string& value) {
    std::string out;
    out.reserve(value.size());
    for (std::size_t i = 0; i < value.size(); ++i) {
        if (value[i] == '$' && i + 1 < value.size() && value[i + 1] == '{') out += '$';
        out += value[i];
    }
    return out;
}

template <class Cfg = ferry_config, class Get>
basic_key_spec<Cfg> string_key(std::string_view name, Get get, check_fn check = {},
                               redactor redact = no_redaction) {
    return basic_key_spec<Cfg>{
        name,
        [get, check](Cfg& c, const std::string& v) -> std::optional<std::string> {
            if (check) {
                if (auto problem = check(v)) return problem;
            }
            get(c) = v;
            return std::nullopt;
        },
        {},
        [get, redact](YAML::Emitter& out, const Cfg& c) {
            out << escape_substitution(redact(get(c)));
        }};
}

template <class Cfg = ferry_config, class Get>
basic_key_spec<Cfg> bool_key(std::string_view name, Get get) {
    return basic_key_spec<Cfg>{
        name,
        [name, get](Cfg& c, const std::string& v) -> std::optional<std::string> {
            const auto l = lower(v);
            if (l == "true" || l == "yes" || l == "on") {
                get(c) = true;
            } else if (l == "false" || l == "no" || l == "off") {
                get(c) = false;
            } else {
                return "expected true or false, got " + shown(name, v);
            }
            return std::nullopt;
        },
        {},
        [get](YAML::Emitter& out, const Cfg& c) { out << (get(c) ? "true" : "false"); }};
}

template <class Cfg = ferry_config, class Get>
basic_key_spec<Cfg> duration_key(std::string_view name, Get get, std::chrono::milliseconds min,
                                 std::chrono::milliseconds max) {
    return basic_key_spec<Cfg>{
        name,
        [name, get, min, max](Cfg& c, const std::string& v) -> std::optional<std::string> {
            const auto d = parse_duration(v);
            if (!d) {
                return "expected a duration with a unit (ms, s, m, h) like 250ms or 1.5s, got " +
                       shown(name, v);
            }
            if (*d < min || *d > max) {
                return "must be between " + detail::format_duration(min) + " and " +
                       detail::format_duration(max) + ", got " + shown(name, v);
            }
            get(c) = *d;
            return std::nullopt;
        },
        {},
        [get](YAML::Emitter& out, const Cfg& c) { out << detail::format_duration(get(c)); }};
}

template <class Cfg = ferry_config, class Get>
basic_key_spec<Cfg> size_key(std::string_view name, Get get, std::size_t min, std::size_t max) {
    return basic_key_spec<Cfg>{
        name,
        [name, get, min, max](Cfg& c, const std::string& v) -> std::optional<std::string> {
            const auto n = parse_size(v);
            if (!n) {
                return "expected a size in bytes like 65536, 512KiB or 1MiB, got " + shown(name, v);
            }
            if (*n < min || *n > max) {
                return "must be between " + detail::format_size(min) + " and " +
                       detail::format_size(max) + " bytes, got " + shown(name, v);
            }
            get(c) = *n;
            return std::nullopt;
        },
        {},
        [get](YAML::Emitter& out, const Cfg& c) { out << detail::format_size(get(c)); }};
}

template <class Cfg = ferry_config, class Get>
basic_key_spec<Cfg> count_key(std::string_view name, Get get, std::size_t min, std::size_t max) {
    return basic_key_spec<Cfg>{
        name,
        [name, get, min, max](Cfg& c, const std::string& v) -> std::optional<std::string> {
            std::size_t n = 0;
            const auto* end = v.data() + v.size();
            const auto r = std::from_chars(v.data(), end, n);
            if (v.empty() || r.ec != std::errc{} || r.ptr != end) {
                return "expected a whole number, got " + shown(name, v);
            }
            if (n < min || n > max) {
                return "must be between " + std::to_string(min) + " and " + std::to_string(max) +
                       ", got " + shown(name, v);
            }
            get(c) = n;
            return std::nullopt;
        },
        {},
        [get](YAML::Emitter& out, const Cfg& c) { out << std::to_string(get(c)); }};
}

// Emits a string map in block style, or "{}" when empty (yaml-cpp would put a lone "{}" on
// the next line otherwise).
void emit_string_map(YAML::Emitter& out, const std::map<std::string, std::string>& m,
                     bool mask_secrets) {
    if (m.empty()) out << YAML::Flow;
    out << YAML::BeginMap;
    for (const auto& [k, v] : m) {
        out << YAML::Key << escape_substitution(k) << YAML::Value
            << (mask_secrets && is_secret_key(k) ? std::string("***") : escape_substitution(v));
    }
    out << YAML::EndMap;
}

// kafka.topic_map: {outbox topic: kafka topic}. Both sides must be valid topic names.
key_spec topic_map_key() {
    return key_spec{
        "topic_map",
        {},
        [](reader& r, const YAML::Node& node, const std::string& path, ferry_config& c) {
            if (node.IsNull()) return;
            if (!node.IsMap()) {
                r.error(node.Mark(), path, "expected a map of outbox topic: Kafka topic");
                return;
            }
            r.for_each_entry(node, path,
                             [&](const std::string& from, const YAML::Node& k, const YAML::Node& v,
                                 const std::string& full) {
                                 bool ok = true;
                                 if (auto problem = topic_problem(from)) {
                                     r.error(k.Mark(), full, *problem);
                                     ok = false;
                                 }
                                 const auto to = r.scalar_text(k, v, full);
                                 if (!to) return;
                                 if (auto problem = topic_problem(*to)) {
                                     r.error(reader::where(k, v), full, *problem);
                                     return;
                                 }
                                 if (ok) c.kafka.topic_map[from] = *to;
                             });
        },
        [](YAML::Emitter& out, const ferry_config& c) {
            emit_string_map(out, c.kafka.topic_map, false);
        }};
}

// A map of librdkafka property: value passed through as strings (kafka.properties,
// consumers[i].kafka_properties). `refused(name)` returns why a property the caller owns through
// another key cannot be set here, or nullopt.
template <class Cfg, class Get, class Refused>
basic_key_spec<Cfg> kafka_properties_key(std::string_view key, Get get, Refused refused) {
    return basic_key_spec<Cfg>{
        key,
        {},
        [get, refused](reader& r, const YAML::Node& node, const std::string& path, Cfg& c) {
            if (node.IsNull()) return;
            if (!node.IsMap()) {
                r.error(node.Mark(), path, "expected a map of librdkafka property: value");
                return;
            }
            r.for_each_entry(node, path,
                             [&](const std::string& name, const YAML::Node& k, const YAML::Node& v,
                                 const std::string& full) {
                                 if (name.empty()) {
                                     r.error(k.Mark(), full, "property name must not be empty");
                                     return;
                                 }
                                 if (auto why = refused(name)) {
                                     r.error(k.Mark(), full, *why);
                                     return;
                                 }
                                 if (v.IsNull()) {
                                     r.error(k.Mark(), full, "property needs a value");
                                     return;
                                 }
                                 if (auto value = r.scalar_text(k, v, full)) get(c)[name] = *value;
                             });
        },
        [get](YAML::Emitter& out, const Cfg& c) { emit_string_map(out, get(c), true); }};
}

// kafka.properties: Ferry owns the broker list and compression codec through kafka.brokers and
// kafka.compression; setting them here too would leave two sources of truth, so that is an
// error.
key_spec properties_key() {
    return kafka_properties_key<ferry_config>(
        "properties", [](auto& c) -> auto& { return c.kafka.properties; },
        [](const std::string& name) -> std::optional<std::string> {
            if (name == "bootstrap.servers" || name == "metadata.broker.list") {
                return "set kafka.brokers instead";
            }
            if (name == "compression.type" || name == "compression.codec") {
                return "set kafka.compression instead";
            }
            return std::nullopt;
        });
}

// ---------------------------------------------------------------------------------------------
// The schema. Order here is the order of render_redacted() output.

// Walks a map of named groups (checkback.groups, reconcile.groups): reports a value that is not a
// map and names outside 1-255 characters, and calls fn(name, key, value, path) for the rest.
template <class Fn>
void for_each_group(reader& r, const YAML::Node& node, const std::string& path,
                    std::string_view what, Fn&& fn) {
    if (node.IsNull()) return;
    if (!node.IsMap()) {
        r.error(node.Mark(), path, "expected a map of " + std::string(what) + ": settings");
        return;
    }
    r.for_each_entry(node, path,
                     [&](const std::string& group, const YAML::Node& gk, const YAML::Node& gv,
                         const std::string& gpath) {
                         if (group.empty() || group.size() > 255) {
                             r.error(gk.Mark(), gpath,
                                     "a " + std::string(what) + " name must be 1-255 characters");
                             return;
                         }
                         fn(group, gk, gv, gpath);
                     });
}

// checkback.groups: {producer group: {resolver: callback|http|sql, ...}}. Each group's keys
// are checked like a section's; http needs url, sql needs dsn and query.
key_spec checkback_groups_key() {
    static const std::vector<std::string_view> keys = {
        "resolver",    "timeout",    "liveness",   "url", "headers", "ca_file",
        "client_cert", "client_key", "verify_tls", "dsn", "query"};
    return key_spec{
        "groups",
        {},
        [](reader& r, const YAML::Node& node, const std::string& path, ferry_config& c) {
            for_each_group(
                r, node, path, "producer group",
                [&](const std::string& group, const YAML::Node& gk, const YAML::Node& gv,
                    const std::string& gpath) {
                    if (!gv.IsMap()) {
                        r.error(reader::where(gk, gv), gpath,
                                "expected a map with at least `resolver: callback|http|sql`");
                        return;
                    }
                    checkback_group_config g;
                    bool has_resolver = false;
                    r.for_each_entry(
                        gv, gpath,
                        [&](const std::string& name, const YAML::Node& k, const YAML::Node& v,
                            const std::string& full) {
                            if (std::find(keys.begin(), keys.end(), name) == keys.end()) {
                                r.error(k.Mark(), full, unknown_key_message("key", name, keys));
                                return;
                            }
                            if (name == "headers") {
                                if (v.IsNull()) return;
                                if (!v.IsMap()) {
                                    r.error(reader::where(k, v), full,
                                            "expected a map of header: value");
                                    return;
                                }
                                r.for_each_entry(
                                    v, full,
                                    [&](const std::string& h, const YAML::Node& hk,
                                        const YAML::Node& hv, const std::string& hfull) {
                                        // Header values usually carry credentials: never quoted
                                        // back.
                                        if (auto text = r.scalar_text(hk, hv, hfull))
                                            g.headers[h] = *text;
                                    });
                                return;
                            }
                            const auto text = r.scalar_text(k, v, full);
                            if (!text) return;
                            const auto at = reader::where(k, v);
                            if (name == "resolver") {
                                has_resolver = true;  // present; a bad value is reported once, here
                                if (*text != "callback" && *text != "http" && *text != "sql") {
                                    r.error(at, full,
                                            "must be one of callback, http, sql, got " +
                                                shown(name, *text));
                                    return;
                                }
                                g.resolver = *text;
                            } else if (name == "timeout" || name == "liveness") {
                                const auto d = parse_duration(*text);
                                if (!d || *d < 1ms || *d > 10min) {
                                    r.error(at, full,
                                            "expected a duration between 1ms and 10m, got " +
                                                shown(name, *text));
                                    return;
                                }
                                (name == "timeout" ? g.timeout : g.liveness) = *d;
                            } else if (name == "verify_tls") {
                                const auto l = lower(*text);
                                if (l != "true" && l != "false") {
                                    r.error(at, full,
                                            "expected true or false, got " + shown(name, *text));
                                    return;
                                }
                                g.verify_tls = l == "true";
                            } else if (name == "url") {
                                if (text->rfind("http://", 0) != 0 &&
                                    text->rfind("https://", 0) != 0) {
                                    r.error(at, full, "expected an http:// or https:// URL");
                                    return;
                                }
                                g.url = *text;
                            } else if (name == "dsn") {
                                g.dsn = *text;
                            } else if (name == "query") {
                                g.query = *text;
                            } else if (name == "ca_file") {
                                g.ca_file = *text;
                            } else if (name == "client_cert") {
                                g.client_cert = *text;
                            } else if (name == "client_key") {
                                g.client_key = *text;
                            }
                        });
                    if (!has_resolver) {
                        r.error(gk.Mark(), gpath + ".resolver", "required: callback, http or sql");
                        return;
                    }
                    if (g.resolver == "http" && g.url.empty()) {
                        r.error(gk.Mark(), gpath + ".url", "required when resolver is http");
                        return;
                    }
                    if (g.resolver == "sql" && (g.dsn.empty() || g.query.empty())) {
                        r.error(
                            gk.Mark(), gpath + (g.dsn.empty() ? ".dsn" : ".query"),
                            "required when resolver is sql (dsn, and a query taking tx_ref as $1)");
                        return;
                    }
                    c.checkback.groups[group] = std::move(g);
                });
        },
        [](YAML::Emitter& out, const ferry_config& c) {
            if (c.checkback.groups.empty()) out << YAML::Flow;
            out << YAML::BeginMap;
            for (const auto& [name, g] : c.checkback.groups) {
                out << YAML::Key << name << YAML::Value << YAML::BeginMap;
                out << YAML::Key << "resolver" << YAML::Value << g.resolver;
                out << YAML::Key << "timeout" << YAML::Value << detail::format_duration(g.timeout);
                if (g.resolver == "callback") {
                    out << YAML::Key << "liveness" << YAML::Value
                        << detail::format_duration(g.liveness);
                }
                if (g.resolver == "http") {
                    out << YAML::Key << "url" << YAML::Value << redact_url(g.url);
                    if (!g.headers.empty()) {
                        out << YAML::Key << "headers" << YAML::Value << YAML::BeginMap;
                        for (const auto& [h, v] : g.headers)
                            out << YAML::Key << h << YAML::Value << "***";
                        out << YAML::EndMap;
                    }
                    if (!g.ca_file.empty())
                        out << YAML::Key << "ca_file" << YAML::Value << g.ca_file;
                    if (!g.client_cert.empty())
                        out << YAML::Key << "client_cert" << YAML::Value << g.client_cert;
                    if (!g.client_key.empty())
                        out << YAML::Key << "client_key" << YAML::Value << g.client_key;
                    out << YAML::Key << "verify_tls" << YAML::Value
                        << (g.verify_tls ? "true" : "false");
                }
                if (g.resolver == "sql") {
                    out << YAML::Key << "dsn" << YAML::Value << redact_dsn(g.dsn);
                    out << YAML::Key << "query" << YAML::Value << g.query;
                }
                out << YAML::EndMap;
            }
            out << YAML::EndMap;
        }};
}

// reconcile.groups: {consumer group: {topics: [...], dsn, schema, dedup, redis_url,
// redis_key_prefix}}. Checked like a section: unknown keys and bad values are errors.
key_spec reconcile_groups_key() {
    static const std::vector<std::string_view> keys = {"topics", "dsn",       "schema",
                                                       "dedup",  "redis_url", "redis_key_prefix"};
    return key_spec{
        "groups",
        {},
        [](reader& r, const YAML::Node& node, const std::string& path, ferry_config& c) {
            for_each_group(
                r, node, path, "consumer group",
                [&](const std::string& group, const YAML::Node& gk, const YAML::Node& gv,
                    const std::string& gpath) {
                    reconcile_group_config g;
                    if (gv.IsNull()) {
                        c.reconcile.groups[group] = std::move(g);
                        return;
                    }
                    if (!gv.IsMap()) {
                        r.error(reader::where(gk, gv), gpath,
                                "expected a map (topics, dsn, dedup, ...)");
                        return;
                    }
                    bool ok = true;
                    r.for_each_entry(
                        gv, gpath,
                        [&](const std::string& name, const YAML::Node& k, const YAML::Node& v,
                            const std::string& full) {
                            if (std::find(keys.begin(), keys.end(), name) == keys.end()) {
                                r.error(k.Mark(), full, unknown_key_message("key", name, keys));
                                ok = false;
                                return;
                            }
                            if (name == "topics") {
                                if (v.IsNull()) return;
                                if (!v.IsSequence()) {
                                    r.error(reader::where(k, v), full, "expected a list of topics");
                                    ok = false;
                                    return;
                                }
                                for (const auto& item : v) {
                                    const auto t = r.scalar_text(k, item, full);
                                    if (!t) {
                                        ok = false;
                                        continue;
                                    }
                                    if (auto problem = topic_problem(*t)) {
                                        r.error(item.Mark(), full, *problem);
                                        ok = false;
                                        continue;
                                    }
                                    g.topics.push_back(*t);
                                }
                                return;
                            }
                            const auto text = r.scalar_text(k, v, full);
                            if (!text) {
                                ok = false;
                                return;
                            }
                            const auto at = reader::where(k, v);
                            std::optional<std::string> problem;
                            if (name == "dsn") {
                                if (!text->empty()) problem = check_dsn(*text);
                                g.dsn = *text;
                            } else if (name == "schema") {
                                problem = check_identifier(*text);
                                g.schema = *text;
                            } else if (name == "dedup") {
                                if (*text != "inbox" && *text != "redis" &&
                                    *text != "redis_and_inbox") {
                                    problem = "must be one of inbox, redis, redis_and_inbox, got " +
                                              shown(name, *text);
                                }
                                g.dedup = *text;
                            } else if (name == "redis_url") {
                                if (!text->empty()) problem = check_redis_url(*text);
                                g.redis_url = *text;
                            } else if (name == "redis_key_prefix") {
                                g.redis_key_prefix = *text;
                            }
                            if (problem) {
                                r.error(at, full, *problem);
                                ok = false;
                            }
                        });
                    if (ok) c.reconcile.groups[group] = std::move(g);
                });
        },
        [](YAML::Emitter& out, const ferry_config& c) {
            if (c.reconcile.groups.empty()) out << YAML::Flow;
            out << YAML::BeginMap;
            for (const auto& [name, g] : c.reconcile.groups) {
                out << YAML::Key << name << YAML::Value << YAML::BeginMap;
                out << YAML::Key << "topics" << YAML::Value << YAML::Flow << YAML::BeginSeq;
                for (const auto& t : g.topics) out << t;
                out << YAML::EndSeq;
                if (!g.dsn.empty()) out << YAML::Key << "dsn" << YAML::Value << redact_dsn(g.dsn);
                if (!g.schema.empty()) out << YAML::Key << "schema" << YAML::Value << g.schema;
                out << YAML::Key << "dedup" << YAML::Value << g.dedup;
                if (!g.redis_url.empty()) {
                    out << YAML::Key << "redis_url" << YAML::Value << redact_url(g.redis_url);
                }
                out << YAML::Key << "redis_key_prefix" << YAML::Value << g.redis_key_prefix;
                out << YAML::EndMap;
            }
            out << YAML::EndMap;
        }};
}

// ---------------------------------------------------------------------------------------------
// consumers: a list of consumer groups, each a map of settings read against its own key table
// (the same builders, on consumer_config). Nested maps (retry:, inbox:) are tables too.

using consumer_key = basic_key_spec<consumer_config>;

// A nested map of a consumer entry (retry:, inbox:), read and rendered with its own table.
consumer_key consumer_map_key(std::string_view name, const std::vector<consumer_key>& (*table)()) {
    return consumer_key{
        name,
        {},
        [table](reader& r, const YAML::Node& node, const std::string& path, consumer_config& c) {
            // The key node is not at hand here; a value that is not a map is marked at itself.
            read_keys(r, table(), node, node, path, c);
        },
        [table](YAML::Emitter& out, const consumer_config& c) { emit_keys(out, table(), c); }};
}

const std::vector<consumer_key>& consumer_retry_keys() {
    static const std::vector<consumer_key> table = {
        count_key<consumer_config>(
            "immediate_tries", [](auto& c) -> auto& { return c.retry.immediate_tries; }, 1, 100),
        duration_key<consumer_config>(
            "immediate_delay", [](auto& c) -> auto& { return c.retry.immediate_delay; }, 0ms, 1min),
        duration_key<consumer_config>(
            "base_delay", [](auto& c) -> auto& { return c.retry.base_delay; }, 1ms,
            std::chrono::hours(24)),
        duration_key<consumer_config>(
            "max_delay", [](auto& c) -> auto& { return c.retry.max_delay; }, 1ms,
            std::chrono::hours(24 * 7)),
        count_key<consumer_config>(
            "max_attempts", [](auto& c) -> auto& { return c.retry.max_attempts; }, 1, 1000000),
        count_key<consumer_config>(
            "workers", [](auto& c) -> auto& { return c.retry.workers; }, 1, 64),
        duration_key<consumer_config>(
            "poll", [](auto& c) -> auto& { return c.retry.poll; }, 1ms, 1min),
        count_key<consumer_config>(
            "batch", [](auto& c) -> auto& { return c.retry.batch; }, 1, 10000),
        duration_key<consumer_config>(
            "claim_ttl", [](auto& c) -> auto& { return c.retry.claim_ttl; }, 1s,
            std::chrono::hours(1)),
    };
    return table;
}

const std::vector<consumer_key>& consumer_inbox_keys() {
    static const std::vector<consumer_key> table = {
        duration_key<consumer_config>(
            "retention", [](auto& c) -> auto& { return c.inbox.retention; }, 1min,
            std::chrono::hours(24 * 3660)),
        duration_key<consumer_config>(
            "prune_interval", [](auto& c) -> auto& { return c.inbox.prune_interval; }, 0ms,
            std::chrono::hours(24)),
        count_key<consumer_config>(
            "prune_batch", [](auto& c) -> auto& { return c.inbox.prune_batch; }, 1, 1000000),
        duration_key<consumer_config>(
            "lock_wait", [](auto& c) -> auto& { return c.inbox.lock_wait; }, 0ms, 10min),
    };
    return table;
}

// consumers[i].topics: a list of outbox topic names.
consumer_key consumer_topics_key() {
    return consumer_key{
        "topics",
        {},
        [](reader& r, const YAML::Node& node, const std::string& path, consumer_config& c) {
            if (node.IsNull()) return;  // reported as missing by the entry's own check
            if (!node.IsSequence()) {
                r.error(node.Mark(), path, "expected a list of topics ([order-placed, ...])");
                return;
            }
            for (std::size_t i = 0; i < node.size(); ++i) {
                const YAML::Node item = node[i];
                const auto at = path + "[" + std::to_string(i) + "]";
                const auto t = r.scalar_text(item, item, at);
                if (!t) continue;
                if (auto problem = topic_problem(*t)) {
                    r.error(item.Mark(), at, *problem);
                    continue;
                }
                if (std::find(c.topics.begin(), c.topics.end(), *t) != c.topics.end()) {
                    r.error(item.Mark(), at, "topic " + shown("", *t) + " is listed twice");
                    continue;
                }
                c.topics.push_back(*t);
            }
        },
        [](YAML::Emitter& out, const consumer_config& c) {
            out << YAML::Flow << YAML::BeginSeq;
            for (const auto& t : c.topics) out << t;
            out << YAML::EndSeq;
        }};
}

// consumers[i].kafka_properties: librdkafka consumer settings passed through. The runtime owns
// the broker list (kafka.brokers), the group id and offset commits, so those are errors here.
consumer_key consumer_properties_key() {
    return kafka_properties_key<consumer_config>(
        "kafka_properties", [](auto& c) -> auto& { return c.kafka_properties; },
        [](const std::string& name) -> std::optional<std::string> {
            if (name == "bootstrap.servers" || name == "metadata.broker.list") {
                return "set kafka.brokers instead";
            }
            if (name == "group.id") return "set the entry's group instead";
            if (name == "enable.auto.commit" || name == "enable.auto.offset.store") {
                return "the consumer commits offsets itself, only after the effect; this "
                       "property cannot be set";
            }
            return std::nullopt;
        });
}

std::optional<std::string> check_optional_dsn(const std::string& dsn) {
    return dsn.empty() ? std::nullopt : check_dsn(dsn);
}
std::optional<std::string> check_optional_identifier(const std::string& name) {
    return name.empty() ? std::nullopt : check_identifier(name);
}
std::optional<std::string> check_optional_redis_url(const std::string& url) {
    return url.empty() ? std::nullopt : check_redis_url(url);
}
std::optional<std::string> check_optional_topic(const std::string& topic) {
    return topic.empty() ? std::nullopt : topic_problem(topic);
}
std::optional<std::string> check_group_id(const std::string& group) {
    if (group.empty()) return "must not be empty";
    if (group.size() > 255) return "must be at most 255 characters";
    return std::nullopt;
}

const std::vector<consumer_key>& consumer_keys() {
    static const std::vector<consumer_key> table = {
        string_key<consumer_config>(
            "group", [](auto& c) -> auto& { return c.group; }, check_group_id),
        consumer_topics_key(),
        bool_key<consumer_config>(
            "ordered_retry", [](auto& c) -> auto& { return c.ordered_retry; }),
        string_key<consumer_config>(
            "instance_id", [](auto& c) -> auto& { return c.instance_id; }),
        string_key<consumer_config>(
            "dsn", [](auto& c) -> auto& { return c.dsn; }, check_optional_dsn, redact_dsn),
        string_key<consumer_config>(
            "schema", [](auto& c) -> auto& { return c.schema; }, check_optional_identifier),
        string_key<consumer_config>(
            "dedup", [](auto& c) -> auto& { return c.dedup; },
            one_of({"none", "redis", "inbox", "redis_and_inbox"})),
        count_key<consumer_config>(
            "lanes", [](auto& c) -> auto& { return c.lanes; }, 1, 256),
        string_key<consumer_config>(
            "redis_url", [](auto& c) -> auto& { return c.redis_url; }, check_optional_redis_url,
            redact_url),
        string_key<consumer_config>(
            "redis_key_prefix", [](auto& c) -> auto& { return c.redis_key_prefix; },
            [](const std::string& v) -> std::optional<std::string> {
                if (v.empty()) return "must not be empty";
                return std::nullopt;
            }),
        duration_key<consumer_config>(
            "done_window", [](auto& c) -> auto& { return c.done_window; }, 1s,
            std::chrono::hours(24 * 30)),
        duration_key<consumer_config>(
            "lease", [](auto& c) -> auto& { return c.lease; }, 100ms, std::chrono::hours(1)),
        count_key<consumer_config>(
            "batch_max", [](auto& c) -> auto& { return c.batch_max; }, 1, 10000),
        duration_key<consumer_config>(
            "batch_max_time", [](auto& c) -> auto& { return c.batch_max_time; }, 1ms, 1min),
        count_key<consumer_config>(
            "poll_batch", [](auto& c) -> auto& { return c.poll_batch; }, 1, 100000),
        duration_key<consumer_config>(
            "poll_timeout", [](auto& c) -> auto& { return c.poll_timeout; }, 1ms, 10s),
        duration_key<consumer_config>(
            "commit_interval", [](auto& c) -> auto& { return c.commit_interval; }, 1ms, 1min),
        count_key<consumer_config>(
            "max_queued", [](auto& c) -> auto& { return c.max_queued; }, 1, 10000000),
        size_key<consumer_config>(
            "max_queued_bytes", [](auto& c) -> auto& { return c.max_queued_bytes; }, k_mib,
            std::size_t{64} * 1024 * k_mib),
        count_key<consumer_config>(
            "max_headers", [](auto& c) -> auto& { return c.max_headers; }, 1, 10000),
        size_key<consumer_config>(
            "max_header_bytes", [](auto& c) -> auto& { return c.max_header_bytes; }, 1, 16 * k_mib),
        string_key<consumer_config>(
            "auto_offset_reset", [](auto& c) -> auto& { return c.auto_offset_reset; },
            one_of({"earliest", "latest"})),
        duration_key<consumer_config>(
            "session_timeout", [](auto& c) -> auto& { return c.session_timeout; }, 1s, 1h),
        duration_key<consumer_config>(
            "revoke_timeout", [](auto& c) -> auto& { return c.revoke_timeout; }, 0ms, 10min),
        duration_key<consumer_config>(
            "shutdown_timeout", [](auto& c) -> auto& { return c.shutdown_timeout; }, 0ms, 10min),
        consumer_properties_key(),
        string_key<consumer_config>(
            "dead_letter_topic", [](auto& c) -> auto& { return c.dead_letter_topic; },
            check_optional_topic),
        consumer_map_key("retry", consumer_retry_keys),
        consumer_map_key("inbox", consumer_inbox_keys),
    };
    return table;
}

// The `consumers:` section: a list of entries, each checked like a section, then for what only
// the whole entry can tell (required keys, max_attempts against immediate_tries, a group listed
// twice).
void read_consumers(reader& r, const YAML::Node& node, const std::string& path, ferry_config& c) {
    if (node.IsNull()) return;
    if (!node.IsSequence()) {
        r.error(node.Mark(), path,
                "expected a list of consumer groups (\"- group: name\" entries with topics)");
        return;
    }
    std::vector<std::pair<std::string, YAML::Mark>> groups;
    for (std::size_t i = 0; i < node.size(); ++i) {
        const YAML::Node item = node[i];
        const auto at = path + "[" + std::to_string(i) + "]";
        if (!item.IsMap()) {
            r.error(item.Mark(), at, "expected a map (group, topics, dedup, ...)");
            continue;
        }
        consumer_config entry;
        const auto errors_before = r.error_count();
        read_keys(r, consumer_keys(), item, item, at, entry);
        const auto mark = item.Mark();
        if (!item["group"]) r.error(mark, at + ".group", "required: the Kafka consumer group id");
        if (!item["topics"] || (item["topics"].IsSequence() && item["topics"].size() == 0) ||
            item["topics"].IsNull()) {
            r.error(item["topics"] ? item["topics"].Mark() : mark, at + ".topics",
                    "required: at least one topic");
        }
        if (entry.retry.max_attempts < entry.retry.immediate_tries) {
            const YAML::Node retry = item["retry"];
            r.error(retry ? retry.Mark() : mark, at + ".retry.max_attempts",
                    "must be at least retry.immediate_tries (" +
                        std::to_string(entry.retry.immediate_tries) + "), got " +
                        std::to_string(entry.retry.max_attempts));
        }
        if (entry.retry.max_delay < entry.retry.base_delay) {
            const YAML::Node retry = item["retry"];
            r.error(retry ? retry.Mark() : mark, at + ".retry.max_delay",
                    "must be at least retry.base_delay (" +
                        detail::format_duration(entry.retry.base_delay) + ")");
        }
        if (!entry.group.empty()) {
            const auto dup = std::find_if(groups.begin(), groups.end(),
                                          [&](const auto& g) { return g.first == entry.group; });
            if (dup != groups.end()) {
                r.error(item["group"].Mark(), at + ".group",
                        "group " + shown("", entry.group) + " is already configured at line " +
                            std::to_string(one_based(dup->second.line)));
            } else {
                groups.emplace_back(entry.group, item["group"].Mark());
            }
        }
        if (r.error_count() == errors_before) c.consumers.push_back(std::move(entry));
    }
}

void emit_consumers(YAML::Emitter& out, const ferry_config& c) {
    if (c.consumers.empty()) out << YAML::Flow;
    out << YAML::BeginSeq;
    for (const auto& entry : c.consumers) emit_keys(out, consumer_keys(), entry);
    out << YAML::EndSeq;
}

const std::vector<section_spec>& sections() {
    static const std::vector<section_spec> table = {
        {"postgres",
         {
             string_key(
                 "dsn", [](auto& c) -> auto& { return c.postgres.dsn; }, check_dsn, redact_dsn),
             string_key(
                 "schema", [](auto& c) -> auto& { return c.postgres.schema; }, check_identifier),
             bool_key(
                 "migrate_on_start", [](auto& c) -> auto& { return c.postgres.migrate_on_start; }),
             duration_key(
                 "connect_timeout", [](auto& c) -> auto& { return c.postgres.connect_timeout; },
                 1ms, 10min),
         }},
        {"outbox",
         {
             key_spec{"mode",
                      [](ferry_config& c, const std::string& v) -> std::optional<std::string> {
                          if (v == "table") {
                              c.outbox.mode = outbox::emit_mode::table;
                          } else if (v == "wal") {
                              c.outbox.mode = outbox::emit_mode::wal;
                          } else {
                              return "expected table or wal, got " + shown("mode", v);
                          }
                          return std::nullopt;
                      },
                      {},
                      [](YAML::Emitter& out, const ferry_config& c) {
                          out << (c.outbox.mode == outbox::emit_mode::wal ? "wal" : "table");
                      }},
             size_key(
                 "max_payload_bytes", [](auto& c) -> auto& { return c.outbox.max_payload_bytes; },
                 1, 100 * k_mib),
             size_key(
                 "max_key_bytes", [](auto& c) -> auto& { return c.outbox.max_key_bytes; }, 1,
                 k_mib),
             size_key(
                 "max_headers_bytes", [](auto& c) -> auto& { return c.outbox.max_headers_bytes; },
                 1, 16 * k_mib),
         }},
        {"kafka",
         {
             string_key(
                 "brokers", [](auto& c) -> auto& { return c.kafka.brokers; }, check_brokers),
             string_key(
                 "compression", [](auto& c) -> auto& { return c.kafka.compression; },
                 one_of({"none", "gzip", "snappy", "lz4", "zstd"})),
             string_key(
                 "topic_prefix", [](auto& c) -> auto& { return c.kafka.topic_prefix; },
                 check_topic_prefix),
             topic_map_key(),
             properties_key(),
         }},
        {"redis",
         {
             string_key(
                 "url", [](auto& c) -> auto& { return c.redis.url; }, check_redis_url, redact_url),
             duration_key(
                 "connect_timeout", [](auto& c) -> auto& { return c.redis.connect_timeout; }, 1ms,
                 10min),
         }},
        {"http",
         {
             string_key(
                 "listen", [](auto& c) -> auto& { return c.http.listen; }, check_listen),
             string_key(
                 "token_env", [](auto& c) -> auto& { return c.http.token_env; }, check_env_name),
             bool_key(
                 "token_for_metrics", [](auto& c) -> auto& { return c.http.token_for_metrics; }),
             size_key(
                 "max_body_bytes", [](auto& c) -> auto& { return c.http.max_body_bytes; }, 0,
                 16 * k_mib),
             size_key(
                 "max_uri_bytes", [](auto& c) -> auto& { return c.http.max_uri_bytes; }, 256, 8192),
             count_key(
                 "reports_max_limit", [](auto& c) -> auto& { return c.http.reports_max_limit; }, 1,
                 100000),
             count_key(
                 "report_connections", [](auto& c) -> auto& { return c.http.report_connections; },
                 1, 64),
             duration_key(
                 "report_pool_wait", [](auto& c) -> auto& { return c.http.report_pool_wait; }, 1ms,
                 1min),
         }},
        {"log",
         {
             string_key(
                 "level", [](auto& c) -> auto& { return c.log.level; },
                 one_of({"trace", "debug", "info", "warn", "error"})),
             string_key(
                 "format", [](auto& c) -> auto& { return c.log.format; }, one_of({"text", "json"})),
         }},
        {"relay",
         {
             string_key(
                 "instance_id", [](auto& c) -> auto& { return c.relay.instance_id; }),
             string_key(
                 "source", [](auto& c) -> auto& { return c.relay.source; },
                 one_of({"polling", "wal", "snapshot"})),
             string_key(
                 "wal_slot", [](auto& c) -> auto& { return c.relay.wal_slot; }, check_identifier),
             string_key(
                 "wal_publication", [](auto& c) -> auto& { return c.relay.wal_publication; },
                 check_identifier),
             count_key(
                 "lease_groups", [](auto& c) -> auto& { return c.relay.lease_groups; }, 1, 256),
             duration_key(
                 "lease_ttl", [](auto& c) -> auto& { return c.relay.lease_ttl; }, 1s, 10min),
             count_key(
                 "batch_size", [](auto& c) -> auto& { return c.relay.batch_size; }, 1, 100000),
             duration_key(
                 "poll_min", [](auto& c) -> auto& { return c.relay.poll_min; }, 1ms, 1min),
             duration_key(
                 "poll_max", [](auto& c) -> auto& { return c.relay.poll_max; }, 1ms, 1min),
             duration_key(
                 "delivery_timeout", [](auto& c) -> auto& { return c.relay.delivery_timeout; }, 1s,
                 10min),
             duration_key(
                 "shutdown_timeout", [](auto& c) -> auto& { return c.relay.shutdown_timeout; }, 1s,
                 10min),
             duration_key(
                 "published_retention",
                 [](auto& c) -> auto& { return c.relay.published_retention; }, 1min,
                 std::chrono::hours(24 * 366)),
             bool_key(
                 "ledger_payloads", [](auto& c) -> auto& { return c.relay.ledger_payloads; }),
             count_key(
                 "mark_lanes", [](auto& c) -> auto& { return c.relay.mark_lanes; }, 1, 8),
         }},
        {"checkback",
         {
             bool_key(
                 "enabled", [](auto& c) -> auto& { return c.checkback.enabled; }),
             duration_key(
                 "first_after", [](auto& c) -> auto& { return c.checkback.first_after; }, 0ms,
                 std::chrono::hours(24)),
             duration_key(
                 "interval", [](auto& c) -> auto& { return c.checkback.interval; }, 10ms,
                 std::chrono::hours(24)),
             count_key(
                 "max_checks", [](auto& c) -> auto& { return c.checkback.max_checks; }, 0, 1000),
             duration_key(
                 "tick", [](auto& c) -> auto& { return c.checkback.tick; }, 10ms, 1min),
             count_key(
                 "batch_size", [](auto& c) -> auto& { return c.checkback.batch_size; }, 1, 10000),
             checkback_groups_key(),
         }},
        {"reconcile",
         {
             bool_key(
                 "enabled", [](auto& c) -> auto& { return c.reconcile.enabled; }),
             duration_key(
                 "interval", [](auto& c) -> auto& { return c.reconcile.interval; }, 1s,
                 std::chrono::hours(24 * 7)),
             duration_key(
                 "window", [](auto& c) -> auto& { return c.reconcile.window; }, 1s,
                 std::chrono::hours(24 * 366)),
             duration_key(
                 "grace", [](auto& c) -> auto& { return c.reconcile.grace; }, 0ms,
                 std::chrono::hours(24)),
             duration_key(
                 "stuck_unpublished",
                 [](auto& c) -> auto& { return c.reconcile.stuck_unpublished; }, 1s,
                 std::chrono::hours(24 * 7)),
             bool_key(
                 "redrive", [](auto& c) -> auto& { return c.reconcile.redrive; }),
             count_key(
                 "redrive_cap", [](auto& c) -> auto& { return c.reconcile.redrive_cap; }, 0,
                 10000000),
             count_key(
                 "chunk_size", [](auto& c) -> auto& { return c.reconcile.chunk_size; }, 1, 1000000),
             duration_key(
                 "retention", [](auto& c) -> auto& { return c.reconcile.retention; }, 1min,
                 std::chrono::hours(24 * 3660)),
             reconcile_groups_key(),
         }},
        {"retention",
         {
             duration_key(
                 "interval", [](auto& c) -> auto& { return c.retention.interval; }, 0ms,
                 std::chrono::hours(24)),
             count_key(
                 "batch", [](auto& c) -> auto& { return c.retention.batch; }, 1, 100000),
             duration_key(
                 "half_message", [](auto& c) -> auto& { return c.retention.half_message; }, 1min,
                 std::chrono::hours(24 * 3660)),
             duration_key(
                 "expired", [](auto& c) -> auto& { return c.retention.expired; }, 1min,
                 std::chrono::hours(24 * 3660)),
             duration_key(
                 "dead_letter", [](auto& c) -> auto& { return c.retention.dead_letter; }, 1min,
                 std::chrono::hours(24 * 3660)),
             duration_key(
                 "check_request", [](auto& c) -> auto& { return c.retention.check_request; }, 1min,
                 std::chrono::hours(24 * 3660)),
         }},
        {"consumers", {}, read_consumers, emit_consumers},
    };
    return table;
}

const key_spec* find_key(std::string_view section, std::string_view key) {
    for (const auto& s : sections()) {
        if (s.name == section) return s.find(key);
    }
    return nullptr;
}

// Environment variables that replace a file value. Applied after the file, through the same
// setter and validator as the YAML key.
struct env_override {
    std::string_view variable;
    std::string_view section;
    std::string_view key;
};

constexpr env_override k_env_overrides[] = {
    {"FERRY_POSTGRES_DSN", "postgres", "dsn"},
    {"FERRY_KAFKA_BROKERS", "kafka", "brokers"},
    {"FERRY_REDIS_URL", "redis", "url"},
    {"FERRY_HTTP_LISTEN", "http", "listen"},
};

// The last steps of every load: environment overrides, then derived fields.
void finish(load_result& result, const env_lookup& env) {
    if (env) {
        for (const auto& o : k_env_overrides) {
            const auto value = env(std::string(o.variable));
            if (!value) continue;
            const key_spec* spec = find_key(o.section, o.key);
            if (auto problem = spec->set(result.config, *value)) {
                result.errors.push_back(
                    diagnostic{"env", 0, 0, std::string(o.section) + "." + std::string(o.key),
                               std::string(o.variable) + ": " + *problem});
            }
        }
    }
    // The writer reads its schema from writer_options; there is deliberately one key for it.
    result.config.outbox.schema = result.config.postgres.schema;
    result.config.outbox.check_first_after = result.config.checkback.first_after;
    result.config.outbox.check_interval = result.config.checkback.interval;
    result.config.outbox.max_checks = static_cast<int>(result.config.checkback.max_checks);
}

// The nesting limit, checked on yaml-cpp's event stream before any node is built: the probe
// counts open maps and lists and stops the parse at the first one past the limit.
class depth_probe final : public YAML::EventHandler {
public:
    struct too_deep : std::exception {
        explicit too_deep(const YAML::Mark& m) : mark(m) {}
        [[nodiscard]] const char* what() const noexcept override { return "too deep"; }
        YAML::Mark mark;
    };

    explicit depth_probe(std::size_t max_depth) : _max(max_depth) {}

    void OnDocumentStart(const YAML::Mark&) override { _depth = 0; }
    void OnDocumentEnd() override {}
    void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
    void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
    void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  const std::string&) override {}
    void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                         YAML::EmitterStyle::value) override {
        enter(mark);
    }
    void OnSequenceEnd() override { --_depth; }
    void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                    YAML::EmitterStyle::value) override {
        enter(mark);
    }
    void OnMapEnd() override { --_depth; }

private:
    void enter(const YAML::Mark& mark) {
        if (++_depth > _max) throw too_deep(mark);
    }

    std::size_t _max;
    std::size_t _depth = 0;
};

std::string size_limit_message(const load_limits& limits) {
    return "over the size limit of " + std::to_string(limits.max_bytes) +
           " bytes for a configuration (load_limits.max_bytes)";
}

// yaml-cpp 0.7 (Debian bookworm) never returns from parsing a document whose top level holds a
// flow entry (`,`) outside any [...] or {...}: first as its first token (found by fuzz_config
// with ",kafka:"; also after a tag, "!-,", found with "!-,!---"), then right after a complete
// top-level flow collection or quoted scalar (found by fuzz_config with "{},ka:A"; also
// `"x",y`, `[a] ,`). Neither is valid YAML (a plain scalar
// cannot start with `,`), so this finds them before yaml-cpp sees them and returns the comma's
// 1-based line and column. Inside a block mapping or sequence (`a: {}, b`) yaml-cpp reports the
// error itself and nothing here applies.
std::optional<std::pair<std::size_t, std::size_t>> top_level_flow_entry(const std::string& text) {
    const auto n = text.size();
    const auto at = [&](std::size_t i) { return i < n ? text[i] : '\0'; };
    const auto line_col = [&](std::size_t i) {
        std::size_t line = 1, col = 1;
        for (std::size_t k = 0; k < i; ++k) {
            if (text[k] == '\n') {
                ++line;
                col = 1;
            } else {
                ++col;
            }
        }
        return std::make_pair(line, col);
    };
    const auto line_start = [&](std::size_t i) { return i == 0 || text[i - 1] == '\n'; };
    const auto marker = [&](std::size_t i, char c) {
        return line_start(i) && at(i) == c && at(i + 1) == c && at(i + 2) == c &&
               (i + 3 >= n || at(i + 3) == ' ' || at(i + 3) == '\t' || at(i + 3) == '\r' ||
                at(i + 3) == '\n');
    };
    const auto space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
    // Skips blanks, line breaks, comments, and (when `properties`) anchors and tags.
    const auto skip_blank = [&](std::size_t i, bool properties) {
        for (;;) {
            if (i < n && space(text[i])) {
                ++i;
            } else if (at(i) == '#' && (i == 0 || space(text[i - 1]))) {
                while (i < n && text[i] != '\n') ++i;
            } else if (properties && (at(i) == '&' || at(i) == '!')) {
                // An anchor or tag ends at a blank or a flow indicator (neither may hold one).
                ++i;
                while (i < n && !space(text[i]) &&
                       std::string_view(",[]{}").find(text[i]) == std::string_view::npos) {
                    ++i;
                }
            } else {
                return i;
            }
        }
    };
    // The end of a quoted scalar opening at `i`.
    const auto skip_quoted = [&](std::size_t i) {
        const char q = text[i++];
        while (i < n) {
            if (q == '"' && text[i] == '\\') {
                i += 2;
            } else if (text[i] == q) {
                if (q == '\'' && at(i + 1) == '\'') {
                    i += 2;
                } else {
                    return i + 1;
                }
            } else {
                ++i;
            }
        }
        return n;
    };
    // The end of a flow collection opening at `i` (quotes start only where a token can).
    const auto skip_flow = [&](std::size_t i) {
        int depth = 0;
        bool token_start = true;
        while (i < n) {
            const char c = text[i];
            if ((c == '"' || c == '\'') && token_start) {
                i = skip_quoted(i);
                token_start = false;
                continue;
            }
            if (c == '#' && i > 0 && space(text[i - 1])) {
                while (i < n && text[i] != '\n') ++i;
                continue;
            }
            if (c == '[' || c == '{') {
                ++depth;
            } else if (c == ']' || c == '}') {
                if (--depth == 0) return i + 1;
            }
            token_start = c == '[' || c == '{' || c == ',' || c == ':' || space(c);
            ++i;
        }
        return n;
    };
    // Every document: the text's start, each `---` line, and the line after each `...` line.
    std::vector<std::size_t> starts{0};
    for (std::size_t k = 0; k < n; ++k) {
        if (marker(k, '-')) {
            starts.push_back(k);
        } else if (marker(k, '.')) {
            const auto e = text.find('\n', k);
            if (e != std::string::npos) starts.push_back(e + 1);
        }
    }
    for (const auto doc : starts) {
        std::size_t i = doc;
        for (;;) {  // directives
            i = skip_blank(i, false);
            if (at(i) != '%' || !line_start(i)) break;
            while (i < n && text[i] != '\n') ++i;
        }
        if (marker(i, '-')) i += 3;
        i = skip_blank(i, true);
        if (at(i) == ',') return line_col(i);
        if (at(i) == '[' || at(i) == '{' || at(i) == '"' || at(i) == '\'') {
            i = (at(i) == '"' || at(i) == '\'') ? skip_quoted(i) : skip_flow(i);
            i = skip_blank(i, false);
            if (at(i) == ',') return line_col(i);
        }
    }
    return std::nullopt;
}

// The checks that need no parser: the size limit, a zero byte and the known yaml-cpp hangs,
// each as one diagnostic with its place, or nullopt. A syntax error is left to the real parse.
// The known hangs are also caught by the time limit of parse_text_guarded; refusing them here
// gives the place and the reason instead of a timeout 2 s later.
std::optional<diagnostic> check_limits(const std::string& text, const std::string& source,
                                       const load_limits& limits) {
    if (text.size() > limits.max_bytes) {
        return diagnostic{source, 0, 0, "",
                          std::to_string(text.size()) + " bytes is " + size_limit_message(limits)};
    }
    // yaml-cpp reads a text with zero bytes as UTF-16 or UTF-32 (its encoding detection), where
    // "\0," is a comma again and the parser hangs as below (found by fuzz_config). A
    // configuration is UTF-8 text: a zero byte is refused where it is.
    if (const auto nul = text.find('\0'); nul != std::string::npos) {
        std::size_t line = 1, col = 1;
        for (std::size_t k = 0; k < nul; ++k) {
            if (text[k] == '\n') {
                ++line;
                col = 1;
            } else {
                ++col;
            }
        }
        return diagnostic{source, static_cast<int>(line), static_cast<int>(col), "",
                          "a zero byte (NUL): a configuration must be UTF-8 text"};
    }
    if (const auto at = top_level_flow_entry(text)) {
        return diagnostic{source, static_cast<int>(at->first), static_cast<int>(at->second), "",
                          "a document cannot start with ',' or have one after its top-level "
                          "node (a flow entry outside any [...] or {...}); the YAML parser would "
                          "never return on it"};
    }
    return std::nullopt;
}

// All of yaml-cpp's work on an untrusted text: the depth limit on the event stream, then the
// documents as nodes; a problem is one diagnostic. Deterministic: the same bytes take the same
// path through the same code, which is what lets a child's run of it vouch for the parent's.
// The caller holds yaml_mutex().
struct parsed_text {
    std::optional<diagnostic> problem;
    std::vector<YAML::Node> docs;
};

parsed_text parse_text(const std::string& text, const std::string& source,
                       const load_limits& limits) {
    parsed_text out;
    std::istringstream in(text);
    YAML::Parser parser(in);
    depth_probe probe(limits.max_depth);
    try {
        while (parser.HandleNextDocument(probe)) {
        }
    } catch (const depth_probe::too_deep& e) {
        out.problem = diagnostic{source, one_based(e.mark.line), one_based(e.mark.column), "",
                                 "nesting is deeper than the depth limit of " +
                                     std::to_string(limits.max_depth) +
                                     " levels of maps and lists (load_limits.max_depth)"};
        return out;
    } catch (const YAML::Exception&) {
        // A syntax error: LoadAll below reports it with its place.
    }
    try {
        out.docs = YAML::LoadAll(text);
    } catch (const YAML::Exception& e) {
        // A syntax error ends parsing: yaml-cpp cannot recover, and what follows the error would
        // be guesswork. It is still one diagnostic with its place, not an exception.
        out.problem = diagnostic{source, one_based(e.mark.line), one_based(e.mark.column), "",
                                 "YAML syntax error: " + e.msg};
    }
    return out;
}

std::string duration_text(std::chrono::milliseconds d) {
    return d.count() % 1000 == 0 ? std::to_string(d.count() / 1000) + " s"
                                 : std::to_string(d.count()) + " ms";
}

// parse_text, but first in a forked child with load_limits' time and memory limits, so a
// yaml-cpp hang (or crash) on malformed input becomes a diagnostic instead of this process's
// fate. Only a text whose parse finished in the child is parsed here (ADR 0050, third
// amendment). The caller holds yaml_mutex().
parsed_text parse_text_guarded(const std::string& text, const std::string& source,
                               const load_limits& limits) {
    if (limits.parse_timeout.count() <= 0) return parse_text(text, source, limits);
    const auto trial = detail::run_isolated([&] { (void)parse_text(text, source, limits); },
                                            {limits.parse_timeout, limits.parse_memory});
    const auto refused = [&](std::string message) {
        parsed_text out;
        out.problem = diagnostic{source, 0, 0, "", std::move(message)};
        return out;
    };
    switch (trial.status) {
        case detail::isolation_status::finished:
            return parse_text(text, source, limits);
        case detail::isolation_status::timed_out:
            return refused("YAML parse did not finish within " +
                           duration_text(limits.parse_timeout) +
                           " (yaml-cpp hang on malformed input; load_limits.parse_timeout)");
        case detail::isolation_status::out_of_memory:
            return refused("YAML parse needed more than " +
                           std::to_string(limits.parse_memory / k_mib) +
                           " MiB of memory (load_limits.parse_memory)");
        case detail::isolation_status::crashed:
            return refused("the YAML parser crashed on this text (" +
                           (trial.signal != 0 ? "signal " + std::to_string(trial.signal) + ", " +
                                                    std::string(strsignal(trial.signal))
                                              : "exit code " + std::to_string(trial.code)) +
                           ")");
        case detail::isolation_status::unavailable:
            break;
    }
    return refused("cannot run the YAML parse in a child process (" + trial.reason +
                   "); load_limits.parse_timeout = 0 parses in-process instead");
}

}  // namespace

std::string diagnostic::to_string() const {
    std::string out = source;
    if (line > 0) out += ":" + std::to_string(line) + ":" + std::to_string(column);
    out += ": ";
    if (!key.empty()) out += key + ": ";
    out += message;
    return out;
}

env_lookup process_env() {
    return [](const std::string& name) -> std::optional<std::string> {
        // getenv is safe here as long as nobody calls setenv concurrently, which Ferry does not.
        const char* value = std::getenv(name.c_str());
        if (value == nullptr) return std::nullopt;
        return std::string(value);
    };
}

load_result load_defaults(const env_lookup& env) {
    load_result result;
    finish(result, env);
    return result;
}

load_result load_string(std::string_view yaml, const std::string& source, const env_lookup& env,
                        const load_limits& limits) {
    load_result result;
    reader r(source, env, result.errors);
    const std::string text(yaml);
    if (auto problem = check_limits(text, source, limits)) {
        // Nothing of hostile text is read: defaults and overrides only, plus the one error.
        result.errors.push_back(std::move(*problem));
        finish(result, env);
        return result;
    }
    {
        const std::lock_guard lock(detail::yaml_mutex());
        auto parsed = parse_text_guarded(text, source, limits);
        if (parsed.problem) {
            result.errors.push_back(std::move(*parsed.problem));
        } else {
            if (!parsed.docs.empty()) r.read_root(parsed.docs.front(), result.config);
            if (parsed.docs.size() > 1) {
                r.error(parsed.docs[1].Mark(), "",
                        "only one YAML document is allowed (remove \"---\")");
            }
        }
    }
    finish(result, env);
    return result;
}

load_result load_file(const std::string& path, const env_lookup& env, const load_limits& limits) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        load_result result;
        result.errors.push_back(
            diagnostic{path, 0, 0, "", std::string("cannot open file: ") + std::strerror(errno)});
        return result;
    }
    // At most one byte past the limit is read, so /dev/zero or a mistaken multi-gigabyte path is
    // refused at once instead of filling memory.
    std::string text;
    char chunk[64 * 1024];
    while (text.size() <= limits.max_bytes && in.read(chunk, sizeof chunk).gcount() > 0) {
        const auto room = limits.max_bytes + 1 - text.size();
        text.append(chunk, std::min(static_cast<std::size_t>(in.gcount()), room));
    }
    if (in.bad()) {
        load_result result;
        result.errors.push_back(diagnostic{path, 0, 0, "", "cannot read file"});
        return result;
    }
    if (text.size() > limits.max_bytes) {
        load_result result;
        result.errors.push_back(
            diagnostic{path, 0, 0, "", "file is " + size_limit_message(limits)});
        return result;
    }
    return load_string(text, path, env, limits);
}

std::string kafka_topic(const kafka_config& kafka, const std::string& topic) {
    const auto it = kafka.topic_map.find(topic);
    return kafka.topic_prefix + (it == kafka.topic_map.end() ? topic : it->second);
}

const consumer_config* find_consumer(const ferry_config& cfg, std::string_view group) {
    for (const auto& c : cfg.consumers) {
        if (c.group == group) return &c;
    }
    return nullptr;
}

std::string render_redacted(const ferry_config& cfg) {
    const std::lock_guard lock(detail::yaml_mutex());
    YAML::Emitter out;
    out << YAML::BeginMap;
    for (const auto& section : sections()) {
        out << YAML::Key << std::string(section.name) << YAML::Value;
        if (section.emit_whole) {
            section.emit_whole(out, cfg);
        } else {
            emit_keys(out, section.keys, cfg);
        }
    }
    out << YAML::EndMap;
    return std::string(out.c_str()) + "\n";
}

}  // namespace ferry::config
