// swim/prng.hpp — the injected, deterministic random source of the SWIM core.
//
// xoshiro256** seeded through splitmix64, with our own range reduction, so a
// seed yields the same choices on every standard library and compiler (the
// reason FoundationDB carries its own generator). The standard header of
// engines and distributions is banned in swim/ (tests/swim/tidy_test.cpp).
//
// Invariants:
//  (1) The sequence depends only on the seed and the calls made.
//  (2) below(n) is unbiased (rejection sampling) and needs n > 0.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "swim/assert.hpp"

namespace patina::swim {

/// splitmix64 step: also handy to derive per-node seeds from a root seed.
constexpr std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

class Prng {
 public:
  explicit Prng(std::uint64_t seed) {
    std::uint64_t sm = seed;
    for (auto& word : s_) word = splitmix64(sm);
  }

  /// Next 64 random bits (xoshiro256**).
  std::uint64_t next_u64() {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

  /// Uniform integer in [0, |n|). Rejection keeps it unbiased.
  std::uint64_t below(std::uint64_t n) {
    SWIM_ASSERT(n > 0);
    // Values >= limit would over-represent the low residues.
    const std::uint64_t limit = UINT64_MAX - (UINT64_MAX % n);
    for (int attempt = 0; attempt < 64; ++attempt) {
      const std::uint64_t x = next_u64();
      if (x < limit) return x % n;
    }
    // 64 rejections in a row has probability < 2^-64; fall back to modulo.
    return next_u64() % n;
  }

  /// Uniform integer in [|lo|, |hi|], needs lo <= hi.
  std::uint64_t between(std::uint64_t lo, std::uint64_t hi) {
    SWIM_ASSERT(lo <= hi);
    if (hi - lo == UINT64_MAX) return next_u64();
    return lo + below(hi - lo + 1);
  }

  /// True with probability |num|/|den|.
  bool chance(std::uint64_t num, std::uint64_t den) { return below(den) < num; }

  /// Fisher–Yates shuffle.
  template <class T>
  void shuffle(std::vector<T>& v) {
    for (std::size_t i = v.size(); i > 1; --i) {
      const std::size_t j = static_cast<std::size_t>(below(i));
      std::swap(v[i - 1], v[j]);
    }
  }

 private:
  static constexpr std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::uint64_t s_[4]{};
};

}  // namespace patina::swim
