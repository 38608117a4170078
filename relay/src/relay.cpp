// The relay wired together (relay/README.md has the map):
//   lease_keeper.cpp  leases: heartbeat, renew, acquire up to the fair share, release
//   poll_source.cpp   the polling source: claim SQL (lease checked in the same statement)
//   wal_source.cpp    the WAL source (relay.source: wal): logical decoding stream, ADR 0070
//   snapshot_source.cpp  the snapshot source (relay.source: snapshot): epochs between
//                     snapshots over an insert-only outbox, ADR 0080
//   marker.cpp        the fenced mark SQL: outbox rows to the ledger, parked or expired
//   batch_planner.cpp the decisions: what to produce, publish, park, expire, hold back by key
//   kafka_sink.cpp    the sink: librdkafka, idempotent, gapless, the zombie produce guard
//   publisher.cpp     the pipeline: claim and produce batch N+1 while batch N is marked
//   maintenance.cpp   gauges and the published ledger's retention
// Each thread has its own PostgreSQL session; relay_state.hpp holds what they share.

#include "ferry/relay/relay.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <memory>
#include <thread>

#include "ferry/common/error.hpp"
#include "ferry/common/redact.hpp"
#include "ferry/common/sql_ident.hpp"
#include "ferry/internal/instance_id.hpp"
#include "kafka_sink.hpp"
#include "lease_keeper.hpp"
#include "maintenance.hpp"
#include "poll_source.hpp"
#include "publisher.hpp"
#include "relay_metrics.hpp"
#include "relay_state.hpp"
#include "snapshot_source.hpp"
#include "wal_source.hpp"

namespace ferry::relay {

std::string kafka_topic(const relay_options& options, const std::string& topic) {
    const auto it = options.topic_map.find(topic);
    return options.topic_prefix + (it == options.topic_map.end() ? topic : it->second);
}

std::string shard_array_literal(int group, int groups) {
    std::string out = "{";
    for (int s = group; s < 256; s += groups) {
        if (out.size() > 1) out += ',';
        out += std::to_string(s);
    }
    return out + "}";
}

class relay::impl {
public:
    impl(relay_options options, ferry::metrics::registry* metrics)
        : _o(std::move(options)), _registry(ferry::metrics::or_process(metrics)) {
        if (_o.instance_id.empty()) _o.instance_id = internal::default_instance_id();
        _q = quote_identifier(_o.schema, "postgres.schema");
        // Registered at construction, so /metrics lists the relay's series before start().
        const int groups = std::clamp(_o.lease_groups, 1, 256);
        _metrics = std::make_unique<detail::relay_metrics>(_registry, groups);
        _state = std::make_unique<detail::relay_state>(groups);
    }

    ~impl() { stop(); }

    void start() {
        if (_o.lease_groups < 1 || _o.lease_groups > 256) {
            throw ferry::error(error_kind::permanent, "relay.options",
                               "relay.lease_groups must be 1..256", "relay.lease_groups");
        }
        if (_o.batch_size < 1) {
            throw ferry::error(error_kind::permanent, "relay.options",
                               "relay.batch_size must be positive", "relay.batch_size");
        }
        if (_o.source != "polling" && _o.source != "wal" && _o.source != "snapshot") {
            throw ferry::error(
                error_kind::permanent, "relay.options",
                "relay.source must be polling, wal or snapshot, not \"" + _o.source + "\"",
                "relay.source");
        }
        if (_o.source == "wal" && _o.lease_groups != 1) {
            throw ferry::error(error_kind::permanent, "relay.options",
                               "relay.lease_groups must be 1 with relay.source: wal (one slot is "
                               "streamed by one lease holder, in commit order)",
                               "relay.lease_groups");
        }
        if (_o.poll_min > _o.poll_max) _o.poll_min = _o.poll_max;
        spdlog::info(
            "event=relay_start instance={} schema={} dsn={} brokers={} lease_groups={} "
            "lease_ttl_ms={} batch_size={} source={}",
            _o.instance_id, _o.schema, redact_dsn(_o.dsn), _o.brokers, _o.lease_groups,
            _o.lease_ttl.count(), _o.batch_size, _o.source);
        // An invalid kafka.properties entry is a configuration error: fail here, not in a loop.
        _sink = std::make_unique<detail::kafka_sink>(_o, _metrics->producer_restarts);
        if (_o.source == "wal") {
            _wal_metrics = std::make_unique<detail::wal_metrics>(_registry);
            _source = std::make_unique<detail::wal_source>(_o, _q, _metrics->pg_reconnects,
                                                           *_wal_metrics);
        } else if (_o.source == "snapshot") {
            _source = std::make_unique<detail::snapshot_source>(_o, _q, _metrics->pg_reconnects);
        } else {
            _source = std::make_unique<detail::poll_source>(_o, _q, _metrics->pg_reconnects);
        }
        _keeper = std::make_unique<detail::lease_keeper>(_o, _q, *_state, *_metrics);
        _maintenance =
            std::make_unique<detail::maintenance>(_o, _q, *_state, *_metrics, _wal_metrics.get());
        _publisher = std::make_unique<detail::publisher>(_o, *_state, *_metrics, *_source, *_sink);
        _lease_thread = std::thread([this] { _keeper->run(); });
        _maintenance_thread = std::thread([this] { _maintenance->run(); });
        _publisher->start();
    }

    void stop() {
        if (!_publisher) return;  // never started
        _state->request_stop(_o.shutdown_timeout);
        _publisher->join();  // finishes (or abandons) the batch in flight, marks what it can
        if (_lease_thread.joinable()) _lease_thread.join();  // then releases every lease
        if (_maintenance_thread.joinable()) _maintenance_thread.join();
    }

    [[nodiscard]] bool ready() const { return _state->ready(); }
    [[nodiscard]] int groups_held() const { return _state->groups_held(); }

    relay_options _o;
    ferry::metrics::registry& _registry;
    std::string _q;  // quoted schema
    std::unique_ptr<detail::relay_metrics> _metrics;
    std::unique_ptr<detail::relay_state> _state;
    std::unique_ptr<detail::kafka_sink> _sink;
    std::unique_ptr<detail::wal_metrics> _wal_metrics;
    std::unique_ptr<detail::source> _source;
    std::unique_ptr<detail::lease_keeper> _keeper;
    std::unique_ptr<detail::maintenance> _maintenance;
    std::unique_ptr<detail::publisher> _publisher;
    std::thread _lease_thread;
    std::thread _maintenance_thread;
};

relay::relay(relay_options options, ferry::metrics::registry* metrics)
    : _impl(std::make_unique<impl>(std::move(options), metrics)) {}
relay::~relay() = default;
void relay::start() { _impl->start(); }
void relay::stop() { _impl->stop(); }
bool relay::ready() const { return _impl->ready(); }
int relay::groups_held() const { return _impl->groups_held(); }
const std::string& relay::instance_id() const { return _impl->_o.instance_id; }
ferry::metrics::registry& relay::metrics() { return _impl->_registry; }
relay_counts relay::counts() const {
    relay_counts c;
    c.published = _impl->_metrics->n_published.load();
    c.parked = _impl->_metrics->n_parked.load();
    c.expired = _impl->_metrics->n_expired.load();
    c.fenced = _impl->_metrics->n_fenced.load();
    c.batches = _impl->_metrics->n_batches.load();
    return c;
}

}  // namespace ferry::relay
