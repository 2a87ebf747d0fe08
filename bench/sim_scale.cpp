// sim_scale: the cluster simulator (tests/sim) at scale — issue 8 point 3.
//
// 1,000 simulated nodes on a wide-area network (one-way delays 20–150 ms by
// distance on a unit square, plus jitter; 1% loss on every message), SWIM as
// Config::new_wan(n), the planner broadcast (SPEC §5.3) and anti-entropy sync.
// After a warm-up (SWIM settles and measures RTTs), a client writes one row on
// a random node every --interval-ms; the program prints, per write, the time
// until the version was applied on every other node (write-to-visible-
// everywhere) as p50/p90/p99/max, and the changeset bytes sent per change per
// node (broadcast and sync separately), plus SWIM traffic per node per second.
//
// By default each node has an in-memory SQLite database (":memory:"): the
// CRDT code path is the same and durability is not what this measures.
// --files gives every node a real file in WAL mode under $TMPDIR (1,000 nodes
// need about 3,000 file descriptors).
//
//   sim_scale [--nodes 1000] [--writes 100] [--interval-ms 50] [--seed 1]
//             [--loss-permille 10] [--rounds R] [--fanout K (cap)] [--broadcast tree|gossip|spec|all]
//             [--forward-rounds F (gossip mode; io/broadcaster.cpp uses 2)]
//             [--no-sync] [--files] [--warmup-s 10]
//
// Figures (seed 1, 1,000 nodes, 100 writes, 1% loss, wire v2, 20 ms round
// step; `sim_scale --nodes 1000 --writes 100 --broadcast gossip [options]`),
// 2026-11-24 (before the tree method; see the README for tree figures):
//   options                    p50    p90     p99     max   bytes/change/node
//   (forwards 1 round,          372   4133    7701  13156    527  (8.1 frames)
//    hop-counted)
//   --forward-rounds 2          293    308     319    329   1049 (16.1 frames)
//   --forward-rounds 3          289    306     315    326   1570 (24.1 frames)
//   --broadcast spec            288    303     314    321   6263 (96 frames)
//   --broadcast spec --rounds 2 --fanout 8
//                               298    316     325    330   1044 (16 frames)
// One-round forwards leave about one node in a thousand unreached per change
// (infect-and-die with k = 8: e^-8 per node, plus loss), which then waits for
// sync (1-15 s backoff): p99 is set by sync. Two forward rounds reach
// everyone by broadcast at twice the bytes, a sixth of SPEC §5.3's.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "tests/sim/sim_world.hpp"

using namespace patina::sim;
using patina::crdt::SiteId;

namespace {

struct Args {
  std::size_t nodes = 1000;
  std::size_t writes = 100;
  std::uint64_t interval_ms = 50;
  std::uint64_t seed = 1;
  std::uint32_t loss = 10;
  std::optional<std::uint32_t> rounds;
  std::optional<std::size_t> fanout;
  std::uint32_t forward_rounds = 2;
  BroadcastMode mode = BroadcastMode::tree;
  bool sync = true;
  bool files = false;
  std::uint64_t warmup_s = 10;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto v = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", k.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    auto num = [&] { return std::strtoull(v().c_str(), nullptr, 10); };
    if (k == "--nodes") a.nodes = num();
    else if (k == "--writes") a.writes = num();
    else if (k == "--interval-ms") a.interval_ms = num();
    else if (k == "--seed") a.seed = num();
    else if (k == "--loss-permille") a.loss = static_cast<std::uint32_t>(num());
    else if (k == "--rounds") a.rounds = static_cast<std::uint32_t>(num());
    else if (k == "--fanout") a.fanout = num();
    else if (k == "--forward-rounds") a.forward_rounds = static_cast<std::uint32_t>(num());
    else if (k == "--broadcast") a.mode = parse_broadcast_mode(v()).value_or(BroadcastMode::tree);
    else if (k == "--no-sync") a.sync = false;
    else if (k == "--files") a.files = true;
    else if (k == "--warmup-s") a.warmup_s = num();
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      std::exit(2);
    }
  }
  return a;
}

