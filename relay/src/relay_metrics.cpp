#include "relay_metrics.hpp"

namespace ferry::relay::detail {

namespace {
const char* const k_errors_help = "Messages Kafka did not acknowledge, by kind.";
}  // namespace

relay_metrics::relay_metrics(ferry::metrics::registry& m, int lease_groups)
    : published(m.add_counter("ferry_relay_published_total",
                              "Messages acknowledged by Kafka and marked published.")),
      errors_transient(m.add_counter("ferry_relay_publish_errors_total", k_errors_help,
                                     {{"kind", "transient"}})),
      errors_permanent(m.add_counter("ferry_relay_publish_errors_total", k_errors_help,
                                     {{"kind", "permanent"}})),
      errors_fatal(
          m.add_counter("ferry_relay_publish_errors_total", k_errors_help, {{"kind", "fatal"}})),
      batch_size(m.add_histogram("ferry_relay_batch_size", "Rows claimed per non-empty batch.",
                                 {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000})),
      commit_to_ack(m.add_histogram(
          "ferry_relay_commit_to_ack_seconds",
          "Time from the outbox row's created_at to Kafka's acknowledgement.",
          {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300})),
      parked_total(m.add_counter("ferry_relay_parked_total",
                                 "Messages this relay moved to the parked table.")),
      parked_gauge(m.add_gauge("ferry_relay_parked", "Rows in the parked table.")),
      expired_total(m.add_counter("ferry_relay_expired_total",
                                  "Messages this relay moved to the expired table.")),
      expired_gauge(m.add_gauge("ferry_outbox_expired", "Rows in the expired table.")),
      pending(
          m.add_gauge("ferry_outbox_pending",
                      "Rows in the outbox not yet published (with relay.source: snapshot, rows its "
                      "position does not call finished).")),
      oldest(m.add_gauge("ferry_outbox_oldest_pending_age_seconds",
                         "Age of the oldest unpublished outbox row, by the database clock.")),
      dead_tuples(m.add_gauge("ferry_outbox_dead_tuples",
                              "Dead tuples of the outbox table (pg_stat_user_tables).")),
      groups_held(
          m.add_gauge("ferry_relay_lease_groups_held", "Lease groups this instance holds.")),
      fenced(m.add_counter("ferry_relay_fenced_total",
                           "Batches whose mark was refused because the lease was lost.")),
      pg_reconnects(m.add_counter("ferry_relay_pg_reconnects_total",
                                  "PostgreSQL reconnections after a lost connection.")),
      producer_restarts(
          m.add_counter("ferry_relay_producer_restarts_total",
                        "Kafka producers recreated after a fatal error or an abandoned batch.")),
      invalid_headers(m.add_counter(
          "ferry_relay_invalid_headers_total",
          "Rows parked because their headers could not be decoded (never published).")),
      held_after_failure(m.add_counter(
          "ferry_relay_held_after_failure_total",
          "Acknowledged messages left unmarked because an earlier message of their key failed "
          "in the same batch (republished after it).")),
      pipelined_batches(m.add_counter(
          "ferry_relay_pipelined_batches_total",
          "Batches claimed and produced while the previous batch was still being marked.")),
      claims_prefetched(m.add_counter(
          "ferry_relay_claims_prefetched_total",
          "Batches claimed while the previous batch's delivery reports were awaited, and kept.")),
      prefetched_claims_dropped(m.add_counter(
          "ferry_relay_prefetched_claims_dropped_total",
          "Prefetched claims dropped unproduced because the batch before them did not fully "
          "publish (their rows are claimed again in order).")) {
    for (int g = 0; g < lease_groups; ++g) {
        epoch.push_back(m.add_gauge("ferry_relay_epoch",
                                    "Epoch of each lease group this instance acquired.",
                                    {{"group", std::to_string(g)}}));
    }
}

}  // namespace ferry::relay::detail
