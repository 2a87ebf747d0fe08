// patina-sim: runs the deterministic cluster simulator (tests/sim) over a
// range of seeds, for long runs beyond the fixed CTest list.
//
//   patina-sim --seeds 1..1000 [--nodes 5] [--faults all|none|loss,dup,...]
//              [--safety-ms 30000] [--liveness-ms 120000] [--broadcast tree|gossip|spec|all]
//              [--in-memory] [--forward-own] [--keep-files] [--check-determinism]
//              [--stop-on-failure] [--quiet]
//
// --forward-own behaves as the agent does today (forwards its own changes
// when they bounce back; see NodeConfig::drop_own_changesets).
//
// Each seed prints one line; a failing seed prints why and the exact command
// that replays it. Exit status 1 if any seed failed.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <fmt/format.h>

#include "tests/sim/sim_world.hpp"

using namespace patina::sim;

namespace {

int usage() {
  std::fprintf(stderr,
               "usage: patina-sim --seeds A..B [--nodes N] [--faults all|none|loss,dup,reorder,partition,crash,drift]\n"
               "                  [--safety-ms MS] [--liveness-ms MS] [--broadcast tree|gossip|spec|all] [--in-memory]\n"
               "                  [--forward-own] [--keep-files] [--check-determinism] [--stop-on-failure] [--quiet]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  SimOptions base;
  std::uint64_t first = 1, last = 1;
  bool determinism = false, stop = false, quiet = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(usage());
      }
      return argv[++i];
    };
    if (a == "--seeds") {
      auto r = parse_seed_range(value());
      if (!r) return usage();
      first = r->first;
      last = r->second;
    } else if (a == "--nodes") {
      base.nodes = std::strtoull(value().c_str(), nullptr, 10);
      if (base.nodes < 1 || base.nodes > 4096) return usage();
    } else if (a == "--faults") {
      auto f = Faults::parse(value());
      if (!f) return usage();
      base.faults = *f;
    } else if (a == "--safety-ms") {
      base.safety = std::chrono::milliseconds(std::strtoull(value().c_str(), nullptr, 10));
    } else if (a == "--liveness-ms") {
      base.liveness_max = std::chrono::milliseconds(std::strtoull(value().c_str(), nullptr, 10));
    } else if (a == "--broadcast") {
      const auto v = value();
      auto m = parse_broadcast_mode(v);
      if (!m) return usage();
      base.broadcast = *m;
    } else if (a == "--in-memory") {
      base.in_memory = true;
    } else if (a == "--forward-own") {
      base.drop_own_changesets = false;
    } else if (a == "--keep-files") {
      base.keep_files = true;
    } else if (a == "--check-determinism") {
      determinism = true;
    } else if (a == "--stop-on-failure") {
      stop = true;
    } else if (a == "--quiet") {
      quiet = true;
    } else {
      return usage();
    }
  }
  if (base.in_memory && base.faults.crash) {
    std::fprintf(stderr, "--in-memory cannot restart crashed nodes: drop 'crash' from --faults\n");
    return 2;
  }
  std::uint64_t failed = 0, ran = 0;
  for (std::uint64_t seed = first;; ++seed) {
    SimOptions o = base;
    o.seed = seed;
    RunResult r;
    {
      SimWorld w(o);
      r = w.run();
    }
    ++ran;
    if (r.ok && determinism) {
      SimWorld again(o);
      const RunResult r2 = again.run();
      if (r2.trace_hash != r.trace_hash) {
        r.ok = false;
        r.failure = fmt::format("seed {}: not deterministic: trace hash {:016x} then {:016x}\n  replay: {} --check-determinism",
                                seed, r.trace_hash, r2.trace_hash, o.replay_command());
      }
    }
    if (!r.ok) {
      ++failed;
      std::printf("FAIL %s\n", r.failure.c_str());
    } else if (!quiet) {
      std::printf("ok   seed %llu  writes=%zu applied=%zu crashes=%zu partitions=%zu converged=%lldms events=%llu "
                  "hash=%016llx  [%s]\n",
                  static_cast<unsigned long long>(seed), r.writes_acked, r.versions_applied, r.crashes,
                  r.partitions, static_cast<long long>(r.converged_after.count() / 1'000'000),
                  static_cast<unsigned long long>(r.events), static_cast<unsigned long long>(r.trace_hash),
                  r.fault_mix.c_str());
    }
    std::fflush(stdout);
    if ((!r.ok && stop) || seed == last) break;
  }
  std::printf("%llu seeds, %llu failed\n", static_cast<unsigned long long>(ran),
              static_cast<unsigned long long>(failed));
  return failed == 0 ? 0 : 1;
}
