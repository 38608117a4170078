// ferryctl wal: the replication slot and publication of WAL mode (relay.source: wal, ADR 0070),
// through ferry::wal's slot API. Names default to the configuration's relay.wal_slot and
// relay.wal_publication.
//
//   wal setup                  publication (if missing), slot (if missing), registration: what a
//                              WAL-mode relay and enqueue_wal need; safe to run again
//   wal status [--json]        the slot (lag, wal_status, confirmed position, active pid) and
//                              whether the publication exists and the slot is registered
//   wal slot create|drop       one piece at a time; drop refuses while a relay streams from
//   wal publication create|drop  the slot and unregisters it first (producers then refuse to
//                              emit instead of writing messages nobody decodes)
//
// Exit codes: 0 done; 1 a refusal the output explains (slot exists, slot in use, slot lost on
// setup); 2 usage or configuration errors.
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "ferry/common/error.hpp"
#include "ferry/wal/lsn.hpp"
#include "ferry/wal/slot.hpp"

namespace ferry::cli {
namespace {

struct wal_args {
    std::string slot;
    std::string publication;
    bool json = false;
};

struct names {
    ferry::config::ferry_config cfg;
    std::string slot;
    std::string publication;
};

names names_of(const globals& g, const wal_args& a) {
    names n{g.load_config(), a.slot, a.publication};
    if (n.slot.empty()) n.slot = n.cfg.relay.wal_slot;
    if (n.publication.empty()) n.publication = n.cfg.relay.wal_publication;
    ferry::wal::validate_slot_name(n.slot);
    return n;
}

nlohmann::json slot_json(const std::optional<ferry::wal::slot_info>& s) {
    if (!s) return nullptr;
    nlohmann::json j{
        {"name", s->name},     {"plugin", s->plugin},         {"database", s->database},
        {"active", s->active}, {"wal_status", s->wal_status}, {"lost", s->lost()}};
    j["active_pid"] = s->active_pid ? nlohmann::json(*s->active_pid) : nlohmann::json(nullptr);
    j["confirmed_flush_lsn"] = s->confirmed_flush_lsn
                                   ? nlohmann::json(ferry::wal::format_lsn(*s->confirmed_flush_lsn))
                                   : nlohmann::json(nullptr);
    j["restart_lsn"] = s->restart_lsn ? nlohmann::json(ferry::wal::format_lsn(*s->restart_lsn))
                                      : nlohmann::json(nullptr);
    j["lag_bytes"] = s->lag_bytes ? nlohmann::json(*s->lag_bytes) : nlohmann::json(nullptr);
    j["safe_wal_size"] =
        s->safe_wal_size ? nlohmann::json(*s->safe_wal_size) : nlohmann::json(nullptr);
    return j;
}

}  // namespace

void register_wal(CLI::App& app, globals& g) {
    auto* wal = app.add_subcommand(
        "wal", "WAL mode's replication slot and publication: setup, status, create, drop");
    wal->require_subcommand(1);
    static wal_args a;
    wal->add_option("--slot", a.slot, "Replication slot (default: relay.wal_slot)");
    wal->add_option("--publication", a.publication, "Publication (default: relay.wal_publication)");

    auto* setup = wal->add_subcommand(
        "setup",
        "Create what WAL mode needs if missing: the publication, the pgoutput slot and its "
        "registration (so enqueue_wal may emit). A lost slot is reported, never recreated");
    setup->callback([&g] {
        const auto n = names_of(g, a);
        auto conn = connect(n.cfg, "wal");
        const bool pub_created = ferry::wal::ensure_publication(*conn, n.publication);
        auto slot = ferry::wal::inspect_slot(*conn, n.slot);
        bool slot_created = false;
        if (slot && slot->lost()) {
            std::cerr << "ferryctl: replication slot \"" << n.slot
                      << "\" is lost (wal_status = " << slot->wal_status
                      << "); messages after its last confirmed position may be unpublishable. "
                         "Reconcile, then drop it (ferryctl wal slot drop) and run setup again "
                         "(docs/operations.md, \"WAL slot lost\")\n";
            g.exit_code = 1;
            return;
        }
        if (!slot) {
            (void)ferry::wal::create_slot(*conn, n.slot);
            slot_created = true;
        }
        ferry::wal::check_slot(*conn, n.slot);
        ferry::wal::register_slot(*conn, n.cfg.postgres.schema, n.slot);
        std::cout << "publication " << n.publication << (pub_created ? " created" : " exists")
                  << "\nslot " << n.slot << (slot_created ? " created" : " exists")
                  << "\nslot registered for schema " << n.cfg.postgres.schema << "\n";
    });

    auto* status = wal->add_subcommand("status", "The slot, the publication, the registration");
    status->add_flag("--json", a.json, "Print one JSON object");
    status->callback([&g] {
        const auto n = names_of(g, a);
        auto conn = connect(n.cfg, "wal");
        const auto slot = ferry::wal::inspect_slot(*conn, n.slot);
        const bool pub = ferry::wal::publication_exists(*conn, n.publication);
        const bool reg = ferry::wal::slot_registered(*conn, n.cfg.postgres.schema, n.slot);
        if (a.json) {
            std::cout << nlohmann::json{{"slot", slot_json(slot)},
                                        {"slot_name", n.slot},
                                        {"publication", n.publication},
                                        {"publication_exists", pub},
                                        {"registered", reg}}
                             .dump()
                      << "\n";
        } else {
            std::cout << "slot " << n.slot << ": ";
            if (!slot) {
                std::cout << "missing\n";
            } else {
                std::cout << (slot->lost() ? "LOST" : slot->wal_status)
                          << (slot->active ? " active" : " inactive") << " lag_bytes="
                          << (slot->lag_bytes ? std::to_string(*slot->lag_bytes) : "-")
                          << " confirmed="
                          << (slot->confirmed_flush_lsn
                                  ? ferry::wal::format_lsn(*slot->confirmed_flush_lsn)
                                  : "-")
                          << "\n";
            }
            std::cout << "publication " << n.publication << ": " << (pub ? "exists" : "missing")
                      << "\nregistered: " << (reg ? "yes" : "no") << "\n";
        }
        // A missing or lost slot is a state an operator must act on: say so in the exit code.
        if (!slot || slot->lost()) g.exit_code = 1;
    });

    auto* slot = wal->add_subcommand("slot", "The replication slot alone");
    slot->require_subcommand(1);
    slot->add_subcommand("create", "Create the pgoutput slot and register it")->callback([&g] {
        const auto n = names_of(g, a);
        auto conn = connect(n.cfg, "wal");
        const auto at = ferry::wal::create_slot(*conn, n.slot);
        ferry::wal::register_slot(*conn, n.cfg.postgres.schema, n.slot);
        std::cout << "slot " << n.slot << " created at " << ferry::wal::format_lsn(at)
                  << " and registered\n";
    });
    slot->add_subcommand("drop",
                         "Unregister and drop the slot (refused while a relay streams from it)")
        ->callback([&g] {
            const auto n = names_of(g, a);
            auto conn = connect(n.cfg, "wal");
            const bool was_registered =
                ferry::wal::unregister_slot(*conn, n.cfg.postgres.schema, n.slot);
            bool dropped = false;
            try {
                dropped = ferry::wal::drop_slot(*conn, n.slot);
            } catch (const ferry::error&) {
                // Keep the producers' guard as it was when the slot stays.
                if (was_registered) ferry::wal::register_slot(*conn, n.cfg.postgres.schema, n.slot);
                throw;
            }
            std::cout << "slot " << n.slot << (dropped ? " dropped" : " did not exist") << "\n";
        });

    auto* pub = wal->add_subcommand("publication", "The publication alone");
    pub->require_subcommand(1);
    pub->add_subcommand("create", "Create the (empty) publication if missing")->callback([&g] {
        const auto n = names_of(g, a);
        auto conn = connect(n.cfg, "wal");
        const bool created = ferry::wal::ensure_publication(*conn, n.publication);
        std::cout << "publication " << n.publication << (created ? " created" : " exists") << "\n";
    });
    pub->add_subcommand("drop", "Drop the publication")->callback([&g] {
        const auto n = names_of(g, a);
        auto conn = connect(n.cfg, "wal");
        const bool dropped = ferry::wal::drop_publication(*conn, n.publication);
        std::cout << "publication " << n.publication << (dropped ? " dropped" : " did not exist")
                  << "\n";
    });
}

}  // namespace ferry::cli
