// Membership driven by hand, foca style: two or three instances, the test
// moves every datagram itself and fires timers explicitly.
#include "swim/membership.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <functional>
#include <memory>
#include <set>

#include "tests/swim/test_util.hpp"

namespace patina::swim {
namespace {

using namespace std::chrono_literals;
using test::effects_of;
using test::fast_config;
using test::make_identity;
using test::notifications_of;
using test::timers_of;

struct Node {
  Node(Identity id, Config c, std::uint64_t seed) : m(std::move(id), std::move(c), seed) {}
  Membership m;
  Effects fx;   // effects not yet moved by the harness
  Effects log;  // every non-send effect, for assertions
  std::vector<Error> errors;
  bool dead = false;  // a killed process: receives nothing, keeps its address
};

/// Decides whether a datagram is delivered (for loss / partitions).
using Filter = std::function<bool(const std::string& from, const std::string& to, MessageKind)>;

class Harness {
 public:
  Node& add(Identity id, Config c = fast_config()) {
    nodes_.push_back(std::make_unique<Node>(std::move(id), std::move(c), 0xF0CA + nodes_.size()));
    return *nodes_.back();
  }
  Node* by_addr(const std::string& addr) {
    for (auto& n : nodes_)
      if (!n->dead && n->m.identity().addr == addr) return n.get();
    return nullptr;
  }
  /// Moves datagrams until none is left (bounded). Returns how many moved.
  std::size_t pump(const Filter& filter = {}) {
    std::size_t moved = 0;
    for (int round = 0; round < 50; ++round) {
      bool any = false;
      for (auto& n : nodes_) {
        Effects fx = std::move(n->fx);
        n->fx.clear();
        for (auto& e : fx) {
          if (auto* s = std::get_if<SendTo>(&e)) {
            EXPECT_LE(s->payload.size(), n->m.config().max_packet_size);
            Node* dst = by_addr(s->to);
            auto kind = decode(s->payload)->kind;
            if (!dst || (filter && !filter(n->m.identity().addr, s->to, kind))) continue;
            any = true;
            ++moved;
            now_ += 1ms;
            auto r = dst->m.handle_datagram(now_, s->payload, dst->fx);
            if (!r) dst->errors.push_back(r.error());
          } else {
            n->log.push_back(std::move(e));
          }
        }
      }
      if (!any) break;
    }
    return moved;
  }
  Instant& now() { return now_; }
  std::size_t size() const { return nodes_.size(); }

