// swim/rtt.hpp — round-trip-time samples per member and the "ring" bucket.
//
// Rings group members by distance (SPEC §5.2): the minimum of the last 20
// samples falls in [0,6) [6,15) [15,50) [50,100) [100,200) [200,∞) ms → ring
// 0..5. A member keeps its ring while its minimum stays within 2 ms of the
// ring's bounds (hysteresis), so a member near a boundary does not flap.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "swim/types.hpp"

namespace patina::swim {

inline constexpr std::uint8_t ring_max = 5;

/// Ring for |min_rtt|, keeping |current| when within the hysteresis margin.
std::uint8_t ring_for(Duration min_rtt, std::optional<std::uint8_t> current);

class RttStats {
 public:
  static constexpr std::size_t samples_max = 20;

  /// Records one sample (negative samples are clamped to 0) and updates ring().
  void add(Duration sample);
  /// Samples, oldest first (at most samples_max).
  std::vector<Duration> samples() const;
  std::size_t size() const { return count_; }
  std::optional<Duration> min() const;
  std::optional<Duration> last() const;
  /// Absent until the first sample.
  std::optional<std::uint8_t> ring() const { return ring_; }

 private:
  std::array<Duration, samples_max> buf_{};
  std::size_t count_ = 0;
  std::size_t next_ = 0;
  std::optional<std::uint8_t> ring_;
};

}  // namespace patina::swim
