// swim/codec.hpp — the versioned, bounds-checked binary format of SWIM packets.
//
// Layout, version 2 (fixed-width integers little-endian; "var" is an
// unsigned LEB128 varint in its shortest form):
//
//   u8  version (= protocol_version)     u16 cluster_id
//   u8  kind | 0x80 when a dst follows
//   Identity src                          var src_incarnation
//   [Identity dst]
//   kind-specific body:
//     ping, ack, indirect_*, forwarded_ack, ping_req:  var probe_number (u32)
//     ping_req, indirect_ping, indirect_ack, forwarded_ack: Identity other
//     feed:   u16 n, n × MemberUpdate
//     announce: u16 len, len bytes of AddrDigest (members the sender knows)
//   u16 n, n × MemberUpdate               (piggy-backed updates, every kind)
//
//   Identity     = 16 B id, u8 flags, addr, u64 ts,
//                  [u16 cluster_id when flags & 0x08],
//                  [u16 member_id when flags & 0x04]
//     flags & 0x03 is the address form: 1 = "a.b.c.d:port" as 4 B address
//     + u16 port, 2 = "[v6]:port" as 16 B address + u16 port, 0 = any other
//     text as u8 len (1..255) + bytes. The binary forms are used exactly when
//     the text is what inet_ntop prints, so decoding gives back the same
//     string. cluster_id is written only when it differs from the packet's
//     (members of one cluster share it). Other flag bits are invalid.
//   MemberUpdate = Identity, var incarnation, u8 state (0 alive, 1 suspect, 2 down)
//
// Version 1 spelled every Identity out (text address, cluster_id, a member_id
// byte) and used fixed-width integers: a ping was 105 bytes, now about 70,
// which is most of an idle member's traffic (a ping and an ack per probe).
//
// Snapshots (persisted, local) keep the version-1 Identity and MemberUpdate.
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

inline constexpr std::uint8_t protocol_version = 2;
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
  std::optional<Identity> dst;        ///< absent for announce (we only know an address) and ack
  std::uint32_t probe_number = 0;     ///< when has_probe_number(kind)
  Identity other;                     ///< when has_other(kind)
  std::vector<MemberUpdate> feed;     ///< kind == feed only
  Bytes digest;                       ///< kind == announce only: AddrDigest bytes
  std::vector<MemberUpdate> updates;  ///< piggy-backed, any kind

  bool operator==(const Packet&) const = default;
};

/// Exact encoded sizes in a packet of cluster |packet_cluster_id|, used to
/// trim updates to the packet budget.
std::size_t encoded_size(const Identity& id, std::uint16_t packet_cluster_id);
std::size_t encoded_size(const MemberUpdate& u, std::uint16_t packet_cluster_id);
/// Size of |p| encoded without its feed and updates (their u16 counts included).
std::size_t encoded_size_without_lists(const Packet& p);

/// Appends |p| to |out|. Asserts text addr lengths fit (1..255) and list counts fit u16.
void encode(const Packet& p, Bytes& out);
Bytes encode(const Packet& p);

/// Parses one datagram. Never over-reads; see invariants (1) and (2).
Result<Packet> decode(std::span<const std::byte> bytes);

/// Snapshot of member states for persistence (fast rejoin after restart):
///   u8 snapshot_version, u32 n, n × (Identity, u64 incarnation, u8 state),
///   Identity = 16 B id, u8 addr_len, addr, u64 ts, u16 cluster_id,
///              u8 has_member_id [u16 member_id]   (the version-1 wire form).
Bytes encode_snapshot(std::span<const MemberUpdate> members);
Result<std::vector<MemberUpdate>> decode_snapshot(std::span<const std::byte> bytes);

}  // namespace patina::swim
