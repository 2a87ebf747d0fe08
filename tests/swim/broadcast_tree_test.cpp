// The tree broadcast planner: a payload walked through the plans of every
// member reaches each member once (views agree) or at least once, with
// bounded sends (views differ), and always ends.
#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <set>

#include "swim/broadcast_tree.hpp"
#include "swim/prng.hpp"

namespace patina::swim {
namespace {

std::vector<std::string> addresses(std::size_t n, std::uint16_t base_port = 20000) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < n; ++i) out.push_back("127.0.0.1:" + std::to_string(base_port + i));
  return out;
}

struct Walk {
  std::map<std::string, int> received;  // member -> times
  int max_depth = 0;
  std::size_t sends = 0;
};

// Every member's view: all members but itself, minus those |hidden| hides
// from it. |dead| members never receive.
Walk walk(const std::vector<std::string>& members, std::size_t origin,
          const std::map<std::string, std::set<std::string>>& hidden = {},
          const std::set<std::string>& dead = {}) {
  auto view = [&](const std::string& self) {
    std::vector<Peer> peers;
    auto h = hidden.find(self);
    for (const auto& m : members) {
      if (m == self || (h != hidden.end() && h->second.contains(m))) continue;
      peers.push_back(Peer{m, std::uint8_t{0}});
    }
    return peers;
  };
  Walk w;
  struct Hop {
    std::string at, from;
    TreeRange range;
    int depth;
  };
  std::deque<Hop> queue{{members[origin], "", TreeRange::whole(), 0}};
  for (int steps = 0; !queue.empty() && steps < 100000; ++steps) {
    Hop hop = queue.front();
    queue.pop_front();
    const auto peers = view(hop.at);
    std::vector<std::string> exclude;
    if (!hop.from.empty()) exclude.push_back(hop.from);
    for (auto& send : BroadcastTree::plan(peers, hop.range, exclude)) {
      std::string to = send.to;
      std::vector<std::string> failed;
      // A dead head: re-planned to another member of its range.
      while (dead.contains(to)) {
        failed.push_back(to);
        auto next = BroadcastTree::next_head(peers, send.range.empty() ? TreeRange{} : send.range, failed);
        if (!next) break;
        to = *next;
      }
      ++w.sends;
      if (dead.contains(to)) continue;
      if (++w.received[to] > 1) continue;  // the seen-set stops a second forward
      w.max_depth = std::max(w.max_depth, hop.depth + 1);
      queue.push_back(Hop{to, hop.at, send.range, hop.depth + 1});
    }
  }
  EXPECT_TRUE(queue.empty()) << "walk did not end";
  return w;
}

TEST(BroadcastTree, every_member_receives_exactly_once_within_two_hops_when_views_agree) {
  for (std::size_t n : {1u, 2u, 3u, 5u, 7u, 8u, 16u, 32u, 33u, 64u, 100u, 257u, 1000u}) {
    auto members = addresses(n);
    for (std::size_t origin : {std::size_t{0}, n / 2, n - 1}) {
      auto w = walk(members, origin);
      EXPECT_EQ(w.received.size(), n - 1) << "n=" << n;
      EXPECT_FALSE(w.received.contains(members[origin])) << "n=" << n;
      for (const auto& [m, times] : w.received) EXPECT_EQ(times, 1) << "n=" << n << " " << m;
      EXPECT_EQ(w.sends, n - 1) << "n=" << n;
      EXPECT_LE(w.max_depth, 2) << "n=" << n;
    }
  }
}

TEST(BroadcastTree, small_clusters_are_served_directly_by_the_origin) {
  auto members = addresses(7);
  std::vector<Peer> peers;
  for (std::size_t i = 1; i < members.size(); ++i) peers.push_back(Peer{members[i], std::nullopt});
  auto plan = BroadcastTree::plan(peers, TreeRange::whole());
  ASSERT_EQ(plan.size(), 6u);
  for (const auto& s : plan) EXPECT_TRUE(s.range.empty());
}

TEST(BroadcastTree, groups_are_disjoint_ranges_inside_the_given_one_and_heads_lie_in_theirs) {
  Prng prng(7);
  for (int round = 0; round < 200; ++round) {
    const std::size_t n = 2 + prng.below(400);
    auto members = addresses(n, static_cast<std::uint16_t>(1000 + prng.below(50000)));
    std::vector<Peer> peers;
    for (const auto& m : members) {
      std::optional<std::uint8_t> ring;
      if (prng.below(3) != 0) ring = static_cast<std::uint8_t>(prng.below(4));
      peers.push_back(Peer{m, ring});
    }
    TreeRange range{static_cast<std::uint16_t>(prng.below(30000)), static_cast<std::uint16_t>(30000 + prng.below(35535))};
    auto plan = BroadcastTree::plan(peers, range);
    std::size_t in_range = 0;
    for (const auto& p : peers) in_range += range.contains(BroadcastTree::position(p.addr)) ? 1 : 0;
    EXPECT_LE(plan.size(), std::min(in_range, BroadcastTree::fanout(peers.size())));
    EXPECT_EQ(plan.empty(), in_range == 0);
    std::set<std::string> heads;
    int prev_last = static_cast<int>(range.first) - 1;
    for (const auto& s : plan) {
      EXPECT_TRUE(heads.insert(s.to).second);
      const auto pos = BroadcastTree::position(s.to);
      EXPECT_TRUE(range.contains(pos));
      if (s.range.empty()) continue;
      EXPECT_TRUE(s.range.contains(pos));
      EXPECT_GT(static_cast<int>(s.range.first), prev_last);  // disjoint, in order
      EXPECT_LE(s.range.last, range.last);
      prev_last = s.range.last;
    }
  }
}

TEST(BroadcastTree, differing_views_and_dead_heads_still_end_and_reach_every_live_member_seen_by_someone) {
  Prng prng(11);
  for (int round = 0; round < 30; ++round) {
    const std::size_t n = 10 + prng.below(150);
    auto members = addresses(n, static_cast<std::uint16_t>(3000 + round * 200));
    std::map<std::string, std::set<std::string>> hidden;
    for (int i = 0; i < static_cast<int>(n / 5); ++i)
      hidden[members[prng.below(n)]].insert(members[prng.below(n)]);
    std::set<std::string> dead;
    for (int i = 0; i < static_cast<int>(n / 20); ++i) dead.insert(members[1 + prng.below(n - 1)]);
    auto w = walk(members, 0, hidden, dead);
    EXPECT_LE(w.sends, 3 * n);
    // Hiding is partial, and dead heads are re-planned: most live members
    // are reached (sync repairs the rest in the agent).
    const std::size_t live = n - 1 - dead.size();
    EXPECT_GE(w.received.size() * 10, live * 9) << "n=" << n;
    for (const auto& d : dead) EXPECT_FALSE(w.received.contains(d));
  }
}

TEST(BroadcastTree, positions_are_stable_across_builds) {
  // Every node must place a member at the same position.
  EXPECT_EQ(BroadcastTree::position(""), static_cast<std::uint16_t>((2166136261u >> 16) ^ (2166136261u & 0xffff)));
  EXPECT_EQ(BroadcastTree::position("127.0.0.1:8787"), BroadcastTree::position(std::string("127.0.0.1:") + "8787"));
}

}  // namespace
}  // namespace patina::swim
