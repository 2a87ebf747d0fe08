// swim/digest.hpp — a Bloom filter of member addresses, sent with announce.
//
// An announcer tells the responder, in a few hundred bytes, which members it
// already knows; the feed then leads with the ones it does not. That turns
// periodic announces into a cheap anti-entropy for membership: in a cluster
// of hundreds, members missed by the epidemic gossip are found in one round
// instead of by luck of a random sample.
//
// Invariants:
//  (1) No false negatives: maybe_contains(a) is true for every added a.
//  (2) Hashing is FNV-1a + double hashing, fixed here: every node agrees.
//  (3) An empty digest (no bytes) contains nothing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "swim/types.hpp"

namespace patina::swim {

class AddrDigest {
 public:
  static constexpr int hashes = 4;
  /// Bits per expected entry: ~1% false positives with 4 hashes.
  static constexpr std::size_t bits_per_entry = 10;

  /// An empty digest.
  AddrDigest() = default;
  /// A digest of |bytes_len| bytes (all bits clear).
  explicit AddrDigest(std::size_t bytes_len) : bits_(bytes_len, std::byte{0}) {}
  /// Reads a received digest (any length; an empty one contains nothing).
  static AddrDigest from_bytes(std::span<const std::byte> bytes);

  /// Bytes needed for |entries| at bits_per_entry, clamped to [8, |cap|].
  static std::size_t size_for(std::size_t entries, std::size_t cap);

  void add(std::string_view addr);
  bool maybe_contains(std::string_view addr) const;
  const Bytes& bytes() const { return bits_; }
  bool empty() const { return bits_.empty(); }

 private:
  Bytes bits_;
};

}  // namespace patina::swim
