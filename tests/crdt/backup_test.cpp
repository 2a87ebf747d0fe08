// Backups are node-neutral; restore keeps or replaces the identity.
#include <gtest/gtest.h>

#include "crdt/backup.hpp"
#include "crdt/bookkeeping.hpp"
#include "test_db.hpp"

namespace patina::crdt {
namespace {

using testing::site_of;
using testing::TestDb;

class Backup : public ::testing::Test {
 protected:
  std::string copy = testing::temp_path("backup_copy.db");
  void SetUp() override { std::remove(copy.c_str()); }
  void TearDown() override { std::remove(copy.c_str()); }

  // Node B with its own writes and some of A's, backed up with VACUUM INTO.
  void make_backup() {
    TestDb a{site_of(0xaa)}, b{site_of(0xbb)};
    for (auto* d : {&a, &b}) {
      d->exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v TEXT)");
      d->crr_table("t");
      ASSERT_TRUE(Bookkeeper::open(d->db));
    }
    a.exec("INSERT INTO t VALUES (1, 'from a')");
    b.merge(a.changes());
    b.exec("INSERT INTO t VALUES (2, 'from b')");
    b.exec("INSERT INTO t VALUES (3, 'from b too')");
    b.exec("CREATE TABLE __patina_members (id)");
    b.exec("INSERT INTO __patina_members VALUES (1)");
    b.exec("VACUUM INTO '" + copy + "'");
  }
};

TEST_F(Backup, NeutralCopyThenFreshIdentity) {
  make_backup();
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(copy.c_str(), &raw), SQLITE_OK);
  std::vector<std::string> clear = {"__patina_members"};
  ASSERT_TRUE(BackupCleaner::make_node_neutral(raw, clear));
  ASSERT_TRUE(BackupCleaner::make_node_neutral(raw, clear));  // idempotent
  sqlite3_close(raw);

  TestDb c{site_of(0xcc), true, copy};
  EXPECT_EQ(c.crr->site_id(), site_of(0xcc));
  EXPECT_EQ(c.crr->db_version(), 0);
  EXPECT_EQ(c.dump("SELECT count(*) FROM __patina_members"), "(0) ");
  // Every clock still names its writer explicitly.
  auto all = c.changes("1", "pk");
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].site_id, site_of(0xaa));
  EXPECT_EQ(all[1].site_id, site_of(0xbb));
  EXPECT_EQ(all[1].db_version, 1);
  EXPECT_EQ(all[2].site_id, site_of(0xbb));
  // B's versions are known, so they are not fetched again.
  auto books = Bookkeeper::open(c.db);
  ASSERT_TRUE(books);
  EXPECT_TRUE(books->contains_version(site_of(0xbb), 2));
  c.exec("INSERT INTO t VALUES (4, 'from c')");
  EXPECT_EQ(c.crr->db_version(), 1);
  EXPECT_EQ(c.changes("pk = x'010904'")[0].site_id, site_of(0xcc));
}

TEST_F(Backup, RestoreKeepsIdentity) {
  make_backup();
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(copy.c_str(), &raw), SQLITE_OK);
  ASSERT_TRUE(BackupCleaner::make_node_neutral(raw));
  ASSERT_TRUE(BackupCleaner::adopt_identity(raw, site_of(0xbb)));
  ASSERT_TRUE(BackupCleaner::adopt_identity(raw, site_of(0xbb)));  // idempotent
  sqlite3_close(raw);

  TestDb b{site_of(0x99), true, copy};
  EXPECT_EQ(b.crr->site_id(), site_of(0xbb));
  EXPECT_EQ(b.crr->db_version(), 2);
  EXPECT_EQ(b.dump("SELECT count(*) FROM t__crsql_clock WHERE site_id = 0"), "(2) ");
  b.exec("INSERT INTO t VALUES (5, 'again b')");
  EXPECT_EQ(b.crr->db_version(), 3);
  EXPECT_EQ(b.changes("site_id = x'" + to_hex(site_of(0xbb)) + "'").size(), 3u);
  EXPECT_EQ(b.changes("site_id = x'" + to_hex(site_of(0xaa)) + "'").size(), 1u);
}

TEST_F(Backup, AdoptAnotherIdentityOnANonNeutralSnapshot) {
  make_backup();
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(copy.c_str(), &raw), SQLITE_OK);
  ASSERT_TRUE(BackupCleaner::adopt_identity(raw, site_of(0xaa)));  // B moved out, A moved in
  sqlite3_close(raw);
  TestDb a{site_of(0x99), true, copy};
  EXPECT_EQ(a.crr->site_id(), site_of(0xaa));
  EXPECT_EQ(a.crr->db_version(), 1);
  EXPECT_EQ(a.changes("site_id = x'" + to_hex(site_of(0xbb)) + "'").size(), 2u);
}

}  // namespace
}  // namespace patina::crdt
