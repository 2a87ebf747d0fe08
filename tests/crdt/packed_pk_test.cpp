// Packed primary keys against FACTS.md §2, byte for byte, plus round trips.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "crdt/packed_pk.hpp"

namespace patina::crdt {
namespace {

std::string hex_of(std::vector<Value> v) { return to_hex(PackedPk::pack(v)); }

TEST(PackedPk, IntegersMatchFacts) {
  EXPECT_EQ(hex_of({std::int64_t{0}}), "0101");
  EXPECT_EQ(hex_of({std::int64_t{1}}), "010901");
  EXPECT_EQ(hex_of({std::int64_t{127}}), "01097f");
  EXPECT_EQ(hex_of({std::int64_t{128}}), "010980");
  EXPECT_EQ(hex_of({std::int64_t{255}}), "0109ff");
  EXPECT_EQ(hex_of({std::int64_t{256}}), "01110100");
  EXPECT_EQ(hex_of({std::int64_t{65536}}), "0119010000");
  EXPECT_EQ(hex_of({std::int64_t{1} << 31}), "012180000000");
  EXPECT_EQ(hex_of({std::int64_t{1} << 32}), "01290100000000");
  EXPECT_EQ(hex_of({std::numeric_limits<std::int64_t>::max()}), "01417fffffffffffffff");
  EXPECT_EQ(hex_of({std::int64_t{-1}}), "0141ffffffffffffffff");
  EXPECT_EQ(hex_of({std::int64_t{-128}}), "0141ffffffffffffff80");
  EXPECT_EQ(hex_of({std::numeric_limits<std::int64_t>::min()}), "01418000000000000000");
}

TEST(PackedPk, RealsTextBlobNullMatchFacts) {
  EXPECT_EQ(hex_of({1.5}), "01023ff8000000000000");
  EXPECT_EQ(hex_of({-0.0}), "01028000000000000000");
  EXPECT_EQ(hex_of({std::string("abc")}), "010b03616263");
  EXPECT_EQ(hex_of({std::string("")}), "0103");
  EXPECT_EQ(hex_of({std::string("\xc3\xa9")}), "010b02c3a9");
  EXPECT_EQ(hex_of({std::string(300, 'a')}).substr(0, 8), "0113012c");
  EXPECT_EQ(hex_of({std::string(70000, 'a')}).substr(0, 10), "011b011170");
  EXPECT_EQ(hex_of({Bytes{1, 2}}), "010c020102");
  EXPECT_EQ(hex_of({Bytes{}}), "0104");
  EXPECT_EQ(hex_of({Null{}}), "0105");
  EXPECT_EQ(hex_of({std::string("a"), std::int64_t{5}}), "020b01610905");
}

TEST(PackedPk, RoundTripEveryType) {
  std::vector<std::vector<Value>> cases = {
      {Null{}},
      {std::int64_t{0}, std::int64_t{-1}, std::numeric_limits<std::int64_t>::min()},
      {std::numeric_limits<std::int64_t>::max(), std::int64_t{255}, std::int64_t{256}},
      {0.0, -0.0, 1e300, -7.5, std::numeric_limits<double>::infinity()},
      {std::string(), std::string("k"), std::string(70000, 'z')},
      {Bytes{}, Bytes{0}, Bytes(300, 0xff)},
      {std::string("mixed"), std::int64_t{7}, Bytes{9}, Null{}, 2.5},
  };
  for (const auto& c : cases) {
    auto packed = PackedPk::pack(c);
    auto back = PackedPk::unpack(packed);
    ASSERT_TRUE(back) << back.error().message;
    ASSERT_EQ(back->size(), c.size());
    for (std::size_t i = 0; i < c.size(); ++i) {
      EXPECT_EQ((*back)[i].index(), c[i].index());
      EXPECT_EQ(compare_values((*back)[i], c[i]), 0) << to_string(c[i]);
    }
    if (std::holds_alternative<double>(c[0])) {
      EXPECT_TRUE(std::signbit(std::get<double>((*back)[1])));  // -0.0 keeps its sign
    }
  }
}

TEST(PackedPk, RejectsMalformed) {
  for (const char* hex : {"", "01", "0109", "0111ff", "010b0561", "0106", "01010000", "0102ff",
                          "010d", "0201"}) {
    Bytes b;
    ASSERT_TRUE(from_hex(hex, b));
    EXPECT_FALSE(PackedPk::unpack(b)) << hex;
  }
}

TEST(ValueOrder, MatchesObservedTotalOrder) {
  // FACTS.md §6-9 rule 3, loser first.
  std::vector<Value> order = {
      Null{}, Bytes{}, Bytes{0}, Bytes{1}, Bytes{0x61}, Bytes{0x61, 0x62}, Bytes{0xff},
      std::string(""), std::string("10"), std::string("9"), std::string("B"), std::string("a"),
      std::string("ab"), std::string("b"), std::string("zz"), std::string("\xc3\xa9"),
      -7.5, 0.5, 1.5, 2.0, 1e300,
      std::int64_t{-5}, std::int64_t{0}, std::int64_t{1}, std::int64_t{2}, std::int64_t{1} << 40};
  for (std::size_t i = 0; i < order.size(); ++i)
    for (std::size_t j = 0; j < order.size(); ++j) {
      int c = compare_values(order[i], order[j]);
      int want = i < j ? -1 : (i > j ? 1 : 0);
      EXPECT_EQ(c < 0 ? -1 : (c > 0 ? 1 : 0), want) << to_string(order[i]) << " vs " << to_string(order[j]);
    }
}

}  // namespace
}  // namespace patina::crdt

namespace patina::crdt {
namespace {

TEST(PackedPkCanonical, extra_leading_zero_bytes_are_rejected) {
  // 1 column, INTEGER in 4 bytes holding 31: pack would use 1 byte.
  std::vector<std::uint8_t> wide{1, (4 << 3) | 1, 0, 0, 0, 31};
  EXPECT_FALSE(PackedPk::unpack(wide));
  std::vector<std::uint8_t> narrow{1, (1 << 3) | 1, 31};
  auto v = PackedPk::unpack(narrow);
  ASSERT_TRUE(v);
  EXPECT_EQ(std::get<std::int64_t>((*v)[0]), 31);
  // TEXT whose length is spelled in 2 bytes instead of 1.
  std::vector<std::uint8_t> text{1, (2 << 3) | 3, 0, 1, 'a'};
  EXPECT_FALSE(PackedPk::unpack(text));
}

}  // namespace
}  // namespace patina::crdt
