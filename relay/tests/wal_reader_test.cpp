// wal_reader, the WAL source's reader thread, against a scripted feed: events come out whole and
// in order, the queue's bound holds back reading (negative control: a bound that does not hold
// is caught), an error comes after the events read before it, and a confirmation asked to be
// sent is sent before acknowledge() returns.
#include "wal_reader.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using ferry::relay::detail::wal_feed;
using ferry::relay::detail::wal_reader;
using ferry::relay::detail::wal_reader_limits;
namespace wal = ferry::wal;

namespace {

// Yields `available` events: a committed message (its payload is its number) and, after every
// third message, a transaction_end whose end_lsn is that number. Then nothing, or throws when
// `fail_after` is set.
class scripted_feed final : public wal_feed {
public:
    explicit scripted_feed(int available, bool fail_after = false)
        : _available(available), _fail_after(fail_after) {}

    std::optional<wal::wal_event> next(std::chrono::milliseconds timeout) override {
        std::lock_guard lock(_mu);
        if (_produced >= _available) {
            if (_fail_after) throw std::runtime_error("stream broke");
            std::this_thread::sleep_for(std::min(timeout, 1ms));
            return std::nullopt;
        }
        const int n = _produced++;
        if (n % 4 == 3) {
            wal::transaction_end e;
            e.end_lsn = static_cast<wal::lsn>(n);
            return e;
        }
        ++_messages_read;
        wal::committed_message m;
        m.message.payload = std::to_string(n);
        m.message.headers_json.clear();  // so a message counts its payload's bytes only
        return m;
    }
    void acknowledge(wal::lsn flushed, bool send_now) override {
        std::lock_guard lock(_mu);
        _confirmed = std::max(_confirmed, flushed);
        if (send_now) _sent = _confirmed;
    }
    [[nodiscard]] wal::lsn confirmed() const override {
        std::lock_guard lock(_mu);
        return _confirmed;
    }
    [[nodiscard]] std::int64_t last_send_time() const override { return 42; }

    int messages_read() const {
        std::lock_guard lock(_mu);
        return _messages_read;
    }
    wal::lsn sent() const {
        std::lock_guard lock(_mu);
        return _sent;
    }

private:
    mutable std::mutex _mu;
    int _available;
    bool _fail_after;
    int _produced = 0;
    int _messages_read = 0;
    wal::lsn _confirmed = 0;
    wal::lsn _sent = 0;
};

// The numbers of the events taken, in order: messages as their payload, ends as -(end_lsn).
std::vector<int> numbers(const std::deque<wal::wal_event>& events) {
    std::vector<int> out;
    for (const auto& e : events) {
        if (const auto* m = std::get_if<wal::committed_message>(&e)) {
            out.push_back(std::stoi(m->message.payload));
        } else {
            out.push_back(-static_cast<int>(std::get<wal::transaction_end>(e).end_lsn));
        }
    }
    return out;
}

std::deque<wal::wal_event> take_all(wal_reader& r, std::size_t count) {
    std::deque<wal::wal_event> out;
    const auto until = std::chrono::steady_clock::now() + 10s;
    while (out.size() < count && std::chrono::steady_clock::now() < until) {
        (void)r.take(out, std::chrono::steady_clock::now() + 100ms);
    }
    return out;
}

// Waits until `f` holds or 5 s pass.
template <typename F>
bool eventually(F f) {
    const auto until = std::chrono::steady_clock::now() + 5s;
    while (!f()) {
        if (std::chrono::steady_clock::now() > until) return false;
        std::this_thread::sleep_for(5ms);
    }
    return true;
}

}  // namespace

TEST(WalReaderTest, EventsComeOutWholeAndInTheStreamsOrder) {
    scripted_feed feed(2000);
    wal_reader reader(feed, wal_reader_limits{});
    const auto events = take_all(reader, 2000);
    ASSERT_EQ(events.size(), 2000U);
    const auto got = numbers(events);
    for (int n = 0; n < 2000; ++n) {
        EXPECT_EQ(got[static_cast<std::size_t>(n)], n % 4 == 3 ? -n : n) << "event " << n;
    }
    EXPECT_EQ(reader.last_send_time(), 42);
}

