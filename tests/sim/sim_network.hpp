#pragma once
// tests/sim/sim_network.hpp — the simulated network between nodes.
//
// Decides, for each message, whether and when it arrives: plan() returns
// the delivery delays (none: lost; two: duplicated). Per link:
//   delay  = base(from, to) + uniform jitter, where base places every node at
//            a point of a unit square and grows with the distance between
//            the two points (the "per-link delay distribution": a wide-area
//            topology with near and far peers);
//   reorder: with reorder_per_mille a message takes an extra spike of up to
//            reorder_spike, overtaken by later ones;
//   loss, duplication: per mille, per message;
//   partitions: a blocked matrix (one-way entries make asymmetric
//            partitions); isolate(), split() and heal() fill it.
// Messages of every channel go through the same rules: a QUIC stream that
// cannot get through (loss, partition) counts as a failed send, which the
// protocol must survive (sync repairs what broadcast lost).
//
// Invariants: the outcome depends only on the Prng and the calls made; a
// blocked link never delivers.

#include <cstdint>
#include <string>
#include <vector>

#include "tests/sim/sim_types.hpp"

namespace patina::sim {

struct LinkModel {
  Duration base_min = 1ms;      ///< one-way delay between co-located nodes
  Duration base_max = 10ms;     ///< one-way delay across the whole square
  Duration jitter = 5ms;        ///< uniform extra delay per message
  std::uint32_t loss_per_mille = 0;
  std::uint32_t dup_per_mille = 0;
  std::uint32_t reorder_per_mille = 0;
  Duration reorder_spike = 200ms;
};

class SimNetwork {
 public:
  SimNetwork(std::size_t nodes, LinkModel model, std::uint64_t seed);

  const LinkModel& model() const { return model_; }
  void set_model(const LinkModel& m) { model_ = m; }

  /// Delivery delays for one message from |from| to |to| (empty: dropped).
  /// A |reliable| message (a QUIC stream: broadcasts, syncs) is not dropped
  /// by loss but arrives one retransmission later per loss (3 x the one-way
  /// delay: the sender's probe timeout); partitions still drop it.
  std::vector<Duration> plan(std::uint32_t from, std::uint32_t to, bool reliable = false);

  bool blocked(std::uint32_t from, std::uint32_t to) const { return blocked_[from * n_ + to] != 0; }
  /// Cuts |i| off from everyone, both ways.
  void isolate(std::uint32_t i);
  /// Nodes of different groups cannot talk (a clean split).
  void split(const std::vector<int>& group);
  /// |from| can no longer reach |to|, but |to| still reaches |from|.
  void block_one_way(std::uint32_t from, std::uint32_t to);
  void heal();
  bool partitioned() const { return blocked_count_ > 0; }

  /// Base one-way delay of a link (no jitter).
  Duration base_delay(std::uint32_t from, std::uint32_t to) const;

 private:
  std::size_t n_;
  LinkModel model_;
  Prng prng_;
  std::vector<std::pair<std::uint32_t, std::uint32_t>> position_;  // per node, in 1/65536 units
  std::vector<std::uint8_t> blocked_;                               // n × n
  std::size_t blocked_count_ = 0;
};

}  // namespace patina::sim
