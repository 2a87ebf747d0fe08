#pragma once
// tests/sim/sim_world.hpp — the deterministic cluster simulation (STYLE §2.9).
//
// SimWorld owns the virtual clock, the event heap keyed (time, seq), the root
// Prng, the SimNetwork, the SimNodes and the Checkers. run() plays two
// phases, as TigerBeetle's VOPR:
//   safety   — client writes (random inserts, updates, deletes, multi-statement
//              and chunked transactions on a small key space, so nodes write
//              the same rows concurrently) while the seed's fault mix plays:
//              loss, duplication, reordering, partitions (one node isolated,
//              a clean split, an asymmetric cut), crashes and restarts, clock
//              drift. Invariants are checked after every event.
//   liveness — writes stop, the network heals (no partition, loss,
//              duplication or reordering), crashed nodes restart; the cluster
//              must converge (Checkers::pending) within liveness_max, then
//              pass Checkers::final_checks.
// Every event is folded into a trace hash: a seed run twice must give the
// same hash (the determinism self-check). A failure names the seed and the
// command that replays it.
//
// The fault mix ("swarm testing"): each enabled fault class gets an intensity
// drawn from the seed, so different seeds stress different combinations.

#include <cstdint>
#include <memory>
#include <optional>
#include <queue>
#include <string>
#include <vector>

#include "tests/sim/checkers.hpp"
#include "tests/sim/sim_network.hpp"
#include "tests/sim/sim_node.hpp"

namespace patina::sim {

struct Faults {
  bool loss = false;
  bool dup = false;
  bool reorder = false;
  bool partition = false;
  bool crash = false;
  bool drift = false;

  static Faults all() { return Faults{true, true, true, true, true, true}; }
  /// "all", "none", or a comma list of loss,dup,reorder,partition,crash,drift.
  static std::optional<Faults> parse(std::string_view spec);
  std::string to_string() const;
};

struct SimOptions {
  std::uint64_t seed = 1;
  std::size_t nodes = 5;
  Faults faults = Faults::all();
  Duration safety = 30s;
  Duration liveness_max = 120s;
  Duration write_interval_max = 400ms;  ///< client writes every 0..max
  std::size_t keys = 12;                ///< small key space: conflicting writes
  BroadcastMode broadcast = BroadcastMode::tree;
  bool in_memory = false;
  std::string tmp_dir;  ///< empty: $TMPDIR or /tmp
  bool keep_files = false;
  std::uint64_t events_max = 50'000'000;
  /// false: behave as the agent does today and forward our own changes when
  /// they come back (NodeConfig::drop_own_changesets).
  bool drop_own_changesets = true;

  /// The command line that replays this run.
  std::string replay_command() const;
};

struct RunResult {
  bool ok = false;
  std::string failure;  ///< first violation, with the replay command
  std::uint64_t trace_hash = 0;
  std::uint64_t events = 0;
  std::size_t writes_acked = 0;
  std::size_t versions_applied = 0;
  std::size_t crashes = 0;
  std::size_t partitions = 0;
  Duration converged_after{};  ///< liveness phase length
  std::string fault_mix;       ///< the intensities this seed drew
};

class SimWorld {
 public:
  explicit SimWorld(SimOptions options);
  ~SimWorld();
  SimWorld(const SimWorld&) = delete;
  SimWorld& operator=(const SimWorld&) = delete;

  /// Safety phase, then liveness phase, then the final checks.
  RunResult run();

  // Building blocks (the benchmark drives these itself).
  void start_all();
  /// Every live node learns every other's identity as if from a persisted
  /// member list (for large clusters).
  void preload_members();
  /// Runs events up to |deadline| or the first failure; false on failure.
  bool run_until(Instant deadline);
  Instant now() const { return now_; }
  SimNode& node(std::size_t i) { return *nodes_[i]; }
  std::size_t size() const { return nodes_.size(); }
  SimNetwork& network() { return network_; }
  NodeConfig& node_config() { return node_config_; }
  Checkers& checkers() { return checkers_; }
  const std::string& failure() const { return failure_; }
  std::uint64_t trace_hash() const { return hash_.h; }
  /// A client write on node |i| now; returns the acked version, if any.
  std::optional<std::int64_t> write(std::uint32_t i, const std::vector<std::string>& statements);
  /// Hook: called for every version newly applied (node, actor, version).
  std::function<void(std::uint32_t, const crdt::SiteId&, std::int64_t)> on_applied;

  static const char* schema_sql();

 private:
  enum class WorldKind : std::uint8_t { write, fault, heal, restart, probe };
  struct WorldEvent {
    WorldKind kind;
    std::uint32_t arg = 0;
  };
  struct Event {
    Instant at;
    std::uint64_t seq;
    std::uint32_t node;    // kWorld for world events
    std::uint64_t epoch;   // kAnyEpoch for messages
    std::variant<NodeEvent, WorldEvent> what;
  };
  struct Later {
    bool operator()(const Event& a, const Event& b) const { return a.at != b.at ? a.at > b.at : a.seq > b.seq; }
  };
  static constexpr std::uint32_t kWorld = UINT32_MAX;
  static constexpr std::uint64_t kAnyEpoch = UINT64_MAX;

  void push_world(Duration after, WorldEvent ev);
  void dispatch_outbox(std::uint32_t from);
  void on_world(const WorldEvent& ev);
  void random_write();
  std::vector<std::string> random_transaction();
  void random_fault();
  void restart(std::uint32_t i);
  void set_failure(std::string why);

  SimOptions o_;
  Prng prng_;         // root: seeds everything, then drives client and faults
  Prng client_prng_;  // workload
  Prng fault_prng_;   // fault schedule
  std::string dir_;
  AddrBook book_;
  NodeConfig node_config_;
  SimNetwork network_;
  LinkModel faulty_model_;
  std::vector<std::unique_ptr<SimNode>> nodes_;
  Checkers checkers_;
  std::priority_queue<Event, std::vector<Event>, Later> events_;
  std::uint64_t seq_ = 0;
  std::uint64_t events_processed_ = 0;
  Instant now_{};
  TraceHash hash_;
  Outbox outbox_;
  std::string failure_;
  bool safety_ = true;
  std::vector<AckedWrite> acked_;
  std::size_t crashes_ = 0;
  std::size_t partitions_ = 0;
  std::uint64_t write_counter_ = 0;
  std::uint32_t fault_interval_ms_ = 0;
  std::uint32_t crash_per_cent_ = 0;
};

/// Parses "A..B" or "A" into [A, B].
std::optional<std::pair<std::uint64_t, std::uint64_t>> parse_seed_range(std::string_view s);

}  // namespace patina::sim
