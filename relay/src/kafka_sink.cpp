#include "kafka_sink.hpp"

#include <librdkafka/rdkafka.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>
#include <thread>

#include "ferry/common/error.hpp"

namespace ferry::relay::detail {

struct producer::batch_state {
    struct slot {
        batch_state* batch;
        std::size_t index;
    };
    std::vector<delivery> deliveries;
    std::vector<slot> slots;
    std::size_t outstanding = 0;
};

namespace {

void on_delivery(rd_kafka_t*, const rd_kafka_message_t* msg, void*) {
    auto* s = static_cast<producer::batch_state::slot*>(msg->_private);
    if (s == nullptr) return;
    auto& d = s->batch->deliveries[s->index];
    if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        d.result = outcome::acked;
        d.partition = msg->partition;
        d.offset = msg->offset;
    } else {
        d.result = is_permanent_error(msg->err) ? outcome::permanent : outcome::transient;
        d.error_code = rd_kafka_err2name(msg->err);
        d.error_text = rd_kafka_err2str(msg->err);
    }
    --s->batch->outstanding;
}

// librdkafka's own log lines, as one structured line each (levels are syslog levels).
void on_log(const rd_kafka_t*, int level, const char* facility, const char* message) {
    const auto lvl = level <= 3   ? spdlog::level::err
                     : level == 4 ? spdlog::level::warn
                     : level <= 6 ? spdlog::level::info
                                  : spdlog::level::debug;
    spdlog::log(lvl, "event=kafka_log facility={} message=\"{}\"", facility, message);
}

void set_or_throw(rd_kafka_conf_t* conf, const std::string& name, const std::string& value) {
    char errstr[512];
    if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), errstr, sizeof errstr) !=
        RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        throw ferry::error(error_kind::permanent, "relay.kafka_config",
                           "kafka property " + name + ": " + errstr, "kafka.properties");
    }
}

}  // namespace

bool is_permanent_error(int code) noexcept {
    switch (static_cast<rd_kafka_resp_err_t>(code)) {
        case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
        case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
        case RD_KAFKA_RESP_ERR_INVALID_MSG:
        case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
        case RD_KAFKA_RESP_ERR_INVALID_RECORD:
        case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
        case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
        case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
        case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
        case RD_KAFKA_RESP_ERR__INVALID_ARG:
            return true;
        default:
            return false;
    }
}

producer::producer(const relay_options& o) {
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    set_or_throw(conf, "bootstrap.servers", o.brokers);
    set_or_throw(conf, "client.id", "ferry-relay");
    set_or_throw(conf, "partitioner", "murmur2_random");
    set_or_throw(conf, "compression.type", o.compression);
    // The relay hands librdkafka a whole batch at once and waits for every report, so a long
    // linger only adds latency; 1 ms still lets the messages produced behind the first one of a
    // batch share its request.
    set_or_throw(conf, "linger.ms", "1");
    // Batches are small under light load; do not let Nagle hold them for a delayed ACK.
    set_or_throw(conf, "socket.nagle.disable", "true");
    for (const auto& [name, value] : o.properties) set_or_throw(conf, name, value);
    // Ferry's guarantees depend on these; they win over kafka.properties. Per-key order: the
    // idempotent producer's sequence numbers make the broker refuse a batch after a missing
    // one; gapless turns every error that would let librdkafka re-sequence past a failed batch
    // into a fatal error (the relay recreates the producer); and librdkafka never times a
    // message out by itself (a timed-out message is followed by re-sequenced ones): the relay's
    // delivery_timeout bounds a batch instead, then purges and drops the producer.
    set_or_throw(conf, "enable.idempotence", "true");
    set_or_throw(conf, "enable.gapless.guarantee", "true");
    // One request in flight per broker: a request sent after a refused one could otherwise be
    // appended before librdkafka raises the gapless fatal error (brokers that do not check
    // sequence numbers, such as librdkafka's mock cluster, accept it). A relay batch fits in one
    // request per partition, so this costs little.
    set_or_throw(conf, "max.in.flight.requests.per.connection", "1");
    set_or_throw(conf, "message.timeout.ms", "0");
    set_or_throw(conf, "acks", "all");
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_log_cb(conf, on_log);
    char errstr[512];
    _rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (_rk == nullptr) {
        rd_kafka_conf_destroy(conf);
        throw ferry::error(error_kind::permanent, "relay.kafka_config",
                           std::string("cannot create the Kafka producer: ") + errstr, "kafka");
    }
}

