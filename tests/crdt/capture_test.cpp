// Local writes on a replicated table, statement by statement as in FACTS.md §3-4.
#include <gtest/gtest.h>

#include "test_db.hpp"

namespace patina::crdt {
namespace {

using testing::briefs;
using testing::site_of;
using testing::TestDb;

class Capture : public ::testing::Test {
 protected:
  TestDb a{site_of(0x11)};
  void SetUp() override {
    a.exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a TEXT, b INTEGER)");
    a.crr_table("t");
  }
  std::string pk1() { return briefs(a.changes("pk = x'010901'", "cid")); }
};

TEST_F(Capture, FactsSequenceOnOneRow) {
  a.exec("INSERT INTO t VALUES (1,'x',10)");
  EXPECT_EQ(a.crr->db_version(), 1);
  EXPECT_EQ(pk1(), "a 'x' cv1 db1 cl1 seq0 | b 10 cv1 db1 cl1 seq1");

  a.exec("UPDATE t SET a='x'");
  EXPECT_EQ(a.crr->db_version(), 1);

  a.exec("UPDATE t SET a='y', b=10");
  EXPECT_EQ(a.crr->db_version(), 2);
  EXPECT_EQ(pk1(), "a 'y' cv2 db2 cl1 seq0 | b 10 cv1 db1 cl1 seq1");

  a.exec("INSERT INTO t VALUES (1,'y',10) ON CONFLICT(id) DO UPDATE SET a=excluded.a, b=excluded.b");
  a.exec("INSERT OR IGNORE INTO t VALUES (1,'q',99)");
  EXPECT_EQ(a.crr->db_version(), 2);

  a.exec("INSERT OR REPLACE INTO t VALUES (1,'y',10)");
  EXPECT_EQ(a.crr->db_version(), 3);
  EXPECT_EQ(pk1(), "a 'y' cv3 db3 cl1 seq1 | b 10 cv2 db3 cl1 seq2");

  a.exec("DELETE FROM t WHERE id=1");
  EXPECT_EQ(pk1(), "-1 NULL cv2 db4 cl2 seq0");

  a.exec("INSERT INTO t VALUES (1,'r',NULL)");
  EXPECT_EQ(pk1(), "-1 NULL cv3 db5 cl3 seq0 | a 'r' cv1 db5 cl3 seq1 | b NULL cv1 db5 cl3 seq2");

  a.exec("DELETE FROM t WHERE id=1");
  EXPECT_EQ(pk1(), "-1 NULL cv4 db6 cl4 seq0");
  a.exec("INSERT INTO t (id) VALUES (1)");
  EXPECT_EQ(pk1(), "-1 NULL cv5 db7 cl5 seq0 | a NULL cv1 db7 cl5 seq1 | b NULL cv1 db7 cl5 seq2");

  a.exec("UPDATE t SET id=3 WHERE id=1");
  EXPECT_EQ(a.crr->db_version(), 8);
  EXPECT_EQ(pk1(), "-1 NULL cv6 db8 cl6 seq0");
  EXPECT_EQ(briefs(a.changes("pk = x'010903'", "cid")),
            "-1 NULL cv1 db8 cl1 seq1 | a NULL cv2 db8 cl1 seq2 | b NULL cv2 db8 cl1 seq3");
}

TEST_F(Capture, ReplaceWithRecursiveTriggersIsAResurrect) {
  a.exec("PRAGMA recursive_triggers = ON");
  a.exec("INSERT INTO t VALUES (1,'x',10)");
  a.exec("INSERT OR REPLACE INTO t VALUES (1,'x',10)");
  EXPECT_EQ(pk1(), "-1 NULL cv3 db2 cl3 seq1 | a 'x' cv1 db2 cl3 seq2 | b 10 cv1 db2 cl3 seq3");
}

TEST_F(Capture, OneVersionPerTransactionWithSeqGaps) {
  a.exec("BEGIN; INSERT INTO t VALUES (1,'a',1); INSERT INTO t VALUES (2,'b',2);"
         "UPDATE t SET a='bb' WHERE id=2; COMMIT");
  EXPECT_EQ(a.crr->db_version(), 1);
  EXPECT_EQ(briefs(a.changes("1", "seq")),
            "a 'a' cv1 db1 cl1 seq0 | b 1 cv1 db1 cl1 seq1 | b 2 cv1 db1 cl1 seq3 | a 'bb' cv2 db1 cl1 seq4");
}

TEST_F(Capture, TypeSensitiveChangeDetection) {
  a.exec("CREATE TABLE w (k TEXT PRIMARY KEY NOT NULL, v)");
  a.crr_table("w");
  a.exec("INSERT INTO w VALUES (5, 1)");
  EXPECT_EQ(to_hex(a.changes("\"table\"='w'")[0].pk), "010b0135");  // stored as text '5'
  a.exec("UPDATE w SET v = 1.0");
  a.exec("UPDATE w SET v = '1'");
  EXPECT_EQ(briefs(a.changes("\"table\"='w'")), "v '1' cv3 db3 cl1 seq0");
}

TEST_F(Capture, PkOnlyTableUsesSentinel) {
  a.exec("CREATE TABLE p (k TEXT PRIMARY KEY NOT NULL)");
  a.crr_table("p");
  a.exec("INSERT INTO p VALUES ('x')");
  EXPECT_EQ(briefs(a.changes("\"table\"='p'")), "-1 NULL cv1 db1 cl1 seq0");
  a.exec("DELETE FROM p");
  a.exec("INSERT INTO p VALUES ('x')");
  EXPECT_EQ(briefs(a.changes("\"table\"='p'")), "-1 NULL cv3 db3 cl3 seq0");
}

TEST_F(Capture, RolledBackTransactionRecordsNothing) {
  a.exec("BEGIN; INSERT INTO t VALUES (1,'a',1); ROLLBACK");
  EXPECT_EQ(a.crr->db_version(), 0);
  EXPECT_TRUE(a.changes().empty());
  a.exec("INSERT INTO t VALUES (1,'a',1)");
  EXPECT_EQ(a.crr->db_version(), 1);
}

TEST_F(Capture, BeginCommitReportsVersionAndLastSeq) {
  ASSERT_TRUE(a.crr->begin());
  a.exec("INSERT INTO t VALUES (1,'a',1)");
  a.exec("INSERT INTO t VALUES (2,'b',2)");
  EXPECT_EQ(a.crr->peek_next_db_version(), 1);
  auto c = a.crr->commit();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->db_version, 1);
  EXPECT_EQ(c->last_seq, 3);
  ASSERT_TRUE(a.crr->begin());
  a.exec("UPDATE t SET a = 'a' WHERE id = 1");
  c = a.crr->commit();
  ASSERT_TRUE(c);
  EXPECT_FALSE(c->db_version);
  EXPECT_EQ(a.crr->db_version(), 1);
}

