// Merge rules as observed with cr-sqlite (FACTS.md §5-9), one scenario each,
// both directions where it matters.
#include <gtest/gtest.h>

#include "test_db.hpp"

namespace patina::crdt {
namespace {

using testing::briefs;
using testing::site_of;
using testing::TestDb;

struct Pair {
  TestDb a, b;
  explicit Pair(bool mev = true) : a(site_of(0x11), mev), b(site_of(0x22), mev) {
    for (auto* d : {&a, &b}) {
      d->exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a TEXT, b INTEGER)");
      d->crr_table("t");
    }
  }
  // Each side sends everything it has to the other (A's first, like a sync).
  void sync() {
    auto from_a = a.changes();
    auto from_b = b.changes();
    b.merge(from_a);
    a.merge(from_b);
  }
  std::string rows_a() { return a.dump("SELECT * FROM t ORDER BY id"); }
  std::string rows_b() { return b.dump("SELECT * FROM t ORDER BY id"); }
};

TEST(MergeRules, MergedRowsKeepOriginatorVersionAndLocalVersionDoesNotMove) {
  Pair p;
  p.a.exec("INSERT INTO t VALUES (1, 'x', 10)");
  p.a.exec("INSERT INTO t VALUES (2, 'y', 20)");
  p.b.exec("INSERT INTO t VALUES (5, 'q', 50)");
  p.b.merge(p.a.changes());
  EXPECT_EQ(p.b.crr->db_version(), 1);
  auto rows = p.b.changes("cid = 'a'", "pk");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[1].db_version, 2);
  EXPECT_EQ(rows[1].site_id, site_of(0x11));
  auto versions = p.b.crr->db_versions();
  ASSERT_TRUE(versions);
  EXPECT_EQ(versions->at(site_of(0x11)), 2);
  EXPECT_EQ(versions->at(site_of(0x22)), 1);
}

TEST(MergeRules, DeleteBeatsConcurrentUpdates) {
  Pair p;
  p.a.exec("INSERT INTO t VALUES (1, 'x', 10)");
  p.sync();
  p.a.exec("DELETE FROM t WHERE id = 1");
  p.b.exec("UPDATE t SET a = 'u1'");
  p.b.exec("UPDATE t SET a = 'u2'");
  p.sync();
  EXPECT_EQ(p.rows_a(), "");
  EXPECT_EQ(p.rows_b(), "");
  EXPECT_EQ(briefs(p.b.changes()), "-1 NULL cv2 db2 cl2 seq0");
}

TEST(MergeRules, ResurrectBeatsConcurrentUpdates) {
  Pair p;
  p.a.exec("INSERT INTO t VALUES (1, 'x', 10)");
  p.sync();
  p.a.exec("DELETE FROM t WHERE id = 1");
  p.a.exec("INSERT INTO t VALUES (1, 'back', 7)");
  for (int i = 0; i < 4; ++i) p.b.exec("UPDATE t SET a = 'b" + std::to_string(i) + "'");
  p.sync();
  EXPECT_EQ(p.rows_a(), "(1, 'back', 7) ");
  EXPECT_EQ(p.rows_b(), "(1, 'back', 7) ");
}

TEST(MergeRules, ColumnFromALaterLifeResurrectsAlone) {
  Pair p;
  p.a.exec("INSERT INTO t VALUES (1, 'x', 10)");
  p.sync();
  p.a.exec("DELETE FROM t WHERE id = 1");
  p.sync();
  p.a.exec("INSERT INTO t VALUES (1, NULL, 6)");
  auto b_only = p.a.changes("cid = 'b'");
  ASSERT_EQ(b_only.size(), 1u);
  auto report = p.b.merge(b_only);
  EXPECT_EQ(report.num_applied(), 1u);
  EXPECT_EQ(p.rows_b(), "(1, NULL, 6) ");
  auto sentinel = p.b.changes("cid = '-1'");
  ASSERT_EQ(sentinel.size(), 1u);
  EXPECT_EQ(sentinel[0].cl, 3);
  EXPECT_EQ(sentinel[0].site_id, site_of(0x11));
  EXPECT_EQ(sentinel[0].db_version, b_only[0].db_version);
  EXPECT_EQ(sentinel[0].seq, b_only[0].seq);
}

TEST(MergeRules, UnknownPkColumnCreatesRowWithoutSentinel) {
  Pair p;
  p.a.exec("INSERT INTO t VALUES (1, 'fromA', 5)");
  p.b.merge(p.a.changes("cid = 'a'"));
  EXPECT_EQ(p.rows_b(), "(1, 'fromA', NULL) ");
  EXPECT_TRUE(p.b.changes("cid = '-1'").empty());
}

