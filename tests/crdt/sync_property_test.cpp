// Property: nodes that write, broadcast chunks of their versions to random
// peers (lost, duplicated, reordered), then run anti-entropy rounds built from
// SyncState / SyncNeeds / serve_* / ChangeApplier, end with identical tables
// and with bookkeeping that knows every version of every node.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <random>

#include "crdt/apply.hpp"
#include "crdt/sync_needs.hpp"
#include "test_db.hpp"

namespace patina::crdt {
namespace {

using testing::site_of;
using testing::TestDb;

struct Node {
  TestDb db;
  Bookkeeper books;
  explicit Node(SiteId s, bool mev) : db(s, mev), books(setup(db)) {}
  static Bookkeeper setup(TestDb& d) {
    d.exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a TEXT, b INTEGER)");
    d.crr_table("t");
    return *Bookkeeper::open(d.db);
  }
};

std::vector<Incoming> chunks_of_version(Node& n, std::int64_t v, std::size_t max_bytes) {
  auto rows = *changes_for_version(*n.db.crr, n.db.crr->site_id(), v);
  std::vector<Incoming> out;
  if (rows.empty()) {
    out.push_back(Incoming{Changeset{n.db.crr->site_id(), 0, {}, 0, 0, {}}, Range{v, v}});
    return out;
  }
  std::int64_t last = 0;
  for (const auto& c : rows) last = std::max(last, c.seq);
  for (auto& cs : ChangesetChunker::chunk(n.db.crr->site_id(), v, Range{0, last}, last, 0, rows, max_bytes))
    out.push_back(Incoming{std::move(cs), std::nullopt});
  return out;
}

// One anti-entropy exchange: |client| asks |server| for what it lacks.
void sync(Node& client, Node& server) {
  auto ours = SyncState::from(client.db.crr->site_id(), client.db.crr->db_version(), client.books);
  auto theirs = SyncState::from(server.db.crr->site_id(), server.db.crr->db_version(), server.books);
  std::vector<Incoming> batch;
  for (const auto& req : SyncNeeds::compute(ours, theirs)) {
    if (req.kind == SyncRequest::Kind::full) {
      auto served = serve_versions(*server.db.crr, server.books, req.actor, req.versions, 512);
      RC_ASSERT(served.has_value());
      for (auto& cs : served->changesets) batch.push_back(Incoming{std::move(cs), std::nullopt});
      for (const auto& r : served->empty.ranges())
        batch.push_back(Incoming{Changeset{req.actor, 0, {}, 0, 0, {}}, r});
    } else {
      auto served = serve_partial(*server.db.crr, server.books, req.actor, req.versions.start, req.seqs, 512);
      RC_ASSERT(served.has_value());
      for (auto& cs : *served) batch.push_back(Incoming{std::move(cs), std::nullopt});
    }
  }
  ChangeApplier applier(*client.db.crr, client.books);
  auto r = applier.apply(batch);
  RC_ASSERT(r.has_value());
}

RC_GTEST_PROP(SyncProperty, BroadcastLossThenAntiEntropyConverges, ()) {
  const int n = *rc::gen::inRange(3, 5);
  const auto seed = *rc::gen::arbitrary<std::uint64_t>();
  const int writes = *rc::gen::inRange(1, 40);
  std::mt19937_64 rng(seed);
  std::vector<std::unique_ptr<Node>> nodes;
  for (int i = 0; i < n; ++i)
    nodes.push_back(std::make_unique<Node>(site_of(static_cast<std::uint8_t>(0x10 * (i + 1))), true));
  for (int w = 0; w < writes; ++w) {
    auto& node = *nodes[rng() % static_cast<std::size_t>(n)];
    int id = static_cast<int>(rng() % 6) + 1;
    switch (rng() % 4) {
      case 0: node.db.exec("INSERT OR REPLACE INTO t VALUES (" + std::to_string(id) + ", 'w" + std::to_string(w) + "', " + std::to_string(w) + ")"); break;
      case 1: node.db.exec("UPDATE t SET a = 'u" + std::to_string(w) + "' WHERE id = " + std::to_string(id)); break;
      case 2: node.db.exec("DELETE FROM t WHERE id = " + std::to_string(id)); break;
      default: node.db.exec("INSERT OR IGNORE INTO t VALUES (" + std::to_string(id) + ", 'i', " + std::to_string(w) + ")"); break;
    }
    // Broadcast the new version's chunks to random peers, lossy and reordered.
    auto v = node.db.crr->db_version();
    if (v == 0) continue;
    auto chunks = chunks_of_version(node, v, 256);
    for (auto& peer : nodes) {
      if (peer.get() == &node) continue;
      std::vector<Incoming> got;
      for (const auto& c : chunks) {
        if (rng() % 3 == 0) continue;           // lost
        got.push_back(c);
        if (rng() % 4 == 0) got.push_back(c);   // duplicated
      }
      std::shuffle(got.begin(), got.end(), rng);
      ChangeApplier applier(*peer->db.crr, peer->books);
      RC_ASSERT(applier.apply(got).has_value());
    }
  }
  // Anti-entropy: a few rounds of every node syncing with every other.
  for (int round = 0; round < 3; ++round)
    for (int c = 0; c < n; ++c)
      for (int s = 0; s < n; ++s)
        if (c != s) sync(*nodes[static_cast<std::size_t>(c)], *nodes[static_cast<std::size_t>(s)]);
  const std::string q = "SELECT id, a, b FROM t ORDER BY id";
  const std::string want = nodes[0]->db.dump(q);
  for (int i = 1; i < n; ++i) RC_ASSERT(nodes[static_cast<std::size_t>(i)]->db.dump(q) == want);
  for (auto& a : nodes) {
    RC_ASSERT(a->books.check().has_value());
    for (auto& b : nodes) {
      if (a == b) continue;
      const auto self = b->db.crr->site_id();
      for (std::int64_t v = 1; v <= b->db.crr->db_version(); ++v) RC_ASSERT(a->books.contains_version(self, v));
      if (const auto* books = a->books.actor(self)) RC_ASSERT(books->partials.empty());
    }
  }
}

}  // namespace
}  // namespace patina::crdt
