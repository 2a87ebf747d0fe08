#include "tests/sim/checkers.hpp"

#include <sqlite3.h>

#include <fmt/format.h>

#include "crdt/digest.hpp"
#include "crdt/value.hpp"

namespace patina::sim {

Checkers::Checkers(std::size_t nodes) : nodes_(nodes) {}

void Checkers::restarted(std::uint32_t node) { nodes_[node].incarnation_seen.clear(); }

std::string Checkers::after_event(const SimNode& node, const Outbox& out) {
  const std::uint32_t i = node.index();
  PerNode& st = nodes_[i];
  if (!out.errors.empty()) return out.errors.front();
  for (const auto& v : out.applied) {
    ++applied_count_;
    if (!st.applied.insert(v).second) {
      return fmt::format("node {} applied version {} of {} twice", i, v.second, crdt::to_hex(v.first));
    }
  }
  for (const auto& k : out.forwarded) {
    if (!st.forwarded.insert(k).second) {
      return fmt::format("node {} relayed changeset {}/{}/{}-{} twice (as origin or forwarder)", i, crdt::to_hex(k.actor), k.version,
                         k.seq_start, k.seq_end);
    }
  }
  if (!node.up()) return {};
  const swim::Membership& m = node.membership();
  if (m.is_defunct()) return fmt::format("node {} believes itself down (defunct)", i);
  const auto self = std::make_pair(m.identity().ts, m.incarnation());
  if (self < st.self_seen)
    return fmt::format("node {}: own (ts, incarnation) went back: ({}, {}) -> ({}, {})", i, st.self_seen.first,
                       st.self_seen.second, self.first, self.second);
  st.self_seen = self;
  if (++st.events % member_check_period_ != 0) return {};
  for (const swim::Member& mem : m.members()) {
    if (mem.id.addr == m.identity().addr) return fmt::format("node {} lists itself as a member", i);
    auto [it, fresh] = st.incarnation_seen.try_emplace(mem.id.addr, mem.id.ts, mem.incarnation);
    if (fresh) continue;
    if (it->second.first == mem.id.ts) {
      if (mem.incarnation < it->second.second)
        return fmt::format("node {}: incarnation of {} went back {} -> {}", i, mem.id.addr, it->second.second,
                           mem.incarnation);
    } else if (mem.id.ts < it->second.first) {
      return fmt::format("node {}: an older identity of {} came back", i, mem.id.addr);
    }
    it->second = {mem.id.ts, mem.incarnation};
  }
  return {};
}

std::string Checkers::pending(std::vector<std::unique_ptr<SimNode>>& nodes) {
  // (7) membership views.
  for (auto& n : nodes) {
    if (!n->up()) return fmt::format("node {} is down", n->index());
    const auto& m = n->membership();
    std::size_t alive = 0;
    for (const swim::Member& mem : m.members()) {
      if (!mem.active()) continue;
      ++alive;
      bool current = false;
      for (auto& o : nodes) current |= o->membership().identity() == mem.id;
      if (!current) return fmt::format("node {} holds a stale identity of {} active", n->index(), mem.id.addr);
      if (mem.state != swim::MemberState::alive)
        return fmt::format("node {} holds {} {}", n->index(), mem.id.addr, swim::to_string(mem.state));
    }
    if (alive != nodes.size() - 1)
      return fmt::format("node {} sees {} of {} members", n->index(), alive, nodes.size() - 1);
  }
  // (8) queues.
  for (auto& n : nodes) {
    if (n->apply_queue_depth() > 0) return fmt::format("node {} has {} queued to apply", n->index(), n->apply_queue_depth());
    if (n->broadcast_pending() > 0)
      return fmt::format("node {} has {} broadcasts pending", n->index(), n->broadcast_pending());
    if (n->membership().pending_updates() > 0)
      return fmt::format("node {} has {} SWIM updates to gossip", n->index(), n->membership().pending_updates());
  }
  // (9) bookkeeping complete.
  std::map<crdt::SiteId, std::int64_t> heads;
  for (auto& n : nodes) heads[n->site_id()] = n->tables().db_version();
  for (auto& n : nodes) {
    for (const auto& [actor, head] : heads) {
      if (actor == n->site_id() || head == 0) continue;
      const crdt::ActorBooks* a = n->books().actor(actor);
      if (a == nullptr || a->max < head)
        return fmt::format("node {} has {} of {}'s {} versions", n->index(), a ? a->max : 0, crdt::to_hex(actor),
                           head);
      if (a->max > head)
        return fmt::format("node {} knows version {} of {} beyond its head {}", n->index(), a->max,
                           crdt::to_hex(actor), head);
      if (!a->needed.empty() || !a->partials.empty()) {
        std::string detail;
        for (const auto& r : a->needed.ranges()) detail += fmt::format(" gap {}..{}", r.start, r.end);
        for (const auto& [v, p] : a->partials) {
          detail += fmt::format(" partial v{} last_seq {} has", v, p.last_seq);
          for (const auto& r : p.seqs.ranges()) detail += fmt::format(" {}..{}", r.start, r.end);
        }
        return fmt::format("node {} still needs versions of {}:{}", n->index(), crdt::to_hex(actor), detail);
      }
    }
  }
  return {};
}

namespace {

struct Cell {
  std::int64_t col_version = 0;
  std::int64_t cl = 0;
  crdt::Value val;
};

// Every clock entry of a node: (table, pk, cid) -> cell, and (table, pk) -> max cl.
struct NodeState {
  std::map<std::tuple<std::string, crdt::Bytes, std::string>, Cell> cells;
  std::map<std::pair<std::string, crdt::Bytes>, std::int64_t> row_cl;
};

std::string load_state(SimNode& n, NodeState& st) {
  const std::string sql = "SELECT \"table\", pk, cid, val, col_version, cl FROM crsql_changes";
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(n.db(), sql.c_str(), -1, &s, nullptr) != SQLITE_OK)
    return fmt::format("node {}: {}", n.index(), sqlite3_errmsg(n.db()));
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    std::string table(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)));
    const auto* pkp = static_cast<const std::uint8_t*>(sqlite3_column_blob(s, 1));
    crdt::Bytes pk(pkp, pkp + sqlite3_column_bytes(s, 1));
    std::string cid(reinterpret_cast<const char*>(sqlite3_column_text(s, 2)));
    Cell c{sqlite3_column_int64(s, 4), sqlite3_column_int64(s, 5), crdt::column_value(s, 3)};
    auto& cl = st.row_cl[{table, pk}];
    cl = std::max(cl, c.cl);
    st.cells[{table, pk, cid}] = std::move(c);
  }
  sqlite3_finalize(s);
  if (rc != SQLITE_DONE) return fmt::format("node {}: {}", n.index(), sqlite3_errmsg(n.db()));
  return {};
}

}  // namespace

