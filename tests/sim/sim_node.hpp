#pragma once
// tests/sim/sim_node.hpp — one simulated Patina node.
//
// Composes what the agent composes (tools/agent.cpp, tools/crdt_store.cpp),
// minus threads and sockets:
//   * swim::Membership, fed datagrams and timers on the node's drifting clock;
//   * the CRDT store: CrrTables + Bookkeeper + SchemaManager over a real
//     SQLite file (or an in-memory database for the large benchmarks);
//   * broadcast: a local commit's changesets go out as io/wire ChangesetFrames;
//     a frame received by broadcast is queued for apply after a seen-set
//     check, and re-sent ("forwarded") once, when its apply brought a version
//     chunk this node lacked (the agent's rule). Who gets a frame and how
//     far it travels: BroadcastMode below (default: as io/broadcaster.cpp);
//   * the apply pipeline: queued changesets merged in batches by
//     crdt::ChangeApplier, one batch per apply tick;
//   * anti-entropy: every sync_min..sync_max (doubling while rounds bring
//     nothing, ±30% jitter) a SyncRequestFrame to a random active member,
//     which answers with a SyncResponseFrame from serve_versions/serve_partial.
//
// Crash drops everything in memory and closes the database handle without
// leave() or a last snapshot; restart reopens the same file, reloads the
// persisted bookkeeping and the last persisted member list, and comes back
// with a newer SWIM identity. Only the file and the member list persisted
// at the last persist tick survive (the "disk").

#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "crdt/apply.hpp"
#include "crdt/bookkeeping.hpp"
#include "crdt/crr_tables.hpp"
#include "crdt/digest.hpp"
#include "crdt/sync_needs.hpp"
#include "swim/dissemination.hpp"
#include "swim/membership.hpp"
#include "tests/sim/sim_types.hpp"

struct sqlite3;

namespace patina::sim {

/// Who gets a changeset frame:
///  tree  — the agent's default (io/broadcaster.cpp, swim/broadcast_tree.hpp):
///          a local commit goes to one member per ring group with that
///          group's range; a receiver whose apply found it new forwards it to
///          the groups of its range;
///  gossip — the agent's gossip method: a local commit goes to ring 0 at once,
///          then max_transmissions rounds of k random members; the frame
///          carries a hop count (log2 n, 2..8; 0 when ring 0 is everyone) and
///          a forward is one round of k members with hops − 1, none at 0;
///  spec  — SPEC §5.3 as written: forwards get max_transmissions rounds too,
///          no hop count;
///  all   — every active member but the sender (the agent before the planner).
enum class BroadcastMode { tree, gossip, spec, all };
const char* to_string(BroadcastMode m);
std::optional<BroadcastMode> parse_broadcast_mode(std::string_view s);

struct NodeConfig {
  swim::Config swim;
  std::uint16_t cluster_id = 0;
  BroadcastMode broadcast = BroadcastMode::tree;
  /// Pins the planner's rounds (else swim config's max_transmissions(n)).
  std::optional<std::uint32_t> broadcast_rounds;
  /// Rounds of a forward in gossip mode.
  std::uint32_t forward_rounds = 2;  // as io/broadcaster.cpp rebroadcast()
  /// Caps the planner's fan-out per round (BroadcastPlanner fanout_max).
  std::optional<std::size_t> broadcast_fanout_max;
  Duration apply_delay = 10ms;  ///< apply_queue_timeout
  std::size_t apply_batch_max = 400;
  Duration sync_min = 1s;
  Duration sync_max = 8s;
  Duration sync_timeout = 10s;
  std::size_t sync_budget_bytes = 32 * 1024;
  Duration persist_every = 5s;
  Duration announce_every = 5s;
  std::size_t seen_capacity = 4096;
  bool in_memory = false;
  bool sync_enabled = true;
  /// SPEC §5.6 step 1: drop changesets of our own actor at receipt. The agent
  /// (tools/agent.cpp apply_frame + CrdtStore::unknown) does not: its own
  /// changes bouncing back look novel (the Bookkeeper does not track our own
  /// actor) and are forwarded again, once per bounce after the seen-set
  /// forgets them or after a restart. Off reproduces that (seed 56).
  bool drop_own_changesets = true;
  std::vector<std::uint32_t> bootstrap;  ///< node indexes to announce to
  std::string schema_sql;
};

/// addr <-> node index.
struct AddrBook {
  std::vector<std::string> addr;
  std::unordered_map<std::string, std::uint32_t> index;  // lookups only
  std::optional<std::uint32_t> find(const std::string& a) const {
    auto it = index.find(a);
    if (it == index.end()) return std::nullopt;
    return it->second;
  }
};

struct NodeStats {
  std::uint64_t bytes_sent[channel_count] = {};
  std::uint64_t messages_sent[channel_count] = {};
  std::uint64_t frames_forwarded = 0;
  std::uint64_t hops_exhausted = 0;  ///< novel frames not forwarded: hops spent
  std::uint64_t duplicates_dropped = 0;
  std::uint64_t apply_batches = 0;
  std::uint64_t syncs_started = 0;
  std::uint64_t syncs_timed_out = 0;
  std::uint64_t swim_errors = 0;
  std::uint64_t restarts = 0;
};

class SimNode {
 public:
  SimNode(std::uint32_t index, const NodeConfig& config, const AddrBook& book, SimClock clock,
          std::uint64_t seed, std::string db_path);
  ~SimNode();
  SimNode(const SimNode&) = delete;
  SimNode& operator=(const SimNode&) = delete;