TEST_F(Capture, BackfillExistingRowsInOneVersion) {
  a.exec("CREATE TABLE old (id INTEGER PRIMARY KEY NOT NULL, v TEXT, w INTEGER)");
  a.exec("INSERT INTO old VALUES (1,'a',1), (2,'b',2)");
  a.crr_table("old");
  EXPECT_EQ(a.crr->db_version(), 1);
  EXPECT_EQ(a.changes("\"table\"='old'", "seq").size(), 4u);
}

TEST_F(Capture, SiteIdAndVersionSurviveReopen) {
  std::string path = testing::temp_path("capture_reopen.db");
  std::remove(path.c_str());
  {
    TestDb d(site_of(0x42), true, path);
    d.exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a TEXT)");
    d.crr_table("t");
    d.exec("INSERT INTO t VALUES (1,'x')");
    d.exec("INSERT INTO t VALUES (2,'y')");
  }
  TestDb d(site_of(0x99), true, path);  // a different new_site_id is ignored
  EXPECT_EQ(d.crr->site_id(), site_of(0x42));
  EXPECT_EQ(d.crr->db_version(), 2);
  d.exec("INSERT INTO t VALUES (3,'z')");
  EXPECT_EQ(d.crr->db_version(), 3);
  std::remove(path.c_str());
}

TEST(CrrOpen, FreshDatabaseNeedsASiteId) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(":memory:", &db), SQLITE_OK);
  auto r = CrrTables::open(db, CrrOptions{});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("site id"), std::string::npos);
  sqlite3_close(db);
}

