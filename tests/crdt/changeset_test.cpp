// Changeset extraction and chunking, and the sync-needs computation.
#include <gtest/gtest.h>

#include "crdt/bookkeeping.hpp"
#include "crdt/changeset.hpp"
#include "crdt/sync_needs.hpp"
#include "test_db.hpp"

namespace patina::crdt {
namespace {

using testing::site_of;
using testing::TestDb;

TEST(Changesets, ExtractAndChunkABigVersion) {
  TestDb a{site_of(0x11)};
  a.exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a TEXT, b INTEGER)");
  a.crr_table("t");
  ASSERT_TRUE(a.crr->begin());
  a.exec("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200) "
         "INSERT INTO t SELECT i, printf('%.100c', 'x'), i FROM n");
  a.exec("UPDATE t SET b = -b WHERE id <= 10");  // supersedes 10 seqs: holes
  auto commit = a.crr->commit();
  ASSERT_TRUE(commit);
  ASSERT_EQ(commit->db_version, 1);
  EXPECT_EQ(commit->last_seq, 409);

  auto rows = changes_for_version(*a.crr, a.crr->site_id(), 1);
  ASSERT_TRUE(rows) << rows.error().message;
  ASSERT_EQ(rows->size(), 400u);
  auto chunks = ChangesetChunker::chunk(a.crr->site_id(), 1, Range{0, commit->last_seq},
                                        commit->last_seq, 5, *rows);
  ASSERT_GT(chunks.size(), 3u);
  std::int64_t next = 0;
  std::vector<Change> joined;
  for (const auto& c : chunks) {
    EXPECT_EQ(c.seqs.start, next);
    std::size_t bytes = 0;
    for (const auto& ch : c.changes) {
      bytes += estimated_size(ch);
      EXPECT_GE(ch.seq, c.seqs.start);
      EXPECT_LE(ch.seq, c.seqs.end);
    }
    EXPECT_LE(bytes, ChangesetChunker::default_max_bytes);
    next = c.seqs.end + 1;
    joined.insert(joined.end(), c.changes.begin(), c.changes.end());
  }
  EXPECT_EQ(next, commit->last_seq + 1);
  EXPECT_EQ(joined, *rows);

  // A receiver buffering the chunks in any order completes the version exactly
  // when the last one arrives, then applies it.
  TestDb b{site_of(0x22)};
  b.exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a TEXT, b INTEGER)");
  b.crr_table("t");
  auto books = Bookkeeper::open(b.db);
  ASSERT_TRUE(books);
  for (std::size_t i = chunks.size(); i-- > 0;) {
    auto done = books->record_partial(a.crr->site_id(), 1, chunks[i].seqs, chunks[i].last_seq,
                                      chunks[i].ts, chunks[i].changes);
    ASSERT_TRUE(done) << done.error().message;
    EXPECT_EQ(*done, i == 0);
  }
  auto buffered = books->buffered(a.crr->site_id(), 1);
  ASSERT_TRUE(buffered);
  auto report = b.merge(*buffered);
  EXPECT_EQ(report.num_applied(), 400u);
  EXPECT_EQ(report.changed_rows["t"].size(), 200u);
  ASSERT_TRUE(books->record_applied(a.crr->site_id(), Range{1, 1}));
  EXPECT_EQ(b.dump("SELECT sum(b), count(*) FROM t"), a.dump("SELECT sum(b), count(*) FROM t"));

  auto since = changes_since(*a.crr, a.crr->site_id(), 0, 5);
  ASSERT_TRUE(since);
  EXPECT_EQ(since->size(), 5u);
  EXPECT_TRUE(changes_since(*a.crr, a.crr->site_id(), 1)->empty());
}

TEST(Changesets, SmallVersionIsOneChunkCoveringItsRange) {
  auto chunks = ChangesetChunker::chunk(site_of(1), 4, Range{0, 7}, 7, 0, {});
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].seqs, (Range{0, 7}));
}