double ms(Duration d) { return static_cast<double>(d.count()) / 1e6; }

Duration percentile(std::vector<Duration> v, double p) {
  if (v.empty()) return {};
  std::sort(v.begin(), v.end());
  const auto idx = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(idx, v.size() - 1)];
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  const auto wall_start = std::chrono::steady_clock::now();
  SimOptions o;
  o.seed = a.seed;
  o.nodes = a.nodes;
  o.faults = Faults{};
  o.in_memory = !a.files;
  o.broadcast = a.mode;
  o.events_max = 2'000'000'000;
  SimWorld w(o);
  NodeConfig& nc = w.node_config();
  nc.swim = patina::swim::Config::new_wan(a.nodes);
  nc.swim.remove_down_after = std::chrono::hours(48);
  nc.broadcast_rounds = a.rounds;
  nc.broadcast_fanout_max = a.fanout;
  nc.forward_rounds = a.forward_rounds;
  nc.sync_enabled = a.sync;
  nc.sync_min = 1s;
  nc.sync_max = 15s;
  nc.seen_capacity = 20000;
  LinkModel m;
  m.base_min = 20ms;
  m.base_max = 140ms;
  m.jitter = 10ms;
  m.loss_per_mille = a.loss;
  w.network().set_model(m);
  // The per-event member walk is O(n): sample it (every other invariant
  // is still checked after every event).
  w.checkers().set_member_check_period(a.nodes);

  // Per version: commit time, how many nodes applied it, when the last did.
  struct Track {
    Instant at{};
    std::size_t seen = 0;
    Instant last{};
  };
  std::map<std::pair<SiteId, std::int64_t>, Track> track;
  w.on_applied = [&](std::uint32_t, const SiteId& actor, std::int64_t v) {
    auto it = track.find({actor, v});
    if (it == track.end()) return;
    ++it->second.seen;
    it->second.last = w.now();
  };

  w.start_all();
  w.preload_members();
  if (!w.run_until(w.now() + std::chrono::seconds(a.warmup_s))) {
    std::fprintf(stderr, "failed in warm-up: %s\n", w.failure().c_str());
    return 1;
  }
  // Traffic counters from here on.
  std::vector<NodeStats> before;
  for (std::size_t i = 0; i < w.size(); ++i) before.push_back(w.node(i).stats());
  const Instant t0 = w.now();
  Prng pick(a.seed * 7919 + 1);
  for (std::size_t i = 0; i < a.writes; ++i) {
    const auto node = static_cast<std::uint32_t>(pick.below(w.size()));
    auto v = w.write(node, {fmt::format("INSERT INTO kv (k, v, n) VALUES ({}, 'value {}', {}) ON CONFLICT (k) DO "
                                        "UPDATE SET v = excluded.v, n = excluded.n",
                                        i, i, i)});
    if (v) track[{w.node(node).site_id(), *v}] = Track{w.now(), 0, {}};
    if (!w.run_until(w.now() + std::chrono::milliseconds(a.interval_ms))) break;
  }
  // Until every write is everywhere, or 60 s after the last one.
  const Instant deadline = w.now() + 60s;
  auto all_seen = [&] {
    for (const auto& [k, t] : track)
      if (t.seen < w.size() - 1) return false;
    return true;
  };
  while (w.failure().empty() && w.now() < deadline && !all_seen()) w.run_until(w.now() + 100ms);
  const Duration visible_span = w.now() - t0;
  // Traffic per change includes every broadcast round: run until the
  // batches of the last writes are done (rounds last 100 ms × round each).
  auto drained = [&] {
    for (std::size_t i = 0; i < w.size(); ++i)
      if (w.node(i).broadcast_pending() > 0 || w.node(i).apply_queue_depth() > 0) return false;
    return true;
  };
  const Instant drain_deadline = w.now() + 60s;
  while (w.failure().empty() && w.now() < drain_deadline && !drained()) w.run_until(w.now() + 100ms);
  const Duration span = w.now() - t0;
  if (!w.failure().empty()) {
    std::fprintf(stderr, "failed: %s\n", w.failure().c_str());
    return 1;
  }

  std::vector<Duration> lat;
  std::size_t incomplete = 0;
  for (const auto& [k, t] : track) {
    if (t.seen < w.size() - 1) {
      ++incomplete;
      continue;
    }
    lat.push_back(t.last - t.at);
  }
  std::uint64_t bytes[channel_count] = {}, msgs[channel_count] = {}, forwarded = 0, dups = 0;
  for (std::size_t i = 0; i < w.size(); ++i) {
    const auto& s = w.node(i).stats();
    for (std::size_t c = 0; c < channel_count; ++c) {
      bytes[c] += s.bytes_sent[c] - before[i].bytes_sent[c];
      msgs[c] += s.messages_sent[c] - before[i].messages_sent[c];
    }
    forwarded += s.frames_forwarded - before[i].frames_forwarded;
    dups += s.duplicates_dropped - before[i].duplicates_dropped;
  }
  const double n = static_cast<double>(w.size());
  const double changes = static_cast<double>(track.size());
  const double secs = ms(span) / 1000.0;
  const auto wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  const auto& probe = w.node(0).membership();
  std::printf("sim_scale: %zu nodes (%s), %zu writes every %llu ms, one-way 20-150 ms, loss %u/1000, seed %llu\n",
              w.size(), a.files ? "SQLite file each" : "in-memory SQLite each", track.size(),
              static_cast<unsigned long long>(a.interval_ms), a.loss, static_cast<unsigned long long>(a.seed));
  const std::uint32_t rounds = a.rounds.value_or(nc.swim.max_transmissions(w.size()));
  const std::size_t k = patina::swim::BroadcastPlanner(rounds, nc.swim.num_indirect_probes, a.fanout)
                            .fanout(w.size() - 1, 0);
  std::printf("broadcast: %s, %u rounds%s x k=%zu%s, forwards: %s, sync %s\n", to_string(a.mode), rounds,
              a.rounds ? "" : " (max_transmissions(n))", k, a.fanout ? " (capped)" : " (SPEC formula)",
              a.mode == BroadcastMode::gossip ? fmt::format("{} round(s), hop-counted", a.forward_rounds).c_str()
                                             : "as the origin's",
              a.sync ? "on (1-15 s backoff)" : "off");
  std::printf("node 0 sees %zu active members\n", probe.num_active());
  std::printf("write-to-visible-everywhere: p50 %.0f ms  p90 %.0f ms  p99 %.0f ms  max %.0f ms  (%zu of %zu complete, %zu incomplete)\n",
              ms(percentile(lat, 0.5)), ms(percentile(lat, 0.9)), ms(percentile(lat, 0.99)),
              ms(percentile(lat, 1.0)), lat.size(), track.size(), incomplete);
  const auto per = [&](Channel c) { return static_cast<double>(bytes[static_cast<std::size_t>(c)]) / changes / n; };
  std::printf("bytes per change per node: broadcast %.0f (%.1f frames), sync %.0f (requests %.0f)\n",
              per(Channel::changeset), static_cast<double>(msgs[1]) / changes / n, per(Channel::sync_response),
              per(Channel::sync_request));
  std::printf("forwards per change %.0f, duplicate frames dropped per change per node %.1f\n",
              static_cast<double>(forwarded) / changes, static_cast<double>(dups) / changes / n);
  std::printf("swim: %.0f bytes/s and %.1f datagrams/s per node\n", static_cast<double>(bytes[0]) / secs / n,
              static_cast<double>(msgs[0]) / secs / n);
  std::printf("simulated %.1f s after warm-up (all visible after %.1f s) in %.1f s wall\n", secs,
              ms(visible_span) / 1000.0, wall);
  return incomplete == 0 ? 0 : 1;
}