TEST(WalReaderTest, AFullQueueStopsTheReadingUntilTheTakerMakesRoom) {
    scripted_feed feed(1000);
    wal_reader_limits limits;
    limits.max_messages = 10;
    wal_reader reader(feed, limits);
    // The reader fills the queue to the bound and then waits: 10 messages, not the 750 on offer.
    ASSERT_TRUE(eventually([&] { return feed.messages_read() >= 10; }));
    std::this_thread::sleep_for(200ms);
    EXPECT_EQ(feed.messages_read(), 10);
    std::deque<wal::wal_event> out;
    (void)reader.take(out, std::chrono::steady_clock::now() + 1s);
    ASSERT_FALSE(out.empty());
    // Room made: it reads on, again up to the bound beyond what was taken.
    ASSERT_TRUE(eventually([&] { return feed.messages_read() >= 20; }));
    std::this_thread::sleep_for(200ms);
    EXPECT_EQ(feed.messages_read(), 20);
}

TEST(WalReaderTest, ABoundTooLargeToHoldIsCaughtByTheBoundTest) {
    // Negative control for the test above: with a bound above what the feed offers, the reader
    // reads everything, which the bound test's assertion would report.
    scripted_feed feed(40);
    wal_reader_limits limits;
    limits.max_messages = 1000;
    wal_reader reader(feed, limits);
    ASSERT_TRUE(eventually([&] { return feed.messages_read() == 30; }));
    EXPECT_NE(feed.messages_read(), 10);
}

TEST(WalReaderTest, AByteBoundHoldsBackReadingToo) {
    scripted_feed feed(1000);
    wal_reader_limits limits;
    limits.max_bytes = 5;  // payloads "0", "1", ... "9" are one byte each
    wal_reader reader(feed, limits);
    ASSERT_TRUE(eventually([&] { return feed.messages_read() >= 5; }));
    std::this_thread::sleep_for(200ms);
    EXPECT_EQ(feed.messages_read(), 5);
}

TEST(WalReaderTest, AnErrorIsRaisedAfterTheEventsReadBeforeIt) {
    scripted_feed feed(7, true);
    wal_reader reader(feed, wal_reader_limits{});
    std::deque<wal::wal_event> out;
    ASSERT_TRUE(eventually([&] {
        try {
            (void)reader.take(out, std::chrono::steady_clock::now() + 10ms);
        } catch (const std::runtime_error&) {
            return true;
        }
        return false;
    }));
    // Every event before the error was handed over first.
    EXPECT_EQ(numbers(out), (std::vector<int>{0, 1, 2, -3, 4, 5, 6}));
    EXPECT_THROW((void)reader.take(out, std::chrono::steady_clock::now()), std::runtime_error);
}

TEST(WalReaderTest, AConfirmationAskedToBeSentIsSentBeforeAcknowledgeReturns) {
    scripted_feed feed(100);
    wal_reader reader(feed, wal_reader_limits{});
    (void)take_all(reader, 100);
    reader.acknowledge(77, true);
    EXPECT_EQ(feed.sent(), 77U);
    EXPECT_EQ(reader.confirmed(), 77U);
    // Without asking, the position is applied on the reader's next turn, not necessarily sent.
    reader.acknowledge(90);
    ASSERT_TRUE(eventually([&] { return reader.confirmed() == 90U; }));
    reader.stop();
    EXPECT_EQ(feed.confirmed(), 90U);
}

TEST(WalReaderTest, TakeWaitsForTheFirstEventOnlyUntilItsDeadline) {
    scripted_feed feed(0);
    wal_reader reader(feed, wal_reader_limits{});
    std::deque<wal::wal_event> out;
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(reader.take(out, t0 + 50ms), 0U);
    EXPECT_GE(std::chrono::steady_clock::now() - t0, 50ms);
    EXPECT_TRUE(out.empty());
}
