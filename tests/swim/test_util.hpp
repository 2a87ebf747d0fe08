// tests/swim/test_util.hpp — identities, configs and effect filters for swim tests.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "swim/membership.hpp"

namespace patina::swim::test {

inline Identity make_identity(std::uint32_t n, std::uint64_t ts = 1000, std::uint16_t cluster = 0,
                              std::optional<std::uint16_t> member_id = std::nullopt) {
  Identity id;
  for (std::size_t i = 0; i < id.id.size(); ++i)
    id.id[i] = static_cast<std::uint8_t>((n * 31u + i * 7u) & 0xFF);
  id.id[0] = static_cast<std::uint8_t>(n & 0xFF);
  id.id[1] = static_cast<std::uint8_t>((n >> 8) & 0xFF);
  id.addr = "10.0." + std::to_string(n / 250) + "." + std::to_string(n % 250 + 1) + ":4001";
  id.ts = ts;
  id.cluster_id = cluster;
  id.member_id = member_id;
  return id;
}

/// Short, fixed periods so tests need few timer firings.
inline Config fast_config() {
  using namespace std::chrono_literals;
  Config c;
  c.probe_period = 1s;
  c.probe_rtt = 300ms;
  c.num_indirect_probes = 3;
  c.suspect_to_down_base = 5s;
  c.remove_down_after = 600s;
  c.periodic_gossip = {200ms, 3};
  c.periodic_announce = {10s, 2};
  c.periodic_announce_to_down = {5s, 2};
  return c;
}

template <class T>
std::vector<T> effects_of(const Effects& fx) {
  std::vector<T> out;
  for (const auto& e : fx)
    if (const T* t = std::get_if<T>(&e)) out.push_back(*t);
  return out;
}

template <class N>
std::vector<N> notifications_of(const Effects& fx) {
  std::vector<N> out;
  for (const auto& e : fx)
    if (const Notify* n = std::get_if<Notify>(&e))
      if (const N* t = std::get_if<N>(&n->what)) out.push_back(*t);
  return out;
}

template <class T>
std::vector<T> timers_of(const Effects& fx) {
  std::vector<T> out;
  for (const auto& e : fx)
    if (const ArmTimer* a = std::get_if<ArmTimer>(&e))
      if (const T* t = std::get_if<T>(&a->timer)) out.push_back(*t);
  return out;
}

}  // namespace patina::swim::test
