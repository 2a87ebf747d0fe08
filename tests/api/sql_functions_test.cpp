// generate_series and corro_json_contains (api/sql_functions.hpp) on a plain
// in-memory connection: the values SQLite's series extension and Corrosion's
// function give.
#include "api/sql_functions.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace patina::api {
namespace {

class SqlFunctions : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(sqlite3_open(":memory:", &db_), SQLITE_OK);
    ASSERT_EQ(register_sql_functions(db_), SQLITE_OK);
  }
  void TearDown() override { sqlite3_close(db_); }

  // Every row's first column as text ("NULL" for NULL), or "error: ..." .
  std::vector<std::string> rows(const std::string& sql) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) != SQLITE_OK)
      return {std::string("error: ") + sqlite3_errmsg(db_)};
    std::vector<std::string> out;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      const auto* t = sqlite3_column_text(st, 0);
      out.emplace_back(t ? reinterpret_cast<const char*>(t) : "NULL");
    }
    if (rc != SQLITE_DONE) out = {std::string("error: ") + sqlite3_errmsg(db_)};
    sqlite3_finalize(st);
    return out;
  }
  using V = std::vector<std::string>;
  sqlite3* db_ = nullptr;
};

TEST_F(SqlFunctions, generate_series_counts_from_start_to_stop_by_step) {
  EXPECT_EQ(rows("SELECT value FROM generate_series(1, 5)"), (V{"1", "2", "3", "4", "5"}));
  EXPECT_EQ(rows("SELECT value FROM generate_series(1, 10, 3)"), (V{"1", "4", "7", "10"}));
  EXPECT_EQ(rows("SELECT value FROM generate_series(0, 9, 4)"), (V{"0", "4", "8"}));
  EXPECT_EQ(rows("SELECT value FROM generate_series(-2, 1)"), (V{"-2", "-1", "0", "1"}));
  EXPECT_EQ(rows("SELECT value FROM generate_series(5, 1)"), V{});
  EXPECT_EQ(rows("SELECT value FROM generate_series(3, 3)"), V{"3"});
  // A negative step gives the same values, last first.
  EXPECT_EQ(rows("SELECT value FROM generate_series(1, 6, -2)"), (V{"5", "3", "1"}));
  // Step 0 counts as 1; a NULL argument gives nothing.
  EXPECT_EQ(rows("SELECT value FROM generate_series(1, 3, 0)"), (V{"1", "2", "3"}));
  EXPECT_EQ(rows("SELECT value FROM generate_series(1, NULL)"), V{});
  // Stop defaults to 4294967295.
  EXPECT_EQ(rows("SELECT value FROM generate_series(10) LIMIT 3"), (V{"10", "11", "12"}));
  EXPECT_EQ(rows("SELECT max(value) FROM generate_series(4294967290)"), V{"4294967295"});
  // The ends of the integer range do not overflow.
  EXPECT_EQ(rows("SELECT value FROM generate_series(9223372036854775806, 9223372036854775807)"),
            (V{"9223372036854775806", "9223372036854775807"}));
  EXPECT_EQ(rows("SELECT count(*) FROM generate_series(9223372036854775800, 9223372036854775807, 5)"), V{"2"});
  EXPECT_EQ(rows("SELECT value FROM generate_series(-9223372036854775808, 9223372036854775807) LIMIT 2"),
            (V{"-9223372036854775808", "-9223372036854775807"}));
  EXPECT_EQ(rows("SELECT value FROM generate_series(-9223372036854775808, 9223372036854775807, "
                 "-9223372036854775808) "),
            (V{"9223372036854775806", "-1", "-9223372036854775808"}));
}

