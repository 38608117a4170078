#include "history.hpp"

#include <algorithm>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

namespace ferry::chaos {

namespace {

struct example_sink {
    std::map<std::string, std::vector<std::string>>& out;
    std::size_t max;
    void add(const std::string& kind, const std::string& text) {
        auto& v = out[kind];
        if (v.size() < max) v.push_back(text);
    }
};

// First occurrences only, per key, in the given order: a later first occurrence with a seq not
// above the highest seen so far is a violation. Returns how many.
template <typename Item, typename Key, typename Seq, typename Id, typename Describe>
std::uint64_t order_violations(std::vector<const Item*> items, Key key_of, Seq seq_of, Id id_of,
                               Describe describe, example_sink& ex, const std::string& kind) {
    std::uint64_t violations = 0;
    std::unordered_set<std::string> seen;
    std::unordered_map<std::string, std::pair<std::int64_t, std::string>> highest;  // key ->
    for (const Item* it : items) {
        if (!seen.insert(id_of(*it)).second) continue;
        const std::int64_t seq = seq_of(*it);
        if (seq < 0) continue;
        auto [pos, fresh] = highest.try_emplace(key_of(*it), seq, id_of(*it));
        if (fresh) continue;
        if (seq <= pos->second.first) {
            ++violations;
            ex.add(kind, describe(*it) + " key=" + key_of(*it) + " seq=" + std::to_string(seq) +
                             " id=" + id_of(*it) + " came after seq=" +
                             std::to_string(pos->second.first) + " id=" + pos->second.second);
        } else {
            pos->second = {seq, id_of(*it)};
        }
    }
    return violations;
}

}  // namespace

report check(const history& h, std::size_t max_examples) {
    report r;
    example_sink ex{r.examples, max_examples};
    auto& n = r.n;

    std::unordered_map<std::string, const committed_message*> committed;
    for (const auto& m : h.committed) committed.emplace(m.id, &m);
    n.committed = committed.size();

    // Kafka: copies, and which committed messages got there at all.
    std::unordered_map<std::string, std::uint64_t> kafka_copies;
    for (const auto& d : h.kafka) ++kafka_copies[d.id];
    for (const auto& [id, c] : kafka_copies) n.duplicate_deliveries += c - 1;

    // Effects per (group, message).
    std::map<std::string, std::unordered_map<std::string, std::uint64_t>> applied;
    for (const auto& e : h.effects) ++applied[e.group][e.id];
    n.effects = h.effects.size();
    for (const auto& [group, per_id] : applied) {
        for (const auto& [id, c] : per_id) {
            if (c > 1) {
                n.duplicate_effects += c - 1;
                ex.add("duplicate_effects",
                       "group=" + group + " id=" + id + " applied " + std::to_string(c) + " times");
            }
        }
    }

    // Lost: every group must have applied or dead-lettered every committed or acknowledged
    // message; an acknowledged commit missing from the database is lost whatever happened next.
    std::set<std::string> lost;
    for (const auto& id : h.acked) {
        if (committed.count(id) == 0) {
            ++n.acked_not_committed;
            lost.insert(id);
            ex.add("lost", "id=" + id + " acknowledged to its producer, absent from the database");
        }
    }
    std::set<std::string> must_apply;
    for (const auto& [id, m] : committed) must_apply.insert(id);
    must_apply.insert(h.acked.begin(), h.acked.end());
    static const std::set<std::string> no_ids;
    for (const auto& id : must_apply) {
        if (kafka_copies.count(id) == 0) ++n.unpublished;
        for (const auto& g : h.groups) {
            const auto a = applied.find(g);
            const bool done = a != applied.end() && a->second.count(id) != 0;
            const auto dl = h.dead_letters.find(g);
            const bool dead = dl != h.dead_letters.end() && dl->second.count(id) != 0;
            if (dead) ++n.dead_lettered;
            if (!done && !dead) {
                if (lost.insert(id).second) {
                    ex.add("lost", "id=" + id + " group=" + g +
                                       " neither applied nor dead-lettered" +
                                       (kafka_copies.count(id) ? "" : " (never reached Kafka)"));
                }
            }
        }
    }
    n.lost = lost.size();

    // Phantoms: anything observed that never committed.
    std::set<std::string> phantoms;
    auto observe = [&](const std::string& id, const std::string& where) {
        if (committed.count(id) != 0 || h.acked.count(id) != 0) return;
        if (phantoms.insert(id).second) {
            ex.add("phantoms", "id=" + id + " in " + where +
                                   (h.rolled_back.count(id) ? " (its transaction rolled back)"
                                                            : " (never committed)"));
        }
    };
    for (const auto& d : h.kafka) observe(d.id, "kafka");
    for (const auto& e : h.effects) observe(e.id, "witness of group " + e.group);
    for (const auto& [g, ids] : h.dead_letters) {
        for (const auto& id : ids) observe(id, "dead letters of group " + g);
    }
    n.phantoms = phantoms.size();

    // Order of first deliveries: Kafka order per key is (partition, offset).
    {
        std::vector<const delivery*> v;
        for (const auto& d : h.kafka) v.push_back(&d);
        std::stable_sort(v.begin(), v.end(), [](const delivery* a, const delivery* b) {
            return std::tie(a->key, a->partition, a->offset) <
                   std::tie(b->key, b->partition, b->offset);
        });
        n.order_violations_delivery = order_violations<delivery>(
            v, [](const delivery& d) { return d.key; },
            [&](const delivery& d) {
                const auto c = committed.find(d.id);
                return c == committed.end() ? std::int64_t{-1} : c->second->seq;
            },
            [](const delivery& d) { return d.id; },
            [](const delivery& d) {
                return "kafka partition=" + std::to_string(d.partition) +
                       " offset=" + std::to_string(d.offset);
            },
            ex, "order_violations");
    }
    // Order of first effects, per group and key, in witness order. The seq is the database's
    // (the committed set), never what the consumer claims.
    for (const auto& g : h.groups) {
        std::vector<const effect*> v;
        for (const auto& e : h.effects) {
            if (e.group == g) v.push_back(&e);
        }
        std::stable_sort(v.begin(), v.end(),
                         [](const effect* a, const effect* b) { return a->order < b->order; });
        n.order_violations_effect += order_violations<effect>(
            v, [](const effect& e) { return e.key; },
            [&](const effect& e) {
                const auto c = committed.find(e.id);
                return c == committed.end() ? std::int64_t{-1} : c->second->seq;
            },
            [](const effect& e) { return e.id; },
            [](const effect& e) {
                return "group=" + e.group + " effect#" + std::to_string(e.order);
            },
            ex, "order_violations");
    }
    n.order_violations = n.order_violations_delivery + n.order_violations_effect;

    if (!h.settled) {
        n.unsettled = 1;
        ex.add("unsettled",
               h.unsettled_detail.empty() ? "did not settle within the bound" : h.unsettled_detail);
    }
    return r;
}

nlohmann::json report::to_json() const {
    nlohmann::json j;
    j["lost"] = n.lost;
    j["duplicate_effects"] = n.duplicate_effects;
    j["order_violations"] = n.order_violations;
    j["order_violations_delivery"] = n.order_violations_delivery;
    j["order_violations_effect"] = n.order_violations_effect;
    j["phantoms"] = n.phantoms;
    j["unsettled"] = n.unsettled;
    j["committed"] = n.committed;
    j["acked_not_committed"] = n.acked_not_committed;
    j["duplicate_deliveries"] = n.duplicate_deliveries;
    j["unpublished"] = n.unpublished;
    j["dead_lettered"] = n.dead_lettered;
    j["effects"] = n.effects;
    j["clean"] = n.clean();
    j["examples"] = examples;
    return j;
}

std::string report::summary() const {
    std::ostringstream o;
    o << "lost=" << n.lost << " duplicate_effects=" << n.duplicate_effects
      << " order_violations=" << n.order_violations << " phantoms=" << n.phantoms
      << " unsettled=" << n.unsettled << " committed=" << n.committed << " effects=" << n.effects
      << " duplicate_deliveries=" << n.duplicate_deliveries << " dead_lettered=" << n.dead_lettered;
    return o.str();
}

}  // namespace ferry::chaos