std::string Checkers::final_checks(std::vector<std::unique_ptr<SimNode>>& nodes,
                                   const std::vector<AckedWrite>& acked) {
  // (12) bookkeeping memory == database.
  for (auto& n : nodes) {
    if (auto r = n->books().check(); !r) return fmt::format("node {}: {}", n->index(), r.error().message);
  }
  // (10) identical table contents.
  std::vector<crdt::TableDigest> first;
  for (auto& n : nodes) {
    auto d = crdt::digest_tables(n->db());
    if (!d) return fmt::format("node {}: digest: {}", n->index(), d.error().message);
    if (n == nodes.front()) {
      first = *d;
      continue;
    }
    if (*d != first) {
      std::string why;
      for (std::size_t t = 0; t < std::min(d->size(), first.size()); ++t)
        if ((*d)[t] != first[t])
          why += fmt::format(" {}: {} rows {} vs {} rows {};", first[t].table, first[t].rows, first[t].hash,
                             (*d)[t].rows, (*d)[t].hash);
      return fmt::format("node {} differs from node 0:{}", n->index(), why);
    }
  }
  // (11) every acknowledged write present or superseded.
  for (auto& n : nodes) {
    NodeState st;
    if (auto e = load_state(*n, st); !e.empty()) return e;
    for (const auto& w : acked) {
      for (const auto& c : w.changes) {
        auto rc = st.row_cl.find({c.table, c.pk});
        const std::int64_t cl = rc == st.row_cl.end() ? 0 : rc->second;
        auto lost = [&](const char* why) {
          return fmt::format("node {} lost acknowledged write v{} of node {} ({}): {}", n->index(), w.version,
                             w.node, why, crdt::to_string(c));
        };
        if (cl < c.cl) return lost("row causal length went back");
        if (cl > c.cl || c.cid == crdt::sentinel_cid) continue;
        auto cell = st.cells.find({c.table, c.pk, c.cid});
        if (cell == st.cells.end()) return lost("cell missing");
        if (cell->second.col_version < c.col_version) return lost("older col_version");
        if (cell->second.col_version == c.col_version && crdt::compare_values(cell->second.val, c.val) < 0)
          return lost("smaller value at equal col_version");
      }
    }
  }
  return {};
}

}  // namespace patina::sim