TEST(SyncNeeds, GapsPartialsAndHeads) {
  const SiteId me = site_of(1), peer = site_of(2), x = site_of(3), y = site_of(4);
  SyncState ours;
  ours.actor = me;
  ours.heads = {{me, 5}, {x, 30}, {y, 4}};
  ours.need[x] = RangeSet{Range{3, 14}, Range{20, 20}};
  ours.partial_need[x][25] = RangeSet{Range{5, 9}};
  ours.partial_need[x][26] = RangeSet{Range{0, 9}};
  ours.partial_need[y][4] = RangeSet{Range{2, 3}};

  SyncState theirs;
  theirs.actor = peer;
  theirs.heads = {{me, 3}, {x, 40}, {y, 4}, {peer, 2}};
  theirs.need[x] = RangeSet{Range{12, 13}};
  theirs.partial_need[x][26] = RangeSet{Range{0, 4}};  // they have 5..last
  theirs.partial_need[y][4] = RangeSet{Range{2, 3}};   // they lack the same seqs

  auto reqs = SyncNeeds::compute(ours, theirs);
  auto full = [](SiteId a, std::int64_t s, std::int64_t e) {
    return SyncRequest{SyncRequest::Kind::full, a, Range{s, e}, {}};
  };
  auto partial = [](SiteId a, std::int64_t v, RangeSet seqs) {
    return SyncRequest{SyncRequest::Kind::partial, a, Range{v, v}, seqs};
  };
  std::vector<SyncRequest> want = {
      full(peer, 1, 2),
      full(x, 3, 11),   // gap 3..14 minus the peer's own gap 12..13
      full(x, 14, 14),
      full(x, 20, 20),
      partial(x, 25, RangeSet{Range{5, 9}}),
      partial(x, 26, RangeSet{Range{5, 9}}),
      full(x, 31, 40),
  };
  EXPECT_EQ(reqs.size(), want.size());
  for (std::size_t i = 0; i < std::min(reqs.size(), want.size()); ++i)
    EXPECT_EQ(reqs[i], want[i]) << i << ": " << to_hex(reqs[i].actor) << " " << reqs[i].versions.start
                                << ".." << reqs[i].versions.end;
}

TEST(SyncNeeds, LargeRangesSplitIntoTens) {
  SyncState ours, theirs;
  ours.actor = site_of(1);
  theirs.actor = site_of(2);
  theirs.heads[site_of(3)] = 25;
  auto reqs = SyncNeeds::compute(ours, theirs);
  ASSERT_EQ(reqs.size(), 3u);
  EXPECT_EQ(reqs[0].versions, (Range{1, 10}));
  EXPECT_EQ(reqs[2].versions, (Range{21, 25}));
}

TEST(SyncNeeds, StateFromBookkeeper) {
  TestDb a{site_of(1)};
  auto books = Bookkeeper::open(a.db);
  ASSERT_TRUE(books);
  ASSERT_TRUE(books->record_applied(site_of(3), Range{4, 4}));
  ASSERT_TRUE(books->record_partial(site_of(3), 6, Range{0, 2}, 5, 0, {}));
  auto s = SyncState::from(site_of(1), 7, *books);
  EXPECT_EQ(s.heads.at(site_of(1)), 7);
  EXPECT_EQ(s.heads.at(site_of(3)), 6);
  EXPECT_EQ(s.need.at(site_of(3)), (RangeSet{Range{1, 3}, Range{5, 5}}));
  EXPECT_EQ(s.partial_need.at(site_of(3)).at(6), (RangeSet{Range{3, 5}}));
}

}  // namespace
}  // namespace patina::crdt

