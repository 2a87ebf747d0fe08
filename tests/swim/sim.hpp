// tests/swim/sim.hpp — a small deterministic cluster simulator for swim/.
//
// Virtual time, an event heap keyed (time, seq), per-datagram delay and loss
// drawn from one seeded Prng, partitions by group, kill/restart. Every effect
// is folded into a trace hash, so one seed run twice must give one hash.
// After every event the checker asserts per-node safety invariants:
// incarnations only rise (per identity) and nobody goes Defunct.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <queue>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include "swim/membership.hpp"
#include "tests/swim/test_util.hpp"

namespace patina::swim::test {

struct SimOptions {
  std::size_t n = 10;
  std::uint64_t seed = 1;
  std::uint32_t loss_per_mille = 0;
  Duration delay_min = std::chrono::milliseconds(1);
  Duration delay_max = std::chrono::milliseconds(20);
  Config config = fast_config();
  std::size_t events_max = 20'000'000;  // a bound on every run
};

class Sim {
 public:
  explicit Sim(SimOptions o) : o_(std::move(o)), prng_(o_.seed ^ 0x5EED5EED5EEDULL) {
    for (std::size_t i = 0; i < o_.n; ++i)
      add_node(make_identity(static_cast<std::uint32_t>(i), 1000));
  }

  /// Adds a node (not started). Returns its index.
  std::size_t add_node(Identity id) {
    const std::size_t i = nodes_.size();
    auto node = std::make_unique<SimNode>();
    node->m = std::make_unique<Membership>(id, o_.config, derive_seed(i, 0));
    node->up = true;
    addr_index_[id.addr] = i;
    nodes_.push_back(std::move(node));
    notes_.emplace_back();
    group_.push_back(0);
    return i;
  }

  /// Every node announces to the first |seeds| nodes (bootstrap list), and,
  /// like the io/ driver's announcer, re-announces every 5 s while it has no
  /// active member.
  void start(std::size_t seeds = 1) {
    seeds_ = seeds;
    for (std::size_t i = 0; i < nodes_.size(); ++i) {
      announce_to_seeds(i);
      push(i, std::chrono::seconds(5), AnnounceTick{});
    }
  }

  void announce_to_seeds(std::size_t i) {
    for (std::size_t s = 0; s < seeds_ && s < nodes_.size(); ++s)
      if (s != i) announce(i, s);
  }

  void announce(std::size_t from, std::size_t to) {
    Effects fx;
    auto r = nodes_[from]->m->announce(now_, nodes_[to]->m->identity().addr, fx);
    ASSERT_TRUE(r.has_value());
    route(from, std::move(fx));
  }

  void run_for(Duration d) { run_until(now_ + d); }

  void run_until(Instant deadline) {
    while (!events_.empty() && events_.top().at <= deadline) {
      ASSERT_LT(events_processed_, o_.events_max) << "event budget exhausted";
      Event ev = events_.top();
      events_.pop();
      ++events_processed_;
      now_ = ev.at;
      SimNode& node = *nodes_[ev.node];
      if (!node.up || ev.epoch != node.epoch) continue;  // dead, or an older life
      Effects fx;
      if (std::holds_alternative<AnnounceTick>(ev.what)) {
        if (!node.m->has_left() && node.m->num_active() == 0) announce_to_seeds(ev.node);
        push(ev.node, std::chrono::seconds(5), AnnounceTick{});
        continue;
      }
      if (auto* d = std::get_if<Datagram>(&ev.what)) {
        auto r = node.m->handle_datagram(now_, d->bytes, fx);
        mix(r ? 0 : 100 + static_cast<std::uint64_t>(r.error().code));
      } else {
        auto r = node.m->handle_timer(now_, std::get<Timer>(ev.what), fx);
        mix(r ? 1 : 200 + static_cast<std::uint64_t>(r.error().code));
      }
      route(ev.node, std::move(fx));
      check(ev.node);
    }
    now_ = std::max(now_, deadline);
  }

  void kill(std::size_t i) { nodes_[i]->up = false; }

