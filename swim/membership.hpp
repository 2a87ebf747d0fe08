// swim/membership.hpp — SWIM membership as a sans-IO state machine (after foca).
//
// A Membership is fed inputs — a datagram, a fired timer, a call such as
// announce() — together with the current |Instant|, and appends Effects to a
// caller-owned vector: datagrams to send (SendTo), timers to arm (ArmTimer)
// and membership events (Notify). It never blocks, never reads a clock, never
// touches a socket, and draws every random choice from its own seeded Prng.
// The io/ driver moves bytes and fires timers; a test or simulator can do the
// same by hand, deterministically.
//
// Protocol (SWIM + suspicion, as foca):
//  - Every probe_period we ping the next member of a shuffled round-robin
//    list. No ack after probe_rtt → ping_req to num_indirect_probes members,
//    which ping the target on our behalf and forward its ack. No ack by the
//    next probe tick → the target becomes Suspect.
//  - A Suspect member has suspect_to_down_after(n) (grows with log10 n) to
//    refute by gossiping itself Alive with a higher incarnation; otherwise it
//    goes Down. Lifeguard-style help for the refutation: every direct message
//    to a suspect carries the suspicion (buddy system), suspects are probed
//    out of turn every other tick, and a forwarded ack carries the target's
//    latest incarnation. Down is final for that identity (types.hpp invariant 3); the
//    node comes back only with a renewed identity (rejoin, larger ts), which
//    wins the address conflict.
//  - Every packet piggy-backs pending updates, each sent at most
//    max_transmissions(n) times, newest first, trimmed to max_packet_size.
//    periodic_gossip pushes them when no probe is due; it runs only while
//    updates are pending, so an idle member wakes only for probes.
//  - A joiner announce()s to bootstrap addresses and gets a feed of members.
//    periodic_announce re-announces to alive members (first after two probe
//    periods) with a Bloom digest of the members it knows, and the feed leads
//    with the ones it lacks (digest.hpp); periodic_announce_to_down
//    announces to Down members, whose answer (turn_undead) makes the stale
//    side rejoin: that is how a healed partition merges again.
//  - Packets and members of another cluster_id or member_id are ignored.
//
// Driver contract (io/ membership driver, or a simulator):
//  - Own the Membership on one thread; call an entry point, then carry out
//    the appended effects in order: SendTo → one datagram (QUIC DATAGRAM
//    frame) to |to|; ArmTimer → call handle_timer(|timer|) after |after|
//    (timers are never cancelled: stale ones are recognised and ignored);
//    Notify → members map, metrics, broadcast peer set.
//  - Start: create(), apply_snapshot() with persisted states (if any), then
//    announce() to each resolved bootstrap address (own address excluded).
//    Re-announce with backoff while num_active() == 0.
//  - Persist snapshot() (encode_snapshot) periodically and on shutdown.
//  - Shutdown: leave(), send its datagrams, stop calling handle_*.
//  - `cluster rejoin`: rejoin(now, out, hlc_now); `cluster set-id`:
//    set_cluster_id(), then announce() to bootstrap addresses again.
//  - Errors from handle_datagram are per-packet: count them, never stop.
//
// Invariants:
//  (1) Our own incarnation never decreases for one identity; a refutation
//      sets it above every incarnation claimed about us.
//  (2) A member's incarnation never decreases, and its state moves only along
//      the diagram in types.hpp.
//  (3) members() never contains us, and holds at most one member per addr.
//  (4) Every emitted datagram is at most config.max_packet_size bytes.
//  (5) Timers carry the token of the identity that armed them; a timer from an
//      older identity (before rejoin/leave) is ignored.
//  (6) Output depends only on the inputs and the seed (no hash-order leaks).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "swim/codec.hpp"
#include "swim/config.hpp"
#include "swim/digest.hpp"
#include "swim/dissemination.hpp"
#include "swim/error.hpp"
#include "swim/prng.hpp"
#include "swim/rtt.hpp"
#include "swim/types.hpp"

