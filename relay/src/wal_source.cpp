// The WAL source (wal_source.hpp has the rules): stream, yield in commit order, yield unfinished
// rows again, park what cannot be published, record marks, confirm what is recorded.

#include "wal_source.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <utility>

#include "binary_array.hpp"
#include "fault_points.hpp"
#include "ferry/common/error.hpp"
#include "ferry/internal/pg_array.hpp"
#include "ferry/internal/pq.hpp"
#include "ferry/outbox/message_id.hpp"
#include "ferry/wal/lsn.hpp"
#include "ferry/wal/slot.hpp"
#include "log_text.hpp"
#include "marker.hpp"

namespace ferry::relay::detail {

using namespace std::chrono_literals;

namespace {

constexpr const char* k_key_parked = "KEY_PARKED";
constexpr const char* k_invalid = "WAL_MESSAGE_INVALID";

std::int64_t unix_us(const wal::micros_time& t) { return t.time_since_epoch().count(); }

std::string hex_bytea(std::string_view bytes) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(2 + bytes.size() * 2);
    out += "\\x";
    for (const unsigned char c : bytes) {
        out += digits[c >> 4];
        out += digits[c & 0xf];
    }
    return out;
}

// The reader thread's feed: the stream's messages through the assembler.
class stream_feed final : public wal_feed {
public:
    stream_feed(wal::replication_stream& s, wal::transaction_assembler& a) : _s(s), _a(a) {}
    std::optional<wal::wal_event> next(std::chrono::milliseconds timeout) override {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            const auto now = std::chrono::steady_clock::now();
            const auto left =
                now < deadline
                    ? std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now)
                    : 0ms;
            auto item = _s.next(left);
            if (!item) return std::nullopt;
            if (auto event = _a.feed(item->message())) return event;
        }
    }
    void acknowledge(wal::lsn flushed, bool send_now) override {
        _s.acknowledge(flushed);
        if (send_now) _s.send_status();
    }
    [[nodiscard]] wal::lsn confirmed() const override { return _s.confirmed(); }
    [[nodiscard]] std::int64_t last_send_time() const override { return _s.last_send_time(); }

private:
    wal::replication_stream& _s;
    wal::transaction_assembler& _a;
};

// A timestamptz from microseconds since the Unix epoch, exactly (no float rounding).
std::string ts_expr(const std::string& param) {
    return "timestamptz 'epoch' + " + param + " * interval '1 microsecond'";
}

}  // namespace

wal_metrics::wal_metrics(ferry::metrics::registry& m)
    : slot_lag_bytes(m.add_gauge(
          "ferry_wal_slot_lag_bytes",
          "WAL bytes written after the slot's confirmed position (what the relay has yet to "
          "publish or skip), from pg_replication_slots.")),
      slot_lost(m.add_gauge("ferry_wal_slot_lost",
                            "1 when the relay's replication slot is missing or invalidated: "
                            "messages may be unpublishable; never recreated automatically.")),
      unconfirmed(m.add_gauge("ferry_wal_unconfirmed_messages",
                              "Messages received from the slot and not yet recorded (the "
                              "duplicates a crash now could cause).")),
      confirmed_lsn(m.add_gauge("ferry_wal_confirmed_lsn",
                                "The WAL position this relay last confirmed to the slot.")),
      received(m.add_counter("ferry_wal_messages_received_total",
                             "Ferry messages of this schema received from the slot (replays "
                             "after a restart included).")),
      rejected(m.add_counter("ferry_wal_rejected_total",
                             "Logical messages with Ferry's prefix that could not be decoded; "
                             "parked with the reason.")),
      stream_starts(m.add_counter("ferry_wal_stream_starts_total",
                                  "Replication streams started (the first and every restart).")),
      snapshot_waits(m.add_counter(
          "ferry_wal_snapshot_waits_total",
          "Claims that waited because a transaction reached the stream before the database "
          "showed it to new snapshots (its rows are yielded again at once).")) {}

