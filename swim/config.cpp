#include "swim/config.hpp"

#include <algorithm>
#include <cmath>

namespace patina::swim {

Config Config::new_wan(std::size_t cluster_size) {
  (void)cluster_size;  // size-dependent knobs are derived on use, see header
  return Config{};
}

std::uint32_t Config::max_transmissions(std::size_t cluster_size) const {
  if (max_transmissions_fixed) return *max_transmissions_fixed;
  // floor(4·log10(n+1)) == floor(log10((n+1)^4)) == digits((n+1)^4) - 1,
  // computed in integers so every platform agrees. Clamp n so x^4 fits u64.
  std::uint64_t x = std::min<std::uint64_t>(cluster_size, 60000) + 1;
  std::uint64_t p = x * x * x * x;
  std::uint32_t digits = 0;
  for (; p > 0 && digits < 32; p /= 10) ++digits;
  const std::uint32_t m = digits == 0 ? 0 : digits - 1;
  return std::max<std::uint32_t>(m, 1);
}

Duration Config::suspect_to_down_after(std::size_t cluster_size) const {
  if (suspect_to_down_fixed) return *suspect_to_down_fixed;
  const double n = static_cast<double>(std::max<std::size_t>(cluster_size, 1));
  const double factor = std::max(1.0, std::log10(n));
  return std::chrono::duration_cast<Duration>(std::chrono::duration<double, Duration::period>(
      static_cast<double>(suspect_to_down_base.count()) * factor));
}

Result<void> Config::validate() const {
  if (probe_period <= Duration::zero()) return fail(Errc::invalid_argument, "probe_period <= 0");
  if (probe_rtt <= Duration::zero()) return fail(Errc::invalid_argument, "probe_rtt <= 0");
  if (probe_rtt >= probe_period)
    return fail(Errc::invalid_argument, "probe_rtt must be shorter than probe_period");
  if (suspect_to_down_base <= Duration::zero() ||
      (suspect_to_down_fixed && *suspect_to_down_fixed <= Duration::zero()))
    return fail(Errc::invalid_argument, "suspect_to_down <= 0");
  if (max_transmissions_fixed && *max_transmissions_fixed == 0)
    return fail(Errc::invalid_argument, "max_transmissions_fixed == 0");
  if (remove_down_after <= Duration::zero())
    return fail(Errc::invalid_argument, "remove_down_after <= 0");
  // Room for a header with two long identities plus at least one update.
  if (max_packet_size < 512 || max_packet_size > 65507)
    return fail(Errc::invalid_argument, "max_packet_size out of [512, 65507]");
  if (feed_packets_max == 0) return fail(Errc::invalid_argument, "feed_packets_max == 0");
  if (num_indirect_probes > 64) return fail(Errc::invalid_argument, "num_indirect_probes > 64");
  if (periodic_announce.frequency < Duration::zero() ||
      periodic_announce_to_down.frequency < Duration::zero() ||
      periodic_gossip.frequency < Duration::zero())
    return fail(Errc::invalid_argument, "negative periodic frequency");
  return {};
}

}  // namespace patina::swim
