#pragma once
// Which member to sync with this round (SPEC.md §5.7 "peer choice"), as a
// pure function. Corrosion samples 2d members at random and ranks them by
// (versions we miss of that member's own actor, desc; last sync time, asc;
// RTT ring, asc). We rank the same way but sync with the best one only: our
// sync request carries our whole state and the server answers with all we
// lack, so asking d peers at once would fetch the same versions d times.
// The random sample keeps every member in play over the rounds.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "swim/prng.hpp"

namespace patina::io {

struct SyncCandidate {
  std::string addr;
  std::int64_t missing = 0;  // versions of its own actor we lack (gaps + partials)
  std::chrono::steady_clock::time_point last_sync{};  // epoch: never
  std::optional<std::uint8_t> ring;                    // nullopt: RTT unknown (ranks last)
};

// The chosen member's address, or nullopt when there are no candidates.
std::optional<std::string> choose_sync_peer(std::vector<SyncCandidate> candidates, swim::Prng& prng);

}  // namespace patina::io
