// The subscription matcher against the truth: after every batch of random
// writes, the rows a client holds (first rows + every change event) equal a
// fresh run of the query. Joins, LEFT joins, self-joins, composite pks,
// deletes, resurrections and pk changes; aggregates and subqueries (full
// mode) too.

#include <gtest/gtest.h>

#include <map>
#include <random>

#include <boost/json.hpp>

#include "api/sub_plan.hpp"
#include "api/sub_state.hpp"
#include "crdt/packed_pk.hpp"

namespace patina::api {
namespace {

namespace json = boost::json;

class SubStateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = core::Db::open(":memory:", core::Db::Mode::read_write);
    ASSERT_TRUE(db);
    db_ = std::move(*db);
    ASSERT_TRUE(db_.exec("CREATE TABLE t1 (id INTEGER NOT NULL PRIMARY KEY, a INTEGER, b TEXT);"
                         "CREATE TABLE t2 (k INTEGER NOT NULL PRIMARY KEY, v INTEGER);"
                         "CREATE TABLE t3 (p INTEGER NOT NULL, q TEXT NOT NULL, w INTEGER, PRIMARY KEY (p, q));"
                         "CREATE TABLE other (id INTEGER PRIMARY KEY);"));
  }

  Result<SubPlan> plan(const std::string& sql) {
    Statement st;
    st.sql = sql;
    return SubPlan::make(db_, st, {"t1", "t2", "t3"});
  }

  // The query's rows now, as a sorted multiset of cell arrays.
  std::multiset<std::string> truth(const std::string& sql) {
    std::multiset<std::string> out;
    auto st = db_.prepare(sql);
    EXPECT_TRUE(st) << sql;
    if (!st) return out;
    while (true) {
      auto row = st->step();
      EXPECT_TRUE(row);
      if (!row || !*row) break;
      json::array cells;
      for (int i = 0; i < st->column_count(); ++i) cells.push_back(value_to_json(st->column(i)));
      out.insert(json::serialize(cells));
    }
    return out;
  }

  void exec(const std::string& sql) { ASSERT_TRUE(db_.exec(sql)) << sql; }

  core::Db db_;
};

std::vector<std::uint8_t> pk_int(std::int64_t v) {
  std::vector<crdt::Value> vals{crdt::Value{v}};
  return crdt::PackedPk::pack(vals);
}
std::vector<std::uint8_t> pk_pq(std::int64_t p, const std::string& q) {
  std::vector<crdt::Value> vals{crdt::Value{p}, crdt::Value{q}};
  return crdt::PackedPk::pack(vals);
}

// What a client holds: rowid -> cells.
struct Client {
  std::map<std::int64_t, std::string> rows;
  std::int64_t last_change_id = 0;
  std::string problem;

  void apply(const std::vector<SubChange>& changes) {
    for (const auto& c : changes) {
      if (c.change_id != last_change_id + 1 && problem.empty()) problem = "change ids not contiguous";
      last_change_id = c.change_id;
      bool known = rows.count(c.rowid) != 0;
      if (c.type == SubChange::insert) {
        if (known && problem.empty()) problem = "insert of a rowid the client holds";
        rows[c.rowid] = c.cells;
      } else if (c.type == SubChange::update) {
        if (!known && problem.empty()) problem = "update of an unknown rowid";
        rows[c.rowid] = c.cells;
      } else {
        if (!known && problem.empty()) problem = "delete of an unknown rowid";
        rows.erase(c.rowid);
      }
    }
  }
  std::multiset<std::string> cells() const {
    std::multiset<std::string> out;
    for (const auto& [id, c] : rows) out.insert(c);
    return out;
  }
};

void load_snapshot(Client& client, const SubState& state) {
  for (const auto& line : state.snapshot()) {
    auto v = json::parse(line);
    const auto& row = v.at("row").as_array();
    client.rows[row[0].as_int64()] = json::serialize(row[1]);
  }
}

struct Case {
  const char* sql;
  SubPlan::Mode mode;
};

