// swim/dissemination.hpp — pure logic of the "gossip" broadcast (SPEC §5.3).
//
// The io/ broadcaster owns payloads, streams and rate limits; this file only
// decides *who* gets a batch and *when* the next round runs:
//  - a local payload goes at once to every ring-0 member;
//  - a flushed batch goes, each round, to k random members not yet sent to
//    (excluding ring 0 for local batches, which already have it), with
//    k = max(num_indirect_probes, (members − ring0) / (max_transmissions·10)),
//    at most fanout_max when one is set;
//  - a batch runs at most max_transmissions rounds, 20 ms × round apart
//    (Corrosion: 100 ms; it batches payloads for 500 ms first, we send at
//    once, and the shorter step keeps p99 delivery low on big clusters)
//    (500 ms × round when rate limited);
//  - a receiver re-broadcasts a payload only on first sighting (SeenSet).
//
// Invariants:
//  (1) A batch never goes twice to the same member.
//  (2) SeenSet holds at most capacity() keys; the oldest are forgotten first.
//  (3) Choices depend only on the inputs and the Prng (members are considered
//      in the order given, never in hash order).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <unordered_set>
#include <vector>

#include "swim/assert.hpp"
#include "swim/prng.hpp"
#include "swim/types.hpp"

namespace patina::swim {

/// A broadcast candidate: a same-cluster member other than us.
struct Peer {
  std::string addr;
  std::optional<std::uint8_t> ring;  ///< absent: no RTT known yet (not ring 0)
};

/// One batch being spread over several rounds.
struct BroadcastBatch {
  bool local = false;             ///< originated here (ring 0 already served)
  std::set<std::string> sent_to;  ///< invariant (1)
  std::uint32_t rounds = 0;       ///< rounds already run
};

class BroadcastPlanner {
 public:
  /// |fanout_max| caps k (tuning for large clusters: the formula keeps
  /// rounds·k ≈ members/10 sends per node and per payload, which grows with
  /// the cluster; see bench/sim_scale.cpp). Absent: no cap.
  BroadcastPlanner(std::uint32_t max_transmissions, std::size_t num_indirect_probes,
                   std::optional<std::size_t> fanout_max = std::nullopt);

  /// Members that get a local payload immediately: every ring-0 peer.
  static std::vector<std::string> ring0(std::span<const Peer> peers);

  /// Fan-out per round for |members| peers of which |ring0| are ring 0.
  std::size_t fanout(std::size_t members, std::size_t ring0) const;

  /// Picks this round's targets for |batch| and records them in it. Returns
  /// an empty list once the batch is done() or nobody is left to send to.
  std::vector<std::string> plan_round(std::span<const Peer> peers, BroadcastBatch& batch,
                                      Prng& prng) const;

  bool done(const BroadcastBatch& batch) const { return batch.rounds >= max_transmissions_; }

  /// Delay before round |batch.rounds| + 1.
  static Duration delay_before_next_round(const BroadcastBatch& batch, bool rate_limited);

  /// Which pending batch to drop when the queue exceeds its bound (SPEC §5.3:
  /// the most-transmitted one; the oldest on ties). Empty span → nullopt.
  static std::optional<std::size_t> batch_to_drop(std::span<const BroadcastBatch> pending);

 private:
  std::uint32_t max_transmissions_;
  std::size_t num_indirect_probes_;
  std::optional<std::size_t> fanout_max_;
};

/// Bounded forward-once set: insert() is true only on a key's first sighting
/// (within the last capacity() distinct keys).
template <class Key, class Hash = std::hash<Key>>
class SeenSet {
 public:
  explicit SeenSet(std::size_t capacity) : capacity_(capacity) { SWIM_ASSERT(capacity > 0); }

  bool insert(const Key& key) {
    if (set_.contains(key)) return false;
    if (order_.size() == capacity_) {
      set_.erase(order_.front());
      order_.pop_front();
    }
    set_.insert(key);
    order_.push_back(key);
    SWIM_ASSERT(set_.size() == order_.size());
    return true;
  }
  bool contains(const Key& key) const { return set_.contains(key); }
  std::size_t size() const { return order_.size(); }
  std::size_t capacity() const { return capacity_; }

 private:
  std::size_t capacity_;
  std::unordered_set<Key, Hash> set_;
  std::deque<Key> order_;
};

}  // namespace patina::swim
