#pragma once
// The versioned binary codec for changesets between peers (broadcast
// frames). Wire bytes are Patina's own (SPEC.md §11.4: no Corrosion
// interop). Little-endian; every length is checked against the input, so a
// truncated or hostile frame is an Error, never an over-read.
//
//   u8  wire_version (1)     u8 kind (1 = changeset)     u16 cluster_id
//   actor[16] i64 version i64 seq_start i64 seq_end i64 last_seq u64 ts
//   u32 n, then n changes:
//     u16+bytes table, u32+bytes pk, u16+bytes cid, u8 type + value,
//     i64 col_version, i64 db_version, site[16], i64 cl, i64 seq, u64 ts

#include <cstdint>
#include <span>
#include <vector>

#include "core/result.hpp"
#include "crdt/changeset.hpp"
#include "crdt/sync_needs.hpp"

namespace patina::io::wire {

inline constexpr std::uint8_t version = 1;
inline constexpr std::uint32_t changes_max = 1'000'000;

struct ChangesetFrame {
  std::uint16_t cluster_id = 0;
  crdt::Changeset changeset;
};

std::vector<std::byte> encode(const ChangesetFrame& frame);
// Errc::protocol for truncated, oversized or unknown input. Accepts plain
// and compressed frames alike.
Result<ChangesetFrame> decode(std::span<const std::byte> bytes);

// gossip.compression: an encoded frame wrapped as kind 4
//   u8 version, u8 kind (4), u16 cluster_id, u32 raw length, zstd(frame)
// or an empty vector when compression would not make it smaller (then the
// plain frame goes out). Every node decodes both, whatever its own setting.
inline constexpr std::uint8_t compressed_kind = 4;
inline constexpr std::size_t compressed_header = 8;
inline constexpr std::uint32_t inflated_max = 64 * 1024 * 1024;
std::vector<std::byte> compress(std::span<const std::byte> frame, int level);

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