TEST_F(SqlFunctions, generate_series_takes_its_arguments_as_hidden_columns_and_joins) {
  EXPECT_EQ(rows("SELECT value FROM generate_series WHERE start = 2 AND stop = 4"), (V{"2", "3", "4"}));
  EXPECT_EQ(rows("SELECT start || '-' || stop || '-' || step FROM generate_series(1, 2, 1) LIMIT 1"), V{"1-2-1"});
  EXPECT_EQ(rows("SELECT a.value * b.value FROM generate_series(1, 2) a, generate_series(10, 20, 10) b "
                 "ORDER BY 1"),
            (V{"10", "20", "20", "40"}));
  // Correlated: the inner series' bound comes from the outer row.
  EXPECT_EQ(rows("SELECT count(*) FROM generate_series(1, 3) a, generate_series(1, a.value) b"), V{"6"});
  EXPECT_EQ(rows("SELECT group_concat(b.value) FROM generate_series(1, 3) a, generate_series(a.value, 3) b "
                 "WHERE a.value = 2"),
            V{"2,3"});
  // Arguments as join constraints: for a = 1..4, series(1, 2a, a) holds 1, 1+a, 1+2a up to 2a: 2 + 2 + 2 + 2.
  EXPECT_EQ(rows("SELECT count(*) FROM generate_series(1, 4) a JOIN generate_series b "
                 "ON b.start = 1 AND b.stop = 2 * a.value AND b.step = a.value"),
            V{"8"});
  EXPECT_EQ(rows("SELECT sum(value) FROM generate_series(1, 100)"), V{"5050"});
}

TEST_F(SqlFunctions, corro_json_contains_matches_objects_key_by_key) {
  auto c = [&](const std::string& a, const std::string& b) {
    sqlite3_stmt* st = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db_, "SELECT corro_json_contains(?, ?)", -1, &st, nullptr), SQLITE_OK);
    sqlite3_bind_text(st, 1, a.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, b.c_str(), -1, SQLITE_TRANSIENT);
    std::string out = sqlite3_step(st) == SQLITE_ROW ? std::to_string(sqlite3_column_int(st, 0))
                                                     : std::string("error: ") + sqlite3_errmsg(db_);
    sqlite3_finalize(st);
    return out;
  };
  EXPECT_EQ(c("{}", "{}"), "1");
  EXPECT_EQ(c("{}", R"({"key": "value"})"), "1");
  EXPECT_EQ(c(R"({"key": "value"})", "{}"), "0");
  EXPECT_EQ(c(R"({"key": "value"})", R"({"key": "value"})"), "1");
  EXPECT_EQ(c(R"({"key": "value"})", R"({"key": "value", "key2": "value2"})"), "1");
  EXPECT_EQ(c(R"({"key": "value"})", R"({"key": "wrong value"})"), "0");
  EXPECT_EQ(c(R"({"metadata": {"key": "value"}})", R"({"metadata": {"key": "value", "x": 1}})"), "1");
  EXPECT_EQ(c(R"({"metadata": {"key": "value"}})", R"({"metadata": {"key": "wrong value"}})"), "0");
  // Anything but two objects compares whole: arrays in order, numbers by kind.
  EXPECT_EQ(c("[1, 2]", "[1, 2]"), "1");
  EXPECT_EQ(c("[1]", "[1, 2]"), "0");
  EXPECT_EQ(c(R"({"a": [1]})", R"({"a": [1, 2]})"), "0");
  EXPECT_EQ(c("1", "1"), "1");
  EXPECT_EQ(c("1", "1.0"), "0");
  EXPECT_EQ(c(R"("x")", R"({"x": 1})"), "0");
  EXPECT_EQ(c("null", "null"), "1");
  // Bad input is an error that names the argument, not a silent 0.
  EXPECT_NE(c("{", "{}").find("argument 1 is not valid JSON"), std::string::npos);
  EXPECT_NE(c("{}", "[1,").find("argument 2 is not valid JSON"), std::string::npos);
  EXPECT_EQ(rows("SELECT corro_json_contains(NULL, '{}')"), V{"error: corro_json_contains: argument 1 must be JSON text"});
  EXPECT_EQ(rows("SELECT corro_json_contains('{}', 1)"), V{"error: corro_json_contains: argument 2 must be JSON text"});
}

TEST_F(SqlFunctions, every_connection_opened_after_registration_has_them) {
  register_sql_functions_for_every_connection();
  register_sql_functions_for_every_connection();  // idempotent
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(":memory:", &other), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(other, "SELECT count(*) FROM generate_series(1, 7) WHERE corro_json_contains('{}', '{}')",
                               -1, &st, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(other);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(st, 0), 7);
  sqlite3_finalize(st);
  sqlite3_close(other);
  sqlite3_reset_auto_extension();
}

}  // namespace
}  // namespace patina::api
