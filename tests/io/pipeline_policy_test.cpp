// The sans-IO policies of the replication drivers: apply batch sizing
// (perf.apply_queue_*) and the broadcast bandwidth token bucket.
#include <gtest/gtest.h>

#include "io/apply_pipeline.hpp"
#include "io/token_bucket.hpp"

#include <set>

namespace patina::io {
namespace {

using namespace std::chrono_literals;

crdt::Incoming rows(std::size_t n) {
  crdt::Incoming in;
  in.changeset.changes.resize(n);
  return in;
}

TEST(ApplyBatching, cost_is_rows_and_empties_cost_at_most_twenty) {
  EXPECT_EQ(ApplyBatching::cost_of(rows(7)), 7u);
  EXPECT_EQ(ApplyBatching::cost_of(rows(0)), 1u);
  crdt::Incoming empty;
  empty.empty_versions = crdt::Range{1, 5};
  EXPECT_EQ(ApplyBatching::cost_of(empty), 5u);
  empty.empty_versions = crdt::Range{1, 5000};
  EXPECT_EQ(ApplyBatching::cost_of(empty), 20u);
}

TEST(ApplyBatching, batch_size_follows_corrosions_steps_within_min_and_max) {
  ApplyBatching b(ApplyBatchOptions{});  // 100 / 500 / 16000, ratio 0.9
  EXPECT_EQ(b.batch_size(0), 100u);
  EXPECT_EQ(b.batch_size(499), 100u);
  EXPECT_EQ(b.batch_size(500), 500u);
  EXPECT_EQ(b.batch_size(1999), 1000u);
  EXPECT_EQ(b.batch_size(2000), 2000u);
  EXPECT_EQ(b.batch_size(1'000'000), 16000u);
  EXPECT_FALSE(b.ready(50));
  EXPECT_TRUE(b.ready(90));
  EXPECT_TRUE(b.ready(600));
}

TEST(ApplyBatching, only_a_full_last_batch_makes_a_small_remainder_wait_for_company) {
  ApplyBatching b(ApplyBatchOptions{});  // min 100, ratio 0.9
  EXPECT_FALSE(b.wait_for_company(1, 0));    // idle before
  EXPECT_FALSE(b.wait_for_company(5, 3));    // light traffic: what queued goes next
  EXPECT_FALSE(b.wait_for_company(5, 99));
  EXPECT_TRUE(b.wait_for_company(5, 100));   // under load: wait for a fuller batch
  EXPECT_TRUE(b.wait_for_company(89, 5000));
  EXPECT_FALSE(b.wait_for_company(90, 5000));  // enough for a batch
}

TEST(ApplyBatching, failures_halve_the_cap_and_successes_restore_it) {
  ApplyBatching b(ApplyBatchOptions{});
  b.failed(2000);
  EXPECT_EQ(b.batch_size(100000), 1000u);
  b.failed(1000);
  b.failed(500);
  b.failed(250);
  EXPECT_EQ(b.batch_size(100000), 125u);
  for (int i = 0; i < 20; ++i) b.failed(1);
  EXPECT_EQ(b.batch_size(100000), 1u);  // never zero: one changeset still goes
  for (int i = 0; i < 20; ++i) b.succeeded();
  EXPECT_EQ(b.batch_size(100000), 16000u);
}

TEST(TokenBucket, caps_the_rate_and_lets_oversized_sends_through_into_debt) {
  auto t0 = TokenBucket::Clock::now();
  TokenBucket bucket(1000, 500, t0);  // 1000 B/s, burst 500
  EXPECT_EQ(bucket.wait_for(500, t0), TokenBucket::Clock::duration::zero());
  bucket.take(500, t0);
  EXPECT_TRUE(bucket.limited(t0));
  auto wait = bucket.wait_for(100, t0);
  EXPECT_NEAR(std::chrono::duration<double>(wait).count(), 0.1, 0.001);
  EXPECT_EQ(bucket.wait_for(100, t0 + 100ms), TokenBucket::Clock::duration::zero());
  // A 5000-byte send needs at most a full burst, then leaves a debt.
  auto t1 = t0 + 10s;
  EXPECT_EQ(bucket.wait_for(5000, t1), TokenBucket::Clock::duration::zero());
  bucket.take(5000, t1);
  EXPECT_NEAR(std::chrono::duration<double>(bucket.wait_for(1, t1)).count(), 4.501, 0.01);
}

}  // namespace
}  // namespace patina::io

#include "io/sync_peers.hpp"

namespace patina::io {
namespace {

TEST(SyncPeers, the_member_we_lack_most_from_wins_then_the_least_recently_synced) {
  swim::Prng prng(42);
  EXPECT_FALSE(choose_sync_peer({}, prng));
  auto now = std::chrono::steady_clock::now();
  std::vector<SyncCandidate> three{{"a", 0, now, 0}, {"b", 5, now, 3}, {"c", 1, now, 0}};
  for (int i = 0; i < 20; ++i) EXPECT_EQ(choose_sync_peer(three, prng), "b");
  std::vector<SyncCandidate> tie{{"a", 0, now, 0}, {"b", 0, now - std::chrono::seconds(9), 1}, {"c", 0, now, 0}};
  for (int i = 0; i < 20; ++i) EXPECT_EQ(choose_sync_peer(tie, prng), "b");
  std::vector<SyncCandidate> rings{{"a", 0, now, 2}, {"b", 0, now, std::nullopt}, {"c", 0, now, 0}};
  for (int i = 0; i < 20; ++i) EXPECT_EQ(choose_sync_peer(rings, prng), "c");
}

TEST(SyncPeers, in_a_big_cluster_every_member_gets_chosen_over_the_rounds) {
  swim::Prng prng(7);
  std::vector<SyncCandidate> many;
  for (int i = 0; i < 50; ++i) many.push_back({std::to_string(i), 0, {}, 0});
  std::set<std::string> chosen;
  for (int i = 0; i < 2000; ++i) chosen.insert(*choose_sync_peer(many, prng));
  EXPECT_EQ(chosen.size(), 50u);
}

}  // namespace
}  // namespace patina::io