namespace patina::swim {

/// Timers: each carries the data it needs, so the driver stores them opaquely.
/// All alternatives are totally ordered (a lagging driver may re-sort them).
namespace timer {
/// Probe the next member; armed every probe_period.
struct ProbeRandomMember {
  std::uint64_t token;
  auto operator<=>(const ProbeRandomMember&) const = default;
};
/// probe_rtt after a ping: ask k members to probe |probed| if no ack came.
struct SendIndirectProbe {
  Identity probed;
  std::uint64_t token;
  auto operator<=>(const SendIndirectProbe&) const = default;
};
/// End of |member|'s suspicion at |incarnation|.
struct ChangeSuspectToDown {
  Identity member;
  std::uint64_t incarnation;
  std::uint64_t token;
  auto operator<=>(const ChangeSuspectToDown&) const = default;
};
/// Forget a Down member after remove_down_after.
struct RemoveDown {
  Identity member;
  std::uint64_t token;
  auto operator<=>(const RemoveDown&) const = default;
};
struct PeriodicAnnounce {
  std::uint64_t token;
  auto operator<=>(const PeriodicAnnounce&) const = default;
};
struct PeriodicAnnounceToDown {
  std::uint64_t token;
  auto operator<=>(const PeriodicAnnounceToDown&) const = default;
};
struct PeriodicGossip {
  std::uint64_t token;
  auto operator<=>(const PeriodicGossip&) const = default;
};
}  // namespace timer

using Timer = std::variant<timer::ProbeRandomMember, timer::SendIndirectProbe,
                           timer::ChangeSuspectToDown, timer::RemoveDown, timer::PeriodicAnnounce,
                           timer::PeriodicAnnounceToDown, timer::PeriodicGossip>;

/// Events for the driver (members map, metrics, broadcast peers).
namespace notification {
/// |who| became active (Alive or Suspect) in our view.
struct MemberUp {
  Identity who;
  bool operator==(const MemberUp&) const = default;
};
/// |who| went Down (failed, or left). Only if Config::notify_down_members.
struct MemberDown {
  Identity who;
  bool operator==(const MemberDown&) const = default;
};
/// The member at |new_id.addr| was replaced by a newer identity (it restarted
/// or rejoined). If its activeness changed, a MemberUp/MemberDown for |new_id|
/// follows; otherwise it stays as active as |old_id| was.
struct IdentityChanged {
  Identity old_id;
  Identity new_id;
  bool operator==(const IdentityChanged&) const = default;
};
/// We now run as |self| (rejoin(), auto-rejoin after being declared Down, or a
/// cluster id change). The driver should persist the new identity.
struct Rejoined {
  Identity self;
  bool operator==(const Rejoined&) const = default;
};
/// We went from zero to at least one active member.
struct Active {
  bool operator==(const Active&) const = default;
};
/// We have no active member any more.
struct Idle {
  bool operator==(const Idle&) const = default;
};
/// We were declared Down and auto_rejoin is off: only rejoin() is accepted.
struct Defunct {
  bool operator==(const Defunct&) const = default;
};
}  // namespace notification

using Notification = std::variant<notification::MemberUp, notification::MemberDown,
                                  notification::IdentityChanged, notification::Rejoined,
                                  notification::Active, notification::Idle, notification::Defunct>;

/// Short names for logs ("probe_random_member", "member_up", ...).
const char* to_string(const Timer& t);
const char* to_string(const Notification& n);

struct SendTo {
  std::string to;  ///< "ip:port" of the receiver
  Bytes payload;   ///< one datagram, <= max_packet_size
};
struct ArmTimer {
  Duration after;
  Timer timer;
};
struct Notify {
  Notification what;
};
using Effect = std::variant<SendTo, ArmTimer, Notify>;
using Effects = std::vector<Effect>;

/// A member as we see it.
struct Member {
  Identity id;
  std::uint64_t incarnation = 0;
  MemberState state = MemberState::alive;
  Instant state_since{};  ///< when we last changed its state
  RttStats rtt;           ///< probe round trips plus record_rtt() samples