 private:
  std::vector<std::unique_ptr<Node>> nodes_;
  Instant now_{};
};

/// Fires the most recent armed timer of type T on |n| and clears its log.
template <class T>
bool fire(Harness& h, Node& n) {
  auto ts = timers_of<T>(n.log);
  if (ts.empty()) return false;
  n.log.clear();
  auto r = n.m.handle_timer(h.now(), ts.back(), n.fx);
  EXPECT_TRUE(r.has_value());
  return true;
}

const Member* view(const Node& n, const Node& of) { return n.m.find(of.m.identity().addr); }

void join(Harness& h, Node& joiner, Node& seed) {
  ASSERT_TRUE(joiner.m.announce(h.now(), seed.m.identity().addr, joiner.fx).has_value());
  h.pump();
}

TEST(Membership, create_rejects_invalid_config_and_identity) {
  Config bad = fast_config();
  bad.probe_rtt = bad.probe_period;
  EXPECT_EQ(Membership::create(make_identity(1), bad, 1).error().code, Errc::invalid_argument);
  Identity no_addr = make_identity(1);
  no_addr.addr.clear();
  EXPECT_EQ(Membership::create(no_addr, fast_config(), 1).error().code, Errc::invalid_argument);
  EXPECT_TRUE(Membership::create(make_identity(1), fast_config(), 1).has_value());
}

TEST(Membership, two_instances_join_through_announce) {
  Harness h;
  Node& a = h.add(make_identity(1));
  Node& b = h.add(make_identity(2));
  ASSERT_TRUE(a.m.announce(h.now(), b.m.identity().addr, a.fx).has_value());
  // Announcing arms the periodic timers, once.
  EXPECT_EQ(timers_of<timer::ProbeRandomMember>(a.fx).size(), 1u);
  h.pump();
  ASSERT_NE(view(a, b), nullptr);
  ASSERT_NE(view(b, a), nullptr);
  EXPECT_EQ(view(a, b)->state, MemberState::alive);
  EXPECT_EQ(view(b, a)->state, MemberState::alive);
  EXPECT_EQ(notifications_of<notification::Active>(a.log).size(), 1u);
  EXPECT_EQ(notifications_of<notification::MemberUp>(a.log).size(), 1u);
  EXPECT_EQ(notifications_of<notification::MemberUp>(b.log).front().who, a.m.identity());
  EXPECT_EQ(a.m.cluster_size(), 2u);
  EXPECT_TRUE(a.errors.empty());
  EXPECT_TRUE(b.errors.empty());
}

TEST(Membership, announce_to_self_or_empty_address_is_rejected) {
  Harness h;
  Node& a = h.add(make_identity(1));
  EXPECT_EQ(a.m.announce(h.now(), a.m.identity().addr, a.fx).error().code, Errc::invalid_argument);
  EXPECT_EQ(a.m.announce(h.now(), "", a.fx).error().code, Errc::invalid_argument);
  EXPECT_TRUE(a.fx.empty());
}

TEST(Membership, third_member_learns_everyone_from_feed_and_gossip) {
  Harness h;
  Node& a = h.add(make_identity(1));
  Node& b = h.add(make_identity(2));
  Node& c = h.add(make_identity(3));
  join(h, b, a);
  join(h, c, a);
  // c got a's feed (b). b learns c either from gossip (a sends c's update at
  // most max_transmissions(3) = 2 times, once used by the feed) or when c
  // probes it: within two probe rounds of c it must know.
  EXPECT_NE(view(c, b), nullptr);
  fire<timer::PeriodicGossip>(h, a);
  h.pump();
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(c.m.handle_timer(h.now(), timer::ProbeRandomMember{1}, c.fx).has_value());
    h.pump();
  }
  ASSERT_NE(view(b, c), nullptr);
  EXPECT_EQ(view(b, c)->state, MemberState::alive);
  EXPECT_EQ(a.m.num_active(), 2u);
}

TEST(Membership, probe_and_ack_measure_rtt) {
  Harness h;
  Node& a = h.add(make_identity(1));
  Node& b = h.add(make_identity(2));
  join(h, a, b);
  a.log.clear();
  ASSERT_TRUE(a.m.handle_timer(h.now(), timer::ProbeRandomMember{1}, a.fx).has_value());
  auto pings = effects_of<SendTo>(a.fx);
  ASSERT_EQ(pings.size(), 1u);
  EXPECT_EQ(decode(pings[0].payload)->kind, MessageKind::ping);
  const Instant sent = h.now();
  h.pump();  // 1 ms per hop: ping + ack = 2 ms
  const Member* mb = view(a, b);
  ASSERT_EQ(mb->rtt.size(), 1u);
  EXPECT_EQ(*mb->rtt.last(), h.now() - sent);
  EXPECT_EQ(*mb->rtt.ring(), 0);
  // The next tick finds the probe answered: no suspicion.
  ASSERT_TRUE(fire<timer::ProbeRandomMember>(h, a));
  EXPECT_EQ(view(a, b)->state, MemberState::alive);
}

// The ack is matched by probe number: it leaves out the prober's identity
// (the bulk of an idle member's bytes is pings and acks).
TEST(Membership, an_ack_names_no_destination_and_still_answers_the_probe) {
  Harness h;
  Node& a = h.add(make_identity(1));
  Node& b = h.add(make_identity(2));
  join(h, a, b);
  ASSERT_TRUE(a.m.handle_timer(h.now(), timer::ProbeRandomMember{1}, a.fx).has_value());
  auto pings = effects_of<SendTo>(a.fx);
  ASSERT_EQ(pings.size(), 1u);
  ASSERT_TRUE(decode(pings[0].payload)->dst.has_value());
  b.fx.clear();
  ASSERT_TRUE(b.m.handle_datagram(h.now(), pings[0].payload, b.fx).has_value());
  auto acks = effects_of<SendTo>(b.fx);
  ASSERT_EQ(acks.size(), 1u);
  auto ack = decode(acks[0].payload);
  ASSERT_TRUE(ack.has_value());
  EXPECT_EQ(ack->kind, MessageKind::ack);
  EXPECT_FALSE(ack->dst.has_value());
  const auto acked = a.m.counters().probes_acked;
  ASSERT_TRUE(a.m.handle_datagram(h.now(), acks[0].payload, a.fx).has_value());
  EXPECT_EQ(a.m.counters().probes_acked, acked + 1);
}

TEST(Membership, indirect_probe_through_a_third_member_prevents_suspicion) {
  Harness h;
  Node& a = h.add(make_identity(1));
  Node& b = h.add(make_identity(2));
  Node& c = h.add(make_identity(3));
  join(h, b, a);
  join(h, c, a);
  fire<timer::PeriodicGossip>(h, a);
  h.pump();
  // a probes until it picks b; the direct path a<->b is broken.
  const Filter no_ab = [&](const std::string& from, const std::string& to, MessageKind) {
    const auto& aa = a.m.identity().addr;
    const auto& ba = b.m.identity().addr;
    return !((from == aa && to == ba) || (from == ba && to == aa));
  };
  a.log.clear();
  bool probed_b = false;
  for (int i = 0; i < 4 && !probed_b; ++i) {
    ASSERT_TRUE(a.m.handle_timer(h.now(), timer::ProbeRandomMember{1}, a.fx).has_value());
    auto ind = timers_of<timer::SendIndirectProbe>(a.fx);
    ASSERT_EQ(ind.size(), 1u);
    probed_b = ind[0].probed == b.m.identity();
    h.pump(no_ab);
    if (probed_b) {
      a.log.clear();
      ASSERT_TRUE(a.m.handle_timer(h.now(), ind[0], a.fx).has_value());
      auto reqs = effects_of<SendTo>(a.fx);
      ASSERT_EQ(reqs.size(), 1u);  // only c can help
      EXPECT_EQ(reqs[0].to, c.m.identity().addr);
      EXPECT_EQ(decode(reqs[0].payload)->kind, MessageKind::ping_req);
      h.pump(no_ab);
    }
  }
  ASSERT_TRUE(probed_b);
  ASSERT_TRUE(a.m.handle_timer(h.now(), timer::ProbeRandomMember{1}, a.fx).has_value());
  EXPECT_EQ(view(a, b)->state, MemberState::alive);
}

TEST(Membership, forwarded_ack_carries_the_targets_refutation) {
  Harness h;
  Node& a = h.add(make_identity(1));
  Node& b = h.add(make_identity(2));
  Node& c = h.add(make_identity(3));
  join(h, b, a);
  join(h, c, a);
  fire<timer::PeriodicGossip>(h, a);
  h.pump();
  // a suspects b (incarnation 0); b has already refuted (incarnation 1).
  Packet sus;
  sus.kind = MessageKind::gossip;
  sus.src = make_identity(9);
  sus.updates = {MemberUpdate{b.m.identity(), 0, MemberState::suspect}};
  ASSERT_TRUE(a.m.handle_datagram(h.now(), encode(sus), a.fx).has_value());
  ASSERT_TRUE(b.m.handle_datagram(h.now(), encode(sus), b.fx).has_value());
  a.fx.clear();
  b.fx.clear();
  ASSERT_EQ(b.m.incarnation(), 1u);
  ASSERT_EQ(view(a, b)->state, MemberState::suspect);
  // The out-of-turn probe of b goes unanswered on the direct path...
  const Filter no_ab = [&](const std::string& from, const std::string& to, MessageKind) {
    const auto& aa = a.m.identity().addr;
    const auto& ba = b.m.identity().addr;
    return !((from == aa && to == ba) || (from == ba && to == aa));
  };
  ASSERT_TRUE(a.m.handle_timer(h.now(), timer::ProbeRandomMember{1}, a.fx).has_value());
  auto ind = timers_of<timer::SendIndirectProbe>(a.fx);
  ASSERT_EQ(ind.size(), 1u);
  ASSERT_EQ(ind[0].probed, b.m.identity());
  h.pump(no_ab);
  // ...so c probes it for a, and the forwarded ack brings "b Alive, inc 1".
  ASSERT_TRUE(a.m.handle_timer(h.now(), ind[0], a.fx).has_value());
  h.pump(no_ab);
  EXPECT_EQ(view(a, b)->state, MemberState::alive);
  EXPECT_EQ(view(a, b)->incarnation, 1u);
}

TEST(Membership, unanswered_probe_suspects_then_declares_down) {
  Harness h;
  Node& a = h.add(make_identity(1));
  Node& b = h.add(make_identity(2));
  join(h, a, b);
  const Filter drop_all = [](auto&, auto&, MessageKind) { return false; };
  a.log.clear();
  ASSERT_TRUE(a.m.handle_timer(h.now(), timer::ProbeRandomMember{1}, a.fx).has_value());
  h.pump(drop_all);
  ASSERT_TRUE(fire<timer::SendIndirectProbe>(h, a));  // nobody to ask
  h.pump(drop_all);
  ASSERT_TRUE(a.m.handle_timer(h.now(), timer::ProbeRandomMember{1}, a.fx).has_value());
  h.pump(drop_all);
  EXPECT_EQ(view(a, b)->state, MemberState::suspect);
  auto sus = timers_of<timer::ChangeSuspectToDown>(a.log);
  ASSERT_EQ(sus.size(), 1u);
  EXPECT_EQ(sus[0].member, b.m.identity());
  // Armed with the cluster-size-scaled timeout (n = 2 → base).
  for (auto& e : a.log)
    if (auto* t = std::get_if<ArmTimer>(&e);
        t && std::holds_alternative<timer::ChangeSuspectToDown>(t->timer)) {
      EXPECT_EQ(t->after, a.m.config().suspect_to_down_after(2));
    }
  a.log.clear();
  ASSERT_TRUE(a.m.handle_timer(h.now(), sus[0], a.fx).has_value());
  h.pump(drop_all);
  EXPECT_EQ(view(a, b)->state, MemberState::down);
  EXPECT_EQ(notifications_of<notification::MemberDown>(a.log).size(), 1u);
  EXPECT_EQ(notifications_of<notification::Idle>(a.log).size(), 1u);
  EXPECT_EQ(timers_of<timer::RemoveDown>(a.log).size(), 1u);
  // Remembered until remove_down_after, then forgotten.
  ASSERT_TRUE(fire<timer::RemoveDown>(h, a));
  EXPECT_EQ(view(a, b), nullptr);
}

TEST(Membership, suspicion_refuted_by_higher_incarnation) {
  Harness h;
  Node& a = h.add(make_identity(1));
  Node& b = h.add(make_identity(2));
  join(h, a, b);
  const Filter drop_all = [](auto&, auto&, MessageKind) { return false; };
  ASSERT_TRUE(a.m.handle_timer(h.now(), timer::ProbeRandomMember{1}, a.fx).has_value());
  h.pump(drop_all);
  a.log.clear();
  ASSERT_TRUE(a.m.handle_timer(h.now(), timer::ProbeRandomMember{1}, a.fx).has_value());
  auto sus = timers_of<timer::ChangeSuspectToDown>(a.fx);
  ASSERT_EQ(sus.size(), 1u);
  ASSERT_EQ(view(a, b)->state, MemberState::suspect);
  h.pump();  // the new ping carries "b is Suspect"; b refutes in its ack
  EXPECT_EQ(b.m.incarnation(), 1u);
  EXPECT_EQ(view(a, b)->state, MemberState::alive);
  EXPECT_EQ(view(a, b)->incarnation, 1u);
  // The suspicion timer is for incarnation 0: stale, no effect.
  ASSERT_TRUE(a.m.handle_timer(h.now(), sus[0], a.fx).has_value());
  EXPECT_EQ(view(a, b)->state, MemberState::alive);
  EXPECT_TRUE(notifications_of<notification::MemberDown>(a.log).empty());
}

TEST(Membership, suspects_are_probed_out_of_turn_every_other_tick) {
  Harness h;
  Node& a = h.add(make_identity(1));
  Node& b = h.add(make_identity(2));
  Node& c = h.add(make_identity(3));
  join(h, b, a);
  join(h, c, a);
  const std::string& baddr = b.m.identity().addr;
  const Filter b_silent = [&](const std::string& from, const std::string& to, MessageKind) {
    return from != baddr && to != baddr;
  };
  auto tick = [&] {
    a.fx.clear();
    EXPECT_TRUE(a.m.handle_timer(h.now(), timer::ProbeRandomMember{1}, a.fx).has_value());
    std::string to;
    for (const auto& s : effects_of<SendTo>(a.fx))
      if (decode(s.payload)->kind == MessageKind::ping) to = s.to;
    h.pump(b_silent);
    return to;
  };
  for (int i = 0; i < 6 && view(a, b)->state != MemberState::suspect; ++i) tick();
  ASSERT_EQ(view(a, b)->state, MemberState::suspect);
  // While b stays Suspect, every other ping goes to it; c is still probed.
  std::size_t to_b = 0, to_c = 0;
  for (int i = 0; i < 6; ++i) (tick() == baddr ? to_b : to_c) += 1;
  EXPECT_GE(to_b, 3u);
  EXPECT_GE(to_c, 1u);
}

TEST(Membership, down_verdicts_older_than_a_refutation_are_stale) {
  Harness h;
  Node& a = h.add(make_identity(1));
  const Identity b = make_identity(2);
  auto gossip = [&](MemberUpdate u) {
    Packet p;
    p.kind = MessageKind::gossip;
    p.src = make_identity(3);
    p.updates = {std::move(u)};
    return a.m.handle_datagram(h.now(), encode(p), a.fx);
  };
  ASSERT_TRUE(gossip(MemberUpdate{b, 2, MemberState::alive}).has_value());
  ASSERT_TRUE(gossip(MemberUpdate{b, 1, MemberState::down}).has_value());
  EXPECT_EQ(a.m.find(b.addr)->state, MemberState::alive);
  ASSERT_TRUE(gossip(MemberUpdate{b, 2, MemberState::down}).has_value());
  EXPECT_EQ(a.m.find(b.addr)->state, MemberState::down);
  // About ourselves: a stale verdict is ignored, a current one makes us rejoin.
  const Identity self = a.m.identity();
  ASSERT_TRUE(gossip(MemberUpdate{self, 3, MemberState::suspect}).has_value());
  ASSERT_EQ(a.m.incarnation(), 4u);
  ASSERT_TRUE(gossip(MemberUpdate{self, 3, MemberState::down}).has_value());
  EXPECT_EQ(a.m.identity(), self);
  ASSERT_TRUE(gossip(MemberUpdate{self, 4, MemberState::down}).has_value());
  EXPECT_GT(a.m.identity().ts, self.ts);
}

TEST(Membership, restarted_member_wins_address_conflict_with_larger_ts) {
  Harness h;
  Node& a = h.add(make_identity(1));
  Node& b = h.add(make_identity(2, 1000));
  join(h, b, a);
  const Identity old_b = b.m.identity();
  // b restarts: same addr, newer ts. It is a different instance.
  b.dead = true;
  Node& b2 = h.add(make_identity(2, 2000));
  a.log.clear();
  ASSERT_TRUE(b2.m.announce(h.now(), a.m.identity().addr, b2.fx).has_value());
  h.pump();
  auto changed = notifications_of<notification::IdentityChanged>(a.log);
  ASSERT_EQ(changed.size(), 1u);
  EXPECT_EQ(changed[0].old_id, old_b);
  EXPECT_EQ(changed[0].new_id, b2.m.identity());
  EXPECT_EQ(view(a, b2)->id, b2.m.identity());
  EXPECT_EQ(a.m.num_active(), 1u);
  // News about the old identity no longer matters.
  Packet stale;
  stale.cluster_id = 0;
  stale.kind = MessageKind::gossip;
  stale.src = old_b;
  stale.dst = a.m.identity();
  stale.updates = {MemberUpdate{old_b, 99, MemberState::alive}};
  auto r = a.m.handle_datagram(h.now(), encode(stale), a.fx);
  EXPECT_FALSE(r.has_value());
  EXPECT_EQ(view(a, b2)->id, b2.m.identity());
  EXPECT_EQ(view(a, b2)->incarnation, 0u);
}

TEST(Membership, restart_with_a_clock_gone_back_renews_above_its_previous_life) {
  Harness h;
  Node& a = h.add(make_identity(1));
  Node& b = h.add(make_identity(2, 5000));
  join(h, b, a);
  // b restarts with an older ts (its clock stepped back): a rejects it...
  b.dead = true;
  Node& b2 = h.add(make_identity(2, 3000));
  ASSERT_TRUE(b2.m.announce(h.now(), a.m.identity().addr, b2.fx).has_value());
  h.pump();
  EXPECT_EQ(a.errors.back().code, Errc::not_for_us);
  // ...but tells it what superseded it, and b2 renews above 5000.
  EXPECT_GT(b2.m.identity().ts, 5000u);
  ASSERT_TRUE(b2.m.announce(h.now(), a.m.identity().addr, b2.fx).has_value());
  h.pump();
  EXPECT_EQ(view(a, b2)->id, b2.m.identity());
  EXPECT_EQ(view(a, b2)->state, MemberState::alive);
}

TEST(Membership, leave_is_final_for_the_identity_and_rejoin_comes_back) {
  Harness h;
  Node& a = h.add(make_identity(1));
  Node& b = h.add(make_identity(2));
  join(h, b, a);
  const Identity old_b = b.m.identity();
  a.log.clear();
  ASSERT_TRUE(b.m.leave(h.now(), b.fx).has_value());
  EXPECT_TRUE(b.m.has_left());
  h.pump();
  EXPECT_EQ(view(a, b)->state, MemberState::down);
  EXPECT_EQ(notifications_of<notification::MemberDown>(a.log).size(), 1u);
  // Everything but rejoin() is refused; old timers are stale.
  EXPECT_EQ(b.m.leave(h.now(), b.fx).error().code, Errc::not_active);
  EXPECT_EQ(b.m.handle_timer(h.now(), timer::ProbeRandomMember{1}, b.fx).error().code,
            Errc::not_active);
  // Stale gossip claiming old b alive with a higher incarnation: ignored.
  Node& c = h.add(make_identity(3));
  Packet stale;
  stale.kind = MessageKind::gossip;
  stale.src = c.m.identity();
  stale.dst = a.m.identity();
  stale.updates = {MemberUpdate{old_b, 50, MemberState::alive}};
  ASSERT_TRUE(a.m.handle_datagram(h.now(), encode(stale), a.fx).has_value());
  EXPECT_EQ(view(a, b)->state, MemberState::down);
  // A packet from the Down identity itself is answered with turn_undead.
  Packet from_dead;
  from_dead.kind = MessageKind::ping;
  from_dead.src = old_b;
  from_dead.dst = a.m.identity();
  a.fx.clear();
  EXPECT_EQ(a.m.handle_datagram(h.now(), encode(from_dead), a.fx).error().code,
            Errc::sender_is_down);
  auto replies = effects_of<SendTo>(a.fx);
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(decode(replies[0].payload)->kind, MessageKind::turn_undead);
  a.fx.clear();
  // Rejoin: a newer identity at the same address.
  a.log.clear();
  ASSERT_TRUE(b.m.rejoin(h.now(), b.fx, 5000).has_value());
  EXPECT_EQ(b.m.identity().ts, 5000u);
  EXPECT_EQ(notifications_of<notification::Rejoined>(b.fx).size(), 1u);
  h.pump();
  EXPECT_EQ(view(a, b)->id, b.m.identity());
  EXPECT_EQ(view(a, b)->state, MemberState::alive);
  EXPECT_EQ(notifications_of<notification::MemberUp>(a.log).size(), 1u);
  EXPECT_EQ(notifications_of<notification::IdentityChanged>(a.log).size(), 1u);
}

TEST(Membership, leave_reaches_several_members_even_in_a_tiny_cluster) {
  Harness h;
  Node& a = h.add(make_identity(1));
  Node& b = h.add(make_identity(2));
  Node& c = h.add(make_identity(3));
  Node& d = h.add(make_identity(4));
  join(h, b, a);
  join(h, c, a);
  join(h, d, a);
  ASSERT_EQ(a.m.num_active(), 3u);
  a.fx.clear();
  ASSERT_TRUE(a.m.leave(h.now(), a.fx).has_value());
  auto sends = effects_of<SendTo>(a.fx);
  ASSERT_EQ(sends.size(), 3u);  // every active member (fan-out 4 > 3)
  for (const auto& s : sends) {
    const auto p = decode(s.payload);
    ASSERT_TRUE(p.has_value());
    bool carries_down = false;
    for (const auto& u : p->updates)
      carries_down |= u.id == a.m.identity() && u.state == MemberState::down;
    EXPECT_TRUE(carries_down) << s.to;
  }
}

TEST(Membership, declared_down_member_auto_rejoins_with_renewed_identity) {
  Harness h;
  Node& a = h.add(make_identity(1));
  Node& b = h.add(make_identity(2));
  join(h, b, a);
  const Identity old_b = b.m.identity();
  // a hears (wrongly) that b is down.
  Packet p;
  p.kind = MessageKind::gossip;
  p.src = make_identity(9);
  p.updates = {MemberUpdate{old_b, 0, MemberState::down}};
  ASSERT_TRUE(a.m.handle_datagram(h.now(), encode(p), a.fx).has_value());
  ASSERT_EQ(view(a, b)->state, MemberState::down);
  // b pings a, a says turn_undead, b rejoins and a sees it back.
  ASSERT_TRUE(b.m.handle_timer(h.now(), timer::ProbeRandomMember{1}, b.fx).has_value());
  h.pump();
  EXPECT_GT(b.m.identity().ts, old_b.ts);
  EXPECT_EQ(notifications_of<notification::Rejoined>(b.log).size(), 1u);
  EXPECT_EQ(view(a, b)->id, b.m.identity());
  EXPECT_EQ(view(a, b)->state, MemberState::alive);
}

TEST(Membership, without_auto_rejoin_a_declared_down_node_goes_defunct) {
  Harness h;
  Node& a = h.add(make_identity(1));
  Config c = fast_config();
  c.auto_rejoin = false;
  Node& b = h.add(make_identity(2), c);
  join(h, b, a);
  Packet p;
  p.kind = MessageKind::gossip;
  p.src = a.m.identity();
  p.updates = {MemberUpdate{b.m.identity(), 0, MemberState::down}};
  ASSERT_TRUE(b.m.handle_datagram(h.now(), encode(p), b.fx).has_value());
  EXPECT_TRUE(b.m.is_defunct());
  EXPECT_EQ(notifications_of<notification::Defunct>(b.fx).size(), 1u);
  EXPECT_EQ(b.m.announce(h.now(), a.m.identity().addr, b.fx).error().code, Errc::not_active);
  ASSERT_TRUE(b.m.rejoin(h.now(), b.fx).has_value());
  EXPECT_FALSE(b.m.is_defunct());
}

TEST(Membership, other_cluster_and_member_id_are_isolated) {
  Harness h;
  Node& a = h.add(make_identity(1, 1000, 0, 5));
  Node& other_cluster = h.add(make_identity(2, 1000, 1, 5));
  Node& other_member = h.add(make_identity(3, 1000, 0, 6));
  Node& no_member = h.add(make_identity(4, 1000, 0, std::nullopt));
  join(h, other_cluster, a);
  join(h, other_member, a);
  join(h, no_member, a);
  EXPECT_EQ(a.m.num_active(), 0u);
  EXPECT_TRUE(a.m.members().empty());
  ASSERT_EQ(a.errors.size(), 3u);
  EXPECT_EQ(a.errors[0].code, Errc::wrong_cluster);
  EXPECT_EQ(a.errors[1].code, Errc::foreign_member_id);
  EXPECT_EQ(a.errors[2].code, Errc::foreign_member_id);
  // Gossip from a legit member about a foreign one is ignored too.
  Node& friend_node = h.add(make_identity(5, 1000, 0, 5));
  join(h, friend_node, a);
  Packet p;
  p.kind = MessageKind::gossip;
  p.src = friend_node.m.identity();
  p.updates = {MemberUpdate{other_member.m.identity(), 0, MemberState::alive},
               MemberUpdate{make_identity(6, 1, 3, 5), 0, MemberState::alive}};
  ASSERT_TRUE(a.m.handle_datagram(h.now(), encode(p), a.fx).has_value());
  EXPECT_EQ(a.m.num_active(), 1u);
}

TEST(Membership, junk_and_own_packets_are_errors_without_state_change) {
  Harness h;
  Node& a = h.add(make_identity(1));
  const Bytes junk{std::byte{protocol_version}, std::byte{0}};
  EXPECT_EQ(a.m.handle_datagram(h.now(), junk, a.fx).error().code, Errc::malformed_packet);
  const Bytes big(packet_size_accept_max + 1, std::byte{1});
  EXPECT_EQ(a.m.handle_datagram(h.now(), big, a.fx).error().code, Errc::packet_too_large);
  Packet own;
  own.kind = MessageKind::ping;
  own.src = a.m.identity();
  EXPECT_EQ(a.m.handle_datagram(h.now(), encode(own), a.fx).error().code,
            Errc::data_from_ourselves);
  EXPECT_TRUE(a.fx.empty());
  EXPECT_TRUE(a.m.members().empty());
}

TEST(Membership, packets_stay_within_max_packet_size_with_many_updates) {
  Harness h;
  Node& a = h.add(make_identity(1));
  Node& b = h.add(make_identity(2));
  join(h, b, a);
  // Make a learn 200 members at once; each becomes a pending update.
  for (std::uint32_t batch = 0; batch < 20; ++batch) {
    Packet p;
    p.kind = MessageKind::gossip;
    p.src = b.m.identity();
    for (std::uint32_t i = 0; i < 10; ++i)
      p.updates.push_back(MemberUpdate{make_identity(100 + batch * 10 + i), 0, MemberState::alive});
    ASSERT_TRUE(a.m.handle_datagram(h.now(), encode(p), a.fx).has_value());
  }
  EXPECT_EQ(a.m.num_active(), 201u);
  a.fx.clear();
  ASSERT_TRUE(a.m.handle_timer(h.now(), timer::PeriodicGossip{1}, a.fx).has_value());
  auto sends = effects_of<SendTo>(a.fx);
  ASSERT_FALSE(sends.empty());
  for (const auto& s : sends) {
    EXPECT_LE(s.payload.size(), a.m.config().max_packet_size);
    auto p = decode(s.payload);
    ASSERT_TRUE(p.has_value());
    EXPECT_GT(p->updates.size(), 5u);
  }
  // A feed is trimmed the same way.
  Node& c = h.add(make_identity(3));
  a.fx.clear();
  ASSERT_TRUE(c.m.announce(h.now(), a.m.identity().addr, c.fx).has_value());
  auto ann = effects_of<SendTo>(c.fx);
  ASSERT_TRUE(a.m.handle_datagram(h.now(), ann[0].payload, a.fx).has_value());
  // 200 members do not fit one datagram: the feed spans feed_packets_max.
  auto feeds = effects_of<SendTo>(a.fx);
  ASSERT_EQ(feeds.size(), a.m.config().feed_packets_max);
  std::set<std::string> fed;
  for (const auto& f : feeds) {
    EXPECT_LE(f.payload.size(), a.m.config().max_packet_size);
    const auto packet = decode(f.payload);
    ASSERT_TRUE(packet.has_value());
    for (const auto& u : packet->feed) EXPECT_TRUE(fed.insert(u.id.addr).second) << u.id.addr;
  }
  EXPECT_GT(fed.size(), 60u);
}

TEST(Membership, accepts_larger_datagrams_from_peers_with_a_larger_mtu) {
  Harness h;
  Node& a = h.add(make_identity(1));
  Packet p;
  p.kind = MessageKind::gossip;
  p.src = make_identity(2);
  for (std::uint32_t i = 0; i < 40; ++i)
    p.updates.push_back(MemberUpdate{make_identity(10 + i), 0, MemberState::alive});
  const Bytes b = encode(p);
  ASSERT_GT(b.size(), a.m.config().max_packet_size);
  ASSERT_TRUE(a.m.handle_datagram(h.now(), b, a.fx).has_value());
  EXPECT_EQ(a.m.num_active(), 41u);
  // What a emits in return still fits its own limit.
  a.fx.clear();
  ASSERT_TRUE(a.m.handle_timer(h.now(), timer::PeriodicGossip{1}, a.fx).has_value());
  for (const auto& s : effects_of<SendTo>(a.fx))
    EXPECT_LE(s.payload.size(), a.m.config().max_packet_size);
}

TEST(Membership, feed_leads_with_members_missing_from_the_announcers_digest) {
  Harness h;
  Node& a = h.add(make_identity(1));
  Node& c = h.add(make_identity(2));
  join(h, c, a);
  // a knows 200 members; c knows the first 150 of them.
  auto learn = [&](Node& n, std::uint32_t from, std::uint32_t to) {
    for (std::uint32_t first = from; first < to; first += 10) {
      Packet p;
      p.kind = MessageKind::gossip;
      p.src = make_identity(3);
      for (std::uint32_t i = first; i < std::min(first + 10, to); ++i)
        p.updates.push_back(MemberUpdate{make_identity(100 + i), 0, MemberState::alive});
      ASSERT_TRUE(n.m.handle_datagram(h.now(), encode(p), n.fx).has_value());
    }
  };
  learn(a, 0, 200);
  learn(c, 0, 150);
  a.fx.clear();
  c.fx.clear();
  ASSERT_TRUE(c.m.announce(h.now(), a.m.identity().addr, c.fx).has_value());
  const auto ann = effects_of<SendTo>(c.fx);
  ASSERT_EQ(ann.size(), 1u);
  EXPECT_LE(ann[0].payload.size(), c.m.config().max_packet_size);
  EXPECT_GT(decode(ann[0].payload)->digest.size(), 150u);
  ASSERT_TRUE(a.m.handle_datagram(h.now(), ann[0].payload, a.fx).has_value());
  std::set<std::string> fed;
  for (const auto& s : effects_of<SendTo>(a.fx)) {
    const auto p = decode(s.payload);
    ASSERT_TRUE(p.has_value());
    for (const auto& u : p->feed) fed.insert(u.id.addr);
  }
  // The 50 members c lacks lead the feed, which cannot hold all 200; only a
  // Bloom false positive (~1 % each) may hide one.
  std::size_t missing_fed = 0;
  for (std::uint32_t i = 150; i < 200; ++i) missing_fed += fed.contains(make_identity(100 + i).addr);
  EXPECT_GE(missing_fed, 47u);
  // Of the 150 it knows, only a random few come along (false positives,
  // stale states); c itself is never fed to c.
  EXPECT_LE(fed.size() - missing_fed, a.m.config().feed_known_sample);
  EXPECT_FALSE(fed.contains(c.m.identity().addr));
}

TEST(Membership, updates_are_retransmitted_a_bounded_number_of_times) {
  Harness h;
  Config c = fast_config();
  c.max_transmissions_fixed = 2;
  Node& a = h.add(make_identity(1), c);
  Node& b = h.add(make_identity(2), c);
  join(h, b, a);
  // Drain everything pending, then queue exactly one update.
  for (int i = 0; i < 5; ++i) {
    a.fx.clear();
    ASSERT_TRUE(a.m.handle_timer(h.now(), timer::PeriodicGossip{1}, a.fx).has_value());
  }
  EXPECT_EQ(a.m.pending_updates(), 0u);
  Packet p;
  p.kind = MessageKind::gossip;
  p.src = b.m.identity();
  p.updates = {MemberUpdate{make_identity(7), 0, MemberState::alive}};
  ASSERT_TRUE(a.m.handle_datagram(h.now(), encode(p), a.fx).has_value());
  std::size_t carried = 0;
  for (int i = 0; i < 5; ++i) {
    a.fx.clear();
    ASSERT_TRUE(a.m.handle_timer(h.now(), timer::PeriodicGossip{1}, a.fx).has_value());
    for (auto& s : effects_of<SendTo>(a.fx)) carried += decode(s.payload)->updates.size();
  }
  EXPECT_EQ(carried, 2u);
  EXPECT_EQ(a.m.pending_updates(), 0u);
}

TEST(Membership, timers_from_an_older_identity_are_ignored) {
  Harness h;
  Node& a = h.add(make_identity(1));
  Node& b = h.add(make_identity(2));
  join(h, a, b);
  ASSERT_TRUE(a.m.rejoin(h.now(), a.fx).has_value());
  a.fx.clear();
  // Token 1 belonged to the first identity.
  ASSERT_TRUE(a.m.handle_timer(h.now(), timer::ProbeRandomMember{1}, a.fx).has_value());
  EXPECT_TRUE(a.fx.empty());
  auto fresh = timers_of<timer::ProbeRandomMember>(a.log);
  (void)fresh;
}

TEST(Membership, snapshot_feeds_a_restarted_instance) {
  Harness h;
  Node& a = h.add(make_identity(1));
  Node& b = h.add(make_identity(2));
  Node& c = h.add(make_identity(3));
  join(h, b, a);
  join(h, c, a);
  const Bytes saved = encode_snapshot(a.m.snapshot());
  auto restored = decode_snapshot(saved);
  ASSERT_TRUE(restored.has_value());
  ASSERT_EQ(restored->size(), 2u);
  Membership fresh(make_identity(1, 9000), fast_config(), 3);
  Effects fx;
  ASSERT_TRUE(fresh.apply_snapshot(h.now(), *restored, fx).has_value());
  EXPECT_EQ(fresh.num_active(), 2u);
  EXPECT_EQ(notifications_of<notification::MemberUp>(fx).size(), 2u);
  EXPECT_EQ(timers_of<timer::ProbeRandomMember>(fx).size(), 1u);
}

TEST(Membership, set_cluster_id_forgets_members_and_renews_identity) {
  Harness h;
  Node& a = h.add(make_identity(1));
  Node& b = h.add(make_identity(2));
  join(h, b, a);
  const auto ts = a.m.identity().ts;
  ASSERT_TRUE(a.m.set_cluster_id(h.now(), 4, a.fx).has_value());
  EXPECT_EQ(a.m.identity().cluster_id, 4);
  EXPECT_GT(a.m.identity().ts, ts);
  EXPECT_TRUE(a.m.members().empty());
  EXPECT_EQ(notifications_of<notification::MemberDown>(a.fx).size(), 1u);
  EXPECT_EQ(notifications_of<notification::Idle>(a.fx).size(), 1u);
  h.pump();
  // b (cluster 0) drops a's packets from now on.
  ASSERT_TRUE(a.m.announce(h.now(), b.m.identity().addr, a.fx).has_value());
  h.pump();
  EXPECT_EQ(b.errors.back().code, Errc::wrong_cluster);
}

TEST(Membership, record_rtt_feeds_rings) {
  Harness h;
  Node& a = h.add(make_identity(1));
  Node& b = h.add(make_identity(2));
  join(h, a, b);
  ASSERT_TRUE(a.m.record_rtt(b.m.identity().addr, 30ms).has_value());
  EXPECT_EQ(*view(a, b)->rtt.ring(), 2);
  const auto peers = a.m.active_peers();
  ASSERT_EQ(peers.size(), 1u);
  EXPECT_EQ(peers[0].addr, b.m.identity().addr);
  EXPECT_EQ(peers[0].ring, std::optional<std::uint8_t>(2));
  EXPECT_EQ(a.m.record_rtt("nowhere:1", 1ms).error().code, Errc::invalid_argument);
}

// Adversarial peers: real datagrams, semantically mutated (kinds, states,
// incarnations, identities, cluster ids), fed to one node together with its
// timers. Nothing may trip an assertion, and the node must keep its
// invariants: no member at our address, one member per address.
TEST(Membership, survives_semantically_mutated_datagrams) {
  Harness h;
  Node& a = h.add(make_identity(1));
  Node& b = h.add(make_identity(2));
  Node& c = h.add(make_identity(3));
  join(h, b, a);
  join(h, c, a);
  const char* env = std::getenv("PATINA_SWIM_SEED");
  Prng r(env ? std::strtoull(env, nullptr, 0) : 0xFA22);
  const std::vector<Identity> cast{
      a.m.identity(),   b.m.identity(),         c.m.identity(),           make_identity(2, 5000),
      make_identity(4), make_identity(5, 1, 9), make_identity(6, 1, 0, 3)};
  auto pick = [&] { return cast[static_cast<std::size_t>(r.below(cast.size()))]; };
  std::vector<Timer> armed;
  for (int i = 0; i < 20000; ++i) {
    Packet p;
    p.kind = static_cast<MessageKind>(1 + r.below(message_kind_max));
    p.cluster_id = r.chance(1, 20) ? 9 : 0;
    p.src = pick();
    p.src_incarnation = r.below(6);
    if (r.chance(2, 3)) p.dst = r.chance(1, 2) ? a.m.identity() : pick();
    p.probe_number = static_cast<std::uint32_t>(r.below(4));
    p.other = pick();
    const auto n = r.below(4);
    for (std::uint64_t k = 0; k < n; ++k)
      p.updates.push_back(MemberUpdate{pick(), r.below(6), static_cast<MemberState>(r.below(3))});
    if (p.kind == MessageKind::feed)
      p.feed.push_back(MemberUpdate{pick(), r.below(6), static_cast<MemberState>(r.below(3))});
    a.fx.clear();
    (void)a.m.handle_datagram(h.now(), encode(p), a.fx);
    // Fire armed timers early and out of order (worst case for a driver).
    for (const auto& e : a.fx)
      if (const auto* t = std::get_if<ArmTimer>(&e)) {
        if (armed.size() == 64) armed.erase(armed.begin());
        armed.push_back(t->timer);
      }
    for (int f = 0; f < 2 && !armed.empty(); ++f) {
      Effects fired;
      const auto k = static_cast<std::size_t>(r.below(armed.size()));
      (void)a.m.handle_timer(h.now(), armed[k], fired);
      for (const auto& e : fired)
        if (const auto* t = std::get_if<ArmTimer>(&e)) armed[k] = t->timer;
      for (const auto& s : effects_of<SendTo>(fired))
        ASSERT_LE(s.payload.size(), a.m.config().max_packet_size);
    }
    if (a.m.has_left() || a.m.is_defunct()) (void)a.m.rejoin(h.now(), a.fx);
    h.now() += 10ms;
    for (const auto& s : effects_of<SendTo>(a.fx))
      ASSERT_LE(s.payload.size(), a.m.config().max_packet_size);
    std::set<std::string> addrs;
    for (const Member& m : a.m.members()) {
      ASSERT_NE(m.id.addr, a.m.identity().addr);
      ASSERT_TRUE(addrs.insert(m.id.addr).second);
    }
  }
  EXPECT_GT(a.m.counters().refutations + a.m.counters().rejoins, 0u);
}

TEST(Membership, effects_have_log_names) {
  EXPECT_STREQ(to_string(Timer{timer::PeriodicGossip{1}}), "periodic_gossip");
  EXPECT_STREQ(to_string(Notification{notification::Idle{}}), "idle");
  EXPECT_STREQ(to_string(MemberState::suspect), "Suspect");
  EXPECT_STREQ(to_string(Errc::wrong_cluster), "wrong_cluster");
}

TEST(Membership, timers_are_totally_ordered_for_driver_re_sorting) {
  const Timer a = timer::ProbeRandomMember{1};
  const Timer b = timer::ProbeRandomMember{2};
  const Timer c = timer::ChangeSuspectToDown{make_identity(1), 3, 1};
  EXPECT_TRUE(a < b);
  EXPECT_TRUE(b < c);  // variant order: by alternative, then by value
  EXPECT_TRUE(a == Timer{timer::ProbeRandomMember{1}});
}

TEST(Membership, suspicion_timers_survive_our_own_rejoin) {
  Harness h;
  Node& a = h.add(make_identity(1));
  Node& b = h.add(make_identity(2));
  join(h, a, b);
  const Filter drop_all = [](auto&, auto&, MessageKind) { return false; };
  ASSERT_TRUE(a.m.handle_timer(h.now(), timer::ProbeRandomMember{1}, a.fx).has_value());
  h.pump(drop_all);
  ASSERT_TRUE(a.m.handle_timer(h.now(), timer::ProbeRandomMember{1}, a.fx).has_value());
  auto sus = timers_of<timer::ChangeSuspectToDown>(a.fx);
  ASSERT_EQ(sus.size(), 1u);
  h.pump(drop_all);
  ASSERT_TRUE(a.m.rejoin(h.now(), a.fx).has_value());
  h.pump(drop_all);
  ASSERT_TRUE(a.m.handle_timer(h.now(), sus[0], a.fx).has_value());
  EXPECT_EQ(view(a, b)->state, MemberState::down);
  EXPECT_EQ(a.m.counters().suspicions, 1u);
  EXPECT_EQ(a.m.counters().members_down, 1u);
  EXPECT_EQ(a.m.counters().rejoins, 1u);
  EXPECT_GE(a.m.counters().probes_sent, 2u);
}

TEST(Membership, counters_track_probes_and_refutations) {
  Harness h;
  Node& a = h.add(make_identity(1));
  Node& b = h.add(make_identity(2));
  join(h, a, b);
  ASSERT_TRUE(a.m.handle_timer(h.now(), timer::ProbeRandomMember{1}, a.fx).has_value());
  h.pump();
  EXPECT_EQ(a.m.counters().probes_sent, 1u);
  EXPECT_EQ(a.m.counters().probes_acked, 1u);
  EXPECT_GT(a.m.counters().datagrams_sent, 0u);
  Packet p;
  p.kind = MessageKind::gossip;
  p.src = a.m.identity();
  p.updates = {MemberUpdate{b.m.identity(), 0, MemberState::suspect}};
  ASSERT_TRUE(b.m.handle_datagram(h.now(), encode(p), b.fx).has_value());
  EXPECT_EQ(b.m.counters().refutations, 1u);
  EXPECT_EQ(b.m.incarnation(), 1u);
}

TEST(Membership, periodic_gossip_runs_only_while_updates_are_pending) {
  Harness h;
  Node& a = h.add(make_identity(1));
  Node& b = h.add(make_identity(2));
  Node& c = h.add(make_identity(3));
  join(h, b, a);
  // Gossip until every update has used up its transmissions: then the timer
  // is not re-armed, and an idle member stops waking for it.
  bool stopped = false;
  for (int i = 0; i < 50 && !stopped; ++i) {
    ASSERT_TRUE(fire<timer::PeriodicGossip>(h, a));
    h.pump();
    stopped = timers_of<timer::PeriodicGossip>(a.log).empty();
  }
  ASSERT_TRUE(stopped);
  EXPECT_EQ(a.m.pending_updates(), 0u);
  // News (a third member joining through a) arms it again, once.
  join(h, c, a);
  EXPECT_GT(a.m.pending_updates(), 0u);
  EXPECT_EQ(timers_of<timer::PeriodicGossip>(a.log).size(), 1u);
}

}  // namespace
}  // namespace patina::swim