wal_source::wal_source(const relay_options& options, std::string quoted_schema,
                       ferry::metrics::counter reconnects, wal_metrics& metrics)
    : _o(options),
      _q(std::move(quoted_schema)),
      _wm(metrics),
      _claim(options, reconnects, "claim") {
    wal::validate_slot_name(_o.wal_slot);
    for (std::size_t lane = 0; lane < std::max<std::size_t>(options.mark_lanes, 1); ++lane) {
        _marks.push_back(std::make_unique<binary_session>(options, reconnects, "mark"));
    }
}

wal_source::~wal_source() { drop_stream(); }

void wal_source::reset_claim_session() noexcept {
    drop_stream();
    _claim.reset();
}

void wal_source::drop_stream() noexcept {
    // The reader first: after stop() the stream is this thread's alone again.
    if (_reader) _reader->stop();
    _reader.reset();
    _feed.reset();
    _pending.clear();
    if (_stream) {
        try {
            // Tell the server what is confirmed before going; a broken connection just closes.
            std::lock_guard lock(_mu);
            _stream->acknowledge(_tracker.confirmable());
            _resume_from = std::max(_resume_from, _stream->confirmed());
            _stream->close();
        } catch (...) {
        }
    }
    if (_stream) _resume_from = std::max(_resume_from, _stream->confirmed());
    _stream.reset();
    _assembler.reset();
    _rejected.clear();
    std::lock_guard lock(_mu);
    // The next stream replays everything after the confirmed position: what was in the window
    // comes again, whole transactions, in order.
    _window.clear();
    _tracker = wal::confirm_tracker{};
    ++_generation;
    _wm.unconfirmed.set(0);
}

void wal_source::start_stream() {
    auto& conn = _claim.get();
    try {
        (void)wal::check_slot(conn, _o.wal_slot);
        _wm.slot_lost.set(0);
    } catch (const ferry::error& e) {
        if (e.code() == "wal.slot_lost") _wm.slot_lost.set(1);
        throw;
    }
    wal::stream_options so;
    so.dsn = _o.dsn;
    so.slot = _o.wal_slot;
    so.publication = _o.wal_publication;
    so.connect_timeout = std::max<std::chrono::seconds>(
        1s, std::chrono::duration_cast<std::chrono::seconds>(_o.connect_timeout));
    so.application_name = "ferry-relay-wal";
    // Report a moved confirmed position within 10 ms (the library's default is 100 ms): what
    // was recorded but not yet reported is replayed after a crash, so at a high drain rate a
    // long interval is most of the duplicates (a status update is one small message).
    so.feedback_interval = 10ms;
    auto stream = std::make_unique<wal::replication_stream>(so);
    try {
        // From this source's own confirmed position when it has one (never past what was
        // recorded); the server starts from the slot's position if that is further.
        stream->start(_resume_from);
    } catch (const ferry::error& e) {
        if (e.code() != "wal.slot_in_use") throw;
        // The lease is ours (checked just before): the other streamer is a former holder, e.g.
        // a paused process whose walsender lives until wal_sender_timeout. It can confirm
        // nothing it has not recorded, and its marks are fenced; end its stream and retry.
        pqxx::nontransaction tx{conn};
        const auto r = internal::exec(
            tx,
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
            "WHERE slot_name = $1 AND active_pid IS NOT NULL AND active_pid <> pg_backend_pid()",
            _o.wal_slot);
        spdlog::warn(
            "event=wal_slot_in_use slot={} action=terminate_former_streamer terminated={} "
            "(this instance holds the lease)",
            _o.wal_slot, r.size());
        throw;
    }
    _stream = std::move(stream);
    _assembler = std::make_unique<wal::transaction_assembler>(_o.schema);
    _feed = std::make_unique<stream_feed>(*_stream, *_assembler);
    wal_reader_limits limits;
    limits.max_messages = std::max<std::size_t>(4 * _o.batch_size, 1024);
    _reader = std::make_unique<wal_reader>(*_feed, limits);
    _wm.stream_starts.inc();
    spdlog::info("event=wal_stream_start slot={} publication={}", _o.wal_slot, _o.wal_publication);
}

std::int64_t wal_source::server_now_us() const {
    const auto t = _reader ? _reader->last_send_time() : 0;
    return t + wal::pg_epoch_unix_seconds * 1000000;
}

