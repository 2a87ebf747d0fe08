#pragma once
// tests/sim/sim_types.hpp — vocabulary shared by the cluster simulator's parts.
//
// The simulator runs N Patina nodes (SWIM membership, broadcast, sync, the
// apply pipeline and the CRDT store on a real SQLite database each) in one
// process on one thread, on a virtual clock. Everything a node does is a
// reaction to one event: a message from the network, a fired SWIM timer, or
// one of its own ticks (apply a batch, start a sync round, run a broadcast
// round, persist members, re-announce). A reaction appends to an Outbox,
// which the world turns into network messages and future events.
//
// Randomness: one root Prng (swim/prng.hpp: xoshiro256** with our own range
// reduction, no std distributions) seeds the network, the client and every
// node, in a fixed order, so a seed fixes the whole run.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "crdt/change.hpp"
#include "swim/membership.hpp"
#include "swim/prng.hpp"
#include "swim/types.hpp"

namespace patina::sim {

using swim::Duration;
using swim::Instant;
using swim::Prng;
using Bytes = std::vector<std::byte>;
using namespace std::chrono_literals;
__extension__ typedef __int128 i128;            // GNU: exact products of
__extension__ typedef unsigned __int128 u128;   // 64-bit times

/// Which logical channel a message rides (QUIC datagrams, uni streams, bi streams).
enum class Channel : std::uint8_t { swim = 0, changeset = 1, sync_request = 2, sync_response = 3 };
inline constexpr std::size_t channel_count = 4;
const char* to_string(Channel c);

/// Bytes in flight from |from|; |tag| pairs a sync response with its request.
struct Message {
  std::uint32_t from = 0;
  Channel channel = Channel::swim;
  std::uint64_t tag = 0;
  Bytes bytes;
};

/// A node's own timers (SWIM's come as swim::Timer).
enum class TickKind : std::uint8_t {
  apply = 0,            ///< run one apply batch
  sync = 1,             ///< start a sync round
  sync_timeout = 2,     ///< give up on sync round |arg|
  broadcast_round = 3,  ///< next round of broadcast batch |arg|
  persist = 4,          ///< persist the membership snapshot
  announce = 5,         ///< re-announce while alone
};
struct NodeTick {
  TickKind kind = TickKind::apply;
  std::uint64_t arg = 0;
};

using NodeEvent = std::variant<Message, swim::Timer, NodeTick>;

/// Forward-once key: one changeset chunk of one version.
struct ChunkKey {
  crdt::SiteId actor{};
  std::int64_t version = 0;
  std::int64_t seq_start = 0;
  std::int64_t seq_end = 0;
  auto operator<=>(const ChunkKey&) const = default;
};

/// What one reaction of a node produced.
struct Outbox {
  struct Send {
    std::uint32_t to = 0;
    Channel channel = Channel::swim;
    std::uint64_t tag = 0;
    Bytes bytes;
  };
  struct Later {
    Duration after{};  ///< in global (simulated) time
    std::variant<swim::Timer, NodeTick> what;
  };
  std::vector<Send> sends;
  std::vector<Later> laters;
  // Observations for the checkers.
  std::vector<std::pair<crdt::SiteId, std::int64_t>> applied;  ///< versions newly applied
  std::vector<ChunkKey> forwarded;                             ///< broadcasts re-sent
  std::vector<std::string> errors;                             ///< anything that must fail the run

  void clear() {
    sends.clear();
    laters.clear();
    applied.clear();
    forwarded.clear();
    errors.clear();
  }
};

/// A node's clock (TigerBeetle's TimeSim, linear drift): its monotonic time
/// runs (1 + drift_ppm/1e6) times as fast as the simulation's, and its wall
/// clock is off by offset_ns on top. SWIM reads the monotonic one, the CRDT's
/// timestamps the wall one.
struct SimClock {
  std::int64_t drift_ppm = 0;
  std::int64_t offset_ns = 0;

  Instant monotonic(Instant global) const {
    const auto t = static_cast<i128>(global.time_since_epoch().count());
    return Instant(Duration(static_cast<Duration::rep>(t + t * drift_ppm / 1'000'000)));
  }
  /// A local duration (a timer armed by SWIM) in global time.
  Duration to_global(Duration local) const {
    const auto d = static_cast<i128>(local.count());
    return Duration(static_cast<Duration::rep>(d * 1'000'000 / (1'000'000 + drift_ppm)));
  }
  /// Wall clock as NTP64 (seconds since 1970 << 32 | fraction); the run starts
  /// at 2026-01-01.
  std::uint64_t ntp64(Instant global) const {
    constexpr std::int64_t start_s = 1'767'225'600;
    // Whole nanoseconds since 1970; the offset may be negative at t = 0.
    const std::int64_t ns = start_s * 1'000'000'000 + monotonic(global).time_since_epoch().count() + offset_ns;
    const std::int64_t secs = ns / 1'000'000'000;
    const std::int64_t frac = ns % 1'000'000'000;
    return (static_cast<std::uint64_t>(secs) << 32) |
           static_cast<std::uint64_t>((static_cast<u128>(frac) << 32) / 1'000'000'000u);
  }
};

/// FNV-1a 64 folding of the trace.
struct TraceHash {
  std::uint64_t h = 0xCBF29CE484222325ULL;
  void mix(std::uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      h ^= (v >> (8 * i)) & 0xFF;
      h *= 0x100000001B3ULL;
    }
  }
  void mix(const Bytes& b) {
    for (std::byte x : b) {
      h ^= std::to_integer<std::uint64_t>(x);
      h *= 0x100000001B3ULL;
    }
    mix(b.size());
  }
  void mix(std::string_view s) {
    for (char c : s) {
      h ^= static_cast<unsigned char>(c);
      h *= 0x100000001B3ULL;
    }
    mix(s.size());
  }
};

}  // namespace patina::sim
