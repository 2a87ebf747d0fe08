// Schema files: validation rules with their messages, diff & apply, refusal of
// destructive changes with nothing half-applied, add-column creating no change.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "crdt/schema.hpp"
#include "test_db.hpp"

namespace patina::crdt {
namespace {

using testing::site_of;
using testing::TestDb;

Result<Schema> parse1(const std::string& sql) {
  return SchemaManager::parse({SchemaSource{"s.sql", sql}});
}

std::string parse_error(const std::string& sql) {
  auto r = parse1(sql);
  return r ? "" : r.error().message;
}

TEST(SchemaRules, EachRuleWithItsMessage) {
  struct Case {
    const char* sql;
    const char* needle;
  } cases[] = {
      {"CREATE TABLE t (id INTEGER PRIMARY KEY, v)", "table t has no primary key or primary key is nullable"},
      {"CREATE TABLE t (v TEXT)", "table t has no primary key"},
      {"CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a TEXT NOT NULL)",
       "table t has a NOT NULL column without a DEFAULT VALUE: column a"},
      {"CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a TEXT UNIQUE)", "unique ind"},
      {"CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a); CREATE UNIQUE INDEX ta ON t (a)",
       "unique indexes are not allowed"},
      {"CREATE TABLE r (id INTEGER PRIMARY KEY NOT NULL);"
       "CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, p INTEGER REFERENCES r(id))",
       "table t has checked foreign key constraints: column p"},
      {"CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL)", "auto-increment"},
      {"CREATE TEMP TABLE t (id INTEGER PRIMARY KEY NOT NULL)", "only CREATE TABLE"},
      {"CREATE TABLE t AS SELECT 1 AS id", "AS SELECT"},
      {"INSERT INTO t VALUES (1)", "only CREATE TABLE, CREATE INDEX and DROP INDEX IF EXISTS"},
      {"DROP INDEX ti", "only CREATE TABLE"},
      {"CREATE VIEW v AS SELECT 1", "only CREATE TABLE"},
      {"CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v); CREATE INDEX ti ON t (v);"
       "DROP INDEX IF EXISTS ti",
       "dropping index ti that the same schema creates"},
      {"CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v) garbage", "garbage"},
      {"CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL); CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL)",
       "already exists"},
  };
  for (const auto& c : cases) {
    auto e = parse_error(c.sql);
    EXPECT_NE(e.find(c.needle), std::string::npos) << c.sql << "\n  got: " << e;
    EXPECT_NE(e.find("s.sql"), std::string::npos) << e;
  }
  EXPECT_EQ(parse_error("-- comment\nCREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY NOT NULL, "
                        "a TEXT NOT NULL DEFAULT '', b);\n/* c */ CREATE INDEX tb ON t (b);\n"
                        "DROP INDEX IF EXISTS old_index;"),
            "");
}

class SchemaApply : public ::testing::Test {
 protected:
  TestDb a{site_of(0x11)};
  Result<SchemaChanges> apply(const std::string& sql, const std::string& file = "s.sql") {
    auto s = SchemaManager::parse({SchemaSource{file, sql}});
    if (!s) return tl::unexpected(s.error());
    return SchemaManager(*a.crr).apply(*s);
  }
  std::string objects() { return a.dump("SELECT type, name FROM sqlite_master WHERE name NOT LIKE '%crsql%' "
                                        "AND name NOT LIKE '__patina%' AND name NOT LIKE 'sqlite_%' ORDER BY name"); }
};

TEST_F(SchemaApply, CreatesTablesAndIndexesThenDiffs) {
  auto r = apply("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a TEXT); CREATE INDEX ta ON t (a);");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->created_tables, std::vector<std::string>{"t"});
  EXPECT_TRUE(a.crr->is_crr("t"));
  a.exec("INSERT INTO t VALUES (1, 'x')");
  EXPECT_EQ(a.changes().size(), 1u);

  // Same schema again: nothing to do, and nothing written (the schema
  // cookie stays), so a reload works even on a full disk.
  std::string cookie = a.dump("PRAGMA schema_version");
  r = apply("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a TEXT); CREATE INDEX ta ON t (a);");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_TRUE(r->empty());
  EXPECT_EQ(a.dump("PRAGMA schema_version"), cookie);

