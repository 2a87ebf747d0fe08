#include "swim/rtt.hpp"

#include <algorithm>

#include "swim/assert.hpp"

namespace patina::swim {
namespace {
using std::chrono::milliseconds;
// Upper bound (exclusive) of rings 0..4; ring 5 is unbounded.
constexpr std::array<milliseconds, ring_max> ring_upper{
    milliseconds(6), milliseconds(15), milliseconds(50), milliseconds(100), milliseconds(200)};
constexpr milliseconds hysteresis(2);

std::uint8_t plain_ring(Duration d) {
  for (std::uint8_t r = 0; r < ring_max; ++r)
    if (d < ring_upper[r]) return r;
  return ring_max;
}
}  // namespace

std::uint8_t ring_for(Duration min_rtt, std::optional<std::uint8_t> current) {
  const std::uint8_t fresh = plain_ring(min_rtt);
  if (!current || *current == fresh) return fresh;
  SWIM_ASSERT(*current <= ring_max);
  const Duration lower =
      *current == 0 ? Duration::min() : Duration(ring_upper[*current - 1]) - hysteresis;
  const Duration upper =
      *current == ring_max ? Duration::max() : Duration(ring_upper[*current]) + hysteresis;
  if (min_rtt >= lower && min_rtt < upper) return *current;
  return fresh;
}

void RttStats::add(Duration sample) {
  buf_[next_] = std::max(sample, Duration::zero());
  next_ = (next_ + 1) % samples_max;
  count_ = std::min(count_ + 1, samples_max);
  ring_ = ring_for(*min(), ring_);
}

std::vector<Duration> RttStats::samples() const {
  std::vector<Duration> out;
  out.reserve(count_);
  const std::size_t start = count_ < samples_max ? 0 : next_;
  for (std::size_t i = 0; i < count_; ++i) out.push_back(buf_[(start + i) % samples_max]);
  return out;
}

std::optional<Duration> RttStats::min() const {
  if (count_ == 0) return std::nullopt;
  return *std::min_element(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(count_));
}

std::optional<Duration> RttStats::last() const {
  if (count_ == 0) return std::nullopt;
  return buf_[(next_ + samples_max - 1) % samples_max];
}

}  // namespace patina::swim
