// Prng, config scaling, RTT rings and the dissemination helpers.
#include <gtest/gtest.h>

#include <set>

#include "swim/config.hpp"
#include "swim/digest.hpp"
#include "swim/dissemination.hpp"
#include "swim/prng.hpp"
#include "swim/rtt.hpp"

namespace patina::swim {
namespace {

using namespace std::chrono_literals;

TEST(SwimPrng, same_seed_same_sequence_and_below_stays_in_range) {
  Prng a(1), b(1), c(2);
  bool differs = false;
  for (int i = 0; i < 1000; ++i) {
    const auto x = a.next_u64();
    EXPECT_EQ(x, b.next_u64());
    differs |= x != c.next_u64();
  }
  EXPECT_TRUE(differs);
  std::array<int, 7> hist{};
  for (int i = 0; i < 7000; ++i) {
    const auto v = a.below(7);
    ASSERT_LT(v, 7u);
    ++hist[v];
  }
  for (int h : hist) EXPECT_GT(h, 800);  // roughly uniform
  EXPECT_EQ(a.between(5, 5), 5u);
}

TEST(SwimPrng, known_first_output_pins_the_generator) {
  // Pinned so the simulator's traces stay comparable across builds.
  Prng p(0);
  const std::uint64_t first = p.next_u64();
  Prng q(0);
  EXPECT_EQ(first, q.next_u64());
  std::uint64_t s = 0;
  EXPECT_EQ(splitmix64(s), 0xE220A8397B1DCDAFULL);
}

TEST(SwimConfig, new_wan_values_scale_with_cluster_size) {
  const Config c = Config::new_wan(1);
  EXPECT_EQ(c.probe_period, 5s);
  EXPECT_EQ(c.probe_rtt, 3s);
  EXPECT_EQ(c.num_indirect_probes, 3u);
  EXPECT_EQ(c.remove_down_after, 48h);
  EXPECT_EQ(c.max_packet_size, 1178u);
  EXPECT_EQ(c.max_transmissions(1), 1u);   // floor(4·log10 2) = 1
  EXPECT_EQ(c.max_transmissions(2), 1u);   // floor(4·log10 3) = 1
  EXPECT_EQ(c.max_transmissions(9), 4u);   // floor(4·log10 10) = 4
  EXPECT_EQ(c.max_transmissions(10), 4u);  // 4.16
  EXPECT_EQ(c.max_transmissions(99), 8u);  // floor(4·log10 100) = 8
  EXPECT_EQ(c.max_transmissions(1000), 12u);
  EXPECT_EQ(c.suspect_to_down_after(1), 30s);
  EXPECT_EQ(c.suspect_to_down_after(10), 30s);
  EXPECT_EQ(c.suspect_to_down_after(100), 60s);
  EXPECT_GT(c.suspect_to_down_after(50), 50s);
  EXPECT_TRUE(c.validate().has_value());
}

TEST(SwimConfig, overrides_and_validation) {
  Config c;
  c.max_transmissions_fixed = 2;
  c.suspect_to_down_fixed = 1s;
  EXPECT_EQ(c.max_transmissions(1000), 2u);
  EXPECT_EQ(c.suspect_to_down_after(1000), 1s);
  c.probe_rtt = c.probe_period;
  EXPECT_EQ(c.validate().error().code, Errc::invalid_argument);
  Config d;
  d.max_packet_size = 100;
  EXPECT_FALSE(d.validate().has_value());
}

TEST(SwimRtt, keeps_last_twenty_samples_and_min) {
  RttStats r;
  EXPECT_FALSE(r.ring().has_value());
  for (int i = 1; i <= 25; ++i) r.add(std::chrono::milliseconds(i));
  const auto s = r.samples();
  ASSERT_EQ(s.size(), RttStats::samples_max);
  EXPECT_EQ(s.front(), 6ms);  // oldest kept
  EXPECT_EQ(s.back(), 25ms);
  EXPECT_EQ(*r.min(), 6ms);
  EXPECT_EQ(*r.last(), 25ms);
  EXPECT_EQ(*r.ring(), 0);  // min 6 ms: within the 2 ms hysteresis of ring 0
}

TEST(SwimRtt, ring_buckets_with_hysteresis) {
  EXPECT_EQ(ring_for(0ms, std::nullopt), 0);
  EXPECT_EQ(ring_for(5ms, std::nullopt), 0);
  EXPECT_EQ(ring_for(6ms, std::nullopt), 1);
  EXPECT_EQ(ring_for(14ms, std::nullopt), 1);
  EXPECT_EQ(ring_for(15ms, std::nullopt), 2);
  EXPECT_EQ(ring_for(50ms, std::nullopt), 3);
  EXPECT_EQ(ring_for(100ms, std::nullopt), 4);
  EXPECT_EQ(ring_for(200ms, std::nullopt), 5);
  EXPECT_EQ(ring_for(10s, std::nullopt), 5);
  // Within 2 ms past a boundary, the current ring sticks.
  EXPECT_EQ(ring_for(7ms, 0), 0);
  EXPECT_EQ(ring_for(8ms, 0), 1);
  EXPECT_EQ(ring_for(5ms, 1), 1);
  EXPECT_EQ(ring_for(3ms, 1), 0);
  EXPECT_EQ(ring_for(199ms, 5), 5);
  EXPECT_EQ(ring_for(197ms, 5), 4);
}

std::vector<Peer> make_peers(std::size_t n, std::size_t ring0) {
  std::vector<Peer> v;
  for (std::size_t i = 0; i < n; ++i)
    v.push_back(Peer{"p" + std::to_string(i),
                     i < ring0 ? std::optional<std::uint8_t>(0) : std::optional<std::uint8_t>(2)});
  return v;
}

TEST(SwimBroadcastPlanner, ring0_and_fanout) {
  const auto peers = make_peers(10, 3);
  EXPECT_EQ(BroadcastPlanner::ring0(peers), (std::vector<std::string>{"p0", "p1", "p2"}));
  BroadcastPlanner planner(4, 3);
  EXPECT_EQ(planner.fanout(10, 3), 3u);     // max(3, 7/40)
  EXPECT_EQ(planner.fanout(1000, 0), 25u);  // 1000/40
}

TEST(SwimBroadcastPlanner, fanout_max_caps_k) {
  // 1,000 members: the formula gives max(3, 999 / (12·10)) = 8 per round.
  EXPECT_EQ(BroadcastPlanner(12, 3).fanout(999, 0), 8u);
  EXPECT_EQ(BroadcastPlanner(12, 3, 4).fanout(999, 0), 4u);
  EXPECT_EQ(BroadcastPlanner(12, 3, 20).fanout(999, 0), 8u);
}

TEST(SwimBroadcastPlanner, rounds_never_repeat_a_peer_and_stop_after_max_transmissions) {
  const auto peers = make_peers(20, 4);
  BroadcastPlanner planner(3, 3);
  Prng prng(7);
  BroadcastBatch batch;
  batch.local = true;
  std::set<std::string> all;
  for (int round = 0; round < 10; ++round) {
    const auto targets = planner.plan_round(peers, batch, prng);
    if (round >= 3) {
      EXPECT_TRUE(targets.empty());
    }
    for (const auto& t : targets) {
      EXPECT_TRUE(all.insert(t).second) << t << " sent twice";
      EXPECT_FALSE(t == "p0" || t == "p1" || t == "p2" || t == "p3") << "ring0 in local batch";
    }
  }
  EXPECT_EQ(all.size(), 9u);
  EXPECT_TRUE(planner.done(batch));
  EXPECT_EQ(BroadcastPlanner::delay_before_next_round(batch, false), 60ms);
  EXPECT_EQ(BroadcastPlanner::delay_before_next_round(batch, true), 1500ms);
}

TEST(SwimBroadcastPlanner, rebroadcast_batches_may_use_ring0_and_run_out_of_peers) {
  const auto peers = make_peers(4, 2);
  BroadcastPlanner planner(5, 3);
  Prng prng(9);
  BroadcastBatch batch;
  EXPECT_EQ(planner.plan_round(peers, batch, prng).size(), 3u);
  EXPECT_EQ(planner.plan_round(peers, batch, prng).size(), 1u);
  EXPECT_TRUE(planner.plan_round(peers, batch, prng).empty());
}

TEST(SwimBroadcastPlanner, drops_the_most_transmitted_batch) {
  std::vector<BroadcastBatch> pending(4);
  pending[0].rounds = 1;
  pending[1].rounds = 3;
  pending[2].rounds = 3;
  pending[3].rounds = 0;
  EXPECT_EQ(BroadcastPlanner::batch_to_drop(pending), 1u);
  EXPECT_FALSE(BroadcastPlanner::batch_to_drop({}).has_value());
}

TEST(SwimAddrDigest, no_false_negatives_and_few_false_positives) {
  const std::size_t n = 500;
  AddrDigest d(AddrDigest::size_for(n, 4096));
  EXPECT_EQ(d.bytes().size(), 625u);  // 10 bits per entry
  for (std::size_t i = 0; i < n; ++i) d.add("10.1." + std::to_string(i) + ".1:4001");
  for (std::size_t i = 0; i < n; ++i)
    ASSERT_TRUE(d.maybe_contains("10.1." + std::to_string(i) + ".1:4001"));
  std::size_t fp = 0;
  for (std::size_t i = 0; i < 10000; ++i)
    fp += d.maybe_contains("10.2." + std::to_string(i) + ".9:4001") ? 1 : 0;
  EXPECT_LT(fp, 300u);  // ~1 % expected; 3 % allowed
  // Round trip through bytes; the empty digest contains nothing.
  const AddrDigest copy = AddrDigest::from_bytes(d.bytes());
  EXPECT_TRUE(copy.maybe_contains("10.1.7.1:4001"));
  EXPECT_FALSE(AddrDigest{}.maybe_contains("10.1.7.1:4001"));
  EXPECT_EQ(AddrDigest::size_for(1, 4096), 8u);
  EXPECT_EQ(AddrDigest::size_for(100000, 700), 700u);
}

TEST(SwimSeenSet, forwards_once_and_forgets_oldest) {
  SeenSet<std::string> seen(3);
  EXPECT_TRUE(seen.insert("a"));
  EXPECT_FALSE(seen.insert("a"));
  EXPECT_TRUE(seen.insert("b"));
  EXPECT_TRUE(seen.insert("c"));
  EXPECT_TRUE(seen.insert("d"));  // evicts "a"
  EXPECT_EQ(seen.size(), 3u);
  EXPECT_FALSE(seen.contains("a"));
  EXPECT_TRUE(seen.contains("b"));
  EXPECT_TRUE(seen.insert("a"));
  EXPECT_FALSE(seen.contains("b"));
}

}  // namespace
}  // namespace patina::swim
