// Table digests: equal contents give equal digests whatever the write order
// and whoever wrote them; any difference in a cell, its type or a row shows.
#include <gtest/gtest.h>

#include "crdt/digest.hpp"
#include "test_db.hpp"

namespace patina::crdt {
namespace {

using testing::site_of;
using testing::TestDb;

void make_table(TestDb& d) {
  d.exec("CREATE TABLE t (id INTEGER NOT NULL PRIMARY KEY, a TEXT, b)");
  d.crr_table("t");
  d.exec("CREATE TABLE u (k TEXT NOT NULL, n INTEGER NOT NULL, v BLOB, PRIMARY KEY (k, n))");
  d.crr_table("u");
}

std::vector<TableDigest> digest(TestDb& d) {
  auto r = digest_tables(d.db);
  EXPECT_TRUE(r) << (r ? "" : r.error().message);
  return r ? *r : std::vector<TableDigest>{};
}

TEST(Digest, SameContentsSameDigestWhateverTheOrderAndSite) {
  TestDb x(site_of(1)), y(site_of(2));
  make_table(x);
  make_table(y);
  x.exec("INSERT INTO t VALUES (1, 'a', 1), (2, 'b', 2.5)");
  x.exec("INSERT INTO u VALUES ('k', 1, x'00ff')");
  y.exec("INSERT INTO u VALUES ('k', 1, x'00ff')");
  y.exec("INSERT INTO t VALUES (2, 'b', 2.5)");
  y.exec("INSERT INTO t VALUES (1, 'z', 1)");
  y.exec("UPDATE t SET a = 'a' WHERE id = 1");
  auto dx = digest(x), dy = digest(y);
  ASSERT_EQ(dx.size(), 2u);
  EXPECT_EQ(dx, dy);
  EXPECT_EQ(dx[0].table, "t");
  EXPECT_EQ(dx[0].rows, 2);
  EXPECT_EQ(dx[0].hash.size(), 32u);
}

TEST(Digest, TypeValueAndRowDifferencesShow) {
  TestDb x(site_of(1)), y(site_of(2));
  make_table(x);
  make_table(y);
  x.exec("INSERT INTO t VALUES (1, 'a', 1)");
  y.exec("INSERT INTO t VALUES (1, 'a', '1')");
  EXPECT_NE(digest(x)[0].hash, digest(y)[0].hash);
  y.exec("UPDATE t SET b = 1.0 WHERE id = 1");
  EXPECT_NE(digest(x)[0].hash, digest(y)[0].hash);
  y.exec("UPDATE t SET b = 1 WHERE id = 1");
  EXPECT_EQ(digest(x)[0].hash, digest(y)[0].hash);
  y.exec("INSERT INTO t VALUES (2, NULL, NULL)");
  auto dy = digest(y);
  EXPECT_NE(digest(x)[0].hash, dy[0].hash);
  EXPECT_EQ(dy[0].rows, 2);
  y.exec("DELETE FROM t WHERE id = 2");
  EXPECT_EQ(digest(x)[0].hash, digest(y)[0].hash);
}

}  // namespace
}  // namespace patina::crdt
