// Replays every oracle case (produced with the real cr-sqlite, see the README
// beside them) through crdt::replay_case: tables after every step, the exact
// changes and db_version of every local write, `survived` of every merge, and
// the final tables and clocks of every replica must all match.
#include <boost/json/src.hpp>  // header-only Boost.JSON: exactly one TU includes this
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "oracle_json.hpp"

namespace patina::crdt {
namespace {

std::string oracle_dir() {
  if (const char* d = std::getenv("PATINA_ORACLE_DIR")) return d;
  return PATINA_ORACLE_DIR;
}

std::vector<std::string> case_files() {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(oracle_dir()))
    if (e.path().extension() == ".json") out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

class OracleCase : public ::testing::TestWithParam<std::string> {};

TEST_P(OracleCase, ReplaysExactly) {
  ReplayCase c = oracle::read_case(GetParam());
  auto outcome = replay_case(c);
  ASSERT_TRUE(outcome) << outcome.error().message;
  EXPECT_TRUE(outcome->passed) << GetParam() << "\n" << outcome->mismatch;
}

TEST(OracleCli, PrintsOneLinePerCaseAndATotal) {
  auto files = case_files();
  ASSERT_FALSE(files.empty());
  std::ostringstream out;
  EXPECT_EQ(oracle::replay_files({files[0], files[0] + ".missing"}, out), 1);
  EXPECT_NE(out.str().find("PASS " + files[0]), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("FAIL " + files[0] + ".missing"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("1 passed, 1 failed"), std::string::npos) << out.str();
}

INSTANTIATE_TEST_SUITE_P(Oracle, OracleCase, ::testing::ValuesIn(case_files()),
                         [](const ::testing::TestParamInfo<std::string>& p) {
                           return std::filesystem::path(p.param).stem().string();
                         });

}  // namespace
}  // namespace patina::crdt