  /// Opens (or reopens) the database and joins. Errors go to out.errors.
  void start(Instant now, Outbox& out);
  /// Unclean stop: no leave, no last snapshot, open handle closed.
  void crash();
  bool up() const { return live_ != nullptr; }
  /// Bumped by crash(): events of an older life are ignored.
  std::uint64_t epoch() const { return epoch_; }

  void handle(Instant now, NodeEvent& ev, Outbox& out);
  /// Feeds |members| to SWIM as a persisted member list (fast start of big
  /// clusters: no announce rounds needed).
  void preload_members(Instant now, const std::vector<swim::MemberUpdate>& members, Outbox& out);

  struct WriteResult {
    std::optional<std::int64_t> version;    ///< nullopt: the write changed nothing
    std::vector<crdt::Changeset> changesets;  ///< as committed (before any supersession)
    std::string error;                      ///< a statement SQLite refused: rolled back
  };
  /// A client transaction through the writer: |statements| in one
  /// transaction, then the broadcast of its version.
  WriteResult client_write(Instant now, const std::vector<std::string>& statements, Outbox& out);

  // Inspection, only while up().
  swim::Membership& membership() { return *live_->m; }
  const swim::Membership& membership() const { return *live_->m; }
  crdt::CrrTables& tables() { return *live_->tables; }
  crdt::Bookkeeper& books() { return *live_->books; }
  sqlite3* db() const { return live_->db; }
  std::size_t apply_queue_depth() const { return live_->apply_queue.size(); }
  std::size_t broadcast_pending() const { return live_->batches.size(); }
  crdt::SyncState sync_state() const;

  std::uint32_t index() const { return index_; }
  const std::string& addr() const { return book_.addr[index_]; }
  const crdt::SiteId& site_id() const { return site_id_; }
  const SimClock& clock() const { return clock_; }
  const NodeStats& stats() const { return stats_; }

 private:
  struct Item {
    crdt::Incoming incoming;
    bool broadcast = false;
    std::uint32_t from = 0;
    Bytes frame;  // broadcast only: forwarded verbatim if novel
  };
  struct Batch {
    Bytes frame;
    swim::BroadcastBatch state;
    std::uint32_t max_rounds = UINT32_MAX;
  };
  struct Live {
    sqlite3* db = nullptr;
    std::unique_ptr<crdt::CrrTables> tables;
    std::optional<crdt::Bookkeeper> books;
    std::optional<swim::Membership> m;
    swim::SeenSet<std::string> seen;
    std::deque<Item> apply_queue;
    bool apply_armed = false;
    std::map<std::uint64_t, Batch> batches;
    std::uint64_t next_batch = 1;
    std::uint64_t sync_inflight = 0;  // tag of the round in flight, 0 if none
    std::uint64_t next_sync_tag = 1;
    Duration sync_wait{};
    explicit Live(std::size_t seen_capacity) : seen(seen_capacity) {}
  };

  Instant local(Instant now) const { return clock_.monotonic(now); }
  void route_swim(swim::Effects& fx, Outbox& out);
  void send(std::uint32_t to, Channel ch, std::uint64_t tag, Bytes bytes, Outbox& out);
  void on_message(Instant now, Message& msg, Outbox& out);
  void on_tick(Instant now, const NodeTick& t, Outbox& out);
  void on_changeset_frame(Message& msg, Outbox& out);
  void on_sync_request(const Message& msg, Outbox& out);
  void on_sync_response(Message& msg, Outbox& out);
  void start_sync(Outbox& out);
  void schedule_sync(Outbox& out);
  void push_item(Item item, Outbox& out);
  void run_apply_batch(Outbox& out);
  std::vector<bool> unknown(const std::vector<crdt::Incoming>& batch) const;
  void broadcast(Bytes frame, bool local, std::optional<std::uint32_t> exclude, Outbox& out);
  /// Forwards a novel broadcast frame; false when its hop count is spent.
  bool forward(Bytes frame, std::uint32_t from, Outbox& out);
  void broadcast_round(std::uint64_t id, Outbox& out);
  swim::BroadcastPlanner planner() const;
  void fail(Outbox& out, const std::string& what);

  std::uint32_t index_;
  const NodeConfig& config_;
  const AddrBook& book_;
  SimClock clock_;
  Prng prng_;
  std::string db_path_;
  crdt::SiteId site_id_{};
  std::uint64_t epoch_ = 0;
  std::uint64_t last_identity_ts_ = 0;
  std::vector<swim::MemberUpdate> disk_members_;  // persisted member list
  std::unique_ptr<Live> live_;
  NodeStats stats_;
};

}  // namespace patina::sim