TEST(MergeRules, HigherColVersionWinsWhateverTheValue) {
  Pair p;
  p.a.exec("INSERT INTO t VALUES (1, 'x', 10)");
  p.sync();
  p.a.exec("UPDATE t SET a = 'aaa'");
  p.a.exec("UPDATE t SET a = 'aab'");
  p.b.exec("UPDATE t SET a = 'zzz'");
  p.sync();
  EXPECT_EQ(p.rows_a(), "(1, 'aab', 10) ");
  EXPECT_EQ(p.rows_b(), "(1, 'aab', 10) ");
}

TEST(MergeRules, ConcurrentInsertsMergePerColumnByValue) {
  Pair p;
  p.a.exec("INSERT INTO t VALUES (1, 'fromA', 5)");
  p.b.exec("INSERT INTO t VALUES (1, 'fromB', 3)");
  p.sync();
  EXPECT_EQ(p.rows_a(), "(1, 'fromB', 5) ");
  EXPECT_EQ(p.rows_b(), "(1, 'fromB', 5) ");
}

TEST(MergeRules, EqualValuesWithoutMergeEqualValuesKeepLocalClocks) {
  Pair p(false);
  p.a.exec("INSERT INTO t VALUES (1, 'x', 10)");
  p.sync();
  p.a.exec("UPDATE t SET a = 'same'");
  p.b.exec("UPDATE t SET a = 'same'");
  p.sync();
  EXPECT_EQ(p.a.changes("cid = 'a'")[0].site_id, site_of(0x11));
  EXPECT_EQ(p.b.changes("cid = 'a'")[0].site_id, site_of(0x22));
  // Concurrent deletes: each side keeps its own entry.
  p.a.exec("DELETE FROM t");
  p.b.exec("DELETE FROM t");
  p.sync();
  EXPECT_EQ(p.a.changes("cid = '-1'")[0].site_id, site_of(0x11));
  EXPECT_EQ(p.b.changes("cid = '-1'")[0].site_id, site_of(0x22));
}

TEST(MergeRules, EqualValuesWithMergeEqualValuesGreaterSiteWins) {
  Pair p(true);
  p.a.exec("INSERT INTO t VALUES (1, 'x', 10)");
  p.sync();
  p.a.exec("UPDATE t SET a = 'same'");
  p.b.exec("UPDATE t SET a = 'same'");
  p.sync();
  EXPECT_EQ(p.a.changes("cid = 'a'")[0].site_id, site_of(0x22));
  EXPECT_EQ(p.b.changes("cid = 'a'")[0].site_id, site_of(0x22));
  p.a.exec("DELETE FROM t");
  p.b.exec("DELETE FROM t");
  p.sync();
  EXPECT_EQ(p.a.changes("cid = '-1'")[0].site_id, site_of(0x22));
  EXPECT_EQ(p.b.changes("cid = '-1'")[0].site_id, site_of(0x22));
  // Live sentinels of concurrent re-inserts are not tie-broken.
  p.a.exec("INSERT INTO t VALUES (1, 'r', 1)");
  p.b.exec("INSERT INTO t VALUES (1, 'r', 1)");
  p.sync();
  EXPECT_EQ(p.a.changes("cid = '-1'")[0].site_id, site_of(0x11));
  EXPECT_EQ(p.b.changes("cid = '-1'")[0].site_id, site_of(0x22));
  EXPECT_EQ(p.a.changes("cid = 'a'")[0].site_id, site_of(0x22));
}

TEST(MergeRules, LowerCausalLengthIsIgnoredAndReportIsExact) {
  Pair p;
  p.a.exec("INSERT INTO t VALUES (1, 'x', 10)");
  auto old = p.a.changes();
  p.a.exec("DELETE FROM t");
  p.b.merge(p.a.changes());
  auto report = p.b.merge(old);
  EXPECT_EQ(report.num_applied(), 0u);
  EXPECT_EQ(report.num_noop(), 2u);
  EXPECT_TRUE(report.changed_rows.empty());
  EXPECT_EQ(p.rows_b(), "");
}

TEST(MergeRules, BatchIsAtomic) {
  Pair p;
  p.a.exec("INSERT INTO t VALUES (1, 'x', 10)");
  auto cs = p.a.changes();
  Change bad = cs[0];
  bad.cid = "no_such_column";
  cs.push_back(bad);
  Merger m(*p.b.crr);
  auto r = m.apply(cs);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("no_such_column"), std::string::npos);
  EXPECT_EQ(p.rows_b(), "");
  EXPECT_TRUE(p.b.changes().empty());
}

}  // namespace
}  // namespace patina::crdt