  // Changed index, new column, index dropped when absent from the definition.
  r = apply("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a TEXT, b INTEGER NOT NULL DEFAULT 42);"
            "CREATE INDEX tb ON t (b);");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->added_columns, std::vector<std::string>{"t.b"});
  EXPECT_EQ(r->dropped_indexes, std::vector<std::string>{"ta"});
  EXPECT_EQ(r->created_indexes, std::vector<std::string>{"tb"});
  EXPECT_EQ(objects(), "('table', 't') ('index', 'tb') ");
  // Capture follows the new column.
  a.exec("UPDATE t SET b = 7 WHERE id = 1");
  EXPECT_EQ(testing::briefs(a.changes("cid = 'b'")), "b 7 cv1 db2 cl1 seq0");

  // Tables absent from the input are kept.
  r = apply("CREATE TABLE u (id INTEGER PRIMARY KEY NOT NULL)");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_TRUE(a.crr->is_crr("t"));
  EXPECT_TRUE(a.crr->is_crr("u"));
}

TEST_F(SchemaApply, RefusesDestructiveChangesAndAppliesNothing) {
  ASSERT_TRUE(apply("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a TEXT, b INTEGER)"));
  std::string before = objects();
  struct Case {
    const char* sql;
    const char* needle;
  } cases[] = {
      {"CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a TEXT)", "table t: column b: dropping a column"},
      {"CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a TEXT, b TEXT)",
       "table t: column b: changing a column definition"},
      {"CREATE TABLE t (id INTEGER NOT NULL, a TEXT NOT NULL DEFAULT '', b INTEGER, PRIMARY KEY (id, a))",
       "table t: column a: changing the primary key"},
      {"CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a TEXT, b INTEGER, c);"
       "CREATE TABLE v (id INTEGER PRIMARY KEY NOT NULL);"
       "CREATE TABLE w (id INTEGER PRIMARY KEY NOT NULL, x TEXT);"
       "CREATE TABLE t2 (id INTEGER PRIMARY KEY NOT NULL, q);",
       ""},
  };
  for (const auto& c : cases) {
    if (!*c.needle) continue;
    auto r = apply(c.sql, "tables.sql");
    ASSERT_FALSE(r) << c.sql;
    EXPECT_NE(r.error().message.find(c.needle), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find("tables.sql"), std::string::npos) << r.error().message;
    EXPECT_EQ(objects(), before);
  }
  // A later failure (here: a table whose existing rows break nothing, but a
  // plain table of the same name exists with another pk) rolls everything back.
  a.exec("CREATE TABLE z (k TEXT PRIMARY KEY NOT NULL, v)");
  auto r = apply("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a TEXT, b INTEGER, c);"
                 "CREATE TABLE y (id INTEGER PRIMARY KEY NOT NULL);"
                 "CREATE TABLE z (k INTEGER PRIMARY KEY NOT NULL, v)");
  ASSERT_FALSE(r);
  EXPECT_EQ(a.rows("SELECT 1 FROM pragma_table_info('t') WHERE name = 'c'").size(), 0u);
  EXPECT_FALSE(a.crr->is_crr("y"));
  EXPECT_EQ(a.rows("SELECT 1 FROM sqlite_master WHERE name = 'y'").size(), 0u);
  a.exec("INSERT INTO t VALUES (1, 'x', 2)");  // capture still works after the rollback
  EXPECT_EQ(a.changes().size(), 2u);
}

TEST_F(SchemaApply, AddedColumnKeepsItsFullDefinition) {
  ASSERT_TRUE(apply("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a TEXT)"));
  auto r = apply("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a TEXT, "
                 "\"n, m\" INTEGER NOT NULL DEFAULT 3 CHECK (\"n, m\" > 0), "
                 "c TEXT COLLATE NOCASE DEFAULT 'x(y)', CHECK (a != 'bad'))");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->added_columns, (std::vector<std::string>{"t.n, m", "t.c"}));
  EXPECT_NE(a.exec_err("INSERT INTO t (id, \"n, m\") VALUES (1, -1)"), "");  // the CHECK came along
  a.exec("INSERT INTO t (id, c) VALUES (2, 'ABC')");
  EXPECT_EQ(a.dump("SELECT id FROM t WHERE c = 'abc'"), "(2) ");  // and the COLLATE
}

