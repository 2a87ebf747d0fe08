// The sans-IO policies of the replication drivers: apply batch sizing
// (perf.apply_queue_*) and the broadcast bandwidth token bucket.
#include <gtest/gtest.h>

#include "io/apply_pipeline.hpp"
#include "io/token_bucket.hpp"

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