namespace patina::crdt {
namespace {

TEST(Serving, FullRequestsYieldRowsEmptiesAndBufferedPartials) {
  testing::TestDb a{testing::site_of(0x11)};
  a.exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v TEXT)");
  a.crr_table("t");
  a.exec("INSERT INTO t VALUES (1, 'one')");     // v1: superseded below -> empty
  a.exec("INSERT INTO t VALUES (2, 'two')");     // v2
  a.exec("UPDATE t SET v = 'uno' WHERE id = 1");  // v3
  auto books = Bookkeeper::open(a.db);
  ASSERT_TRUE(books);
  auto served = serve_versions(*a.crr, *books, a.crr->site_id(), Range{1, 10});
  ASSERT_TRUE(served) << served.error().message;
  EXPECT_EQ(served->empty, (RangeSet{Range{1, 1}}));
  ASSERT_EQ(served->changesets.size(), 2u);
  EXPECT_EQ(served->changesets[0].version, 2);
  EXPECT_EQ(served->changesets[1].version, 3);

  // Another actor's partial version is served from the buffer; gaps are skipped.
  const SiteId b = testing::site_of(0x22);
  Change c;
  c.table = "t";
  c.pk = PackedPk::pack(std::vector<Value>{std::int64_t{9}});
  c.cid = "v";
  c.val = std::string("nine");
  c.col_version = 1;
  c.db_version = 3;
  c.site_id = b;
  c.cl = 1;
  c.seq = 1;
  ASSERT_TRUE(books->record_partial(b, 3, Range{1, 1}, 2, 0, std::vector<Change>{c}));
  served = serve_versions(*a.crr, *books, b, Range{1, 3});
  ASSERT_TRUE(served);
  EXPECT_TRUE(served->empty.empty());  // 1..2 are gaps here: skipped, not "empty"
  ASSERT_EQ(served->changesets.size(), 1u);
  EXPECT_EQ(served->changesets[0].seqs, (Range{1, 1}));
  EXPECT_EQ(served->changesets[0].last_seq, 2);
  auto partial = serve_partial(*a.crr, *books, b, 3, RangeSet{Range{0, 5}});
  ASSERT_TRUE(partial);
  ASSERT_EQ(partial->size(), 1u);
  EXPECT_EQ((*partial)[0].changes.size(), 1u);
}

}  // namespace
}  // namespace patina::crdt

namespace patina::crdt {
namespace {

TEST(Changesets, ExtractionByVersionUsesTheClockIndex) {
  testing::TestDb a{testing::site_of(0x11)};
  a.exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v TEXT)");
  a.crr_table("t");
  std::string plan = a.dump("EXPLAIN QUERY PLAN " + a.crr->changes_select("c.site_id = 0 AND c.db_version = 7"));
  EXPECT_NE(plan.find("t__crsql_clock_dbv_idx"), std::string::npos) << plan;
}

}  // namespace
}  // namespace patina::crdt

namespace patina::crdt {
namespace {

TEST(Changesets, ReadOnlyConnectionCanExtractAndServe) {
  std::string path = testing::temp_path("ro.db");
  std::remove(path.c_str());
  testing::TestDb w{testing::site_of(0x11), true, path};
  w.exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v TEXT)");
  w.crr_table("t");
  ASSERT_TRUE(Bookkeeper::open(w.db));
  w.exec("INSERT INTO t VALUES (1, 'x')");
  sqlite3* ro = nullptr;
  ASSERT_EQ(sqlite3_open_v2(path.c_str(), &ro, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  {
    auto reader = CrrTables::open(ro, CrrOptions{});
    ASSERT_TRUE(reader) << reader.error().message;
    EXPECT_EQ((*reader)->site_id(), testing::site_of(0x11));
    EXPECT_EQ((*reader)->db_version(), 1);
    auto rows = changes_for_version(**reader, testing::site_of(0x11), 1);
    ASSERT_TRUE(rows) << rows.error().message;
    EXPECT_EQ(rows->size(), 1u);
    auto books = Bookkeeper::open(ro);
    ASSERT_TRUE(books) << books.error().message;
    w.exec("INSERT INTO t VALUES (2, 'y')");  // after the reader opened
    auto served = serve_versions(**reader, *books, testing::site_of(0x11), Range{1, 5});
    ASSERT_TRUE(served);
    EXPECT_EQ(served->changesets.size(), 2u);
  }
  sqlite3_close(ro);
  std::remove(path.c_str());
}

}  // namespace
}  // namespace patina::crdt