  /// Restarts a killed node with a renewed identity (ts + 1000) that knows
  /// its previous members (snapshot), then announces to |seed|.
  void restart(std::size_t i, std::size_t seed) {
    SimNode& node = *nodes_[i];
    const auto saved = node.m->snapshot();
    Identity id = node.m->identity();
    id.ts += 1000;
    ++node.epoch;
    node.m = std::make_unique<Membership>(id, o_.config, derive_seed(i, node.epoch));
    node.up = true;
    node.incarnation_seen.clear();
    Effects fx;
    ASSERT_TRUE(node.m->apply_snapshot(now_, saved, fx).has_value());
    route(i, std::move(fx));
    announce(i, seed);
    push(i, std::chrono::seconds(5), AnnounceTick{});
  }

  void leave(std::size_t i) {
    Effects fx;
    ASSERT_TRUE(nodes_[i]->m->leave(now_, fx).has_value());
    route(i, std::move(fx));
  }

  /// Datagrams flow only between nodes of equal group.
  void partition(std::vector<int> groups) { group_ = std::move(groups); }
  void heal() { std::fill(group_.begin(), group_.end(), 0); }
  void set_loss(std::uint32_t per_mille) { o_.loss_per_mille = per_mille; }
  /// Drops all traffic to and from |i| while true (a "slow" member).
  void isolate(std::size_t i, bool on) { nodes_[i]->isolated = on; }

  /// Delivers raw bytes to node |to| now (as if from the network).
  Result<void> inject(std::size_t to, const Bytes& bytes) {
    Effects fx;
    auto r = nodes_[to]->m->handle_datagram(now_, bytes, fx);
    route(to, std::move(fx));
    return r;
  }

  Membership& node(std::size_t i) { return *nodes_[i]->m; }
  bool up(std::size_t i) const { return nodes_[i]->up; }
  std::size_t size() const { return nodes_.size(); }
  Instant now() const { return now_; }
  std::uint64_t trace_hash() const { return hash_; }
  std::uint64_t bytes_sent() const { return bytes_sent_; }
  std::uint64_t datagrams_sent() const { return datagrams_sent_; }
  std::size_t events_processed() const { return events_processed_; }
  const std::vector<Notification>& notes(std::size_t i) const { return notes_[i]; }

  /// |j| as seen by |i|: nullptr when unknown or known under another identity.
  const Member* view(std::size_t i, std::size_t j) const {
    const Member* m = nodes_[i]->m->find(nodes_[j]->m->identity().addr);
    return m && m->id == nodes_[j]->m->identity() ? m : nullptr;
  }

  /// True when every live node in |among| sees every other one Alive under
  /// its current identity.
  bool converged(const std::vector<std::size_t>& among) const {
    for (std::size_t i : among)
      for (std::size_t j : among) {
        if (i == j) continue;
        const Member* m = view(i, j);
        if (!m || m->state != MemberState::alive) return false;
      }
    return true;
  }

  std::vector<std::size_t> live_nodes() const {
    std::vector<std::size_t> v;
    for (std::size_t i = 0; i < nodes_.size(); ++i)
      if (nodes_[i]->up && !nodes_[i]->m->has_left()) v.push_back(i);
    return v;
  }

 private:
  struct Datagram {
    std::size_t from;
    Bytes bytes;
  };
  struct AnnounceTick {};
  using What = std::variant<Datagram, Timer, AnnounceTick>;
  struct Event {
    Instant at;
    std::uint64_t seq;
    std::size_t node;
    std::uint64_t epoch;
    What what;
  };
  struct Later {
    bool operator()(const Event& a, const Event& b) const {
      return a.at != b.at ? a.at > b.at : a.seq > b.seq;
    }
  };
  struct SimNode {
    std::unique_ptr<Membership> m;
    bool up = true;
    bool isolated = false;
    std::uint64_t epoch = 0;
    // addr -> (identity ts, highest incarnation seen): invariant checker state.
    std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> incarnation_seen;
    std::pair<std::uint64_t, std::uint64_t> self_seen{0, 0};
  };

  std::uint64_t derive_seed(std::size_t i, std::uint64_t epoch) const {
    std::uint64_t s = o_.seed * 1000003 + i * 7919 + epoch * 104729;
    return splitmix64(s);
  }