const Case cases[] = {
    {"SELECT id, a, b FROM t1 WHERE a > 3", SubPlan::Mode::incremental},
    {"SELECT t1.id, t1.a, t2.v FROM t1 JOIN t2 ON t2.k = t1.a ORDER BY t1.id", SubPlan::Mode::incremental},
    {"SELECT t1.id, t2.v FROM t1 LEFT JOIN t2 ON t2.k = t1.a WHERE t1.b IS NOT NULL", SubPlan::Mode::incremental},
    {"SELECT x.id, y.id, x.b FROM t1 AS x JOIN t1 y ON x.a = y.a WHERE x.id < y.id", SubPlan::Mode::incremental},
    {"SELECT t1.id, t2.k, t3.w FROM t1 LEFT JOIN t2 ON t2.k = t1.a LEFT JOIN t3 ON t3.p = t2.v",
     SubPlan::Mode::incremental},
    {"SELECT p, q, w FROM t3 WHERE w % 2 = 0", SubPlan::Mode::incremental},
    {"SELECT * FROM t2, t3 WHERE t3.p = t2.v", SubPlan::Mode::incremental},
    {"SELECT a, count(*), sum(id) FROM t1 GROUP BY a", SubPlan::Mode::full},
    {"SELECT id FROM t1 WHERE a IN (SELECT k FROM t2)", SubPlan::Mode::full},
    {"SELECT DISTINCT a FROM t1", SubPlan::Mode::full},
    {"SELECT id, b FROM t1 ORDER BY id LIMIT 5", SubPlan::Mode::full},
    {"SELECT a FROM t1 UNION ALL SELECT v FROM t2", SubPlan::Mode::full},
};

TEST_F(SubStateTest, MaterializedRowsEqualTheQueryAfterRandomWrites) {
  for (const auto& c : cases) {
    for (std::uint32_t seed = 1; seed <= 12; ++seed) {
      SetUp();  // a fresh database per run
      std::mt19937 rng(seed);
      auto r = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
      auto p = plan(c.sql);
      ASSERT_TRUE(p) << c.sql << ": " << p.error().message;
      ASSERT_EQ(p->mode(), c.mode) << c.sql << " " << p->full_reason();
      // Some rows before the subscription starts.
      for (int i = 0; i < 8; ++i) {
        exec(fmt::format("INSERT OR REPLACE INTO t1 VALUES ({}, {}, {})", r(12), r(8), r(3) ? "'x'" : "NULL"));
        exec(fmt::format("INSERT OR REPLACE INTO t2 VALUES ({}, {})", r(8), r(6)));
        exec(fmt::format("INSERT OR REPLACE INTO t3 VALUES ({}, '{}', {})", r(6), "ab"[r(2)], r(5)));
      }
      SubState state(std::move(*p));
      ASSERT_TRUE(state.initialize(db_));
      Client client;
      load_snapshot(client, state);
      ASSERT_EQ(client.cells(), truth(c.sql)) << c.sql;
      for (int batch = 0; batch < 25; ++batch) {
        ChangedRows changed;
        int ops = 1 + r(4);
        for (int k = 0; k < ops; ++k) {
          int id = r(12);
          switch (r(7)) {
            case 0:  // insert or resurrect
            case 1:
              exec(fmt::format("INSERT OR REPLACE INTO t1 VALUES ({}, {}, {})", id, r(8), r(3) ? "'y'" : "NULL"));
              changed["t1"].push_back(pk_int(id));
              break;
            case 2:  // update a non-pk column
              exec(fmt::format("UPDATE t1 SET a = {} WHERE id = {}", r(8), id));
              changed["t1"].push_back(pk_int(id));
              break;
            case 3:  // delete
              exec(fmt::format("DELETE FROM t1 WHERE id = {}", id));
              changed["t1"].push_back(pk_int(id));
              break;
            case 4: {  // pk change: a delete of the old key and an insert of the new
              int to = 20 + r(10);
              exec(fmt::format("UPDATE OR REPLACE t1 SET id = {} WHERE id = {}", to, id));
              changed["t1"].push_back(pk_int(id));
              changed["t1"].push_back(pk_int(to));
              break;
            }
            case 5: {
              int key = r(8);
              if (r(3) == 0) exec(fmt::format("DELETE FROM t2 WHERE k = {}", key));
              else exec(fmt::format("INSERT OR REPLACE INTO t2 VALUES ({}, {})", key, r(6)));
              changed["t2"].push_back(pk_int(key));
              break;
            }
            default: {
              int pp = r(6);
              std::string q(1, "ab"[r(2)]);
              if (r(3) == 0) exec(fmt::format("DELETE FROM t3 WHERE p = {} AND q = '{}'", pp, q));
              else exec(fmt::format("INSERT OR REPLACE INTO t3 VALUES ({}, '{}', {})", pp, q, r(5)));
              changed["t3"].push_back(pk_pq(pp, q));
            }
          }
        }
        // Unrelated tables and malformed keys are ignored.
        changed["other"].push_back(pk_int(1));
        changed["t1"].push_back({0xff, 0x01});
        auto events = state.match(db_, changed);
        ASSERT_TRUE(events) << c.sql << ": " << events.error().message;
        client.apply(*events);
        ASSERT_EQ(client.problem, "") << c.sql << " seed " << seed << " batch " << batch;
        ASSERT_EQ(client.cells(), truth(c.sql)) << c.sql << " seed " << seed << " batch " << batch;
        ASSERT_EQ(client.last_change_id, state.last_change_id());
      }
      // A restart: saved and loaded state goes on from the same ids.
      auto path = ::testing::TempDir() + "/sub_state_test.sqlite";
      ASSERT_TRUE(state.save(path, {{{"id", "x"}}, {{1, "e"}}}));
      auto p2 = plan(c.sql);
      ASSERT_TRUE(p2);
      SubState again(std::move(*p2));
      auto saved = again.load(path);
      ASSERT_TRUE(saved) << saved.error().message;
      EXPECT_EQ(saved->meta["id"], "x");
      ASSERT_EQ(saved->log.size(), 1u);
      EXPECT_EQ(again.last_change_id(), state.last_change_id());
      exec("DELETE FROM t1 WHERE id % 2 = 0");
      exec("INSERT OR REPLACE INTO t2 VALUES (3, 3)");
      auto missed = again.refresh(db_);
      ASSERT_TRUE(missed);
      client.apply(*missed);
      ASSERT_EQ(client.problem, "");
      ASSERT_EQ(client.cells(), truth(c.sql)) << c.sql << " after restore";
    }
  }
}

