// id_window, the WAL source's window of yielded, unfinished rows: lookup by id, removal in any
// order, the oldest-first walk, and ids that must only grow.
#include "id_window.hpp"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <string>
#include <vector>

using ferry::relay::detail::id_window;

namespace {

std::vector<std::int64_t> ids_of(id_window<std::string>& w) {
    std::vector<std::int64_t> out;
    w.for_each_until([&](std::int64_t id, std::string&) {
        out.push_back(id);
        return true;
    });
    return out;
}

}  // namespace

TEST(IdWindowTest, FindsErasesInAnyOrderAndWalksOldestFirst) {
    id_window<std::string> w;
    EXPECT_TRUE(w.empty());
    EXPECT_EQ(w.find(1), nullptr);
    for (std::int64_t id = 5; id <= 9; ++id) w.insert(id, "row " + std::to_string(id));
    EXPECT_EQ(w.size(), 5u);
    ASSERT_NE(w.find(7), nullptr);
    EXPECT_EQ(*w.find(7), "row 7");
    EXPECT_EQ(w.find(4), nullptr);
    EXPECT_EQ(w.find(10), nullptr);
    // Out of order: the middle, then the oldest (the walk and lookups skip the hole).
    w.erase(7);
    w.erase(5);
    EXPECT_EQ(w.find(7), nullptr);
    EXPECT_EQ(w.find(5), nullptr);
    EXPECT_EQ(w.at(6), "row 6");
    EXPECT_THROW((void)w.at(7), std::out_of_range);
    EXPECT_EQ(ids_of(w), (std::vector<std::int64_t>{6, 8, 9}));
    EXPECT_EQ(w.size(), 3u);
    w.erase(7);  // already gone: nothing happens
    EXPECT_EQ(w.size(), 3u);
    // Later ids, with a gap (a rejected message takes no id here, but the window allows it).
    w.insert(12, "row 12");
    EXPECT_EQ(ids_of(w), (std::vector<std::int64_t>{6, 8, 9, 12}));
    EXPECT_EQ(w.find(11), nullptr);
    // The walk stops when told to.
    std::vector<std::int64_t> first_two;
    w.for_each_until([&](std::int64_t id, std::string&) {
        first_two.push_back(id);
        return first_two.size() < 2;
    });
    EXPECT_EQ(first_two, (std::vector<std::int64_t>{6, 8}));
    for (const std::int64_t id : {12, 9, 6, 8}) w.erase(id);
    EXPECT_TRUE(w.empty());
    EXPECT_TRUE(ids_of(w).empty());
}

TEST(IdWindowTest, IdsMustGrowAndClearStartsOver) {
    id_window<std::string> w;
    w.insert(3, "a");
    EXPECT_THROW(w.insert(3, "again"), std::logic_error);
    EXPECT_THROW(w.insert(2, "older"), std::logic_error);
    w.erase(3);
    // Once empty (everything erased, or clear() when the stream restarts), the next id starts a
    // new window.
    w.insert(40, "b");
    EXPECT_EQ(ids_of(w), (std::vector<std::int64_t>{40}));
    w.clear();
    EXPECT_TRUE(w.empty());
    EXPECT_EQ(w.find(40), nullptr);
    w.insert(41, "c");
    EXPECT_EQ(w.at(41), "c");
    EXPECT_EQ(w.size(), 1u);
}

// The window is a ring of slots that grows and shrinks: random inserts (with gaps), erases in
// any order and walks must match a std::map, across wrap-arounds, growth and shrinking.
TEST(IdWindowTest, MatchesAMapAcrossWrapAroundGrowthAndShrinking) {
    id_window<std::string> w;
    std::map<std::int64_t, std::string> model;
    std::mt19937_64 rng(11);
    std::int64_t next = 1;
    for (int step = 0; step < 200000; ++step) {
        // Phases: fill to a few thousand, then drain, so the ring grows past its first size,
        // wraps, and shrinks again.
        const bool filling = (step / 20000) % 2 == 0;
        const auto roll = rng() % 100;
        if ((filling && roll < 60) || (!filling && roll < 20) || model.empty()) {
            next += rng() % 8 == 0 ? static_cast<std::int64_t>(rng() % 5) : 0;  // a gap
            w.insert(next, std::to_string(next));
            model.emplace(next, std::to_string(next));
            ++next;
        } else {
            // Mostly the oldest (rows finish mostly in order), sometimes any.
            auto it = model.begin();
            if (rng() % 4 == 0) std::advance(it, static_cast<long>(rng() % model.size()));
            w.erase(it->first);
            model.erase(it);
        }
        ASSERT_EQ(w.size(), model.size()) << "step " << step;
        if (step % 997 == 0) {
            std::vector<std::int64_t> expected;
            for (const auto& [id, text] : model) expected.push_back(id);
            ASSERT_EQ(ids_of(w), expected) << "step " << step;
            for (const auto& [id, text] : model) ASSERT_EQ(w.at(id), text);
            ASSERT_EQ(w.find(next), nullptr);
        }
    }
}