wal_source::lease_view wal_source::check_lease(int group, std::int64_t epoch,
                                               const std::vector<source_row>& rows,
                                               const std::vector<std::int64_t>& xids) {
    // The batch's (topic, key) pairs as two parallel array literals, in row order: repeats are
    // harmless (the statement groups the parked rows it finds by key), and cheaper than sorting
    // or hashing copies of the strings here for every batch.
    std::size_t bytes = 0;
    for (const auto& r : rows) bytes += r.topic.size() + r.key.size();
    internal::array_builder topics(rows.size(), bytes), keys(rows.size(), bytes);
    for (const auto& r : rows) {
        topics.add(r.topic);
        keys.add(r.key);
    }
    pqxx::nontransaction tx{_claim.get()};
    // The lease on the database clock and, only if it is ours, which of the batch's keys have
    // a parked message (the oldest parked id of each), in one round trip.
    //
    // The same statement says whether its snapshot already sees every transaction of the batch
    // (wal_xids_visible, migration 0105): a commit can reach the stream a moment before it is
    // visible, and a lookup in that moment would see parked rows the message's own transaction
    // deleted (retry_parked) and park the re-emitted messages again. When not, the caller
    // yields the rows again next time.
    const auto r = internal::exec_cached(
        tx, "ferry_relay_wal_lease",
        "WITH lease AS (SELECT coalesce(owner = $1 AND epoch = $2, false) AS ours, "
        "coalesce(extract(epoch FROM (expires_at - clock_timestamp())) * 1000, 0)::float8 AS "
        "remaining_ms, " +
            _q + ".wal_xids_visible($6::bigint[]) AS visible FROM " + _q +
            ".relay_lease WHERE lease_group = $3) "
            "SELECT lease.ours, lease.remaining_ms, h.topic, h.key, h.first_id, lease.visible "
            "FROM lease LEFT JOIN LATERAL (SELECT p.topic, p.key, min(p.id) AS first_id FROM " +
            _q +
            ".parked p JOIN unnest($4::text[], $5::text[]) AS b(topic, key) ON p.topic = "
            "b.topic AND p.key = b.key WHERE lease.ours GROUP BY p.topic, p.key) h ON true",
        _o.instance_id, epoch, group, std::move(topics).take(), std::move(keys).take(),
        internal::array_literal(xids));
    lease_view v;
    if (r.empty() || !r[0][0].as<bool>()) return v;
    v.ours = true;
    v.remaining_ms = r[0][1].as<double>();
    v.visible = r[0][5].as<bool>();
    for (const auto& row : r) {
        if (row[2].is_null()) continue;
        v.parked.emplace(std::make_pair(row[2].as<std::string>(), row[3].as<std::string>()),
                         row[4].as<std::int64_t>());
    }
    return v;
}

void wal_source::read_stream(std::vector<source_row>& rows, std::size_t limit,
                             std::chrono::milliseconds wait) {
    const auto deadline = std::chrono::steady_clock::now() + wait;
    const auto before = rows.size();
    std::size_t received = 0;
    while (rows.size() < limit) {
        if (_pending.empty()) {
            // Wait for the first row only; after it, take what has already arrived (the
            // negative control waits for a full batch).
            const bool wait_more = rows.size() == before || fault::wal_confirm_on_receipt();
            (void)_reader->take(_pending, wait_more ? deadline : std::chrono::steady_clock::now());
            if (_pending.empty()) break;
        }
        auto event = std::move(_pending.front());
        _pending.pop_front();
        std::lock_guard lock(_mu);
        if (auto* m = std::get_if<wal::committed_message>(&event)) {
            entry e;
            e.ticket = _tracker.add_message();
            auto& row = e.row;
            row.id = ++_next_id;
            row.message_id = m->message.id.to_string();
            row.topic = std::move(m->message.topic);
            row.key = std::move(m->message.key);
            row.payload = std::move(m->message.payload);
            row.headers_json = std::move(m->message.headers_json);
            row.created_at_us = unix_us(m->message.created_at);
            if (m->message.expires_at) e.expires_at_us = unix_us(*m->message.expires_at);
            e.xid = m->xid;
            rows.push_back(row);
            _window.insert(row.id, std::move(e));
            ++received;
        } else if (auto* rej = std::get_if<wal::rejected_message>(&event)) {
            _rejected.push_back({std::move(*rej), _tracker.add_message()});
            _wm.rejected.inc();
        } else {
            _tracker.add_end(std::get<wal::transaction_end>(event).end_lsn);
        }
    }
    if (received > 0) _wm.received.inc(static_cast<double>(received));
}