TEST_F(SubStateTest, RefusesWhatItCannotMaintain) {
  auto expect_refused = [&](const std::string& sql, const std::string& needle) {
    auto p = plan(sql);
    ASSERT_FALSE(p) << sql;
    EXPECT_EQ(p.error().code, Errc::invalid_argument);
    EXPECT_NE(p.error().message.find(needle), std::string::npos) << sql << ": " << p.error().message;
  };
  expect_refused("SELECT 1", "at least one replicated table");
  expect_refused("SELECT * FROM other", "`other` is not one");
  expect_refused("SELECT * FROM t1 JOIN other ON other.id = t1.id", "`other` is not one");
  expect_refused("INSERT INTO t1 VALUES (1, 1, 'a')", "read-only SELECT");
  expect_refused("SELECT * FROM t1; SELECT * FROM t2", "exactly one statement");
  expect_refused("SELECT * FROM nope", "no such table");
  expect_refused("SELECT nope FROM t1", "no such column");
  expect_refused("SELECT * FROM sqlite_schema", "not one");
}

TEST_F(SubStateTest, ParametersAreInlinedIntoTheIdentity) {
  Statement st;
  st.sql = "SELECT id FROM t1 WHERE a = ? AND b = ?";
  st.params = {std::int64_t{3}, std::string("it's")};
  auto p = SubPlan::make(db_, st, {"t1"});
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->sql(), "SELECT id FROM t1 WHERE a = 3 AND b = 'it''s'");
  EXPECT_EQ(p->mode(), SubPlan::Mode::incremental);
  Statement named;
  named.sql = "SELECT id FROM t1 WHERE b = :b";
  named.named_params = {{":b", std::string("x")}};
  auto q = SubPlan::make(db_, named, {"t1"});
  ASSERT_TRUE(q) << q.error().message;
  EXPECT_EQ(q->sql(), "SELECT id FROM t1 WHERE b = 'x'");
}

TEST_F(SubStateTest, RestrictedStatementsUseThePkColumns) {
  auto p = plan("SELECT t3.w, t2.v FROM t3 JOIN t2 ON t2.k = t3.p WHERE t3.w > 1 ORDER BY t3.w");
  ASSERT_TRUE(p);
  ASSERT_EQ(p->tables().size(), 2u);
  EXPECT_EQ(p->pk_width(), 3u);
  auto sql = p->restricted_sql(0, 2);
  EXPECT_NE(sql.find("(\"t3\".\"p\", \"t3\".\"q\") IN (VALUES (?,?),(?,?))"), std::string::npos) << sql;
  EXPECT_EQ(sql.find("ORDER BY"), std::string::npos) << sql;
  EXPECT_NE(p->full_sql().find("ORDER BY"), std::string::npos);
}

}  // namespace
}  // namespace patina::api
