// Seeded cluster simulations (STYLE §2.9): a safety phase with faults, then a
// liveness phase without them that must converge within a bound.
// PATINA_SWIM_SEED overrides the seed for replay.
#include "tests/swim/sim.hpp"

#include <gtest/gtest.h>

#include <cstdlib>

namespace patina::swim {
namespace {

using namespace std::chrono_literals;
using test::Sim;
using test::SimOptions;

std::uint64_t seed_or(std::uint64_t fallback) {
  if (const char* s = std::getenv("PATINA_SWIM_SEED")) return std::strtoull(s, nullptr, 0);
  return fallback;
}

std::vector<std::size_t> all_but(const Sim& sim, std::size_t skip) {
  std::vector<std::size_t> v;
  for (std::size_t i = 0; i < sim.size(); ++i)
    if (i != skip) v.push_back(i);
  return v;
}

/// Runs in steps of 100 ms until |pred| holds or |limit| passes. Returns the
/// virtual time it took, or nullopt.
template <class Pred>
std::optional<Duration> run_until_true(Sim& sim, Duration limit, Pred pred) {
  const Instant start = sim.now();
  while (sim.now() - start <= limit) {
    if (pred()) return sim.now() - start;
    sim.run_for(100ms);
  }
  return std::nullopt;
}

/// How long until every member holds a killed member Down. Someone probes it
/// within a few periods (n−1 probers each cycle through all members, so no
/// probe in k periods has probability ≈ e^−k: 4 periods), one period to
/// suspect, the suspicion timeout, then epidemic dissemination of Down in
/// O(log n) periods.
Duration detection_bound(const Config& c, std::size_t n) {
  std::int64_t log2n = 0;
  while ((std::size_t{1} << log2n) < n) ++log2n;
  return (5 + log2n) * c.probe_period + c.suspect_to_down_after(n);
}

class SimConverges : public ::testing::TestWithParam<std::size_t> {};

TEST_P(SimConverges, all_members_converge_to_alive_despite_loss) {
  SimOptions o;
  o.n = GetParam();
  o.seed = seed_or(0xF0CA + o.n);
  o.loss_per_mille = 50;  // 5 %
  Sim sim(o);
  sim.start(2);
  sim.run_for(30s);  // safety phase: loss
  sim.set_loss(0);
  const auto took = run_until_true(sim, 60s, [&] { return sim.converged(sim.live_nodes()); });
  ASSERT_TRUE(took.has_value()) << "no convergence; seed " << o.seed;
  for (std::size_t i = 0; i < sim.size(); ++i) EXPECT_EQ(sim.node(i).num_active(), o.n - 1);
}

INSTANTIATE_TEST_SUITE_P(Sizes, SimConverges, ::testing::Values(5, 12, 20));

TEST(Sim, fifty_members_converge_from_one_seed) {
  SimOptions o;
  o.n = 50;
  o.seed = seed_or(50);
  Sim sim(o);
  sim.start(1);
  const auto took = run_until_true(sim, 60s, [&] { return sim.converged(sim.live_nodes()); });
  ASSERT_TRUE(took.has_value()) << "seed " << o.seed;
  EXPECT_LT(*took, 30s);
}

// Hundreds of members: the epidemic gossip leaves a few pairs unaware of
// each other; the early periodic announce, with its digest, closes the gaps.
TEST(Sim, hundred_members_converge_with_loss) {
  SimOptions o;
  o.n = 100;
  o.seed = seed_or(100);
  o.loss_per_mille = 20;
  Sim sim(o);
  sim.start(3);
  const auto took = run_until_true(sim, 60s, [&] { return sim.converged(sim.live_nodes()); });
  ASSERT_TRUE(took.has_value()) << "seed " << o.seed;
  EXPECT_LT(*took, 20s);
}

TEST(Sim, killed_member_is_declared_down_by_all_within_bound) {
  SimOptions o;
  o.n = 12;
  o.seed = seed_or(12);
  o.loss_per_mille = 10;
  Sim sim(o);
  sim.start(2);
  sim.run_for(20s);
  sim.set_loss(0);
  ASSERT_TRUE(run_until_true(sim, 30s, [&] { return sim.converged(sim.live_nodes()); }));
  const std::size_t victim = 4;
  const Identity victim_id = sim.node(victim).identity();
  sim.kill(victim);
  const Config& c = sim.node(0).config();
  const Duration bound = detection_bound(c, o.n);
  const auto others = all_but(sim, victim);
  const auto took = run_until_true(sim, bound, [&] {
    for (std::size_t i : others) {
      const Member* m = sim.node(i).find(victim_id.addr);
      if (!m || m->state != MemberState::down) return false;
    }
    return true;
  });
  ASSERT_TRUE(took.has_value()) << "bound " << bound.count() << " ns; seed " << o.seed;
  for (std::size_t i : others) {
    bool saw_down = false;
    for (const auto& n : sim.notes(i))
      if (auto* d = std::get_if<notification::MemberDown>(&n); d && d->who == victim_id)
        saw_down = true;
    EXPECT_TRUE(saw_down) << "node " << i;
  }
  EXPECT_TRUE(sim.converged(others));

  // Its restart (new ts, persisted members) rejoins everyone's view.
  sim.restart(victim, 0);
  ASSERT_TRUE(run_until_true(sim, 30s, [&] { return sim.converged(sim.live_nodes()); }))
      << "restart did not rejoin; seed " << o.seed;
}

TEST(Sim, briefly_unreachable_member_is_suspected_and_refutes) {
  SimOptions o;
  o.n = 8;
  o.seed = seed_or(8);
  Sim sim(o);
  sim.start(1);
  ASSERT_TRUE(run_until_true(sim, 30s, [&] { return sim.converged(sim.live_nodes()); }));
  const std::size_t slow = 3;
  const Identity slow_id = sim.node(slow).identity();
  // Unreachable until someone suspects it, plus one probe period: still well
  // within the suspicion timeout, so it must refute in time.
  sim.isolate(slow, true);
  bool suspected = false;
  for (int step = 0; step < 100 && !suspected; ++step) {
    sim.run_for(100ms);
    for (std::size_t i = 0; i < sim.size(); ++i)
      if (const Member* m = sim.view(i, slow); m && m->state == MemberState::suspect)
        suspected = true;
  }
  sim.run_for(sim.node(0).config().probe_period);
  sim.isolate(slow, false);
  ASSERT_TRUE(suspected) << "nobody suspected it; seed " << o.seed;
  ASSERT_TRUE(run_until_true(sim, 20s, [&] { return sim.converged(sim.live_nodes()); }));
  EXPECT_EQ(sim.node(slow).identity(), slow_id) << "refuted, not rejoined";
  EXPECT_GT(sim.node(slow).incarnation(), 0u);
  for (std::size_t i = 0; i < sim.size(); ++i)
    for (const auto& n : sim.notes(i)) {
      if (auto* d = std::get_if<notification::MemberDown>(&n)) {
        EXPECT_FALSE(d->who == slow_id) << "node " << i << " declared the slow member down";
      }
    }
}

TEST(Sim, partition_heals) {
  SimOptions o;
  o.n = 10;
  o.seed = seed_or(10);
  Sim sim(o);
  sim.start(2);
  ASSERT_TRUE(run_until_true(sim, 30s, [&] { return sim.converged(sim.live_nodes()); }));
  sim.partition({0, 0, 0, 0, 0, 1, 1, 1, 1, 1});
  sim.run_for(40s);
  // Each side has declared the other Down, and stays whole itself.
  for (std::size_t i = 0; i < 5; ++i)
    for (std::size_t j = 5; j < 10; ++j) {
      const Member* m = sim.node(i).find(sim.node(j).identity().addr);
      ASSERT_NE(m, nullptr);
      EXPECT_EQ(m->state, MemberState::down) << i << " sees " << j;
    }
  EXPECT_TRUE(sim.converged({0, 1, 2, 3, 4}));
  EXPECT_TRUE(sim.converged({5, 6, 7, 8, 9}));
  sim.heal();
  const auto took = run_until_true(sim, 90s, [&] { return sim.converged(sim.live_nodes()); });
  ASSERT_TRUE(took.has_value()) << "partition did not heal; seed " << o.seed;
}

TEST(Sim, three_way_partition_under_loss_heals) {
  SimOptions o;
  o.n = 20;
  o.seed = seed_or(2020);
  o.loss_per_mille = 50;
  Sim sim(o);
  sim.start(3);
  sim.run_for(20s);
  std::vector<int> groups(o.n);
  for (std::size_t i = 0; i < o.n; ++i) groups[i] = static_cast<int>(i % 3);
  sim.partition(groups);
  sim.run_for(60s);
  // Within a group everyone is active; across groups nobody is.
  for (std::size_t i = 0; i < o.n; ++i) {
    std::size_t same_group = 0;
    for (std::size_t j = 0; j < o.n; ++j) same_group += (j != i && groups[j] == groups[i]);
    EXPECT_EQ(sim.node(i).num_active(), same_group) << "node " << i;
  }
  sim.heal();
  const auto took = run_until_true(sim, 120s, [&] { return sim.converged(sim.live_nodes()); });
  ASSERT_TRUE(took.has_value()) << "seed " << o.seed;
}

TEST(Sim, left_member_is_down_and_not_resurrected_by_stale_gossip) {
  SimOptions o;
  o.n = 8;
  o.seed = seed_or(88);
  o.loss_per_mille = 20;
  Sim sim(o);
  sim.start(1);
  sim.run_for(20s);
  const std::size_t leaver = 2;
  const Identity left_id = sim.node(leaver).identity();
  sim.leave(leaver);
  sim.run_for(30s);
  for (std::size_t i : all_but(sim, leaver)) {
    const Member* m = sim.node(i).find(left_id.addr);
    ASSERT_NE(m, nullptr) << "node " << i;
    EXPECT_EQ(m->id, left_id);
    EXPECT_EQ(m->state, MemberState::down) << "node " << i;
  }
  // Stale gossip from a live member: "the leaver is alive, incarnation 7".
  for (std::size_t i : all_but(sim, leaver)) {
    Packet p;
    p.kind = MessageKind::gossip;
    p.src = sim.node(i == 0 ? 1 : 0).identity();
    p.src_incarnation = sim.node(i == 0 ? 1 : 0).incarnation();
    p.updates = {MemberUpdate{left_id, 7, MemberState::alive}};
    EXPECT_TRUE(sim.inject(i, encode(p)).has_value());
  }
  sim.set_loss(0);
  sim.run_for(30s);
  for (std::size_t i : all_but(sim, leaver))
    EXPECT_EQ(sim.node(i).find(left_id.addr)->state, MemberState::down) << "node " << i;
  EXPECT_TRUE(sim.converged(all_but(sim, leaver)));
}

TEST(Sim, other_cluster_id_and_member_id_are_never_admitted) {
  SimOptions o;
  o.n = 0;
  o.seed = seed_or(6);
  Sim sim(o);
  for (std::uint32_t i = 0; i < 6; ++i) sim.add_node(test::make_identity(i, 1000, 3, 1));
  const std::size_t foreign_cluster = sim.add_node(test::make_identity(6, 1000, 4, 1));
  const std::size_t foreign_member = sim.add_node(test::make_identity(7, 1000, 3, 2));
  sim.start(2);
  sim.run_for(40s);
  const std::vector<std::size_t> legit{0, 1, 2, 3, 4, 5};
  EXPECT_TRUE(sim.converged(legit));
  for (std::size_t i : legit) {
    EXPECT_EQ(sim.node(i).num_active(), 5u);
    EXPECT_EQ(sim.node(i).find(sim.node(foreign_cluster).identity().addr), nullptr);
    EXPECT_EQ(sim.node(i).find(sim.node(foreign_member).identity().addr), nullptr);
  }
  EXPECT_EQ(sim.node(foreign_cluster).num_active(), 0u);
  EXPECT_EQ(sim.node(foreign_member).num_active(), 0u);
}

// A small VOPR: each seed picks a size, a loss rate and a fault (kill, leave,
// partition, isolation); the safety checker runs after every event; then the
// network heals and the survivors must converge within the bound.
TEST(Sim, swarm_of_seeds_keeps_invariants_and_converges) {
  const std::uint64_t base = seed_or(0x5A4D);
  for (std::uint64_t k = 0; k < 24; ++k) {
    const std::uint64_t seed = base + k;
    Prng pick(seed);
    SimOptions o;
    o.n = 5 + static_cast<std::size_t>(pick.below(16));
    o.seed = seed;
    o.loss_per_mille = static_cast<std::uint32_t>(pick.below(120));
    Sim sim(o);
    sim.start(1 + static_cast<std::size_t>(pick.below(3)));
    sim.run_for(std::chrono::seconds(5 + pick.below(20)));
    const auto fault = pick.below(4);
    const std::size_t victim = 1 + static_cast<std::size_t>(pick.below(o.n - 1));
    std::vector<int> groups(o.n, 0);
    switch (fault) {
      case 0:
        sim.kill(victim);
        break;
      case 1:
        sim.leave(victim);
        break;
      case 2:
        for (auto& g : groups) g = static_cast<int>(pick.below(2));
        sim.partition(groups);
        break;
      default:
        sim.isolate(victim, true);
        break;
    }
    sim.run_for(std::chrono::seconds(5 + pick.below(40)));
    if (HasFatalFailure()) FAIL() << "safety violated; seed " << seed;
    sim.heal();
    sim.isolate(victim, false);
    sim.set_loss(0);
    // Converged: live nodes see each other Alive and nobody else as active
    // (the killed or left member is Down everywhere).
    const auto live = sim.live_nodes();
    const auto took = run_until_true(sim, 120s, [&] {
      if (!sim.converged(live)) return false;
      for (std::size_t i : live)
        if (sim.node(i).num_active() != live.size() - 1) return false;
      return true;
    });
    ASSERT_TRUE(took.has_value()) << "no convergence; seed " << seed << " n " << o.n << " fault "
                                  << fault << " loss " << o.loss_per_mille;
  }
}

TEST(Sim, fifty_members_declare_a_killed_member_down) {
  SimOptions o;
  o.n = 50;
  o.seed = seed_or(5050);
  o.loss_per_mille = 10;
  Sim sim(o);
  sim.start(3);
  sim.run_for(30s);
  sim.set_loss(0);
  ASSERT_TRUE(run_until_true(sim, 60s, [&] { return sim.converged(sim.live_nodes()); }));
  const std::size_t victim = 33;
  const Identity victim_id = sim.node(victim).identity();
  sim.kill(victim);
  const Config& c = sim.node(0).config();
  const Duration bound = detection_bound(c, o.n);
  const auto took = run_until_true(sim, bound, [&] {
    for (std::size_t i : all_but(sim, victim)) {
      const Member* m = sim.node(i).find(victim_id.addr);
      if (!m || m->state != MemberState::down) return false;
    }
    return true;
  });
  ASSERT_TRUE(took.has_value()) << "seed " << o.seed;
}

// Idle cost with production settings (new_wan): once converged, a node sends
// a ping and an ack per 5 s probe period plus a periodic announce and its feed
// per minute. Recorded as test properties for the benchmark write-up.
TEST(Sim, idle_traffic_per_node_is_small_with_wan_defaults) {
  SimOptions o;
  o.n = 16;
  o.seed = seed_or(16);
  o.config = Config::new_wan(16);
  Sim sim(o);
  sim.start(1);
  sim.run_for(120s);
  ASSERT_TRUE(sim.converged(sim.live_nodes()));
  const auto bytes0 = sim.bytes_sent();
  const auto dgrams0 = sim.datagrams_sent();
  sim.run_for(600s);
  EXPECT_TRUE(sim.converged(sim.live_nodes()));
  const double per_node_s = 600.0 * static_cast<double>(o.n);
  const double bytes_per_s = static_cast<double>(sim.bytes_sent() - bytes0) / per_node_s;
  const double dgrams_per_s = static_cast<double>(sim.datagrams_sent() - dgrams0) / per_node_s;
  RecordProperty("idle_bytes_per_node_per_s", std::to_string(bytes_per_s));
  RecordProperty("idle_datagrams_per_node_per_s", std::to_string(dgrams_per_s));
  EXPECT_LT(bytes_per_s, 1000.0);
  EXPECT_LT(dgrams_per_s, 1.0);
  for (std::size_t i = 0; i < sim.size(); ++i) EXPECT_EQ(sim.node(i).counters().suspicions, 0u);
}

std::uint64_t scenario_hash(std::uint64_t seed) {
  SimOptions o;
  o.n = 10;
  o.seed = seed;
  o.loss_per_mille = 30;
  Sim sim(o);
  sim.start(2);
  sim.run_for(20s);
  sim.kill(7);
  sim.partition({0, 0, 0, 1, 1, 1, 0, 0, 0, 1});
  sim.run_for(20s);
  sim.heal();
  sim.run_for(20s);
  return sim.trace_hash();
}

TEST(Sim, same_seed_gives_identical_trace_hash) {
  const std::uint64_t seed = seed_or(0xD5);
  const auto a = scenario_hash(seed);
  const auto b = scenario_hash(seed);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, scenario_hash(seed + 1));
}

}  // namespace
}  // namespace patina::swim