  void mix(std::uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      hash_ ^= (v >> (8 * i)) & 0xFF;
      hash_ *= 0x100000001B3ULL;
    }
  }
  void mix(const std::string& s) {
    for (char c : s) mix(static_cast<std::uint64_t>(static_cast<unsigned char>(c)));
  }

  void push(std::size_t node, Duration after, What what) {
    events_.push(Event{now_ + after, seq_++, node, nodes_[node]->epoch, std::move(what)});
  }

  void route(std::size_t from, Effects fx) {
    for (Effect& e : fx) {
      if (auto* s = std::get_if<SendTo>(&e)) {
        bytes_sent_ += s->payload.size();
        ++datagrams_sent_;
        mix(static_cast<std::uint64_t>(now_.time_since_epoch().count()));
        mix(from);
        mix(s->to);
        for (std::byte b : s->payload) mix(std::to_integer<std::uint64_t>(b));
        auto it = addr_index_.find(s->to);
        if (it == addr_index_.end()) continue;
        const std::size_t to = it->second;
        if (group_[from] != group_[to]) continue;
        if (nodes_[from]->isolated || nodes_[to]->isolated) continue;
        if (o_.loss_per_mille > 0 && prng_.chance(o_.loss_per_mille, 1000)) continue;
        const auto span = static_cast<std::uint64_t>((o_.delay_max - o_.delay_min).count());
        const Duration delay =
            o_.delay_min + Duration(static_cast<Duration::rep>(prng_.between(0, span)));
        push(to, delay, Datagram{from, std::move(s->payload)});
      } else if (auto* a = std::get_if<ArmTimer>(&e)) {
        mix(1000 + a->timer.index());
        mix(static_cast<std::uint64_t>(a->after.count()));
        push(from, a->after, std::move(a->timer));
      } else {
        const auto& n = std::get<Notify>(e).what;
        mix(2000 + n.index());
        std::visit(
            [&](const auto& x) {
              using T = std::decay_t<decltype(x)>;
              if constexpr (std::is_same_v<T, notification::MemberUp> ||
                            std::is_same_v<T, notification::MemberDown>)
                mix(x.who.addr);
            },
            n);
        notes_[from].push_back(n);
      }
    }
  }

  // Safety invariants, checked after each event on the node that handled it.
  void check(std::size_t i) {
    SimNode& node = *nodes_[i];
    ASSERT_FALSE(node.m->is_defunct()) << "node " << i;
    const auto self = std::make_pair(node.m->identity().ts, node.m->incarnation());
    ASSERT_GE(self, node.self_seen) << "own (ts, incarnation) went back on node " << i;
    node.self_seen = self;
    for (const Member& m : node.m->members()) {
      ASSERT_NE(m.id.addr, node.m->identity().addr) << "node " << i << " lists itself";
      auto [it, fresh] = node.incarnation_seen.try_emplace(m.id.addr, m.id.ts, m.incarnation);
      if (fresh) continue;
      if (it->second.first == m.id.ts) {
        ASSERT_GE(m.incarnation, it->second.second) << "incarnation went back on node " << i;
      } else {
        // Identities at an address only get newer (unless forgotten and relearned).
        ASSERT_GT(m.id.ts, it->second.first) << "older identity came back on node " << i;
      }
      it->second = {m.id.ts, m.incarnation};
    }
  }

  SimOptions o_;
  Prng prng_;
  std::vector<std::unique_ptr<SimNode>> nodes_;
  std::unordered_map<std::string, std::size_t> addr_index_;  // lookups only
  std::vector<std::vector<Notification>> notes_;
  std::vector<int> group_;
  std::priority_queue<Event, std::vector<Event>, Later> events_;
  std::uint64_t seq_ = 0;
  std::size_t seeds_ = 1;
  std::uint64_t bytes_sent_ = 0;
  std::uint64_t datagrams_sent_ = 0;
  std::size_t events_processed_ = 0;
  Instant now_{};
  std::uint64_t hash_ = 0xCBF29CE484222325ULL;
};

}  // namespace patina::swim::test