producer::~producer() {
    // Drop what was never sent, then serve the remaining reports so no callback outlives the
    // batch state it points into.
    rd_kafka_purge(_rk, RD_KAFKA_PURGE_F_QUEUE);
    rd_kafka_flush(_rk, 2000);
    rd_kafka_purge(_rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_flush(_rk, 1000);
    rd_kafka_destroy(_rk);
}

void producer::raise_fatal_for_test(const char* reason) {
    (void)rd_kafka_test_fatal_error(_rk, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER, reason);
}

void producer::serve(int timeout_ms) {
    rd_kafka_poll(_rk, timeout_ms);
    std::erase_if(_unfinished, [](const auto& b) { return b->outstanding == 0; });
}

batch_outcome producer::send(const std::vector<produce_item>& items,
                             std::chrono::steady_clock::time_point deadline,
                             std::chrono::steady_clock::time_point produce_until,
                             const std::function<bool()>& abandon,
                             const std::function<void()>& after_produce) {
    auto batch = std::make_shared<batch_state>();
    batch->deliveries.resize(items.size());
    batch->slots.reserve(items.size());
    for (std::size_t i = 0; i < items.size(); ++i) batch->slots.push_back({batch.get(), i});
    _unfinished.push_back(batch);

    std::set<std::pair<std::string, std::optional<std::string>>> failed_keys;
    batch_outcome result;
    bool fatal = false;
    for (std::size_t i = 0; i < items.size() && !fatal; ++i) {
        const auto& item = items[i];
        auto& d = batch->deliveries[i];
        // (Only after a failure: the lookup builds a pair of string copies.)
        if (!failed_keys.empty() && failed_keys.count({*item.topic, item.key}) != 0) {
            continue;  // not_sent
        }
        if (std::chrono::steady_clock::now() >= produce_until) break;  // lease may be gone
        for (;;) {
            rd_kafka_headers_t* hdrs = rd_kafka_headers_new(2 + item.headers.size());
            for_each_header(item, [hdrs](std::string_view name, std::string_view value) {
                rd_kafka_header_add(hdrs, name.data(), static_cast<ssize_t>(name.size()),
                                    value.data(), static_cast<ssize_t>(value.size()));
            });
            const char* key_data = item.key ? item.key->data() : nullptr;
            const std::size_t key_size = item.key ? item.key->size() : 0;
            char* value_data = const_cast<char*>(item.payload.data());
            const std::size_t value_size = item.payload.size();
            const auto err = rd_kafka_producev(
                _rk, RD_KAFKA_V_TOPIC(item.topic->c_str()),
                RD_KAFKA_V_VALUE(value_data, value_size), RD_KAFKA_V_KEY(key_data, key_size),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs),
                RD_KAFKA_V_OPAQUE(&batch->slots[i]), RD_KAFKA_V_END);
            if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
                ++batch->outstanding;
                break;
            }
            rd_kafka_headers_destroy(hdrs);
            if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL &&
                std::chrono::steady_clock::now() < deadline && !abandon()) {
                serve(10);
                continue;
            }
            d.result = is_permanent_error(err) ? outcome::permanent : outcome::transient;
            d.error_code = rd_kafka_err2name(err);
            d.error_text = rd_kafka_err2str(err);
            failed_keys.insert({*item.topic, item.key});
            fatal = err == RD_KAFKA_RESP_ERR__FATAL;
            break;
        }
    }
    if (after_produce) after_produce();
    // Wait for every report (the flush also sends what linger.ms still holds). Once the lease
    // budget is spent, whatever librdkafka has not put on the wire yet is purged: only requests
    // already sent while the lease was valid may still land.
    bool purged_for_lease = false;
    while (batch->outstanding > 0 && std::chrono::steady_clock::now() < deadline && !abandon()) {
        if (!purged_for_lease && std::chrono::steady_clock::now() >= produce_until) {
            rd_kafka_purge(_rk, RD_KAFKA_PURGE_F_QUEUE);
            purged_for_lease = true;
            result.purged = true;
        }
        rd_kafka_flush(_rk, 50);
        serve(0);
    }
    if (batch->outstanding > 0) {
        // Abandoned: messages not yet sent are purged (their reports arrive as failures);
        // in-flight ones may still land in Kafka and will be republished (a bounded duplicate).
        rd_kafka_purge(_rk, RD_KAFKA_PURGE_F_QUEUE);
        serve(0);
        result.purged = true;
    }
    result.deliveries = batch->deliveries;
    char errstr[512];
    if (rd_kafka_fatal_error(_rk, errstr, sizeof errstr) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        result.fatal = true;
        result.fatal_reason = errstr;
    }
    serve(0);
    return result;
}

kafka_sink::kafka_sink(const relay_options& options, ferry::metrics::counter restarts)
    : _o(options), _restarts(restarts), _producer(std::make_unique<producer>(options)) {}

void kafka_sink::ensure_producer() {
    if (_producer) return;
    _producer = std::make_unique<producer>(_o);
    _restarts.inc();
    spdlog::warn("event=producer_restarted restarts={}", _restarts.value());
}

batch_outcome kafka_sink::send(const std::vector<produce_item>& items,
                               std::chrono::steady_clock::time_point deadline,
                               std::chrono::steady_clock::time_point produce_until,
                               const std::function<bool()>& abandon,
                               const std::function<void()>& after_produce) {
    ensure_producer();
    auto out = _producer->send(items, deadline, produce_until, abandon, after_produce);
    // After a fatal error, or a purge (librdkafka would re-sequence what follows, so a later
    // message could land before a purged one of its key), this producer is not used again.
    if (out.fatal || out.purged) _producer.reset();
    return out;
}

void kafka_sink::raise_fatal_for_test(const char* reason) {
    ensure_producer();
    _producer->raise_fatal_for_test(reason);
}

}  // namespace ferry::relay::detail