TEST(CrrRules, RejectsTablesCrSqliteRejects) {
  TestDb a{site_of(1)};
  struct Case {
    const char* sql;
    const char* name;
    const char* needle;
  } cases[] = {
      {"CREATE TABLE r1 (id INTEGER PRIMARY KEY, v)", "r1", "non nullable primary key"},
      {"CREATE TABLE r2 (v)", "r2", "no primary key"},
      {"CREATE TABLE r3 (id TEXT PRIMARY KEY)", "r3", "nullable"},
      {"CREATE TABLE r4 (id INTEGER PRIMARY KEY NOT NULL, a TEXT NOT NULL)", "r4",
       "NOT NULL column without a DEFAULT VALUE: column a"},
      {"CREATE TABLE r5 (id INTEGER PRIMARY KEY NOT NULL, a TEXT UNIQUE)", "r5", "unique ind"},
      {"CREATE TABLE r6 (id INTEGER PRIMARY KEY NOT NULL, p INTEGER REFERENCES r1(id))", "r6",
       "foreign key constraints: column p"},
      {"CREATE TABLE r7 (id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL)", "r7", "auto-increment"},
  };
  for (const auto& c : cases) {
    a.exec(c.sql);
    auto r = a.crr->make_crr(c.name);
    ASSERT_FALSE(r) << c.sql;
    EXPECT_NE(r.error().message.find(c.needle), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find(c.name), std::string::npos) << r.error().message;
  }
  a.exec("CREATE TABLE ok (id INTEGER PRIMARY KEY NOT NULL, a TEXT NOT NULL DEFAULT '', "
         "c INTEGER CHECK (c > 0)) STRICT");
  EXPECT_TRUE(a.crr->make_crr("ok"));
  a.exec("CREATE TABLE ok2 (a TEXT NOT NULL, b INTEGER NOT NULL, v, PRIMARY KEY (a, b)) WITHOUT ROWID");
  EXPECT_TRUE(a.crr->make_crr("ok2"));
  a.exec("CREATE INDEX ok2_v ON ok2 (v)");
  EXPECT_TRUE(a.crr->make_crr("ok2"));
}

}  // namespace
}  // namespace patina::crdt

namespace patina::crdt {
namespace {

TEST(GroupCommit, EachJobGetsItsOwnVersionAndFailedJobsGiveTheirsBack) {
  TestDb a{testing::site_of(0x11)};
  a.exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a TEXT)");
  a.crr_table("t");
  a.exec("BEGIN IMMEDIATE");
  // Job 1 records two rows.
  auto m1 = a.crr->mark();
  a.exec("SAVEPOINT job; INSERT INTO t VALUES (1, 'x'); INSERT INTO t VALUES (2, 'y'); RELEASE job");
  auto j1 = a.crr->end_version();
  EXPECT_EQ(j1.db_version, 1);
  EXPECT_EQ(j1.last_seq, 1);
  // Job 2 fails after recording: rolled back, its version is reused.
  auto m2 = a.crr->mark();
  a.exec("SAVEPOINT job; INSERT INTO t VALUES (3, 'z'); ROLLBACK TO job; RELEASE job");
  a.crr->restore(m2);
  // Job 3 is a no-op.
  a.exec("SAVEPOINT job; UPDATE t SET a = 'x' WHERE id = 1; RELEASE job");
  EXPECT_FALSE(a.crr->end_version().db_version);
  // Job 4 records.
  a.exec("SAVEPOINT job; UPDATE t SET a = 'q' WHERE id = 2; RELEASE job");
  auto j4 = a.crr->end_version();
  EXPECT_EQ(j4.db_version, 2);
  EXPECT_EQ(j4.last_seq, 0);
  a.exec("COMMIT");
  (void)m1;
  EXPECT_EQ(a.crr->db_version(), 2);
  EXPECT_EQ(testing::briefs(a.changes("1", "db_version, seq")),
            "a 'x' cv1 db1 cl1 seq0 | a 'q' cv2 db2 cl1 seq0");
  // Survives a reopen: the persisted version is the highest.
  a.reopen_crr(testing::site_of(0x11), std::nullopt);
  EXPECT_EQ(a.crr->db_version(), 2);
}

}  // namespace
}  // namespace patina::crdt
