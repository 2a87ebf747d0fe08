#include "tests/sim/sim_node.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <bit>

#include <fmt/format.h>

#include "crdt/changeset.hpp"
#include "crdt/schema.hpp"
#include "io/wire.hpp"
#include "swim/broadcast_tree.hpp"

namespace patina::sim {

namespace {

std::string key_of(const crdt::Changeset& cs) {
  return fmt::format("{}/{}/{}-{}", crdt::to_hex(cs.actor), cs.version, cs.seqs.start, cs.seqs.end);
}

Result<void> exec(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  if (rc == SQLITE_OK) return {};
  std::string msg = err ? err : sqlite3_errstr(rc);
  sqlite3_free(err);
  return make_error(Errc::sql, msg);
}

}  // namespace

SimNode::SimNode(std::uint32_t index, const NodeConfig& config, const AddrBook& book, SimClock clock,
                 std::uint64_t seed, std::string db_path)
    : index_(index), config_(config), book_(book), clock_(clock), prng_(seed), db_path_(std::move(db_path)) {
  for (auto& b : site_id_) b = static_cast<std::uint8_t>(prng_.below(256));
}

SimNode::~SimNode() { crash(); }

const char* to_string(BroadcastMode m) {
  switch (m) {
    case BroadcastMode::tree: return "tree";
    case BroadcastMode::gossip: return "gossip";
    case BroadcastMode::spec: return "spec";
    case BroadcastMode::all: return "all";
  }
  return "?";
}

std::optional<BroadcastMode> parse_broadcast_mode(std::string_view s) {
  if (s == "tree") return BroadcastMode::tree;
  if (s == "gossip") return BroadcastMode::gossip;
  if (s == "spec") return BroadcastMode::spec;
  if (s == "all") return BroadcastMode::all;
  return std::nullopt;
}

void SimNode::fail(Outbox& out, const std::string& what) {
  out.errors.push_back(fmt::format("node {}: {}", index_, what));
}

void SimNode::start(Instant now, Outbox& out) {
  if (live_) return;
  auto live = std::make_unique<Live>(config_.seen_capacity);
  const std::string path = config_.in_memory ? std::string(":memory:") : db_path_;
  if (sqlite3_open(path.c_str(), &live->db) != SQLITE_OK) {
    fail(out, fmt::format("cannot open {}: {}", path, sqlite3_errmsg(live->db)));
    sqlite3_close_v2(live->db);
    return;
  }
  live_ = std::move(live);
  Live& l = *live_;
  if (!config_.in_memory) {
    if (auto r = exec(l.db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF"); !r) {
      return fail(out, "pragma: " + r.error().message);
    }
  }
  // A fresh random site id each start: the database must keep the first one.
  crdt::CrrOptions options;
  for (auto& b : options.new_site_id) b = static_cast<std::uint8_t>(prng_.below(256));
  if (epoch_ == 0) options.new_site_id = site_id_;
  auto tables = crdt::CrrTables::open(l.db, options);
  if (!tables) return fail(out, "CrrTables::open: " + tables.error().message);
  l.tables = std::move(*tables);
  if (l.tables->site_id() != site_id_) return fail(out, "site id changed across a restart");
  auto books = crdt::Bookkeeper::open(l.db);
  if (!books) return fail(out, "Bookkeeper::open: " + books.error().message);
  l.books.emplace(std::move(*books));
  auto schema = crdt::SchemaManager::parse({{"sim.sql", config_.schema_sql}});
  if (!schema) return fail(out, "schema: " + schema.error().message);
  crdt::SchemaManager manager(*l.tables);
  if (auto r = manager.apply(*schema); !r) return fail(out, "schema apply: " + r.error().message);

  // A newer SWIM identity each life (a restart is a rejoin).
  swim::Identity id;
  std::copy(site_id_.begin(), site_id_.end(), id.id.begin());
  id.addr = addr();
  id.ts = std::max(clock_.ntp64(now), last_identity_ts_ + 1);
  id.cluster_id = config_.cluster_id;
  last_identity_ts_ = id.ts;
  l.m.emplace(id, config_.swim, prng_.next_u64());
  swim::Effects fx;
  if (!disk_members_.empty()) {
    if (auto r = l.m->apply_snapshot(local(now), disk_members_, fx); !r) return fail(out, "apply_snapshot");
  }
  for (std::uint32_t b : config_.bootstrap) {
    if (b == index_) continue;
    (void)l.m->announce(local(now), book_.addr[b], fx);
  }
  route_swim(fx, out);
  l.sync_wait = config_.sync_min;
  if (config_.sync_enabled) schedule_sync(out);
  out.laters.push_back({config_.persist_every, NodeTick{TickKind::persist, 0}});
  out.laters.push_back({config_.announce_every, NodeTick{TickKind::announce, 0}});
}

void SimNode::crash() {
  if (!live_) return;
  // Statements first, then the handle: like a process that dies, nothing is
  // committed that was not, and no goodbye is sent.
  // The identity may have been renewed (auto-rejoin) since start.
  last_identity_ts_ = std::max(last_identity_ts_, live_->m->identity().ts);
  live_->books.reset();
  live_->tables.reset();
  live_->m.reset();
  sqlite3_close_v2(live_->db);
  live_.reset();
  ++epoch_;
  ++stats_.restarts;
}

void SimNode::preload_members(Instant now, const std::vector<swim::MemberUpdate>& members, Outbox& out) {
  if (!live_) return;
  swim::Effects fx;
  if (auto r = live_->m->apply_snapshot(local(now), members, fx); !r) return fail(out, "apply_snapshot");
  route_swim(fx, out);
}

crdt::SyncState SimNode::sync_state() const {
  return crdt::SyncState::from(site_id_, live_->tables->db_version(), *live_->books);
}

void SimNode::send(std::uint32_t to, Channel ch, std::uint64_t tag, Bytes bytes, Outbox& out) {
  const auto c = static_cast<std::size_t>(ch);
  stats_.bytes_sent[c] += bytes.size();
  ++stats_.messages_sent[c];
  out.sends.push_back({to, ch, tag, std::move(bytes)});
}

void SimNode::route_swim(swim::Effects& fx, Outbox& out) {
  for (auto& e : fx) {
    if (auto* s = std::get_if<swim::SendTo>(&e)) {
      auto to = book_.find(s->to);
      if (!to) continue;  // an address nobody has (cannot happen here)
      send(*to, Channel::swim, 0, std::move(s->payload), out);
    } else if (auto* a = std::get_if<swim::ArmTimer>(&e)) {
      out.laters.push_back({clock_.to_global(a->after), std::move(a->timer)});
    }
    // Notify: the checkers read the membership itself.
  }
  fx.clear();
}

void SimNode::handle(Instant now, NodeEvent& ev, Outbox& out) {
  if (!live_) return;
  if (auto* msg = std::get_if<Message>(&ev)) {
    on_message(now, *msg, out);
  } else if (auto* t = std::get_if<swim::Timer>(&ev)) {
    swim::Effects fx;
    (void)live_->m->handle_timer(local(now), *t, fx);
    route_swim(fx, out);
  } else {
    on_tick(now, std::get<NodeTick>(ev), out);
  }
}

void SimNode::on_message(Instant now, Message& msg, Outbox& out) {
  switch (msg.channel) {
    case Channel::swim: {
      swim::Effects fx;
      if (!live_->m->handle_datagram(local(now), msg.bytes, fx)) ++stats_.swim_errors;
      route_swim(fx, out);
      return;
    }
    case Channel::changeset: return on_changeset_frame(msg, out);
    case Channel::sync_request: return on_sync_request(msg, out);
    case Channel::sync_response: return on_sync_response(msg, out);
  }
}

void SimNode::on_tick(Instant now, const NodeTick& t, Outbox& out) {
  Live& l = *live_;
  switch (t.kind) {
    case TickKind::apply:
      l.apply_armed = false;
      run_apply_batch(out);
      return;
    case TickKind::sync:
      start_sync(out);
      return;
    case TickKind::sync_timeout:
      if (l.sync_inflight != t.arg) return;  // answered in time
      ++stats_.syncs_timed_out;
      l.sync_inflight = 0;
      l.sync_wait = std::min(l.sync_wait * 2, config_.sync_max);
      schedule_sync(out);
      return;
    case TickKind::broadcast_round:
      broadcast_round(t.arg, out);
      return;
    case TickKind::persist:
      disk_members_ = l.m->snapshot();
      out.laters.push_back({config_.persist_every, NodeTick{TickKind::persist, 0}});
      return;
    case TickKind::announce:
      if (l.m->num_active() == 0) {
        swim::Effects fx;
        for (std::uint32_t b : config_.bootstrap)
          if (b != index_) (void)l.m->announce(local(now), book_.addr[b], fx);
        route_swim(fx, out);
      }
      out.laters.push_back({config_.announce_every, NodeTick{TickKind::announce, 0}});
      return;
  }
}

// ---- client writes and broadcast ----------------------------------------

SimNode::WriteResult SimNode::client_write(Instant now, const std::vector<std::string>& statements,
                                           Outbox& out) {
  WriteResult res;
  Live& l = *live_;
  l.tables->set_ts(clock_.ntp64(now));
  if (auto r = l.tables->begin(); !r) {
    fail(out, "begin: " + r.error().message);
    return res;
  }
  for (const auto& sql : statements) {
    if (auto r = exec(l.db, sql); !r) {
      res.error = r.error().message;
      (void)l.tables->rollback();
      return res;
    }
  }
  auto commit = l.tables->commit();
  if (!commit) {
    fail(out, "commit: " + commit.error().message);
    return res;
  }
  if (!commit->db_version) return res;
  res.version = *commit->db_version;
  // tools/crdt_store.cpp local_changesets(), then the broadcast of each chunk.
  auto changes = crdt::changes_for_version(*l.tables, site_id_, *res.version);
  if (!changes) {
    fail(out, "changes_for_version: " + changes.error().message);
    return res;
  }
  if (changes->empty()) return res;
  const std::int64_t last_seq = changes->back().seq;
  const std::uint64_t ts = changes->front().ts;
  res.changesets = crdt::ChangesetChunker::chunk(site_id_, *res.version, crdt::Range{0, last_seq}, last_seq, ts,
                                                 std::move(*changes));
  for (const auto& cs : res.changesets) {
    // The origin's own sending counts as its one relay of each chunk.
    out.forwarded.push_back(ChunkKey{cs.actor, cs.version, cs.seqs.start, cs.seqs.end});
    broadcast(io::wire::encode(io::wire::ChangesetFrame{.cluster_id = config_.cluster_id, .hops = 0, .changeset = cs}), true, std::nullopt, out);
  }
  return res;
}

swim::BroadcastPlanner SimNode::planner() const {
  const std::uint32_t rounds =
      config_.broadcast_rounds.value_or(config_.swim.max_transmissions(live_->m->cluster_size()));
  return swim::BroadcastPlanner(rounds, config_.swim.num_indirect_probes, config_.broadcast_fanout_max);
}

void SimNode::broadcast(Bytes frame, bool local, std::optional<std::uint32_t> exclude, Outbox& out) {
  Live& l = *live_;
  const auto peers = l.m->active_peers();
  if (config_.broadcast == BroadcastMode::tree) {
    // io/broadcaster.cpp send_tree(): one member per group of the range.
    swim::TreeRange range = swim::TreeRange::whole();
    std::vector<std::string> skip;
    if (!local) {
      auto r = io::wire::tree_range_of(frame);
      range = r ? swim::TreeRange{r->first, r->second} : swim::TreeRange{};
    }
    if (exclude) skip.push_back(book_.addr[*exclude]);
    for (const auto& plan : swim::BroadcastTree::plan(peers, range, skip)) {
      auto to = book_.find(plan.to);
      if (!to) continue;
      Bytes own = frame;
      io::wire::set_tree_range(own, plan.range.first, plan.range.last);
      send(*to, Channel::changeset, 0, std::move(own), out);
    }
    return;
  }
  if (config_.broadcast == BroadcastMode::all) {
    // The agent today (io/broadcaster.cpp): every active member but the sender.
    for (const auto& p : peers) {
      auto to = book_.find(p.addr);
      if (!to || (exclude && *to == *exclude)) continue;
      send(*to, Channel::changeset, 0, frame, out);
    }
    return;
  }
  Batch batch;
  batch.state.local = local;
  if (exclude) batch.state.sent_to.insert(book_.addr[*exclude]);
  if (local && config_.broadcast == BroadcastMode::gossip) {
    // io/broadcaster.cpp broadcast_local(): enough hops for an epidemic over
    // the cluster (ceil(log2(peers + 2)) within 2..8), none when the nearest
    // members are everyone.
    std::uint8_t hops = 0;
    if (swim::BroadcastPlanner::ring0(peers).size() < peers.size()) {
      const auto bits = static_cast<int>(std::bit_width(peers.size() + 1));  // ceil(log2(peers + 2))
      hops = static_cast<std::uint8_t>(std::clamp(bits, 2, 8));
    }
    io::wire::set_hops(frame, hops);
  }
  if (!local && config_.broadcast == BroadcastMode::gossip) batch.max_rounds = config_.forward_rounds;
  if (local) {
    for (const auto& a : swim::BroadcastPlanner::ring0(peers)) {
      if (auto to = book_.find(a)) send(*to, Channel::changeset, 0, frame, out);
    }
  }
  batch.frame = std::move(frame);
  const std::uint64_t id = l.next_batch++;
  l.batches.emplace(id, std::move(batch));
  broadcast_round(id, out);
}

bool SimNode::forward(Bytes frame, std::uint32_t from, Outbox& out) {
  if (config_.broadcast == BroadcastMode::tree) {
    // tools/agent.cpp applied(): a leaf (empty range) forwards nothing.
    const auto range = io::wire::tree_range_of(frame);
    if (!range || range->first > range->second) return false;
  }
  if (config_.broadcast == BroadcastMode::gossip) {
    // io/broadcaster.cpp rebroadcast(): hops − 1, nothing once spent.
    const auto hops = io::wire::hops_of(frame);
    if (!hops || *hops == 0) {
      ++stats_.hops_exhausted;
      return false;
    }
    io::wire::set_hops(frame, static_cast<std::uint8_t>(*hops - 1));
  }
  broadcast(std::move(frame), false, from, out);
  return true;
}

void SimNode::broadcast_round(std::uint64_t id, Outbox& out) {
  Live& l = *live_;
  auto it = l.batches.find(id);
  if (it == l.batches.end()) return;
  Batch& b = it->second;
  const auto plan = planner();
  const auto peers = l.m->active_peers();
  const auto targets = plan.plan_round(peers, b.state, prng_);
  for (const auto& a : targets) {
    if (auto to = book_.find(a)) send(*to, Channel::changeset, 0, b.frame, out);
  }
  if (plan.done(b.state) || b.state.rounds >= b.max_rounds || targets.empty()) {
    l.batches.erase(it);
    return;
  }
  out.laters.push_back({swim::BroadcastPlanner::delay_before_next_round(b.state, false),
                        NodeTick{TickKind::broadcast_round, id}});
}

// ---- receive and apply ---------------------------------------------------

void SimNode::on_changeset_frame(Message& msg, Outbox& out) {
  auto decoded = io::wire::decode(msg.bytes);
  if (!decoded) return fail(out, "undecodable changeset frame: " + decoded.error().message);
  if (decoded->cluster_id != config_.cluster_id) return;
  if (config_.drop_own_changesets && decoded->changeset.actor == site_id_) return;
  // tools/agent.cpp apply_frame(): recent duplicates are dropped here.
  if (!live_->seen.insert(key_of(decoded->changeset))) {
    ++stats_.duplicates_dropped;
    return;
  }
  Item item;
  item.incoming.changeset = std::move(decoded->changeset);
  item.broadcast = true;
  item.from = msg.from;
  item.frame = std::move(msg.bytes);
  push_item(std::move(item), out);
}

void SimNode::push_item(Item item, Outbox& out) {
  Live& l = *live_;
  l.apply_queue.push_back(std::move(item));
  if (!l.apply_armed) {
    l.apply_armed = true;
    out.laters.push_back({config_.apply_delay, NodeTick{TickKind::apply, 0}});
  }
}

std::vector<bool> SimNode::unknown(const std::vector<crdt::Incoming>& batch) const {
  // As tools/crdt_store.cpp CrdtStore::unknown().
  const crdt::Bookkeeper& books = *live_->books;
  std::vector<bool> out;
  out.reserve(batch.size());
  for (const auto& in : batch) {
    if (in.empty_versions) {
      const crdt::Range r = *in.empty_versions;
      const crdt::ActorBooks* a = books.actor(in.changeset.actor);
      bool known = a != nullptr && a->max >= r.end && !a->needed.overlaps(r);
      if (known) {
        auto p = a->partials.lower_bound(r.start);
        known = p == a->partials.end() || p->first > r.end;
      }
      out.push_back(!known);
    } else {
      out.push_back(!books.contains(in.changeset.actor, in.changeset.version, in.changeset.seqs));
    }
  }
  return out;
}

void SimNode::run_apply_batch(Outbox& out) {
  Live& l = *live_;
  if (l.apply_queue.empty()) return;
  std::vector<Item> items;
  while (!l.apply_queue.empty() && items.size() < config_.apply_batch_max) {
    items.push_back(std::move(l.apply_queue.front()));
    l.apply_queue.pop_front();
  }
  std::vector<crdt::Incoming> batch;
  batch.reserve(items.size());
  for (const auto& it : items) batch.push_back(it.incoming);
  const auto novel = unknown(batch);
  crdt::ChangeApplier applier(*l.tables, *l.books);
  auto report = applier.apply(batch);
  ++stats_.apply_batches;
  if (!report) return fail(out, "apply: " + report.error().message);
  for (const auto& v : report->versions_applied) out.applied.push_back(v);
  for (std::size_t i = 0; i < items.size(); ++i) {
    Item& it = items[i];
    if (!novel[i] || !it.broadcast || it.frame.empty()) continue;
    const auto& cs = it.incoming.changeset;
    if (!forward(std::move(it.frame), it.from, out)) continue;
    out.forwarded.push_back(ChunkKey{cs.actor, cs.version, cs.seqs.start, cs.seqs.end});
    ++stats_.frames_forwarded;
  }
  if (!l.apply_queue.empty() && !l.apply_armed) {
    l.apply_armed = true;
    out.laters.push_back({config_.apply_delay, NodeTick{TickKind::apply, 0}});
  }
}

// ---- anti-entropy --------------------------------------------------------

void SimNode::schedule_sync(Outbox& out) {
  // ±30% jitter, as Corrosion's backoff.
  const auto w = live_->sync_wait.count();
  const auto jittered = w * static_cast<Duration::rep>(70 + prng_.below(61)) / 100;
  out.laters.push_back({Duration(jittered), NodeTick{TickKind::sync, 0}});
}

void SimNode::start_sync(Outbox& out) {
  Live& l = *live_;
  if (l.sync_inflight != 0) return;
  const auto peers = l.m->active_peers();
  if (peers.empty()) {
    l.sync_wait = config_.sync_min;
    return schedule_sync(out);
  }
  auto to = book_.find(peers[static_cast<std::size_t>(prng_.below(peers.size()))].addr);
  if (!to) return schedule_sync(out);
  const std::uint64_t tag = l.next_sync_tag++;
  l.sync_inflight = tag;
  ++stats_.syncs_started;
  send(*to, Channel::sync_request, tag, io::wire::encode(io::wire::SyncRequestFrame{config_.cluster_id, sync_state()}),
       out);
  out.laters.push_back({config_.sync_timeout, NodeTick{TickKind::sync_timeout, tag}});
}

void SimNode::on_sync_request(const Message& msg, Outbox& out) {
  auto request = io::wire::decode_sync_request(msg.bytes);
  if (!request) return fail(out, "undecodable sync request: " + request.error().message);
  if (request->cluster_id != config_.cluster_id) return;
  Live& l = *live_;
  // As tools/crdt_store.cpp CrdtStore::serve_sync().
  io::wire::SyncResponseFrame response;
  std::size_t bytes = 0;
  const auto ours = sync_state();
  for (const auto& req : crdt::SyncNeeds::compute(request->state, ours)) {
    if (bytes >= config_.sync_budget_bytes) break;  // the peer asks again next round
    if (req.kind == crdt::SyncRequest::Kind::full) {
      auto served = crdt::serve_versions(*l.tables, *l.books, req.actor, req.versions);
      if (!served) return fail(out, "serve_versions: " + served.error().message);
      for (auto& cs : served->changesets) {
        for (const auto& c : cs.changes) bytes += crdt::estimated_size(c);
        response.changesets.push_back(io::wire::encode(io::wire::ChangesetFrame{.cluster_id = config_.cluster_id, .hops = 0, .changeset = std::move(cs)}));
      }
      for (const auto& r : served->empty.ranges()) response.empty.emplace_back(req.actor, r);
    } else {
      auto served = crdt::serve_partial(*l.tables, *l.books, req.actor, req.versions.start, req.seqs);
      if (!served) return fail(out, "serve_partial: " + served.error().message);
      for (auto& cs : *served) {
        for (const auto& c : cs.changes) bytes += crdt::estimated_size(c);
        response.changesets.push_back(io::wire::encode(io::wire::ChangesetFrame{.cluster_id = config_.cluster_id, .hops = 0, .changeset = std::move(cs)}));
      }
    }
  }
  send(msg.from, Channel::sync_response, msg.tag, io::wire::encode(response), out);
}

void SimNode::on_sync_response(Message& msg, Outbox& out) {
  Live& l = *live_;
  if (msg.tag != l.sync_inflight) return;  // late answer to a round we gave up
  l.sync_inflight = 0;
  auto decoded = io::wire::decode_sync_response(msg.bytes);
  if (!decoded) return fail(out, "undecodable sync response: " + decoded.error().message);
  std::size_t pushed = 0;
  for (const auto& bytes : decoded->changesets) {
    auto frame = io::wire::decode(bytes);
    if (!frame) return fail(out, "undecodable synced changeset: " + frame.error().message);
    Item item;
    item.incoming.changeset = std::move(frame->changeset);
    item.from = msg.from;
    push_item(std::move(item), out);
    ++pushed;
  }
  for (const auto& [site, range] : decoded->empty) {
    Item item;
    item.incoming.changeset.actor = site;
    item.incoming.empty_versions = range;
    item.from = msg.from;
    push_item(std::move(item), out);
    ++pushed;
  }
  l.sync_wait = pushed > 0 ? config_.sync_min : std::min(l.sync_wait * 2, config_.sync_max);
  schedule_sync(out);
}

}  // namespace patina::sim
