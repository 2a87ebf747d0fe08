#pragma once
// Test helpers: an in-memory database made ready for CRDT use, and readers of
// crsql_changes and table snapshots.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "crdt/change.hpp"
#include "crdt/crr_tables.hpp"
#include "crdt/merge.hpp"
#include "crdt/packed_pk.hpp"

namespace patina::crdt::testing {

// A scratch path unique to this process: ctest runs test processes in
// parallel, and they must not share database files.
inline std::string temp_path(const std::string& name) {
  std::string p = ::testing::TempDir();
  if (!p.empty() && p.back() != '/') p += '/';
  p += "patina_";
  p += std::to_string(::getpid());
  p += '_';
  p += name;
  return p;
}

inline SiteId site_of(std::uint8_t b) {
  SiteId s;
  s.fill(b);
  return s;
}

struct TestDb {
  sqlite3* db = nullptr;
  std::unique_ptr<CrrTables> crr;

  explicit TestDb(SiteId site, bool merge_equal_values = true, const std::string& path = ":memory:") {
    EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    reopen_crr(site, merge_equal_values);
  }
  void reopen_crr(SiteId site, std::optional<bool> mev) {
    crr.reset();
    auto r = CrrTables::open(db, CrrOptions{site, mev});
    EXPECT_TRUE(r) << (r ? "" : r.error().message);
    if (r) crr = std::move(*r);
  }
  ~TestDb() {
    crr.reset();
    sqlite3_close_v2(db);
  }
  TestDb(const TestDb&) = delete;
  TestDb& operator=(const TestDb&) = delete;

  void exec(const std::string& sql) {
    char* err = nullptr;
    int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
    EXPECT_EQ(rc, SQLITE_OK) << sql << ": " << (err ? err : "");
    sqlite3_free(err);
  }
  std::string exec_err(const std::string& sql) {
    char* err = nullptr;
    int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
    std::string out = rc == SQLITE_OK ? "" : (err ? err : "error");
    sqlite3_free(err);
    return out;
  }
  void crr_table(const std::string& name) {
    auto r = crr->make_crr(name);
    EXPECT_TRUE(r) << (r ? "" : r.error().message);
  }

  // Rows of crsql_changes matching |where| (SQL), ordered as asked.
  std::vector<Change> changes(const std::string& where = "1",
                              const std::string& order = "\"table\", pk, cid") {
    std::vector<Change> out;
    sqlite3_stmt* s = nullptr;
    std::string sql =
        "SELECT \"table\", pk, cid, val, col_version, db_version, site_id, cl, seq, ts "
        "FROM crsql_changes WHERE " + where + " ORDER BY " + order;
    EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
    while (sqlite3_step(s) == SQLITE_ROW) {
      Change c;
      c.table = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
      auto pk = column_value(s, 1);
      c.pk = std::get<Bytes>(pk);
      c.cid = reinterpret_cast<const char*>(sqlite3_column_text(s, 2));
      c.val = column_value(s, 3);
      c.col_version = sqlite3_column_int64(s, 4);
      c.db_version = sqlite3_column_int64(s, 5);
      if (sqlite3_column_bytes(s, 6) == 16) std::memcpy(c.site_id.data(), sqlite3_column_blob(s, 6), 16);
      c.cl = sqlite3_column_int64(s, 7);
      c.seq = sqlite3_column_int64(s, 8);
      c.ts = std::stoull(reinterpret_cast<const char*>(sqlite3_column_text(s, 9)));
      out.push_back(std::move(c));
    }
    sqlite3_finalize(s);
    return out;
  }

  std::vector<std::vector<Value>> rows(const std::string& sql) {
    std::vector<std::vector<Value>> out;
    sqlite3_stmt* s = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
    while (sqlite3_step(s) == SQLITE_ROW) {
      std::vector<Value> row;
      for (int i = 0; i < sqlite3_column_count(s); ++i) row.push_back(column_value(s, i));
      out.push_back(std::move(row));
    }
    sqlite3_finalize(s);
    return out;
  }

  std::string dump(const std::string& sql) {
    std::string out;
    for (const auto& r : rows(sql)) {
      out += "(";
      for (std::size_t i = 0; i < r.size(); ++i) out += (i ? ", " : "") + to_string(r[i]);
      out += ") ";
    }
    return out;
  }

  MergeReport merge(const std::vector<Change>& cs) {
    Merger m(*crr);
    auto r = m.apply(cs);
    EXPECT_TRUE(r) << (r ? "" : r.error().message);
    return r ? *r : MergeReport{};
  }
};

// "a 'x' cv1 db1 cl1 seq0" style summary of one change, for compact expectations.
inline std::string brief(const Change& c) {
  return c.cid + " " + to_string(c.val) + " cv" + std::to_string(c.col_version) + " db" +
         std::to_string(c.db_version) + " cl" + std::to_string(c.cl) + " seq" + std::to_string(c.seq);
}

inline std::string briefs(const std::vector<Change>& cs) {
  std::string out;
  for (const auto& c : cs) out += (out.empty() ? "" : " | ") + brief(c);
  return out;
}

}  // namespace patina::crdt::testing