TEST_F(SchemaApply, LiteralsAreKeptAsWritten) {
  ASSERT_TRUE(apply("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a TEXT DEFAULT 'two  spaces')"));
  a.exec("INSERT INTO t (id) VALUES (1)");
  EXPECT_EQ(a.dump("SELECT a FROM t"), "('two  spaces') ");
}

TEST_F(SchemaApply, OuterRollbackOfASchemaChangeIsForgotten) {
  ASSERT_TRUE(apply("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a TEXT)"));
  // Inside a writer transaction that then rolls back as a whole.
  a.exec("BEGIN");
  ASSERT_TRUE(apply("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a TEXT, b TEXT);"
                    "CREATE TABLE u (id INTEGER PRIMARY KEY NOT NULL)"));
  EXPECT_TRUE(a.crr->is_crr("u"));
  a.exec("ROLLBACK");
  EXPECT_FALSE(a.crr->is_crr("u"));
  EXPECT_EQ(a.crr->table_info("t")->non_pks.size(), 1u);
  a.exec("INSERT INTO t VALUES (1, 'x')");
  EXPECT_EQ(a.changes().size(), 1u);
  // The same through a job savepoint and TxMark/restore.
  a.exec("BEGIN");
  auto m = a.crr->mark();
  a.exec("SAVEPOINT job");
  ASSERT_TRUE(apply("CREATE TABLE v (id INTEGER PRIMARY KEY NOT NULL, w)"));
  a.exec("INSERT INTO v VALUES (1, 2)");
  a.exec("ROLLBACK TO job; RELEASE job");
  a.crr->restore(m);
  EXPECT_FALSE(a.crr->is_crr("v"));
  a.exec("UPDATE t SET a = 'y'");
  a.exec("COMMIT");
  EXPECT_EQ(a.crr->db_version(), 2);
}

TEST_F(SchemaApply, AddColumnOn100kRowsCreatesNoChange) {
  ASSERT_TRUE(apply("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a TEXT, b INTEGER, c REAL)"));
  a.exec("BEGIN");
  a.exec("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000) "
         "INSERT INTO t SELECT i, 'v' || i, i, i * 0.5 FROM n");
  a.exec("COMMIT");
  ASSERT_EQ(a.crr->db_version(), 1);
  auto count = [&] { return std::get<std::int64_t>(a.rows("SELECT count(*) FROM crsql_changes")[0][0]); };
  const auto before = count();
  ASSERT_EQ(before, 300000);
  auto r = apply("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a TEXT, b INTEGER, c REAL, "
                 "x TEXT, y INTEGER NOT NULL DEFAULT 7)");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(count(), before);
  EXPECT_EQ(a.crr->db_version(), 1);
  // A peer's write to the new column wins against the unwritten cell.
  Change c;
  c.table = "t";
  c.pk = PackedPk::pack(std::vector<Value>{std::int64_t{5}});
  c.cid = "y";
  c.val = std::int64_t{9};
  c.col_version = 1;
  c.db_version = 1;
  c.site_id = site_of(0x22);
  c.cl = 1;
  auto m = a.merge({c});
  EXPECT_EQ(m.num_applied(), 1u);
  EXPECT_EQ(a.dump("SELECT y FROM t WHERE id = 5"), "(9) ");
}

TEST(SchemaFiles, ReadsFoldersInNameOrder) {
  auto dir = std::filesystem::path(testing::temp_path("schema_dir"));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "b.sql") << "CREATE INDEX tv ON t (v);";
  std::ofstream(dir / "a.sql") << "CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v);";
  std::ofstream(dir / "ignored.txt") << "garbage";
  auto srcs = SchemaManager::read_paths({dir.string()});
  ASSERT_TRUE(srcs) << srcs.error().message;
  ASSERT_EQ(srcs->size(), 2u);
  auto s = SchemaManager::parse(*srcs);
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(s->tables.at("t").indexes.size(), 1u);
  EXPECT_FALSE(SchemaManager::read_paths({(dir / "missing.sql").string()}));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace patina::crdt
