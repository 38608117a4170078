#include "batch_planner.hpp"

#include <ctime>
#include <set>
#include <utility>

#include "headers.hpp"

namespace ferry::relay::detail {

namespace {

using key_id = std::pair<std::string, std::string>;  // (outbox topic, key)

key_id key_of(const planned_row& row) { return {row.topic, row.key}; }

// Most batches have no failed key: skip building the lookup key then.
bool holds(const std::set<key_id>& failed, const planned_row& row) {
    return !failed.empty() && failed.count(key_of(row)) != 0;
}

}  // namespace

inline_text rfc3339_millis(std::int64_t micros) {
    // Floor division, so instants before 1970 format correctly too.
    std::int64_t secs = micros / 1000000;
    std::int64_t rem = micros % 1000000;
    if (rem < 0) {
        rem += 1000000;
        --secs;
    }
    // The rows of a batch were mostly committed within the same second: format each second
    // once per thread (gmtime_r and strftime were 4% of the WAL relay's CPU).
    thread_local std::int64_t cached_secs = 0;
    thread_local inline_text cached;
    if (cached.size == 0 || cached_secs != secs) {
        const auto t = static_cast<std::time_t>(secs);
        std::tm tm{};
        ::gmtime_r(&t, &tm);
        // At most 27 characters before the milliseconds (year -4713 to 294276); 5 follow.
        cached.size =
            std::strftime(cached.chars.data(), cached.chars.size() - 5, "%Y-%m-%dT%H:%M:%S", &tm);
        cached_secs = secs;
    }
    inline_text out = cached;
    const auto millis = static_cast<int>(rem / 1000);
    auto* at = out.chars.data() + out.size;
    *at++ = '.';
    *at++ = static_cast<char>('0' + millis / 100);
    *at++ = static_cast<char>('0' + millis / 10 % 10);
    *at++ = static_cast<char>('0' + millis % 10);
    *at++ = 'Z';
    out.size += 5;
    return out;
}

prepared_batch prepare_batch(std::vector<source_row>& rows,
                             const std::function<std::string(const std::string&)>& topic_of) {
    prepared_batch out;
    out.planned.resize(rows.size());
    out.items.resize(rows.size());
    // Rows of a batch mostly share a topic: map each distinct run once, and share the text.
    const std::string* last_topic = nullptr;
    std::shared_ptr<const std::string> last_mapped;
    for (std::size_t i = 0; i < rows.size(); ++i) {
        auto& row = rows[i];
        auto& p = out.planned[i];
        p.id = row.id;
        p.topic = std::move(row.topic);
        p.key = row.key;
        p.expired = row.expired;
        p.refused_code = row.refused_code;
        p.refused_reason = row.refused_reason;
        if (row.expired || !row.refused_code.empty()) continue;
        auto& item = out.items[i];
        if (last_topic == nullptr || *last_topic != p.topic) {
            last_mapped = std::make_shared<const std::string>(topic_of(p.topic));
            last_topic = &p.topic;
        }
        item.topic = last_mapped;
        if (!row.key.empty()) item.key = std::move(row.key);
        item.payload = std::move(row.payload);
        item.message_id = std::move(row.message_id);
        item.created_at = rfc3339_millis(row.created_at_us);
        p.header_error = decode_headers(row.headers_json, item.headers);
    }
    return out;
}

bool may_overlap_next_claim(const mark_plan& marks, bool producer_lost) {
    return !producer_lost && marks.park.empty() && marks.transient == 0 && marks.held_acked == 0 &&
           marks.left == 0;
}

produce_plan plan_produce(const std::vector<planned_row>& rows) {
    produce_plan plan;
    std::set<key_id> failed;
    for (std::size_t i = 0; i < rows.size(); ++i) {
        const auto& row = rows[i];
        if (row.expired) {
            plan.expire.push_back(i);
            continue;
        }
        if (!row.refused_code.empty()) {
            failed.insert(key_of(row));
            plan.park.push_back({i, row.refused_code, row.refused_reason});
            continue;
        }
        if (holds(failed, row)) {
            ++plan.held;  // waits behind the failed row of its key
            continue;
        }
        if (!row.header_error.empty()) {
            failed.insert(key_of(row));
            plan.park.push_back({i, "HEADERS_INVALID", row.header_error});
            continue;
        }
        plan.produce.push_back(i);
    }
    return plan;
}

mark_plan plan_mark(const std::vector<planned_row>& rows, const produce_plan& plan,
                    const std::vector<delivery_report>& reports) {
    mark_plan marks;
    marks.expire = plan.expire;
    marks.park = plan.park;
    marks.left = plan.held;
    std::set<key_id> failed;
    for (const auto& p : plan.park) failed.insert(key_of(rows[p.row]));
    for (std::size_t k = 0; k < plan.produce.size(); ++k) {
        const std::size_t i = plan.produce[k];
        const auto& row = rows[i];
        // A missing report (the sink gave up before producing it) counts as not sent.
        const delivery_report none{};
        const auto& d = k < reports.size() ? reports[k] : none;
        if (d.result == delivery_result::transient) ++marks.transient;
        if (holds(failed, row)) {
            if (d.result == delivery_result::acked) ++marks.held_acked;
            ++marks.left;
            continue;
        }
        switch (d.result) {
            case delivery_result::acked:
                marks.publish.push_back({i, d.partition, d.offset});
                break;
            case delivery_result::permanent:
                failed.insert(key_of(row));
                marks.park.push_back({i, d.error_code, d.error_text});
                break;
            case delivery_result::transient:
            case delivery_result::not_sent:
                failed.insert(key_of(row));
                ++marks.left;
                break;
        }
    }
    return marks;
}

next_step plan_next(const batch_facts& facts, const mark_plan& marks) {
    if (facts.fenced) return next_step::drop_group;
    if (facts.producer_lost || marks.transient > 0) return next_step::back_off;
    if (facts.claimed >= facts.batch_size && facts.claimed > 0) return next_step::poll_again_now;
    return next_step::poll_later;
}

bool may_prefetch_next_claim(std::size_t claimed, std::size_t batch_size) {
    return claimed > 0 && claimed >= batch_size;
}

bool keep_prefetched_claim(const batch_facts& facts, const mark_plan& marks, bool next_lease_ours,
                           std::size_t next_rows) {
    return next_lease_ours && next_rows > 0 && may_overlap_next_claim(marks, facts.producer_lost) &&
           plan_next(facts, marks) == next_step::poll_again_now;
}

}  // namespace ferry::relay::detail