  bool active() const { return state != MemberState::down; }
};

/// Monotonic event counts, for the driver's metrics. Reading them is free.
struct Counters {
  std::uint64_t datagrams_sent = 0;
  std::uint64_t probes_sent = 0;               ///< direct pings of the probe cycle
  std::uint64_t probes_acked = 0;              ///< directly or through ping_req
  std::uint64_t indirect_probes_sent = 0;      ///< ping_req datagrams
  std::uint64_t suspicions = 0;                ///< members we turned Suspect ourselves
  std::uint64_t refutations = 0;               ///< times we raised our incarnation
  std::uint64_t members_down = 0;              ///< Alive/Suspect → Down transitions
  std::uint64_t rejoins = 0;                   ///< identity renewals (any cause)
  std::uint64_t updates_dropped_for_size = 0;  ///< pending updates left out of a full packet
};

class Membership {
 public:
  /// Checks |config| and |self| (non-empty addr of at most 255 bytes).
  /// Errors: invalid_argument. Nothing is sent before the first input.
  static Result<Membership> create(Identity self, Config config, std::uint64_t prng_seed);
  /// As create(), but asserts its arguments are valid.
  Membership(Identity self, Config config, std::uint64_t prng_seed);

  /// Handles one received datagram. The first input also arms the periodic
  /// timers. Errors (see error.hpp for state changes): packet_too_large,
  /// malformed_packet, unsupported_version, wrong_cluster, foreign_member_id,
  /// data_from_ourselves, sender_is_down, not_for_us, not_active.
  Result<void> handle_datagram(Instant now, std::span<const std::byte> bytes, Effects& out);

  /// Handles a timer armed earlier by an ArmTimer effect. Stale timers (older
  /// identity, finished probe, changed member) are ignored: Ok, no state change.
  /// Errors: not_active (after leave(), or while Defunct).
  Result<void> handle_timer(Instant now, const Timer& timer, Effects& out);

  /// Asks the node at |to| ("ip:port", resolved by the driver) for a feed of
  /// members: how we join through bootstrap addresses. No state change except
  /// arming the periodic timers on first use.
  /// Errors: invalid_argument (empty or our own address), not_active.
  Result<void> announce(Instant now, std::string_view to, Effects& out);

  /// Leaves gracefully: gossips ourselves Down to a few members, then ignores
  /// every input but rejoin(). Errors: not_active (already left).
  Result<void> leave(Instant now, Effects& out);

  /// Comes back with a renewed identity: same id and addr, ts = |new_ts| or,
  /// if that is absent or not larger, current ts + 1; incarnation 0. Valid
  /// after leave(), while Defunct, or any time (forces a fresh identity).
  /// Announces to a few known members and emits Rejoined.
  Result<void> rejoin(Instant now, Effects& out, std::optional<std::uint64_t> new_ts = {});

  /// Moves to another cluster (admin `cluster set-id`): forgets every member
  /// (MemberDown/Idle as needed) and rejoins with a renewed identity. The
  /// driver should then announce() to its bootstrap addresses again.
  Result<void> set_cluster_id(Instant now, std::uint16_t cluster_id, Effects& out,
                              std::optional<std::uint64_t> new_ts = {});

  /// Adds an RTT sample measured outside SWIM (e.g. QUIC connection stats).
  /// Errors: invalid_argument when no member lives at |addr|. Only RTT changes.
  Result<void> record_rtt(std::string_view addr, Duration rtt);

  /// Member states to persist (Suspect saved as Alive), us excluded.
  std::vector<MemberUpdate> snapshot() const;
  /// Feeds persisted states back at start (fast rejoin): applied like gossip,
  /// emitting MemberUp for active ones. Entries of another cluster or member id,
  /// or about us, are skipped. Errors: not_active.
  Result<void> apply_snapshot(Instant now, std::span<const MemberUpdate> members, Effects& out);

