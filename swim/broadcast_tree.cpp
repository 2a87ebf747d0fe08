#include "swim/broadcast_tree.hpp"

#include <algorithm>
#include <cmath>
#include <tuple>

#include "swim/assert.hpp"

namespace patina::swim {
namespace {

struct Candidate {
  std::uint16_t pos;
  const Peer* peer;
};

bool excluded(const std::string& addr, std::span<const std::string> exclude) {
  return std::find(exclude.begin(), exclude.end(), addr) != exclude.end();
}

// Ring order; the address breaks ties so every node sorts alike.
std::vector<Candidate> candidates(std::span<const Peer> peers, TreeRange range,
                                  std::span<const std::string> exclude) {
  std::vector<Candidate> out;
  for (const auto& p : peers) {
    const auto pos = BroadcastTree::position(p.addr);
    if (range.contains(pos) && !excluded(p.addr, exclude)) out.push_back(Candidate{pos, &p});
  }
  std::sort(out.begin(), out.end(), [](const Candidate& a, const Candidate& b) {
    return std::tie(a.pos, a.peer->addr) < std::tie(b.pos, b.peer->addr);
  });
  return out;
}

// Nearest (lowest RTT ring; unknown RTT last), then ring order.
const Peer* nearest(std::span<const Candidate> group) {
  const Peer* best = nullptr;
  int best_ring = 0;
  for (const auto& c : group) {
    const int ring = c.peer->ring ? static_cast<int>(*c.peer->ring) : 1 << 10;
    if (best == nullptr || ring < best_ring) {
      best = c.peer;
      best_ring = ring;
    }
  }
  return best;
}

}  // namespace

std::uint16_t BroadcastTree::position(std::string_view addr) {
  std::uint32_t h = 2166136261u;
  for (char c : addr) {
    h ^= static_cast<std::uint8_t>(c);
    h *= 16777619u;
  }
  return static_cast<std::uint16_t>((h >> 16) ^ (h & 0xffff));
}

std::size_t BroadcastTree::fanout(std::size_t members) {
  const auto root = static_cast<std::size_t>(std::ceil(std::sqrt(static_cast<double>(members + 1))));
  return std::max<std::size_t>(6, root);
}

std::vector<TreeSend> BroadcastTree::plan(std::span<const Peer> peers, TreeRange range,
                                          std::span<const std::string> exclude) {
  std::vector<TreeSend> out;
  if (range.empty()) return out;
  const auto c = candidates(peers, range, exclude);
  if (c.empty()) return out;
  const std::size_t k = fanout(peers.size());
  if (c.size() <= k) {
    for (const auto& m : c) out.push_back(TreeSend{m.peer->addr, TreeRange{}});
    return out;
  }
  // Group starts at even index steps, moved forward past members sharing
  // the previous member's position (invariant (1): a position is never split).
  std::vector<std::size_t> starts;
  for (std::size_t g = 0; g < k; ++g) {
    std::size_t at = g * c.size() / k;
    if (!starts.empty() && at <= starts.back()) at = starts.back() + 1;
    while (at < c.size() && at > 0 && c[at].pos == c[at - 1].pos) ++at;
    if (at >= c.size()) break;
    starts.push_back(at);
  }
  for (std::size_t g = 0; g < starts.size(); ++g) {
    const std::size_t begin = starts[g];
    const std::size_t end = g + 1 < starts.size() ? starts[g + 1] : c.size();
    TreeRange r;
    r.first = g == 0 ? range.first : c[begin].pos;
    r.last = end < c.size() ? static_cast<std::uint16_t>(c[end].pos - 1) : range.last;
    std::span<const Candidate> group(c.data() + begin, end - begin);
    const Peer* head = nearest(group);
    SWIM_ASSERT(head != nullptr && r.contains(position(head->addr)));
    out.push_back(TreeSend{head->addr, end - begin > 1 ? r : TreeRange{}});
  }
  return out;
}

std::optional<std::string> BroadcastTree::next_head(std::span<const Peer> peers, TreeRange range,
                                                    std::span<const std::string> failed) {
  const auto c = candidates(peers, range, failed);
  const Peer* head = nearest(c);
  if (head == nullptr) return std::nullopt;
  return head->addr;
}

}  // namespace patina::swim
