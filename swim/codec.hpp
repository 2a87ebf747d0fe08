// swim/codec.hpp — the versioned, bounds-checked binary format of SWIM packets.
//
// Layout (little-endian throughout):
//
//   u8  version (= protocol_version)     u16 cluster_id      u8 kind
//   Identity src                          u64 src_incarnation
//   u8  has_dst  [Identity dst]
//   kind-specific body:
//     ping, ack, indirect_*, forwarded_ack, ping_req:  u32 probe_number
//     ping_req, indirect_ping, indirect_ack, forwarded_ack: Identity other
//     feed:   u16 n, n × MemberUpdate
//     announce: u16 len, len bytes of AddrDigest (members the sender knows)
//   u16 n, n × MemberUpdate               (piggy-backed updates, every kind)
//
//   Identity     = 16 B id, u8 addr_len (1..255), addr bytes, u64 ts,
//                  u16 cluster_id, u8 has_member_id [u16 member_id]
//   MemberUpdate = Identity, u64 incarnation, u8 state (0 alive, 1 suspect, 2 down)
//
// Invariants:
//  (1) decode() never reads past the span and never trusts a count for
//      allocation: truncated, trailing or out-of-range bytes → malformed_packet.
//  (2) An unknown leading version byte → unsupported_version, before anything
//      else is read, so future versions can change everything after it.
//  (3) encode(decode(b)) == b for every b that decodes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "swim/error.hpp"
#include "swim/types.hpp"

namespace patina::swim {

inline constexpr std::uint8_t protocol_version = 1;
/// Largest datagram handle_datagram() accepts (the UDP payload limit).
inline constexpr std::size_t packet_size_accept_max = 65507;
inline constexpr std::uint8_t snapshot_version = 1;

enum class MessageKind : std::uint8_t {
  ping = 1,       ///< direct probe; answered by ack
  ack,            ///< answer to ping
  ping_req,       ///< "probe |other| for me" (SWIM indirect probe request)
  indirect_ping,  ///< intermediary → target; |other| = origin
  indirect_ack,   ///< target → intermediary; |other| = origin
  forwarded_ack,  ///< intermediary → origin; |other| = target
  gossip,         ///< only piggy-backed updates
  announce,       ///< join request; answered by feed
  feed,           ///< a sample of our members, for a joiner
  turn_undead,    ///< "you are Down in my view": the receiver should rejoin
};
inline constexpr std::uint8_t message_kind_max =
    static_cast<std::uint8_t>(MessageKind::turn_undead);

const char* to_string(MessageKind k);
bool has_probe_number(MessageKind k);
bool has_other(MessageKind k);

struct Packet {
  std::uint16_t cluster_id = 0;
  MessageKind kind = MessageKind::gossip;
  Identity src;
  std::uint64_t src_incarnation = 0;
  std::optional<Identity> dst;        ///< absent for announce (we only know an address)
  std::uint32_t probe_number = 0;     ///< when has_probe_number(kind)
  Identity other;                     ///< when has_other(kind)
  std::vector<MemberUpdate> feed;     ///< kind == feed only
  Bytes digest;                       ///< kind == announce only: AddrDigest bytes
  std::vector<MemberUpdate> updates;  ///< piggy-backed, any kind

  bool operator==(const Packet&) const = default;
};

/// Exact encoded sizes, used to trim updates to the packet budget.
std::size_t encoded_size(const Identity& id);
std::size_t encoded_size(const MemberUpdate& u);
/// Size of |p| encoded without its feed and updates (their u16 counts included).
std::size_t encoded_size_without_lists(const Packet& p);

/// Appends |p| to |out|. Asserts addr lengths fit (1..255) and list counts fit u16.
void encode(const Packet& p, Bytes& out);
Bytes encode(const Packet& p);

/// Parses one datagram. Never over-reads; see invariants (1) and (2).
Result<Packet> decode(std::span<const std::byte> bytes);

/// Snapshot of member states for persistence (fast rejoin after restart):
///   u8 snapshot_version, u32 n, n × MemberUpdate.
Bytes encode_snapshot(std::span<const MemberUpdate> members);
Result<std::vector<MemberUpdate>> decode_snapshot(std::span<const std::byte> bytes);

}  // namespace patina::swim
