// Property: random writes on 3-5 replicas, exchanged as random subsets, in
// random order, with duplicates, converge to identical tables once everyone
// has seen everything; and merging is idempotent.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <random>

#include "test_db.hpp"

namespace patina::crdt {
namespace {

using testing::site_of;
using testing::TestDb;

struct Op {
  int replica;
  int kind;  // 0 insert, 1 update, 2 delete, 3 upsert, 4 replace, 5 update pk, 6 no-op, 7 exchange
  int pk, pk2;
  int a, b;
};

const char* kText[] = {"", "a", "b", "zz", "é"};
Value b_value(int i) {
  switch (i % 5) {
    case 0: return Null{};
    case 1: return std::int64_t{i};
    case 2: return 1.5 * i;
    case 3: return std::string(kText[i % 5]);
    default: return Bytes{static_cast<std::uint8_t>(i)};
  }
}

void run_sql(TestDb& d, const std::string& sql, std::vector<Value> params) {
  sqlite3_stmt* s = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(d.db, sql.c_str(), -1, &s, nullptr), SQLITE_OK) << sqlite3_errmsg(d.db);
  for (std::size_t i = 0; i < params.size(); ++i) bind_value(s, static_cast<int>(i) + 1, params[i]);
  int rc = sqlite3_step(s);
  sqlite3_finalize(s);
  ASSERT_EQ(rc, SQLITE_DONE) << sql << ": " << sqlite3_errmsg(d.db);
}

void apply_op(TestDb& d, const Op& op) {
  Value id = std::int64_t{op.pk}, a = std::string(kText[op.a % 5]), b = b_value(op.b);
  switch (op.kind) {
    case 0: run_sql(d, "INSERT OR IGNORE INTO t VALUES (?, ?, ?)", {id, a, b}); break;
    case 1: run_sql(d, "UPDATE t SET a = ?, b = ? WHERE id = ?", {a, b, id}); break;
    case 2: run_sql(d, "DELETE FROM t WHERE id = ?", {id}); break;
    case 3:
      run_sql(d, "INSERT INTO t VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET b = excluded.b", {id, a, b});
      break;
    case 4: run_sql(d, "INSERT OR REPLACE INTO t VALUES (?, ?, ?)", {id, a, b}); break;
    case 5: run_sql(d, "UPDATE OR IGNORE t SET id = ? WHERE id = ?", {std::int64_t{op.pk2}, id}); break;
    default: run_sql(d, "UPDATE t SET a = a WHERE id = ?", {id}); break;
  }
}

std::vector<Change> sample(std::vector<Change> all, std::mt19937_64& rng, bool subset) {
  std::vector<Change> out;
  for (auto& c : all) {
    if (subset && rng() % 3 == 0) continue;
    out.push_back(c);
    if (rng() % 5 == 0) out.push_back(c);  // duplicate
  }
  std::shuffle(out.begin(), out.end(), rng);
  return out;
}

RC_GTEST_PROP(Convergence, RandomOpsAndExchangesConverge, ()) {
  const int n = *rc::gen::inRange(3, 6);
  const bool mev = *rc::gen::arbitrary<bool>();
  const auto seed = *rc::gen::arbitrary<std::uint64_t>();
  const auto ops = *rc::gen::container<std::vector<Op>>(rc::gen::construct<Op>(
      rc::gen::inRange(0, n), rc::gen::inRange(0, 8), rc::gen::inRange(1, 5), rc::gen::inRange(1, 5),
      rc::gen::inRange(0, 5), rc::gen::inRange(0, 10)));
  std::mt19937_64 rng(seed);
  std::vector<std::unique_ptr<TestDb>> dbs;
  for (int i = 0; i < n; ++i) {
    dbs.push_back(std::make_unique<TestDb>(site_of(static_cast<std::uint8_t>(0x10 * (i + 1))), mev));
    dbs.back()->exec("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, a TEXT, b)");
    dbs.back()->crr_table("t");
  }
  for (const auto& op : ops) {
    if (op.kind == 7) {
      auto& src = *dbs[static_cast<std::size_t>(op.replica)];
      auto& dst = *dbs[static_cast<std::size_t>((op.replica + 1 + op.pk) % n)];
      dst.merge(sample(src.changes(), rng, true));
    } else {
      apply_op(*dbs[static_cast<std::size_t>(op.replica)], op);
    }
  }
  // Everyone sends everything to everyone, in random order, until quiet.
  for (int round = 0; round < 12; ++round) {
    std::size_t applied = 0;
    for (int s = 0; s < n; ++s)
      for (int d = 0; d < n; ++d)
        if (s != d) applied += dbs[static_cast<std::size_t>(d)]->merge(sample(dbs[static_cast<std::size_t>(s)]->changes(), rng, false)).num_applied();
    if (applied == 0) break;
  }
  const std::string snapshot = "SELECT id, a, b, typeof(b) FROM t ORDER BY id";
  const std::string want = dbs[0]->dump(snapshot);
  for (int i = 1; i < n; ++i) RC_ASSERT(dbs[static_cast<std::size_t>(i)]->dump(snapshot) == want);
  // Idempotent: merging everything again changes nothing.
  for (int s = 0; s < n; ++s) {
    auto all = dbs[static_cast<std::size_t>(s)]->changes();
    RC_ASSERT(dbs[static_cast<std::size_t>((s + 1) % n)]->merge(all).num_applied() == 0u);
  }
  // No local write recorded after all merges: versions only moved for writes.
  for (int i = 0; i < n; ++i) RC_ASSERT(dbs[static_cast<std::size_t>(i)]->crr->current_tx().last_seq == -1);
}

}  // namespace
}  // namespace patina::crdt
