// Smoke measurement of local write overhead: the same inserts into a plain
// table and a replicated one, in the same run (the real benchmark is in
// bench/). Prints the ratio; fails only on a gross regression.
#include <gtest/gtest.h>

#include <ctime>

#include "test_db.hpp"

namespace patina::crdt {
namespace {

double run_ms(testing::TestDb& d, const std::string& table, int txs, int rows_per_tx) {
  sqlite3_stmt* s = nullptr;
  std::string sql = "INSERT INTO " + table + " VALUES (?, ?, ?, ?)";
  EXPECT_EQ(sqlite3_prepare_v2(d.db, sql.c_str(), -1, &s, nullptr), SQLITE_OK);
  // CPU time, not wall time: the machines running this are shared.
  const std::clock_t start = std::clock();
  int id = 0;
  for (int t = 0; t < txs; ++t) {
    d.exec("BEGIN");
    for (int r = 0; r < rows_per_tx; ++r) {
      sqlite3_bind_int(s, 1, ++id);
      sqlite3_bind_text(s, 2, "some text value", -1, SQLITE_STATIC);
      sqlite3_bind_int(s, 3, id * 7);
      sqlite3_bind_double(s, 4, id * 0.5);
      EXPECT_EQ(sqlite3_step(s), SQLITE_DONE);
      sqlite3_reset(s);
    }
    d.exec("COMMIT");
  }
  sqlite3_finalize(s);
  return static_cast<double>(std::clock() - start) * 1000.0 / CLOCKS_PER_SEC;
}

TEST(Perf, LocalWriteOverheadRatio) {
  for (auto [txs, rows] : {std::pair{1, 20000}, std::pair{200, 100}, std::pair{5000, 1}}) {
    std::string path = testing::temp_path("perf.db");
    auto cleanup = [&] {
      for (const char* suffix : {"", "-wal", "-shm", "-journal"}) std::remove((path + suffix).c_str());
    };
    cleanup();
    {
      testing::TestDb d{testing::site_of(1), true, path};
      d.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA temp_store = MEMORY");
      d.exec("CREATE TABLE plain (id INTEGER PRIMARY KEY NOT NULL, a TEXT, b INTEGER, c REAL)");
      d.exec("CREATE TABLE crr (id INTEGER PRIMARY KEY NOT NULL, a TEXT, b INTEGER, c REAL)");
      d.crr_table("crr");
      double plain = run_ms(d, "plain", txs, rows);
      double crr = run_ms(d, "crr", txs, rows);
      std::printf("  %d x %d rows: plain %.1f ms, crr %.1f ms (CPU), ratio %.2f\n", txs, rows, plain, crr, crr / plain);
      EXPECT_LT(crr / plain, 60.0);  // sanitizer builds and loaded CI machines are slower
    }
    cleanup();
  }
}

}  // namespace
}  // namespace patina::crdt
