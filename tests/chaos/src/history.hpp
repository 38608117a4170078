#pragma once
// The campaign's history checker (RELIABILITY.md, "Shape of a fault test", step 5).
//
// A history is ground truth gathered after a run: the messages the database says committed, the
// commits producers saw acknowledged, every record Kafka holds, the rows of the append-only
// effect witness table (no unique constraint) and the dead letters. check() counts:
//   lost               committed (or acknowledged to a producer) messages that some consumer
//                      group neither applied nor dead-lettered, plus acknowledged commits the
//                      database does not have;
//   duplicate_effects  witness rows beyond the first per (group, message);
//   order_violations   per key, a first delivery in Kafka (partition offset order) or a first
//                      effect of a group (witness order) whose key_seq is not above every earlier
//                      one; only messages with a key_seq (seq >= 0) take part;
//   phantoms           messages in Kafka, the witness or dead letters that never committed;
//   unsettled          1 when the run did not settle within its bound.
// Informational: duplicate_deliveries (Kafka copies beyond the first; at-least-once transport
// allows them), unpublished (committed messages absent from Kafka), dead_lettered.
// Pure: no I/O, so the unit test feeds it synthetic histories.
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

namespace ferry::chaos {

struct committed_message {
    std::string id;
    std::string key;
    std::int64_t seq = -1;  // per-key commit sequence; -1: no order claim (half messages)
    std::string via;        // writer | sql | half | hold (informational)
};

struct delivery {  // one Kafka record
    std::string id;
    std::string key;
    std::int32_t partition = 0;
    std::int64_t offset = 0;
};

struct effect {  // one witness row
    std::string group;
    std::string id;
    std::string key;
    std::int64_t seq = -1;
    std::int64_t order = 0;  // the witness row's identity: the order effects were applied
};

struct history {
    std::vector<committed_message> committed;  // the database's committed set
    std::set<std::string> acked;               // commits acknowledged to producers
    std::set<std::string> rolled_back;         // known rolled back (for example ids only)
    std::vector<delivery> kafka;
    std::vector<effect> effects;
    std::map<std::string, std::set<std::string>> dead_letters;  // group -> message ids
    std::vector<std::string> groups;                            // groups that must apply all
    bool settled = true;
    std::string unsettled_detail;
};

struct counts {
    std::uint64_t lost = 0;
    std::uint64_t duplicate_effects = 0;
    std::uint64_t order_violations = 0;  // delivery + effect
    std::uint64_t order_violations_delivery = 0;
    std::uint64_t order_violations_effect = 0;
    std::uint64_t phantoms = 0;
    std::uint64_t unsettled = 0;
    // informational
    std::uint64_t committed = 0;
    std::uint64_t acked_not_committed = 0;
    std::uint64_t duplicate_deliveries = 0;
    std::uint64_t unpublished = 0;
    std::uint64_t dead_lettered = 0;
    std::uint64_t effects = 0;

    [[nodiscard]] bool clean() const {
        return lost == 0 && duplicate_effects == 0 && order_violations == 0 && phantoms == 0 &&
               unsettled == 0;
    }
};

struct report {
    counts n;
    // kind -> up to max_examples human-readable examples naming message ids
    std::map<std::string, std::vector<std::string>> examples;
    [[nodiscard]] nlohmann::json to_json() const;
    // One line: "lost=0 duplicate_effects=0 order_violations=0 phantoms=0 unsettled=0 ..."
    [[nodiscard]] std::string summary() const;
};

[[nodiscard]] report check(const history& h, std::size_t max_examples = 5);

}  // namespace ferry::chaos
