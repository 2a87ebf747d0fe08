#include "swim/dissemination.hpp"

#include <algorithm>

namespace patina::swim {

BroadcastPlanner::BroadcastPlanner(std::uint32_t max_transmissions, std::size_t num_indirect_probes,
                                   std::optional<std::size_t> fanout_max)
    : max_transmissions_(std::max<std::uint32_t>(max_transmissions, 1)),
      num_indirect_probes_(num_indirect_probes),
      fanout_max_(fanout_max) {}

std::vector<std::string> BroadcastPlanner::ring0(std::span<const Peer> peers) {
  std::vector<std::string> out;
  for (const auto& p : peers)
    if (p.ring && *p.ring == 0) out.push_back(p.addr);
  return out;
}

std::size_t BroadcastPlanner::fanout(std::size_t members, std::size_t ring0_count) const {
  const std::size_t others = members > ring0_count ? members - ring0_count : 0;
  const std::size_t k = std::max(num_indirect_probes_,
                                 others / (static_cast<std::size_t>(max_transmissions_) * 10));
  return fanout_max_ ? std::min(k, *fanout_max_) : k;
}

std::vector<std::string> BroadcastPlanner::plan_round(std::span<const Peer> peers,
                                                      BroadcastBatch& batch, Prng& prng) const {
  std::vector<std::string> out;
  if (done(batch)) return out;
  std::size_t ring0_count = 0;
  std::vector<const Peer*> candidates;
  for (const auto& p : peers) {
    const bool is_ring0 = p.ring && *p.ring == 0;
    ring0_count += is_ring0 ? 1 : 0;
    if (batch.local && is_ring0) continue;
    if (batch.sent_to.contains(p.addr)) continue;
    candidates.push_back(&p);
  }
  const std::size_t k = std::min(fanout(peers.size(), ring0_count), candidates.size());
  // Partial Fisher–Yates: the first k slots end up a uniform sample.
  for (std::size_t i = 0; i < k; ++i) {
    const std::size_t j = i + static_cast<std::size_t>(prng.below(candidates.size() - i));
    std::swap(candidates[i], candidates[j]);
    out.push_back(candidates[i]->addr);
    batch.sent_to.insert(candidates[i]->addr);
  }
  ++batch.rounds;
  return out;
}

std::optional<std::size_t> BroadcastPlanner::batch_to_drop(
    std::span<const BroadcastBatch> pending) {
  std::optional<std::size_t> worst;
  for (std::size_t i = 0; i < pending.size(); ++i)
    if (!worst || pending[i].rounds > pending[*worst].rounds) worst = i;
  return worst;
}

Duration BroadcastPlanner::delay_before_next_round(const BroadcastBatch& batch, bool rate_limited) {
  const auto unit = rate_limited ? std::chrono::milliseconds(500) : std::chrono::milliseconds(20);
  return unit * static_cast<std::int64_t>(std::max<std::uint32_t>(batch.rounds, 1));
}

}  // namespace patina::swim
