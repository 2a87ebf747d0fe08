// swim/config.hpp — SWIM tuning, foca's `Config::new_wan` scaled by cluster size.
//
// Two knobs depend on the cluster size n (current active members + us, min 1)
// and are recomputed on every use, so the config never has to be rebuilt when
// membership changes (SPEC §5.2 rebuilds foca's config for the same effect):
//   max_transmissions      = floor(4·log10(n+1)), at least 1
//   suspect_to_down_after  = suspect_to_down_base · max(1, log10 n)
// Each can be pinned with its *_fixed override (tests use short, fixed values).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "swim/error.hpp"
#include "swim/types.hpp"

namespace patina::swim {

/// A periodic task: every |frequency|, to |num_members| random members.
struct PeriodicParams {
  Duration frequency{};
  std::size_t num_members = 0;
};

struct Config {
  /// Time between two probes of (different) members. Must exceed probe_rtt.
  Duration probe_period = std::chrono::seconds(5);
  /// Wait for a direct ack before asking |num_indirect_probes| members to probe.
  Duration probe_rtt = std::chrono::seconds(3);
  /// k of SWIM's ping-req.
  std::size_t num_indirect_probes = 3;
  /// Suspicion timeout for a cluster of <= 10 members; grows with log10(n).
  Duration suspect_to_down_base = std::chrono::seconds(30);
  std::optional<Duration> suspect_to_down_fixed;
  /// Pins max_transmissions instead of deriving it from the cluster size.
  std::optional<std::uint32_t> max_transmissions_fixed;
  /// How long a Down member is remembered (blocks resurrection by stale gossip).
  Duration remove_down_after = std::chrono::hours(48);
  /// Largest datagram we emit or accept (QUIC DATAGRAM payload, SPEC §5.1).
  std::size_t max_packet_size = 1178;
  /// Emit MemberDown notifications (SPEC: notify down members).
  bool notify_down_members = true;
  /// When we learn that we were declared Down, come back with a renewed
  /// identity (ts + 1) instead of going Defunct.
  bool auto_rejoin = true;
  /// Re-announce to alive members (heals split views). frequency 0 = off.
  PeriodicParams periodic_announce{std::chrono::seconds(60), 2};
  /// Announce to members we hold Down: this is how partitions heal, because
  /// Down is final for an identity and the other side must rejoin.
  PeriodicParams periodic_announce_to_down{std::chrono::seconds(45), 2};
  /// Push pending updates without waiting for probes. frequency 0 = off.
  PeriodicParams periodic_gossip{std::chrono::milliseconds(500), 4};
  /// Members put in a feed (the answer to announce), a random sample, spread
  /// over at most feed_packets_max datagrams of max_packet_size.
  std::size_t feed_members_max = 128;
  std::size_t feed_packets_max = 4;
  /// Members an announcer's digest says it already knows, fed anyway: a
  /// random few per answer cover Bloom false positives and stale states over
  /// successive announces. Feeding all of them made periodic announces the
  /// largest part of an idle member's traffic (a ~1 KB feed twice a minute
  /// at N = 32, for nothing new).
  std::size_t feed_known_sample = 4;

  /// foca `Config::new_wan(cluster_size)` with Corrosion's overrides.
  static Config new_wan(std::size_t cluster_size);

  /// floor(4·log10(n+1)), min 1, or max_transmissions_fixed.
  std::uint32_t max_transmissions(std::size_t cluster_size) const;
  /// suspect_to_down_base · max(1, log10 n), or suspect_to_down_fixed.
  Duration suspect_to_down_after(std::size_t cluster_size) const;

  /// Checks the relations the state machine relies on. Pure.
  Result<void> validate() const;
};

}  // namespace patina::swim
