#include "swim/digest.hpp"

#include <algorithm>

namespace patina::swim {
namespace {

std::uint64_t fnv1a(std::string_view s, std::uint64_t seed) {
  std::uint64_t h = 0xCBF29CE484222325ULL ^ seed;
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001B3ULL;
  }
  return h;
}

// Kirsch–Mitzenmacher: bit i = h1 + i·h2 (mod m); h2 odd so it never sticks.
template <class F>
void for_each_bit(std::string_view addr, std::size_t m, F&& f) {
  const std::uint64_t h1 = fnv1a(addr, 0);
  const std::uint64_t h2 = fnv1a(addr, 0x9E3779B97F4A7C15ULL) | 1;
  for (int i = 0; i < AddrDigest::hashes; ++i)
    f(static_cast<std::size_t>((h1 + static_cast<std::uint64_t>(i) * h2) % m));
}

}  // namespace

AddrDigest AddrDigest::from_bytes(std::span<const std::byte> bytes) {
  AddrDigest d;
  d.bits_.assign(bytes.begin(), bytes.end());
  return d;
}

std::size_t AddrDigest::size_for(std::size_t entries, std::size_t cap) {
  const std::size_t want = (entries * bits_per_entry + 7) / 8;
  return std::min(std::max<std::size_t>(want, 8), cap);
}

void AddrDigest::add(std::string_view addr) {
  if (bits_.empty()) return;
  for_each_bit(addr, bits_.size() * 8, [&](std::size_t bit) {
    bits_[bit / 8] |= static_cast<std::byte>(1u << (bit % 8));
  });
}

bool AddrDigest::maybe_contains(std::string_view addr) const {
  if (bits_.empty()) return false;
  bool all = true;
  for_each_bit(addr, bits_.size() * 8, [&](std::size_t bit) {
    all = all && (bits_[bit / 8] & static_cast<std::byte>(1u << (bit % 8))) != std::byte{0};
  });
  return all;
}

}  // namespace patina::swim
