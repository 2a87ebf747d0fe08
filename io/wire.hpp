#pragma once
// The versioned binary codec for changesets between peers (broadcast
// frames). Wire bytes are Patina's own (SPEC.md §11.4: no Corrosion
// interop). Little-endian; every length is checked against the input, so a
// truncated or hostile frame is an Error, never an over-read.
//
//   u8 wire_version (3)  u8 kind (1 = changeset)  u16 cluster_id  u8 hops
//   u16 tree_first u16 tree_last  actor[16] sv version sv seq_start sv seq_end sv last_seq u64 ts
//   v n, then n changes:
//     u8 flags; [v+bytes table] [v+bytes pk] v+bytes cid, u8 type + value,
//     sv col_version [sv db_version] [site[16]] sv cl sv seq [u64 ts]
// (v = LEB128 varint, sv = zig-zag varint). A change leaves out what it
// shares with the previous change (table, pk) or with its frame (site =
// actor, db_version = version, ts): a row's cells cost little more than
// their values, which matters because broadcast bytes scale with members.
// hops: how many more times receivers may forward the frame (DESIGN.md
// "Replication"); it sits at byte 4 of plain and compressed frames alike,
// so a forwarder decrements it without decoding. tree_first..tree_last: the
// ring range the receiver forwards to in the tree broadcast
// (swim/broadcast_tree.hpp; first > last: nobody), at bytes 5..8 of plain
// and compressed frames alike, rewritten per receiver without decoding.

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "core/result.hpp"
#include "crdt/changeset.hpp"
#include "crdt/sync_needs.hpp"

namespace patina::io {
class ZstdDictionaries;
}

namespace patina::io::wire {

inline constexpr std::uint8_t version = 3;
inline constexpr std::uint32_t changes_max = 1'000'000;

struct ChangesetFrame {
  std::uint16_t cluster_id = 0;
  std::uint8_t hops = 0;
  std::uint16_t tree_first = 1;  // empty range: forward to nobody
  std::uint16_t tree_last = 0;
  crdt::Changeset changeset;
};

std::vector<std::byte> encode(const ChangesetFrame& frame);
// Errc::protocol for truncated, oversized or unknown input. Accepts plain
// and compressed frames alike; a frame compressed with a trained dictionary
// needs that dictionary in |dicts| (Errc::not_found names its id otherwise).
Result<ChangesetFrame> decode(std::span<const std::byte> bytes, const ZstdDictionaries* dicts = nullptr);

// gossip.compression: an encoded frame wrapped as kind 4
//   u8 version, u8 kind (4), u16 cluster_id, u8 hops, u16 tree_first,
//   u16 tree_last, u32 raw length, zstd(frame)
// or an empty vector when compression would not make it smaller (then the
// plain frame goes out). Every node decodes both, whatever its own setting.
inline constexpr std::uint8_t compressed_kind = 4;
inline constexpr std::size_t compressed_header = 13;
inline constexpr std::uint32_t inflated_max = 64 * 1024 * 1024;
// With |dicts| holding a dict_file, compressed with that dictionary (zstd
// writes its id into the frame, so receivers pick the same one).
std::vector<std::byte> compress(std::span<const std::byte> frame, int level, const ZstdDictionaries* dicts = nullptr);

// The hop count of an encoded (plain or compressed) changeset frame, and
// its in-place update; nullopt / no-op for anything else.
std::optional<std::uint8_t> hops_of(std::span<const std::byte> frame);
void set_hops(std::vector<std::byte>& frame, std::uint8_t hops);
// Likewise for the tree range (first, last).
std::optional<std::pair<std::uint16_t, std::uint16_t>> tree_range_of(std::span<const std::byte> frame);
void set_tree_range(std::vector<std::byte>& frame, std::uint16_t first, std::uint16_t last);

// Anti-entropy sync over a bidirectional stream: the client sends its
// SyncState (kind 2); the server answers with what the client lacks (kind 3):
// changeset frames (each u32-length-prefixed) and empty version ranges.
struct SyncRequestFrame {
  std::uint16_t cluster_id = 0;
  crdt::SyncState state;
};
struct SyncResponseFrame {
  std::vector<std::vector<std::byte>> changesets;  // encoded ChangesetFrames
  std::vector<std::pair<crdt::SiteId, crdt::Range>> empty;
};
std::vector<std::byte> encode(const SyncRequestFrame& frame);
Result<SyncRequestFrame> decode_sync_request(std::span<const std::byte> bytes);
std::vector<std::byte> encode(const SyncResponseFrame& frame);
Result<SyncResponseFrame> decode_sync_response(std::span<const std::byte> bytes);

}  // namespace patina::io::wire