bool wal_source::park_rejected(int group, std::int64_t epoch) {
    if (_rejected.empty()) return true;
    std::vector<std::string> contents;
    std::vector<std::string> headers;
    std::vector<std::string> reasons;
    std::vector<std::string> ids;  // a stable id per WAL position: a replay parks nothing twice
    for (const auto& r : _rejected) {
        contents.push_back(hex_bytea(r.message.content));
        const auto lsn_text = wal::format_lsn(r.message.message_lsn);
        headers.push_back(nlohmann::json{
            {"ferry-wal-prefix", r.message.prefix},
            {"ferry-wal-lsn", lsn_text},
            {"ferry-wal-field",
             r.message.field}}.dump());
        reasons.push_back(r.message.reason);
        ids.push_back(_o.wal_slot + "/" + lsn_text);
    }
    pqxx::work tx{_claim.get()};
    if (!lease_fence(tx, _q, _o.instance_id, epoch, group)) {
        tx.abort();
        return false;
    }
    (void)internal::exec_cached(
        tx, "ferry_relay_wal_park_invalid",
        "INSERT INTO " + _q +
            ".parked (id, message_id, topic, key, payload, headers, created_at, available_at, "
            "reason, error_code) SELECT nextval(pg_get_serial_sequence($1, 'id')), "
            "md5(u.stable_id)::uuid, '', '', u.content, u.headers::jsonb, clock_timestamp(), "
            "clock_timestamp(), u.reason, $2 FROM unnest($3::text[], $4::bytea[], $5::text[], "
            "$6::text[]) AS u(stable_id, content, headers, reason) ON CONFLICT DO NOTHING",
        _q + ".outbox", std::string(k_invalid), internal::array_literal(ids),
        internal::array_literal(contents), internal::array_literal(headers),
        internal::array_literal(reasons));
    tx.commit();
    std::lock_guard lock(_mu);
    for (const auto& r : _rejected) {
        spdlog::error(
            "event=wal_message_parked lsn={} prefix=\"{}\" field={} reason=\"{}\" "
            "error_code={}",
            wal::format_lsn(r.message.message_lsn), one_line(r.message.prefix), r.message.field,
            one_line(r.message.reason), k_invalid);
        _tracker.finish(r.ticket);
    }
    _rejected.clear();
    return true;
}

