#include "io/sync_peers.hpp"

#include <algorithm>
#include <tuple>

namespace patina::io {

std::optional<std::string> choose_sync_peer(std::vector<SyncCandidate> candidates, swim::Prng& prng) {
  if (candidates.empty()) return std::nullopt;
  // d = clamp(n / 100, 3, 10); sample 2d without replacement.
  const std::size_t d = std::clamp<std::size_t>(candidates.size() / 100, 3, 10);
  const std::size_t sample = std::min(candidates.size(), 2 * d);
  for (std::size_t i = 0; i < sample; ++i) {
    std::size_t j = i + static_cast<std::size_t>(prng.below(candidates.size() - i));
    std::swap(candidates[i], candidates[j]);
  }
  auto rank = [](const SyncCandidate& c) {
    return std::make_tuple(-c.missing, c.last_sync, c.ring.value_or(255));
  };
  auto best = std::min_element(candidates.begin(), candidates.begin() + static_cast<std::ptrdiff_t>(sample),
                               [&](const SyncCandidate& a, const SyncCandidate& b) { return rank(a) < rank(b); });
  return best->addr;
}

}  // namespace patina::io
