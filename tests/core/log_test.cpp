#include <gtest/gtest.h>

#include "core/log.hpp"

namespace patina::core {
namespace {

TEST(Log, filter_changes_levels_at_runtime_and_resets) {
  log::set_default_filter("info");
  auto db = log::get("db");
  auto swim = log::get("swim");
  EXPECT_EQ(db->level(), spdlog::level::info);
  ASSERT_TRUE(log::set_filter("warn,swim=debug"));
  EXPECT_EQ(db->level(), spdlog::level::warn);
  EXPECT_EQ(swim->level(), spdlog::level::debug);
  EXPECT_EQ(log::get("later")->level(), spdlog::level::warn);
  EXPECT_FALSE(log::set_filter("loud"));
  EXPECT_EQ(db->level(), spdlog::level::warn);  // a bad filter changes nothing
  log::reset_filter();
  EXPECT_EQ(db->level(), spdlog::level::info);
  EXPECT_EQ(swim->level(), spdlog::level::info);
}

}  // namespace
}  // namespace patina::core