claim_result wal_source::claim(int group, std::int64_t epoch, std::size_t limit,
                               const std::vector<std::int64_t>& exclude, double min_remaining_ms,
                               bool may_wait) {
    claim_result out;
    if (!_stream) {
        // No stream is started unless the lease is ours.
        const auto lease = check_lease(group, epoch, {}, {});
        if (!lease.ours) return out;
        start_stream();
    }
    {
        std::lock_guard lock(_mu);
        const auto confirmable = _tracker.confirmable();
        if (confirmable > 0) _reader->acknowledge(confirmable);
        _wm.unconfirmed.set(static_cast<double>(_tracker.unfinished()));
        _wm.confirmed_lsn.set(static_cast<double>(_reader->confirmed()));
        // Unfinished rows first, in stream order, except the batch being marked.
        std::vector<std::int64_t> skip(exclude.begin(), exclude.end());
        std::sort(skip.begin(), skip.end());
        out.rows.reserve(std::min<std::size_t>(limit, 10000));
        const auto now_us = server_now_us();
        _window.for_each_until([&](std::int64_t id, entry& e) {
            if (out.rows.size() >= limit) return false;
            if (std::binary_search(skip.begin(), skip.end(), id)) return true;
            out.rows.push_back(e.row);
            out.rows.back().expired = e.expires_at_us && *e.expires_at_us <= now_us;
            return true;
        });
    }
    if (out.rows.size() < limit) {
        const auto first = out.rows.size();
        // The negative control reads a whole batch (up to 2 s) so that it confirms complete
        // transactions whatever the machine's speed.
        read_stream(out.rows, limit,
                    fault::wal_confirm_on_receipt() ? 2000ms
                                                    : (first > 0 || !may_wait ? 0ms : _o.poll_max));
        std::lock_guard lock(_mu);
        const auto now_us = server_now_us();
        for (auto i = first; i < out.rows.size(); ++i) {
            auto& e = _window.at(out.rows[i].id);
            out.rows[i].expired = e.expires_at_us && *e.expires_at_us <= now_us;
            if (fault::wal_confirm_on_receipt()) {
                // Negative control (test builds only): confirm before producing.
                _tracker.finish(e.ticket);
                e.finished_early = true;
            }
        }
        if (fault::wal_confirm_on_receipt()) _reader->acknowledge(_tracker.confirmable(), true);
    }
    std::vector<std::int64_t> xids;
    {
        std::lock_guard lock(_mu);
        for (const auto& row : out.rows) xids.push_back(_window.at(row.id).xid);
    }
    std::sort(xids.begin(), xids.end());
    xids.erase(std::unique(xids.begin(), xids.end()), xids.end());
    const auto lease = check_lease(group, epoch, out.rows, xids);
    if (!lease.ours) {
        spdlog::warn("event=wal_stream_stop slot={} reason=lease_lost", _o.wal_slot);
        drop_stream();
        return claim_result{};
    }
    if (!park_rejected(group, epoch)) {
        drop_stream();
        return claim_result{};
    }
    out.lease_ours = true;
    out.lease_remaining_ms = lease.remaining_ms;
    if (lease.remaining_ms < min_remaining_ms) {
        out.rows.clear();  // still unfinished in the window: yielded again next time
        return out;
    }
    if (!lease.visible) {
        // Its own transactions are not visible to the lookup yet (see check_lease): a moment.
        _wm.snapshot_waits.inc();
        out.rows.clear();
        return out;
    }
    if (!lease.parked.empty()) {
        for (auto& row : out.rows) {
            const auto it = lease.parked.find({row.topic, row.key});
            if (it == lease.parked.end()) continue;
            row.refused_code = k_key_parked;
            row.refused_reason = "held behind parked message " + std::to_string(it->second) +
                                 " of its key (retry or discard it with ferryctl parked)";
        }
    }
    return out;
}

