#pragma once
// Pipelined look-ups of Redis dedup "done" keys (`<prefix>:<group>:<message_id>`, value "done",
// see ferry/dedup/redis_store.hpp). One connection, owned by one reconciliation run; not
// thread-safe. Private to ferry::reconcile so no hiredis type leaks into a public header.

#include <memory>
#include <string>
#include <vector>

namespace ferry::reconcile {

class redis_lookup {
public:
    /// Connects (and AUTH/SELECTs as the URL says). Throws ferry::error(retryable) when Redis is
    /// unreachable; the URL (it may hold a password) is never part of the message.
    redis_lookup(const std::string& url, std::string prefix, std::string group);
    ~redis_lookup();
    redis_lookup(const redis_lookup&) = delete;
    redis_lookup& operator=(const redis_lookup&) = delete;

    /// For each id: true when its key holds "done". One pipeline (all GETs sent, then all
    /// replies read), so a 10k chunk costs one round trip.
    [[nodiscard]] std::vector<bool> done(const std::vector<std::string>& ids);

private:
    struct impl;
    std::unique_ptr<impl> _impl;
};

}  // namespace ferry::reconcile
