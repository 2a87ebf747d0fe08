#include "tests/sim/sim_network.hpp"

#include <algorithm>

namespace patina::sim {

const char* to_string(Channel c) {
  switch (c) {
    case Channel::swim: return "swim";
    case Channel::changeset: return "changeset";
    case Channel::sync_request: return "sync_request";
    case Channel::sync_response: return "sync_response";
  }
  return "?";
}

SimNetwork::SimNetwork(std::size_t nodes, LinkModel model, std::uint64_t seed)
    : n_(nodes), model_(model), prng_(seed), blocked_(nodes * nodes, 0) {
  position_.reserve(nodes);
  for (std::size_t i = 0; i < nodes; ++i) {
    const auto x = static_cast<std::uint32_t>(prng_.below(65536));
    const auto y = static_cast<std::uint32_t>(prng_.below(65536));
    position_.emplace_back(x, y);
  }
}

Duration SimNetwork::base_delay(std::uint32_t from, std::uint32_t to) const {
  // Distance in the unit square, scaled so the diagonal maps to base_max.
  // Integer math (digit-by-digit square root) keeps it identical everywhere.
  const auto dx = static_cast<std::int64_t>(position_[from].first) - position_[to].first;
  const auto dy = static_cast<std::int64_t>(position_[from].second) - position_[to].second;
  const auto d2 = static_cast<std::uint64_t>(dx * dx + dy * dy);
  std::uint64_t x = d2, res = 0;
  for (std::uint64_t bit = 1ULL << 62; bit != 0; bit >>= 2) {
    if (x >= res + bit) {
      x -= res + bit;
      res = (res >> 1) + bit;
    } else {
      res >>= 1;
    }
  }
  constexpr std::uint64_t diagonal = 92682;  // 65536 · √2
  const auto span = static_cast<std::uint64_t>((model_.base_max - model_.base_min).count());
  const auto extra = static_cast<std::uint64_t>(static_cast<u128>(span) * std::min(res, diagonal) /
                                                diagonal);
  return model_.base_min + Duration(static_cast<Duration::rep>(extra));
}

std::vector<Duration> SimNetwork::plan(std::uint32_t from, std::uint32_t to, bool reliable) {
  std::vector<Duration> out;
  if (from == to || blocked(from, to)) return out;
  // Draw every random number whatever the outcome, so that changing one
  // fault probability does not shift the rest of the run's choices.
  const bool lost = prng_.below(1000) < model_.loss_per_mille;
  const bool dup = prng_.below(1000) < model_.dup_per_mille;
  const bool spike = prng_.below(1000) < model_.reorder_per_mille;
  const auto jitter = static_cast<std::uint64_t>(model_.jitter.count());
  const auto spike_max = static_cast<std::uint64_t>(model_.reorder_spike.count());
  const Duration j1(static_cast<Duration::rep>(prng_.between(0, jitter)));
  const Duration j2(static_cast<Duration::rep>(prng_.between(0, jitter)));
  const Duration s(static_cast<Duration::rep>(prng_.between(0, spike_max)));
  const Duration base = base_delay(from, to);
  if (lost && !reliable) return out;
  Duration retransmits{};
  if (lost) {
    retransmits += 3 * base;
    // Lost again, with the same odds (bounded: a stream gives up eventually).
    for (int i = 0; i < 8 && prng_.below(1000) < model_.loss_per_mille; ++i) retransmits += 3 * base;
  }
  out.push_back(base + j1 + (spike ? s : Duration{}) + retransmits);
  if (dup) out.push_back(base + j2 + s);
  return out;
}

void SimNetwork::isolate(std::uint32_t i) {
  for (std::uint32_t j = 0; j < n_; ++j) {
    if (j == i) continue;
    block_one_way(i, j);
    block_one_way(j, i);
  }
}

void SimNetwork::split(const std::vector<int>& group) {
  for (std::uint32_t a = 0; a < n_; ++a)
    for (std::uint32_t b = 0; b < n_; ++b)
      if (group[a] != group[b]) block_one_way(a, b);
}

void SimNetwork::block_one_way(std::uint32_t from, std::uint32_t to) {
  auto& cell = blocked_[from * n_ + to];
  if (cell == 0) ++blocked_count_;
  cell = 1;
}

void SimNetwork::heal() {
  std::fill(blocked_.begin(), blocked_.end(), 0);
  blocked_count_ = 0;
}

}  // namespace patina::sim
