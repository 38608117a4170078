#include "wal_reader.hpp"

#include <algorithm>
#include <vector>

namespace ferry::relay::detail {

using namespace std::chrono_literals;
using clock = std::chrono::steady_clock;

namespace {

// Events handed over per lock: enough to make locking rare during a backlog, few enough that
// a trickle is handed over at once (the reader hands over whenever the stream has nothing more).
constexpr std::size_t k_chunk = 256;

std::size_t payload_bytes(const wal::wal_event& e) {
    if (const auto* m = std::get_if<wal::committed_message>(&e)) {
        return m->message.payload.size() + m->message.key.size() + m->message.topic.size() +
               m->message.headers_json.size();
    }
    if (const auto* r = std::get_if<wal::rejected_message>(&e)) return r->content.size();
    return 0;
}

bool is_message(const wal::wal_event& e) {
    return std::holds_alternative<wal::committed_message>(e);
}

}  // namespace

wal_reader::wal_reader(wal_feed& feed, wal_reader_limits limits)
    : _feed(feed),
      _limits(limits),
      _confirmed(feed.confirmed()),
      _send_time(feed.last_send_time()) {
    _thread = std::thread([this] { run(); });
}

wal_reader::~wal_reader() { stop(); }

void wal_reader::stop() noexcept {
    {
        std::lock_guard lock(_mu);
        _stop = true;
    }
    _cv.notify_all();
    if (_thread.joinable()) _thread.join();
}

bool wal_reader::full() const noexcept {
    return _queued_messages >= _limits.max_messages || _queued_bytes >= _limits.max_bytes;
}

void wal_reader::apply_ack(bool force_send) {
    wal::lsn ack = 0;
    std::uint64_t request = 0;
    {
        std::lock_guard lock(_mu);
        ack = _ack;
        request = _send_request;
        force_send = force_send || _send_request != _send_done;
    }
    _feed.acknowledge(ack, force_send);
    _confirmed.store(_feed.confirmed());
    if (force_send) {
        {
            std::lock_guard lock(_mu);
            _send_done = std::max(_send_done, request);
        }
        _cv.notify_all();
    }
}

void wal_reader::run() {
    std::vector<wal::wal_event> local;
    local.reserve(k_chunk);
    std::size_t local_messages = 0;
    std::size_t local_bytes = 0;
    auto last_status = clock::now();
    const auto hand_over = [&] {
        if (local.empty()) return;
        {
            std::lock_guard lock(_mu);
            for (auto& e : local) _queue.push_back(std::move(e));
            _queued_messages += local_messages;
            _queued_bytes += local_bytes;
        }
        local.clear();
        local_messages = 0;
        local_bytes = 0;
        _cv.notify_all();
    };
    try {
        for (;;) {
            std::size_t queued_messages = 0;
            std::size_t queued_bytes = 0;
            {
                std::lock_guard lock(_mu);
                if (_stop) break;
                queued_messages = _queued_messages;
                queued_bytes = _queued_bytes;
            }
            // Counted with what is in hand, so the bound holds for the whole reader.
            if (queued_messages + local_messages >= _limits.max_messages ||
                queued_bytes + local_bytes >= _limits.max_bytes) {
                hand_over();
                {
                    std::unique_lock lock(_mu);
                    _cv.wait_for(lock, 100ms, [this] {
                        return _stop || !full() || _send_request != _send_done;
                    });
                    if (_stop) break;
                }
                // Full: read nothing, but keep the connection alive and the position moving.
                const auto now = clock::now();
                const bool keepalive = now - last_status >= 1s;
                if (keepalive) last_status = now;
                apply_ack(keepalive);
                continue;
            }
            if (local.empty()) apply_ack(false);
            auto event = _feed.next(local.empty() ? _limits.idle_wait : 0ms);
            _send_time.store(_feed.last_send_time());
            if (event) {
                local_bytes += payload_bytes(*event);
                if (is_message(*event)) ++local_messages;
                local.push_back(std::move(*event));
                if (local.size() < k_chunk) continue;
            }
            hand_over();
        }
    } catch (...) {
        hand_over();
        {
            std::lock_guard lock(_mu);
            _error = std::current_exception();
        }
        _cv.notify_all();
    }
}

std::size_t wal_reader::take(std::deque<wal::wal_event>& out, clock::time_point until) {
    std::unique_lock lock(_mu);
    _cv.wait_until(lock, until, [this] { return !_queue.empty() || _error || _stop; });
    if (_queue.empty()) {
        if (_error) std::rethrow_exception(_error);
        return 0;
    }
    const auto n = _queue.size();
    if (out.empty()) {
        out.swap(_queue);
    } else {
        for (auto& e : _queue) out.push_back(std::move(e));
        _queue.clear();
    }
    _queued_messages = 0;
    _queued_bytes = 0;
    lock.unlock();
    _cv.notify_all();  // room
    return n;
}

void wal_reader::acknowledge(wal::lsn flushed, bool wait_sent) {
    std::unique_lock lock(_mu);
    _ack = std::max(_ack, flushed);
    if (!wait_sent) return;
    const auto request = ++_send_request;
    _cv.notify_all();
    _cv.wait_for(lock, 2s, [&] { return _send_done >= request || _stop || _error; });
}

}  // namespace ferry::relay::detail