namespace {

constexpr auto k_jsonb_oid = static_cast<pg_oid>(3802);
constexpr auto k_bytea_oid = static_cast<pg_oid>(17);

// A message id as a binary uuid element. Every id in the window was formatted by the relay
// from the 16 bytes it decoded (wal_reader), so a failure here is a bug, not bad input.
void add_uuid(binary_array& a, const std::string& id) {
    const auto parsed = outbox::message_id::parse(id);
    if (!parsed) {
        throw ferry::error(error_kind::permanent, "relay.mark",
                           "a message id in the window is not a canonical UUID: " + id);
    }
    const auto& bytes = parsed->bytes();
    a.add_bytes(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

// A jsonb element in binary: format version 1, then the JSON text (jsonb_recv parses it).
void add_jsonb(binary_array& a, const std::string& json) {
    std::string v;
    v.reserve(1 + json.size());
    v += '\x01';
    v += json;
    a.add_bytes(v);
}

binary_session::param bin(binary_array&& a) { return {std::move(a).take(), true, false}; }
binary_session::param txt(std::string v) { return {std::move(v), false, false}; }

// The columns every parked or expired row carries, as binary array parameters.
struct row_columns {
    explicit row_columns(std::size_t n)
        : ids(pg_oid::uuid, n * 20),
          topics(pg_oid::text, n * 24),
          keys(pg_oid::text, n * 24),
          payloads(k_bytea_oid),
          headers(k_jsonb_oid),
          created(pg_oid::int8, n * 12) {}
    binary_array ids, topics, keys, payloads, headers, created;
    void add(const source_row& r) {
        add_uuid(ids, r.message_id);
        topics.add_bytes(r.topic);
        keys.add_bytes(r.key);
        payloads.add_bytes(r.payload);
        add_jsonb(headers, r.headers_json);
        created.add_int8(r.created_at_us);
    }
    [[nodiscard]] bool empty() const { return ids.size() == 0; }
};

// The published rows of a mark, as one ledger batch row (migration 0090, ADR 0011): parallel
// arrays in binary, and the payloads back to back in one bytea. The headers travel as one JSON
// array, not as a jsonb[]: the server then parses one document instead of starting a JSON
// parser per element, which cost it about 7 ms per 1000 messages, and several times that at
// 2000 (ADR 0070, thirteenth session). Every header text here is a JSON value (the planner
// decoded it before the message was produced), so element i of the array is the value
// jsonb_in would have made of it.
struct ledger_columns {
    ledger_columns(std::size_t n, bool keep)
        : ids(pg_oid::uuid, n * 20),
          topics(pg_oid::text, n * 24),
          keys(pg_oid::text, n * 24),
          created(pg_oid::timestamptz, n * 12),
          offsets(pg_oid::int8, n * 12),
          parts(pg_oid::int4, n * 8),
          lens(pg_oid::int4, n * 8),
          keep_payloads(keep) {
        headers.reserve(2 + n * 3);
        headers += '[';
    }
    binary_array ids, topics, keys, created, offsets, parts, lens;
    std::string headers;  // a JSON array; closed by headers_document()
    std::string payloads;
    bool keep_payloads;  // relay.ledger_payloads
    [[nodiscard]] bool empty() const { return ids.size() == 0; }
    [[nodiscard]] std::string headers_document() && {
        headers += ']';
        return std::move(headers);
    }
    void add(const source_row& r, int partition, std::int64_t offset) {
        add_uuid(ids, r.message_id);
        topics.add_bytes(r.topic);
        keys.add_bytes(r.key);
        if (headers.size() > 1) headers += ',';
        headers += r.headers_json;
        created.add_timestamptz_unix_us(r.created_at_us);
        parts.add_int4(partition);
        offsets.add_int8(offset);
        if (!keep_payloads) return;
        lens.add_int4(static_cast<std::int32_t>(r.payload.size()));
        payloads += r.payload;
    }
};

}  // namespace

mark_outcome wal_source::mark(const mark_request& request, std::size_t lane) {
    // The rows' content, from the window (the marker holds no copy).
    ledger_columns pub(request.publish.size(), _o.ledger_payloads);
    row_columns exp(request.expire.size()), park(request.park.size());
    binary_array x_expires(pg_oid::int8), k_expires(pg_oid::int8), k_reasons(pg_oid::text),
        k_codes(pg_oid::text);
    std::vector<std::pair<std::int64_t, wal::confirm_tracker::ticket>> finished;
    std::uint64_t generation = 0;
    {
        std::lock_guard lock(_mu);
        generation = _generation;
        // A row missing from the window belongs to a stream that was restarted meanwhile: the
        // new stream yields it again, so it is not recorded here.
        const auto find = [&](std::int64_t id) -> const entry* {
            const auto* e = _window.find(id);
            if (e == nullptr) return nullptr;
            finished.emplace_back(id, e->ticket);
            return e;
        };
        std::size_t payload_bytes = 0;
        for (const auto& p : request.publish) {
            if (const auto* e = _window.find(p.id)) payload_bytes += e->row.payload.size();
        }
        if (pub.keep_payloads) pub.payloads.reserve(payload_bytes);
        for (const auto& p : request.publish) {
            const auto* e = find(p.id);
            if (e == nullptr) continue;
            pub.add(e->row, p.partition, p.offset);
        }
        for (const auto id : request.expire) {
            const auto* e = find(id);
            if (e == nullptr) continue;
            exp.add(e->row);
            x_expires.add_int8(e->expires_at_us.value_or(e->row.created_at_us));
        }
        for (const auto& p : request.park) {
            const auto* e = find(p.id);
            if (e == nullptr) continue;
            park.add(e->row);
            if (e->expires_at_us) {
                k_expires.add_int8(*e->expires_at_us);
            } else {
                k_expires.add_null();
            }
            k_reasons.add_bytes(p.reason);
            k_codes.add_bytes(p.error_code);
        }
    }

    // Unlike polling mode's mark (synchronous_commit off: a lost mark leaves the row in the
    // outbox), this commit is what lets the slot move past the messages: it must be durable
    // before the confirmation that follows it. The session commits synchronously.
    //
    // Every array travels in binary (binary_array.hpp): parsing them as text literals cost the
    // server more than the insert (ADR 0070, twenty-first session).
    //
    // The published rows' ledger row. Without relay.ledger_payloads the row keeps no payloads
    // (NULL lengths and bytes). With `fenced`, the statement also checks the lease, FOR KEY
    // SHARE like lease_fence, and inserts only if the lease is still this instance's: it
    // returns whether it was. Otherwise it returns nothing.
    const auto publish_sql = [this](bool payloads, bool fenced) {
        std::string sql;
        const int first = fenced ? 4 : 3;  // the first array's parameter number
        const auto arg = [&](int i) { return "$" + std::to_string(first + i); };
        if (fenced) {
            sql =
                "WITH fence AS MATERIALIZED (SELECT owner = $3 AND epoch = $1 AND expires_at > "
                "clock_timestamp() AS ok FROM " +
                _q + ".relay_lease WHERE lease_group = $2 FOR KEY SHARE), ins AS (";
        }
        sql += "INSERT INTO " + _q +
               ".published_batch (relay_epoch, lease_group, message_count, message_ids, "
               "topics, keys, partitions, offsets, created_ats, payload_lens, payloads, "
               "headers, acked_at) SELECT $1, $2, cardinality(" +
               arg(0) + "::uuid[]), " + arg(0) + "::uuid[], " + arg(1) + "::text[], " + arg(2) +
               "::text[], " + arg(3) + "::int[], " + arg(4) + "::bigint[], " + arg(5) +
               "::timestamptz[], " +
               (payloads ? arg(6) + "::int[], " + arg(7) + "::bytea"
                         : std::string("NULL::int[], NULL::bytea")) +
               ", ARRAY(SELECT j.h FROM jsonb_array_elements(" + arg(payloads ? 8 : 6) +
               "::jsonb) WITH ORDINALITY AS j(h, n) ORDER BY j.n), " +
               ts_expr("NULLIF(" + arg(payloads ? 9 : 7) + "::bigint, 0)");
        if (fenced) sql += " FROM fence WHERE fence.ok RETURNING 1) SELECT ok FROM fence";
        return sql;
    };
    const auto insert_published = [&](bool fenced) {
        std::vector<binary_session::param> params;
        params.reserve(13);
        params.push_back(txt(std::to_string(request.epoch)));
        params.push_back(txt(std::to_string(request.group)));
        if (fenced) params.push_back(txt(_o.instance_id));
        params.push_back(bin(std::move(pub.ids)));
        params.push_back(bin(std::move(pub.topics)));
        params.push_back(bin(std::move(pub.keys)));
        params.push_back(bin(std::move(pub.parts)));
        params.push_back(bin(std::move(pub.offsets)));
        params.push_back(bin(std::move(pub.created)));
        if (pub.keep_payloads) {
            params.push_back(bin(std::move(pub.lens)));
            params.push_back({std::move(pub.payloads), true, false});
        }
        params.push_back(txt(std::move(pub).headers_document()));
        params.push_back(txt(std::to_string(request.acked_at_us)));
        const std::string name = std::string("ferry_relay_wal_mark_published") +
                                 (pub.keep_payloads ? "" : "_nopayload") +
                                 (fenced ? "_fenced" : "");
        return _marks.at(lane)->exec_params(name, publish_sql(pub.keep_payloads, fenced), params);
    };
    auto& session = *_marks.at(lane);

    // A mark that only publishes (every mark of a healthy stream) is one statement in its own
    // implicit transaction: fence, ledger row and commit in one round trip instead of four
    // (BEGIN, fence, insert, COMMIT). Each round trip waited for the server to be scheduled on
    // a busy machine, and the marks, one at a time, bound the WAL drain (ADR 0070, thirteenth
    // session). The outcome is the same as the transaction's: the row is in if and only if
    // the lease was ours, and the commit is durable before the confirmation.
    if (!pub.empty() && exp.empty() && park.empty() && !fault::during_mark_pending()) {
        const auto r = insert_published(/*fenced=*/true);
        if (r.rows() == 0 || r.is_null(0, 0) || !r.boolean(0, 0)) return mark_outcome::fenced;
        return finish_mark(generation, finished);
    }

    // An error below leaves the transaction open; the publisher then resets the session
    // (reset_mark_session), which ends it.
    (void)session.command("BEGIN");
    const auto fence = session.exec_params(
        "ferry_relay_wal_fence",
        "SELECT owner = $1 AND epoch = $2 AND expires_at > clock_timestamp() FROM " + _q +
            ".relay_lease WHERE lease_group = $3 FOR KEY SHARE",
        {txt(_o.instance_id), txt(std::to_string(request.epoch)),
         txt(std::to_string(request.group))});
    if (fence.rows() == 0 || fence.is_null(0, 0) || !fence.boolean(0, 0)) {
        (void)session.command("ROLLBACK");
        return mark_outcome::fenced;
    }
    if (!pub.empty()) (void)insert_published(/*fenced=*/false);
    if (!exp.empty()) {
        (void)session.exec_params(
            "ferry_relay_wal_mark_expired",
            "INSERT INTO " + _q +
                ".expired (id, message_id, topic, key, payload, headers, created_at, "
                "available_at, expires_at) SELECT nextval(pg_get_serial_sequence($1, 'id')), "
                "u.id, u.topic, u.key, u.payload, u.headers, " +
                ts_expr("u.created") + ", " + ts_expr("u.created") + ", " + ts_expr("u.expires") +
                " FROM unnest($2::uuid[], $3::text[], $4::text[], $5::bytea[], $6::jsonb[], "
                "$7::bigint[], $8::bigint[]) AS u(id, topic, key, payload, headers, created, "
                "expires) ON CONFLICT DO NOTHING",
            {txt(_q + ".outbox"), bin(std::move(exp.ids)), bin(std::move(exp.topics)),
             bin(std::move(exp.keys)), bin(std::move(exp.payloads)), bin(std::move(exp.headers)),
             bin(std::move(exp.created)), bin(std::move(x_expires))});
    }
    if (!park.empty()) {
        // Parked ids come from the outbox's sequence, drawn row by row as unnest yields the
        // batch in stream order, so a key's parked messages sort in their commit order
        // (retry_parked re-emits them in id order).
        (void)session.exec_params(
            "ferry_relay_wal_mark_parked",
            "INSERT INTO " + _q +
                ".parked (id, message_id, topic, key, payload, headers, created_at, "
                "available_at, expires_at, reason, error_code) SELECT "
                "nextval(pg_get_serial_sequence($1, 'id')), u.id, u.topic, u.key, u.payload, "
                "u.headers, " +
                ts_expr("u.created") + ", " + ts_expr("u.created") + ", " + ts_expr("u.expires") +
                ", u.reason, u.code FROM unnest($2::uuid[], $3::text[], $4::text[], "
                "$5::bytea[], $6::jsonb[], $7::bigint[], $8::bigint[], $9::text[], $10::text[]) "
                "AS u(id, topic, key, payload, headers, created, expires, reason, code) "
                "ON CONFLICT DO NOTHING",
            {txt(_q + ".outbox"), bin(std::move(park.ids)), bin(std::move(park.topics)),
             bin(std::move(park.keys)), bin(std::move(park.payloads)), bin(std::move(park.headers)),
             bin(std::move(park.created)), bin(std::move(k_expires)), bin(std::move(k_reasons)),
             bin(std::move(k_codes))});
    }
    if (request.before_commit) request.before_commit();
    if (const auto tag = session.command("COMMIT"); tag != "COMMIT") {
        throw ferry::error(error_kind::retryable, "relay.mark",
                           "the mark's transaction did not commit (" + tag + ")");
    }
    return finish_mark(generation, finished);
}

mark_outcome wal_source::finish_mark(
    std::uint64_t generation,
    const std::vector<std::pair<std::int64_t, wal::confirm_tracker::ticket>>& finished) {
    std::lock_guard lock(_mu);
    if (generation != _generation) return mark_outcome::marked;  // the stream restarted
    for (const auto& [id, ticket] : finished) {
        const auto* e = _window.find(id);
        if (e != nullptr && !e->finished_early) _tracker.finish(ticket);
        _window.erase(id);
    }
    return mark_outcome::marked;
}

}  // namespace ferry::relay::detail