  /// Every member we know, Down ones included until remove_down_after.
  std::span<const Member> members() const { return members_; }
  const Member* find(std::string_view addr) const;
  /// Active members as broadcast candidates (addr, ring), in members() order:
  /// the input of BroadcastPlanner (dissemination.hpp).
  std::vector<Peer> active_peers() const;
  std::size_t num_active() const { return active_count_; }
  /// Active members plus us: the n that scales the config.
  std::size_t cluster_size() const { return active_count_ + 1; }
  const Identity& identity() const { return self_; }
  std::uint64_t incarnation() const { return incarnation_; }
  const Config& config() const { return config_; }
  /// Replaces tuning (e.g. after a reload); asserts config.validate().
  void set_config(Config config);
  bool has_left() const { return left_; }
  bool is_defunct() const { return defunct_; }
  const Counters& counters() const { return counters_; }
  /// Updates still waiting for piggy-back transmissions.
  std::size_t pending_updates() const { return pending_.size(); }

 private:
  struct Pending {
    MemberUpdate update;
    std::uint32_t remaining;
    std::uint64_t seq;
  };
  struct Probe {
    std::optional<Identity> member;
    std::uint32_t number = 0;
    Instant sent_at{};
    bool acked = false;
  };

  Result<void> check_active() const;
  void ensure_timers(Effects& out);
  void handle_packet(Instant now, Packet& p, Effects& out);
  std::optional<std::uint64_t> newer_life_of_ours(const Packet& p) const;
  void handle_probe_tick(Instant now, Effects& out);
  void handle_indirect_probe(const Identity& probed, Effects& out);
  void handle_ack(Instant now, const Identity& target, std::uint32_t number, bool direct);
  void handle_declared_down(Instant now, Effects& out);
  void apply_update(Instant now, const MemberUpdate& u, Effects& out);
  void apply_self_update(Instant now, const MemberUpdate& u, Effects& out);
  void insert_member(Instant now, const MemberUpdate& u, Effects& out);
  void replace_identity(Instant now, Member& m, const MemberUpdate& u, Effects& out);
  void set_state(Instant now, Member& m, MemberState state, std::uint64_t incarnation,
                 Effects& out);
  void remove_member(std::size_t index);
  void queue_suspect_probe(const std::string& addr);
  void enqueue(const MemberUpdate& u, Effects& out);
  void enqueue_self(Effects& out);
  void send(const std::string& to, const std::optional<Identity>& dst, MessageKind kind,
            std::uint32_t probe_number, const Identity* other, Effects& out,
            std::vector<MemberUpdate>* feed = nullptr);
  void send_feed(const Identity& to, const AddrDigest& known, Effects& out);
  void gossip_to(std::size_t count, Effects& out);
  std::vector<const Member*> choose_members(std::size_t k, bool want_active,
                                            const Identity* exclude);
  Member* find_mut(std::string_view addr);
  void notify(Notification n, Effects& out) { out.emplace_back(Notify{std::move(n)}); }
  void arm(Duration after, Timer t, Effects& out) {
    out.emplace_back(ArmTimer{after, std::move(t)});
  }

  Identity self_;
  std::uint64_t incarnation_ = 0;
  Config config_;
  Prng prng_;
  std::vector<Member> members_;
  std::unordered_map<std::string, std::size_t> index_;  // addr -> members_ slot; lookups only
  std::size_t active_count_ = 0;
  std::vector<Pending> pending_;
  std::uint64_t pending_seq_ = 0;
  std::uint64_t token_ = 1;
  bool timers_started_ = false;
  bool gossip_armed_ = false;  // PeriodicGossip runs only while updates are pending
  bool left_ = false;
  bool defunct_ = false;
  Probe probe_;
  std::uint32_t probe_counter_ = 0;
  Counters counters_;
  std::vector<std::string> probe_order_;
  std::vector<std::string> suspects_to_probe_;  // probed out of turn, oldest first
  bool probe_out_of_turn_ = false;              // current probe came from suspects_to_probe_
  std::size_t probe_index_ = 0;
};

}  // namespace patina::swim
