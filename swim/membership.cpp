#include "swim/membership.hpp"

#include <algorithm>
#include <numeric>

#include "swim/assert.hpp"

namespace patina::swim {
namespace {

Result<void> validate_identity(const Identity& self) {
  if (self.addr.empty() || self.addr.size() > 255)
    return fail(Errc::invalid_argument, "identity addr must be 1..255 bytes");
  return {};
}

// Does an update for an identity we already hold carry news? (SWIM precedence:
// Down beats Alive and Suspect at an equal or higher incarnation; Suspect
// beats Alive at an equal incarnation; otherwise only a higher incarnation
// counts.) A Down older than a refutation we already saw is stale, as in
// memberlist: honouring it would force a needless rejoin.
bool supersedes(const MemberUpdate& u, const Member& m) {
  if (m.state == MemberState::down) return false;  // types.hpp invariant 3
  switch (u.state) {
    case MemberState::down:
      return u.incarnation >= m.incarnation;
    case MemberState::suspect:
      return u.incarnation > m.incarnation ||
             (u.incarnation == m.incarnation && m.state == MemberState::alive);
    case MemberState::alive:
      return u.incarnation > m.incarnation;
  }
  return false;
}

}  // namespace

const char* to_string(MemberState s) {
  switch (s) {
    case MemberState::alive:
      return "Alive";
    case MemberState::suspect:
      return "Suspect";
    case MemberState::down:
      return "Down";
  }
  return "Unknown";
}

const char* to_string(const Timer& t) {
  static constexpr const char* names[] = {
      "probe_random_member", "send_indirect_probe",       "change_suspect_to_down", "remove_down",
      "periodic_announce",   "periodic_announce_to_down", "periodic_gossip"};
  static_assert(std::size(names) == std::variant_size_v<Timer>);
  return names[t.index()];
}

const char* to_string(const Notification& n) {
  static constexpr const char* names[] = {
      "member_up", "member_down", "identity_changed", "rejoined", "active", "idle", "defunct"};
  static_assert(std::size(names) == std::variant_size_v<Notification>);
  return names[n.index()];
}

Result<Membership> Membership::create(Identity self, Config config, std::uint64_t prng_seed) {
  if (auto r = config.validate(); !r) return tl::unexpected(r.error());
  if (auto r = validate_identity(self); !r) return tl::unexpected(r.error());
  return Membership(std::move(self), std::move(config), prng_seed);
}

Membership::Membership(Identity self, Config config, std::uint64_t prng_seed)
    : self_(std::move(self)), config_(std::move(config)), prng_(prng_seed) {
  SWIM_ASSERT(config_.validate().has_value());
  SWIM_ASSERT(validate_identity(self_).has_value());
}

void Membership::set_config(Config config) {
  SWIM_ASSERT(config.validate().has_value());
  config_ = std::move(config);
}

Result<void> Membership::check_active() const {
  if (left_ || defunct_) return fail(Errc::not_active, "left or defunct; only rejoin() accepted");
  return {};
}

const Member* Membership::find(std::string_view addr) const {
  auto it = index_.find(std::string(addr));
  return it == index_.end() ? nullptr : &members_[it->second];
}

std::vector<Peer> Membership::active_peers() const {
  std::vector<Peer> out;
  out.reserve(active_count_);
  for (const Member& m : members_)
    if (m.active()) out.push_back(Peer{m.id.addr, m.rtt.ring()});
  return out;
}

Member* Membership::find_mut(std::string_view addr) {
  auto it = index_.find(std::string(addr));
  return it == index_.end() ? nullptr : &members_[it->second];
}

// ---------------------------------------------------------------------------
// Inputs

Result<void> Membership::handle_datagram(Instant now, std::span<const std::byte> bytes,
                                         Effects& out) {
  if (auto r = check_active(); !r) return r;
  // We emit at most max_packet_size but accept up to the UDP limit: peers may
  // run with another max_mtu, and decode() is bounded by the span anyway.
  if (bytes.size() > packet_size_accept_max) return fail(Errc::packet_too_large, "datagram");
  auto decoded = decode(bytes);
  if (!decoded) return tl::unexpected(decoded.error());
  Packet& p = *decoded;
  // Isolation first: nothing from another cluster or member id may touch state.
  if (p.cluster_id != self_.cluster_id || p.src.cluster_id != self_.cluster_id)
    return fail(Errc::wrong_cluster, "packet cluster_id");
  if (p.src.member_id != self_.member_id) return fail(Errc::foreign_member_id, "sender member_id");
  if (p.src.addr == self_.addr) return fail(Errc::data_from_ourselves, "sender addr is ours");
  ensure_timers(out);
  // An update below may make us rejoin; the packet was still meant for us.
  const Identity self_before = self_;

  // "You are Down in my view" is news about us, valid whatever we think of the
  // sender (after a partition both sides hold each other Down).
  // A newer identity of our own (same addr and actor id, larger ts) means
  // our clock went back across a restart: renew above it, or nobody will
  // ever accept us (address conflicts are won by the larger ts).
  if (const auto newer = newer_life_of_ours(p)) {
    (void)rejoin(now, out, *newer + 1);
    return fail(Errc::not_for_us, "packet for a newer identity of ours");
  }
  if (p.kind == MessageKind::turn_undead) {
    if (p.dst && *p.dst == self_) handle_declared_down(now, out);
    return {};
  }

  if (const Member* known = find(p.src.addr)) {
    // A sender we hold Down (same identity) is told so, and must rejoin.
    if (known->id == p.src && known->state == MemberState::down) {
      send(p.src.addr, p.src, MessageKind::turn_undead, 0, nullptr, out);
      return fail(Errc::sender_is_down, "sender is down in our view");
    }
    // An older identity of a member that has since rejoined: stale, drop.
    // If it is the same actor, its process is running with an older ts than
    // its previous life (clock went back across a restart): tell it, and
    // send() attaches the newer identity so it can renew above it.
    if (known->id != p.src && known->id.wins_addr_conflict(p.src)) {
      if (known->id.id == p.src.id && p.kind != MessageKind::turn_undead)
        send(p.src.addr, p.src, MessageKind::turn_undead, 0, nullptr, out);
      return fail(Errc::not_for_us, "sender identity superseded");
    }
  }

  // The sender vouches for itself; then everything it piggy-backed.
  apply_update(now, MemberUpdate{p.src, p.src_incarnation, MemberState::alive}, out);
  for (const auto& u : p.updates) {
    if (left_ || defunct_) break;  // an update may have declared us Down
    apply_update(now, u, out);
  }
  if (left_ || defunct_) return {};
  if (p.dst && *p.dst != self_before) return fail(Errc::not_for_us, "packet for an older identity");
  handle_packet(now, p, out);
  return {};
}

std::optional<std::uint64_t> Membership::newer_life_of_ours(const Packet& p) const {
  std::optional<std::uint64_t> ts;
  auto consider = [&](const Identity& id) {
    if (id.addr == self_.addr && id.id == self_.id && id.ts > self_.ts &&
        id.cluster_id == self_.cluster_id)
      ts = std::max(ts.value_or(0), id.ts);
  };
  if (p.dst) consider(*p.dst);
  for (const auto& u : p.updates) consider(u.id);
  for (const auto& u : p.feed) consider(u.id);
  return ts;
}

void Membership::handle_packet(Instant now, Packet& p, Effects& out) {
  switch (p.kind) {
    case MessageKind::ping:
      send(p.src.addr, p.src, MessageKind::ack, p.probe_number, nullptr, out);
      break;
    case MessageKind::ack:
      handle_ack(now, p.src, p.probe_number, true);
      break;
    case MessageKind::ping_req:
      // Probe |other| on the sender's behalf; |other| in our ping is the origin.
      if (p.other.addr != self_.addr)
        send(p.other.addr, p.other, MessageKind::indirect_ping, p.probe_number, &p.src, out);
      break;
    case MessageKind::indirect_ping:
      send(p.src.addr, p.src, MessageKind::indirect_ack, p.probe_number, &p.other, out);
      break;
    case MessageKind::indirect_ack:
      if (p.other.addr != self_.addr)
        send(p.other.addr, p.other, MessageKind::forwarded_ack, p.probe_number, &p.src, out);
      break;
    case MessageKind::forwarded_ack:
      handle_ack(now, p.other, p.probe_number, false);
      break;
    case MessageKind::gossip:
      break;
    case MessageKind::announce:
      send_feed(p.src, AddrDigest::from_bytes(p.digest), out);
      break;
    case MessageKind::feed:
      for (const auto& u : p.feed) {
        if (left_ || defunct_) break;
        apply_update(now, u, out);
      }
      break;
    case MessageKind::turn_undead:
      break;  // handled by the caller
  }
}

void Membership::handle_ack(Instant now, const Identity& target, std::uint32_t number,
                            bool direct) {
  if (!probe_.member || *probe_.member != target || probe_.number != number) return;
  if (probe_.acked) return;
  probe_.acked = true;
  ++counters_.probes_acked;
  // Only a direct ping/ack pair measures the path to |target|.
  if (!direct) {
    // Alive but reached only indirectly: if still Suspect (no refutation
    // came with the ack), talk to it directly again soon.
    if (const Member* m = find(target.addr);
        m && m->id == target && m->state == MemberState::suspect)
      queue_suspect_probe(target.addr);
    return;
  }
  if (Member* m = find_mut(target.addr); m && m->id == target) m->rtt.add(now - probe_.sent_at);
}

Result<void> Membership::handle_timer(Instant now, const Timer& timer, Effects& out) {
  if (auto r = check_active(); !r) return r;
  return std::visit(
      [&](const auto& t) -> Result<void> {
        using T = std::decay_t<decltype(t)>;
        // Invariant 5. Suspicion and removal timers are about other members
        // and stay valid across our own rejoin: they are checked against the
        // member's identity, state and incarnation instead.
        if constexpr (!std::is_same_v<T, timer::ChangeSuspectToDown> &&
                      !std::is_same_v<T, timer::RemoveDown>) {
          if (t.token != token_) return {};
        }
        if constexpr (std::is_same_v<T, timer::ProbeRandomMember>) {
          handle_probe_tick(now, out);
        } else if constexpr (std::is_same_v<T, timer::SendIndirectProbe>) {
          handle_indirect_probe(t.probed, out);
        } else if constexpr (std::is_same_v<T, timer::ChangeSuspectToDown>) {
          Member* m = find_mut(t.member.addr);
          if (m && m->id == t.member && m->state == MemberState::suspect &&
              m->incarnation == t.incarnation)
            set_state(now, *m, MemberState::down, m->incarnation, out);
        } else if constexpr (std::is_same_v<T, timer::RemoveDown>) {
          auto it = index_.find(t.member.addr);
          if (it != index_.end() && members_[it->second].id == t.member &&
              members_[it->second].state == MemberState::down)
            remove_member(it->second);
        } else if constexpr (std::is_same_v<T, timer::PeriodicAnnounce>) {
          for (const Member* m :
               choose_members(config_.periodic_announce.num_members, true, nullptr))
            send(m->id.addr, std::nullopt, MessageKind::announce, 0, nullptr, out);
          arm(config_.periodic_announce.frequency, timer::PeriodicAnnounce{token_}, out);
        } else if constexpr (std::is_same_v<T, timer::PeriodicAnnounceToDown>) {
          for (const Member* m :
               choose_members(config_.periodic_announce_to_down.num_members, false, nullptr))
            send(m->id.addr, std::nullopt, MessageKind::announce, 0, nullptr, out);
          arm(config_.periodic_announce_to_down.frequency, timer::PeriodicAnnounceToDown{token_},
              out);
        } else if constexpr (std::is_same_v<T, timer::PeriodicGossip>) {
          // Idle clusters have nothing pending: the timer stops here and
          // enqueue() restarts it, so a quiet member does not wake twice a
          // second for nothing.
          if (pending_.empty()) {
            gossip_armed_ = false;
          } else {
            gossip_to(config_.periodic_gossip.num_members, out);
            arm(config_.periodic_gossip.frequency, timer::PeriodicGossip{token_}, out);
          }
        }
        return {};
      },
      timer);
}

Result<void> Membership::announce(Instant now, std::string_view to, Effects& out) {
  (void)now;
  if (auto r = check_active(); !r) return r;
  if (to.empty() || to.size() > 255) return fail(Errc::invalid_argument, "announce address");
  if (to == self_.addr) return fail(Errc::invalid_argument, "announce to ourselves");
  ensure_timers(out);
  send(std::string(to), std::nullopt, MessageKind::announce, 0, nullptr, out);
  return {};
}

Result<void> Membership::leave(Instant now, Effects& out) {
  (void)now;
  if (auto r = check_active(); !r) return r;
  // Our own Down update goes out right away to a few members, in every one
  // of those packets even when max_transmissions(n) is smaller: nothing else
  // will carry it once we stop.
  const std::size_t fanout =
      std::max(config_.num_indirect_probes, config_.periodic_gossip.num_members);
  enqueue(MemberUpdate{self_, incarnation_, MemberState::down}, out);
  for (Pending& p : pending_)
    if (p.update.id == self_)
      p.remaining = std::max<std::uint32_t>(p.remaining, static_cast<std::uint32_t>(fanout));
  gossip_to(fanout, out);
  left_ = true;
  ++token_;  // invariant 5: every armed timer is now stale
  timers_started_ = false;
  gossip_armed_ = false;
  probe_ = Probe{};
  return {};
}

Result<void> Membership::rejoin(Instant now, Effects& out, std::optional<std::uint64_t> new_ts) {
  (void)now;
  const std::uint64_t ts = new_ts && *new_ts > self_.ts ? *new_ts : self_.ts + 1;
  self_.ts = ts;
  ++counters_.rejoins;
  incarnation_ = 0;
  left_ = false;
  defunct_ = false;
  ++token_;
  timers_started_ = false;
  gossip_armed_ = false;
  probe_ = Probe{};
  // Whatever we were saying about our old identity is moot now.
  std::erase_if(pending_, [&](const Pending& p) { return p.update.id.addr == self_.addr; });
  enqueue_self(out);
  ensure_timers(out);
  notify(notification::Rejoined{self_}, out);
  // Tell a few members; if we think nobody is alive, the Down ones (a partition
  // we are on the wrong side of, or a restart after everyone expired us).
  auto targets = choose_members(config_.num_indirect_probes, true, nullptr);
  if (targets.empty()) targets = choose_members(config_.num_indirect_probes, false, nullptr);
  for (const Member* m : targets)
    send(m->id.addr, std::nullopt, MessageKind::announce, 0, nullptr, out);
  return {};
}

Result<void> Membership::set_cluster_id(Instant now, std::uint16_t cluster_id, Effects& out,
                                        std::optional<std::uint64_t> new_ts) {
  const bool was_active = active_count_ > 0;
  for (const Member& m : members_)
    if (m.active() && config_.notify_down_members) notify(notification::MemberDown{m.id}, out);
  members_.clear();
  index_.clear();
  active_count_ = 0;
  pending_.clear();
  probe_order_.clear();
  probe_index_ = 0;
  suspects_to_probe_.clear();
  if (was_active) notify(notification::Idle{}, out);
  self_.cluster_id = cluster_id;
  return rejoin(now, out, new_ts);
}

Result<void> Membership::record_rtt(std::string_view addr, Duration rtt) {
  Member* m = find_mut(addr);
  if (!m) return fail(Errc::invalid_argument, "no member at addr");
  m->rtt.add(rtt);
  return {};
}

std::vector<MemberUpdate> Membership::snapshot() const {
  std::vector<MemberUpdate> out;
  out.reserve(members_.size());
  for (const Member& m : members_) {
    const MemberState s = m.state == MemberState::down ? MemberState::down : MemberState::alive;
    out.push_back(MemberUpdate{m.id, m.incarnation, s});
  }
  return out;
}

Result<void> Membership::apply_snapshot(Instant now, std::span<const MemberUpdate> members,
                                        Effects& out) {
  if (auto r = check_active(); !r) return r;
  for (MemberUpdate u : members) {
    if (u.state == MemberState::suspect) u.state = MemberState::alive;
    if (u.id.addr == self_.addr) continue;
    apply_update(now, u, out);
  }
  ensure_timers(out);
  return {};
}

// ---------------------------------------------------------------------------
// Probing

void Membership::handle_probe_tick(Instant now, Effects& out) {
  // Close the previous round: unanswered (directly or through ping_req) ⇒ Suspect.
  if (probe_.member && !probe_.acked) {
    Member* m = find_mut(probe_.member->addr);
    if (m && m->id == *probe_.member && m->state == MemberState::alive) {
      ++counters_.suspicions;
      set_state(now, *m, MemberState::suspect, m->incarnation, out);
    } else if (m && m->id == *probe_.member && m->state == MemberState::suspect) {
      queue_suspect_probe(m->id.addr);  // still silent: try it again later
    }
  }
  const bool last_out_of_turn = probe_out_of_turn_;
  probe_ = Probe{};
  probe_out_of_turn_ = false;
  arm(config_.probe_period, timer::ProbeRandomMember{token_}, out);

  const Member* target = nullptr;
  // A member we hold Suspect is probed out of turn, every other tick while
  // it stays Suspect: our ping carries the suspicion to it (buddy system) and
  // its ack carries its refutation back, so a live member is not declared
  // Down just because the gossip about its refutation missed us. Alternating
  // keeps the round-robin (detection of other failures) going at half rate.
  while (!target && !last_out_of_turn && !suspects_to_probe_.empty()) {
    const Member* m = find(suspects_to_probe_.front());
    suspects_to_probe_.erase(suspects_to_probe_.begin());
    if (m && m->state == MemberState::suspect) {
      target = m;
      probe_out_of_turn_ = true;
    }
  }
  // Otherwise round-robin over a shuffled list (SWIM's bounded detection
  // time). At most one rebuild per tick: the loop runs <= |members| + 1 times.
  bool rebuilt = false;
  while (!target) {
    if (probe_index_ >= probe_order_.size()) {
      if (rebuilt) break;
      rebuilt = true;
      probe_order_.clear();
      for (const Member& m : members_)
        if (m.active()) probe_order_.push_back(m.id.addr);
      prng_.shuffle(probe_order_);
      probe_index_ = 0;
      if (probe_order_.empty()) break;
    }
    const Member* m = find(probe_order_[probe_index_++]);
    if (m && m->active()) target = m;
  }
  if (!target) return;
  probe_.member = target->id;
  probe_.number = ++probe_counter_;
  probe_.sent_at = now;
  ++counters_.probes_sent;
  send(target->id.addr, target->id, MessageKind::ping, probe_.number, nullptr, out);
  arm(config_.probe_rtt, timer::SendIndirectProbe{target->id, token_}, out);
}

void Membership::handle_indirect_probe(const Identity& probed, Effects& out) {
  if (!probe_.member || *probe_.member != probed || probe_.acked) return;
  for (const Member* m : choose_members(config_.num_indirect_probes, true, &probed)) {
    ++counters_.indirect_probes_sent;
    send(m->id.addr, m->id, MessageKind::ping_req, probe_.number, &probed, out);
  }
}

// ---------------------------------------------------------------------------
// Updates

void Membership::apply_update(Instant now, const MemberUpdate& u, Effects& out) {
  // Isolation: other clusters and member ids are never members.
  if (u.id.cluster_id != self_.cluster_id || u.id.member_id != self_.member_id) return;
  if (u.id.addr == self_.addr) {
    apply_self_update(now, u, out);
    return;
  }
  Member* m = find_mut(u.id.addr);
  if (!m) {
    insert_member(now, u, out);
    return;
  }
  if (m->id != u.id) {
    if (u.id.wins_addr_conflict(m->id)) replace_identity(now, *m, u, out);
    return;  // else: news about an identity that was already replaced
  }
  if (!supersedes(u, *m)) return;
  set_state(now, *m, u.state, u.incarnation, out);
}

void Membership::apply_self_update(Instant now, const MemberUpdate& u, Effects& out) {
  // Updates about an older (or, after a clock step back, foreign) identity at
  // our address are ignored: the newest identity wins everywhere anyway.
  if (u.id != self_) return;
  if (u.state == MemberState::down) {
    // A verdict older than our last refutation is stale. Whoever still holds
    // us Down answers our next packet with turn_undead, and we rejoin then.
    if (u.incarnation >= incarnation_) handle_declared_down(now, out);
    return;
  }
  const bool refute = (u.state == MemberState::suspect && u.incarnation >= incarnation_) ||
                      (u.state == MemberState::alive && u.incarnation > incarnation_);
  if (!refute) return;
  // Invariant 1: rise above anything claimed about us.
  incarnation_ = u.incarnation + 1;
  ++counters_.refutations;
  enqueue_self(out);
}

void Membership::handle_declared_down(Instant now, Effects& out) {
  if (config_.auto_rejoin) {
    (void)rejoin(now, out);
    return;
  }
  defunct_ = true;
  ++token_;
  timers_started_ = false;
  gossip_armed_ = false;
  notify(notification::Defunct{}, out);
}

void Membership::insert_member(Instant now, const MemberUpdate& u, Effects& out) {
  Member m;
  m.id = u.id;
  m.incarnation = u.incarnation;
  m.state = u.state;
  m.state_since = now;
  index_.emplace(m.id.addr, members_.size());
  members_.push_back(std::move(m));
  Member& added = members_.back();
  if (u.state == MemberState::down) {
    enqueue(u, out);
    // Remembered only to block resurrection by stale gossip.
    arm(config_.remove_down_after, timer::RemoveDown{u.id, token_}, out);
    return;
  }
  if (++active_count_ == 1) notify(notification::Active{}, out);
  enqueue(u, out);  // after counting it: the budget scales with the new size
  notify(notification::MemberUp{added.id}, out);
  if (u.state == MemberState::suspect) queue_suspect_probe(u.id.addr);
  if (u.state == MemberState::suspect)
    arm(config_.suspect_to_down_after(cluster_size()),
        timer::ChangeSuspectToDown{u.id, u.incarnation, token_}, out);
}

void Membership::replace_identity(Instant now, Member& m, const MemberUpdate& u, Effects& out) {
  const Identity old = m.id;
  const bool was_active = m.active();
  m.id = u.id;
  m.incarnation = u.incarnation;
  m.state = u.state;
  m.state_since = now;
  m.rtt = RttStats{};
  enqueue(u, out);
  notify(notification::IdentityChanged{old, u.id}, out);
  if (was_active && !m.active()) {
    --active_count_;
    ++counters_.members_down;
    if (config_.notify_down_members) notify(notification::MemberDown{m.id}, out);
    if (active_count_ == 0) notify(notification::Idle{}, out);
  } else if (!was_active && m.active()) {
    if (++active_count_ == 1) notify(notification::Active{}, out);
    notify(notification::MemberUp{m.id}, out);
  }
  if (m.state == MemberState::suspect) queue_suspect_probe(m.id.addr);
  if (m.state == MemberState::suspect)
    arm(config_.suspect_to_down_after(cluster_size()),
        timer::ChangeSuspectToDown{m.id, m.incarnation, token_}, out);
  if (m.state == MemberState::down)
    arm(config_.remove_down_after, timer::RemoveDown{m.id, token_}, out);
}

void Membership::set_state(Instant now, Member& m, MemberState state, std::uint64_t incarnation,
                           Effects& out) {
  SWIM_ASSERT(m.state != MemberState::down);  // types.hpp invariant 3
  SWIM_ASSERT(incarnation >= m.incarnation);  // invariant 2
  m.state = state;
  m.incarnation = incarnation;
  m.state_since = now;
  enqueue(MemberUpdate{m.id, incarnation, state}, out);
  if (state == MemberState::suspect) {
    queue_suspect_probe(m.id.addr);
    arm(config_.suspect_to_down_after(cluster_size()),
        timer::ChangeSuspectToDown{m.id, incarnation, token_}, out);
  } else if (state == MemberState::down) {
    SWIM_ASSERT(active_count_ > 0);
    --active_count_;
    ++counters_.members_down;
    if (config_.notify_down_members) notify(notification::MemberDown{m.id}, out);
    if (active_count_ == 0) notify(notification::Idle{}, out);
    arm(config_.remove_down_after, timer::RemoveDown{m.id, token_}, out);
  }
}

void Membership::queue_suspect_probe(const std::string& addr) {
  // At most one entry per member, so the queue is bounded by members_.size().
  if (std::find(suspects_to_probe_.begin(), suspects_to_probe_.end(), addr) ==
      suspects_to_probe_.end())
    suspects_to_probe_.push_back(addr);
}

void Membership::remove_member(std::size_t index) {
  SWIM_ASSERT(index < members_.size());
  SWIM_ASSERT(!members_[index].active());
  index_.erase(members_[index].id.addr);
  // Keep members_ in insertion order (determinism, stable output for admins).
  members_.erase(members_.begin() + static_cast<std::ptrdiff_t>(index));
  for (std::size_t i = index; i < members_.size(); ++i) index_[members_[i].id.addr] = i;
}

// ---------------------------------------------------------------------------
// Dissemination and sending

void Membership::enqueue(const MemberUpdate& u, Effects& out) {
  const std::uint32_t budget = config_.max_transmissions(cluster_size());
  bool replaced = false;
  for (Pending& p : pending_) {
    if (p.update.id.addr == u.id.addr) {  // newer news about an addr replaces older
      p.update = u;
      p.remaining = budget;
      p.seq = ++pending_seq_;
      replaced = true;
      break;
    }
  }
  if (!replaced) pending_.push_back(Pending{u, budget, ++pending_seq_});
  if (timers_started_ && !gossip_armed_ && config_.periodic_gossip.frequency > Duration::zero()) {
    arm(config_.periodic_gossip.frequency, timer::PeriodicGossip{token_}, out);
    gossip_armed_ = true;
  }
}

void Membership::enqueue_self(Effects& out) { enqueue(MemberUpdate{self_, incarnation_, MemberState::alive}, out); }

void Membership::ensure_timers(Effects& out) {
  if (timers_started_ || left_ || defunct_) return;
  timers_started_ = true;
  arm(config_.probe_period, timer::ProbeRandomMember{token_}, out);
  gossip_armed_ = config_.periodic_gossip.frequency > Duration::zero();
  if (gossip_armed_) arm(config_.periodic_gossip.frequency, timer::PeriodicGossip{token_}, out);
  // The first periodic announce comes early (two probe periods): by then a
  // joiner knows most members, and its digest fetches the rest at once.
  if (config_.periodic_announce.frequency > Duration::zero())
    arm(std::min(config_.periodic_announce.frequency, 2 * config_.probe_period),
        timer::PeriodicAnnounce{token_}, out);
  if (config_.periodic_announce_to_down.frequency > Duration::zero())
    arm(config_.periodic_announce_to_down.frequency, timer::PeriodicAnnounceToDown{token_}, out);
}

void Membership::gossip_to(std::size_t count, Effects& out) {
  for (const Member* m : choose_members(count, true, nullptr))
    send(m->id.addr, m->id, MessageKind::gossip, 0, nullptr, out);
}

std::vector<const Member*> Membership::choose_members(std::size_t k, bool want_active,
                                                      const Identity* exclude) {
  std::vector<const Member*> candidates;
  for (const Member& m : members_) {
    if (m.active() != want_active) continue;
    if (exclude && m.id == *exclude) continue;
    candidates.push_back(&m);
  }
  k = std::min(k, candidates.size());
  for (std::size_t i = 0; i < k; ++i) {
    const std::size_t j = i + static_cast<std::size_t>(prng_.below(candidates.size() - i));
    std::swap(candidates[i], candidates[j]);
  }
  candidates.resize(k);
  return candidates;
}

void Membership::send_feed(const Identity& to, const AddrDigest& known, Effects& out) {
  // Our active members (|to| excluded), those missing from the announcer's
  // digest first, then a random few of the rest (all of them for a joiner,
  // whose digest is empty), spread over up to feed_packets_max datagrams: a
  // joiner gets most of the cluster at once, and a periodic announcer exactly
  // what the epidemic gossip failed to bring it.
  std::vector<const Member*> all = choose_members(members_.size(), true, &to);
  auto known_from = std::stable_partition(all.begin(), all.end(),
                                          [&](const Member* m) { return !known.maybe_contains(m->id.addr); });
  if (!known.empty()) {
    const auto missing = static_cast<std::size_t>(known_from - all.begin());
    all.resize(std::min(all.size(), missing + config_.feed_known_sample));
  }
  if (all.size() > config_.feed_members_max) all.resize(config_.feed_members_max);
  // send() takes entries from the back.
  std::vector<MemberUpdate> feed;
  feed.reserve(all.size());
  for (auto it = all.rbegin(); it != all.rend(); ++it)
    feed.push_back(MemberUpdate{(*it)->id, (*it)->incarnation, (*it)->state});
  for (std::size_t i = 0; i < config_.feed_packets_max; ++i) {
    const std::size_t before = feed.size();
    send(to.addr, to, MessageKind::feed, 0, nullptr, out, &feed);
    if (feed.empty() || feed.size() == before) break;
  }
}

void Membership::send(const std::string& to, const std::optional<Identity>& dst, MessageKind kind,
                      std::uint32_t probe_number, const Identity* other, Effects& out,
                      std::vector<MemberUpdate>* feed) {
  SWIM_ASSERT((feed != nullptr) == (kind == MessageKind::feed));
  Packet p;
  p.cluster_id = self_.cluster_id;
  p.kind = kind;
  p.src = self_;
  p.src_incarnation = incarnation_;
  // An ack is matched to the prober's probe by its number, and a probe
  // outlives no rejoin, so the prober's identity would only repeat what it
  // sent: 31 of an ack's 70 bytes, about a tenth of an idle member's bytes.
  // |dst| still picks the priority updates below.
  if (kind != MessageKind::ack) p.dst = dst;
  p.probe_number = probe_number;
  if (other) p.other = *other;
  std::size_t size = encoded_size_without_lists(p);
  // Peer-supplied identities can be long; a header that cannot fit is dropped.
  if (size > config_.max_packet_size) return;

  if (kind == MessageKind::announce && active_count_ > 0) {
    // Tell the responder which members we know (see digest.hpp), leaving
    // room for a few piggy-backed updates.
    constexpr std::size_t updates_reserve = 256;
    const std::size_t room = config_.max_packet_size - size;
    if (room > updates_reserve + 8) {
      AddrDigest digest(AddrDigest::size_for(active_count_, room - updates_reserve));
      for (const Member& m : members_)
        if (m.active()) digest.add(m.id.addr);
      p.digest = digest.bytes();
      size += p.digest.size();
    }
  }

  if (feed) {
    // Take feed entries from the back while they fit; the caller sends more
    // feed packets for the rest.
    while (!feed->empty()) {
      const std::size_t n = encoded_size(feed->back(), p.cluster_id);
      if (size + n > config_.max_packet_size) break;
      size += n;
      p.feed.push_back(std::move(feed->back()));
      feed->pop_back();
    }
  }

  // Priority updates, sent whatever their remaining budget:
  //  - Lifeguard's buddy system: a member we suspect hears it from us on
  //    every direct message, so it can refute even after the general gossip
  //    about it ran out;
  //  - a stale |dst| learns what superseded it (a node whose clock went back
  //    renews above its previous life);
  //  - a forwarded_ack carries the target's state as the intermediary just
  //    heard it, so the origin sees a refutation along with the ack.
  auto add_priority = [&](const Member* m) {
    MemberUpdate u{m->id, m->incarnation, m->state};
    const std::size_t n = encoded_size(u, p.cluster_id);
    if (size + n > config_.max_packet_size) return;
    size += n;
    p.updates.push_back(std::move(u));
  };
  if (dst) {
    if (const Member* m = find(dst->addr);
        m && ((m->id == *dst && m->state == MemberState::suspect) ||
              (m->id != *dst && m->id.wins_addr_conflict(*dst))))
      add_priority(m);
  }
  if (kind == MessageKind::forwarded_ack && other) {
    if (const Member* m = find(other->addr); m && m->id == *other && m->active()) add_priority(m);
  }
  const std::size_t priority_count = p.updates.size();

  // Piggy-back: most remaining transmissions (the newest news) first.
  std::vector<std::size_t> order(pending_.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    if (pending_[a].remaining != pending_[b].remaining)
      return pending_[a].remaining > pending_[b].remaining;
    return pending_[a].seq < pending_[b].seq;
  });
  for (std::size_t i : order) {
    if (p.updates.size() == UINT16_MAX) break;
    if (std::find(p.updates.begin(), p.updates.begin() + static_cast<std::ptrdiff_t>(priority_count),
                  pending_[i].update) != p.updates.begin() + static_cast<std::ptrdiff_t>(priority_count))
      continue;  // already sent as a priority update
    const std::size_t n = encoded_size(pending_[i].update, p.cluster_id);
    if (size + n > config_.max_packet_size) {
      ++counters_.updates_dropped_for_size;
      continue;  // a smaller one may still fit
    }
    size += n;
    p.updates.push_back(pending_[i].update);
    --pending_[i].remaining;
  }
  std::erase_if(pending_, [](const Pending& q) { return q.remaining == 0; });

  Bytes payload = encode(p);
  SWIM_ASSERT(payload.size() == size);  // invariant 4
  SWIM_ASSERT(payload.size() <= config_.max_packet_size);
  ++counters_.datagrams_sent;
  out.emplace_back(SendTo{to, std::move(payload)});
}

}  // namespace patina::swim
