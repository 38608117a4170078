#include "ferry/test/unique_name.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

namespace {

bool is_identifier(const std::string& s) {
    return !s.empty() && s.size() <= 63 && s[0] >= 'a' && s[0] <= 'z' &&
           std::all_of(s.begin(), s.end(), [](char c) {
               return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
           });
}

TEST(UniqueNameTest, KeepsACleanPrefixAndAddsASuffix) {
    const std::string name = ferry::test::unique_name("outbox");
    EXPECT_TRUE(name.starts_with("outbox_")) << name;
    EXPECT_GT(name.size(), std::string("outbox_").size());
    EXPECT_TRUE(is_identifier(name)) << name;
}

TEST(UniqueNameTest, LowerCasesAndReplacesInvalidCharacters) {
    const std::string name = ferry::test::unique_name("My-Topic.Name");
    EXPECT_TRUE(name.starts_with("my_topic_name_")) << name;
    EXPECT_TRUE(is_identifier(name)) << name;
}

TEST(UniqueNameTest, StartsWithALetterEvenForEmptyOrNumericPrefixes) {
    EXPECT_TRUE(is_identifier(ferry::test::unique_name(""))) << ferry::test::unique_name("");
    const std::string numeric = ferry::test::unique_name("42abc");
    EXPECT_TRUE(numeric.starts_with("t42abc_")) << numeric;
    EXPECT_TRUE(is_identifier(numeric)) << numeric;
}

TEST(UniqueNameTest, TruncatesLongPrefixesToAPostgresIdentifier) {
    const std::string name = ferry::test::unique_name(std::string(200, 'x'));
    EXPECT_LE(name.size(), 63u);
    EXPECT_TRUE(is_identifier(name)) << name;
    // The unique suffix survives truncation: two calls still differ.
    EXPECT_NE(name, ferry::test::unique_name(std::string(200, 'x')));
}

TEST(UniqueNameTest, ContainsThePid) {
    const std::string name = ferry::test::unique_name("p");
    EXPECT_NE(name.find("_" + std::to_string(::getpid()) + "_"), std::string::npos) << name;
}

TEST(UniqueNameTest, IsUniqueAcrossThreads) {
    constexpr int k_threads = 8;
    constexpr int k_per_thread = 2000;
    std::mutex mutex;
    std::set<std::string> names;
    std::vector<std::thread> threads;
    threads.reserve(k_threads);
    for (int t = 0; t < k_threads; ++t) {
        threads.emplace_back([&] {
            std::vector<std::string> local;
            local.reserve(k_per_thread);
            for (int i = 0; i < k_per_thread; ++i) {
                local.push_back(ferry::test::unique_name("same"));
            }
            std::lock_guard lock(mutex);
            names.insert(local.begin(), local.end());
        });
    }
    for (auto& th : threads) {
        th.join();
    }
    EXPECT_EQ(names.size(), static_cast<std::size_t>(k_threads * k_per_thread));
}

}  // namespace
