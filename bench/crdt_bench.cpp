// CRDT store costs (issue 3 benchmarks), CPU time, same run:
//   (a) local writes to a replicated table against the same plain table,
//       for 1-row, 100-row and 20,000-row transactions, as a ratio;
//   (b) remote merge rate: changes/s merged from another site in batches of
//       1, 100 and 10,000 changes;
//   (c) changeset extraction rate (changes_for_version).
//
//   build/bench/crdt_bench

#include <sqlite3.h>

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <string>

#include "crdt/changeset.hpp"
#include "crdt/crr_tables.hpp"
#include "crdt/merge.hpp"

using namespace patina::crdt;

namespace {

double cpu_ms(std::clock_t start) { return static_cast<double>(std::clock() - start) * 1000.0 / CLOCKS_PER_SEC; }

void exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::fprintf(stderr, "%s: %s\n", sql, err);
    std::exit(1);
  }
}

struct Db {
  sqlite3* db = nullptr;
  std::unique_ptr<CrrTables> tables;
  Db(const std::string& path, std::uint8_t site) {
    std::filesystem::remove(path);
    std::filesystem::remove(path + "-wal");
    std::filesystem::remove(path + "-shm");
    sqlite3_open(path.c_str(), &db);
    exec(db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA temp_store = MEMORY");
    CrrOptions o;
    o.new_site_id.fill(site);
    auto t = CrrTables::open(db, o);
    if (!t) {
      std::fprintf(stderr, "open: %s\n", t.error().message.c_str());
      std::exit(1);
    }
    tables = std::move(*t);
    exec(db, "CREATE TABLE plain (id INTEGER PRIMARY KEY NOT NULL, a TEXT, b INTEGER, c REAL)");
    exec(db, "CREATE TABLE crr (id INTEGER PRIMARY KEY NOT NULL, a TEXT, b INTEGER, c REAL)");
    if (!tables->make_crr("crr")) std::exit(1);
  }
  ~Db() {
    tables.reset();
    sqlite3_close(db);
  }
};

double insert_ms(sqlite3* db, const std::string& table, int txs, int rows_per_tx, int& id) {
  sqlite3_stmt* s = nullptr;
  std::string sql = "INSERT INTO " + table + " VALUES (?, ?, ?, ?)";
  sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr);
  auto start = std::clock();
  for (int t = 0; t < txs; ++t) {
    exec(db, "BEGIN");
    for (int r = 0; r < rows_per_tx; ++r) {
      sqlite3_bind_int(s, 1, ++id);
      sqlite3_bind_text(s, 2, "some text value", -1, SQLITE_STATIC);
      sqlite3_bind_int(s, 3, id * 7);
      sqlite3_bind_double(s, 4, id * 0.5);
      sqlite3_step(s);
      sqlite3_reset(s);
    }
    exec(db, "COMMIT");
  }
  sqlite3_finalize(s);
  return cpu_ms(start);
}

}  // namespace

int main() {
  auto dir = std::filesystem::temp_directory_path() / "patina-crdt-bench";
  std::filesystem::create_directories(dir);
  std::printf("(a) local write cost, replicated vs plain table (CPU time; target <= 2x)\n");
  for (auto [txs, rows] : {std::pair{5000, 1}, std::pair{200, 100}, std::pair{1, 20000}}) {
    Db d((dir / "a.db").string(), 1);
    int pid = 0;
    int cid = 0;
    double plain = insert_ms(d.db, "plain", txs, rows, pid);
    double crr = insert_ms(d.db, "crr", txs, rows, cid);
    std::printf("  %5d tx x %5d rows: plain %8.1f ms  replicated %8.1f ms  ratio %5.2f\n", txs, rows, plain, crr,
                crr / plain);
  }

  Db source((dir / "source.db").string(), 1);
  int id = 0;
  insert_ms(source.db, "crr", 1, 20000, id);
  auto start = std::clock();
  auto changes = changes_for_version(*source.tables, source.tables->site_id(), 1);
  double extract = cpu_ms(start);
  if (!changes) return 1;
  std::printf("(c) changeset extraction: %zu changes in %.1f ms = %.0f changes/s\n", changes->size(), extract,
              changes->size() / (extract / 1000.0));

  std::printf("(b) remote merge rate\n");
  for (std::size_t batch : {std::size_t{1}, std::size_t{100}, std::size_t{10000}}) {
    Db target((dir / "target.db").string(), 2);
    std::size_t total = std::min<std::size_t>(changes->size(), batch == 1 ? 5000 : changes->size());
    auto t0 = std::clock();
    for (std::size_t at = 0; at < total; at += batch) {
      std::size_t n = std::min(batch, total - at);
      exec(target.db, "BEGIN");
      Merger merger(*target.tables);
      auto r = merger.apply(std::span<const Change>(changes->data() + at, n));
      if (!r) {
        std::fprintf(stderr, "merge: %s\n", r.error().message.c_str());
        return 1;
      }
      exec(target.db, "COMMIT");
    }
    double ms = cpu_ms(t0);
    std::printf("  batches of %5zu: %zu changes in %.1f ms = %.0f changes/s\n", batch, total, ms, total / (ms / 1000.0));
  }
  return 0;
}
