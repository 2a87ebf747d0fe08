// The changeset and sync codecs: round trips, and hostile input that must
// become an Error, never a crash or an over-read.
#include <gtest/gtest.h>

#include <limits>
#include <random>

#include "io/wire.hpp"

namespace patina::io::wire {
namespace {

ChangesetFrame sample() {
  ChangesetFrame f;
  f.cluster_id = 7;
  auto& cs = f.changeset;
  cs.actor.fill(0xab);
  cs.version = 42;
  cs.seqs = {0, 4};
  cs.last_seq = 4;
  cs.ts = 123456789;
  std::vector<crdt::Value> values{crdt::Null{}, std::int64_t{-5}, 2.5, std::string("text"), crdt::Bytes{0, 1, 255}};
  for (std::size_t i = 0; i < values.size(); ++i) {
    crdt::Change c;
    c.table = "machines";
    c.pk = {1, 0x0b, 'm', '1'};
    c.cid = i == 0 ? "-1" : "state";
    c.val = values[i];
    c.col_version = static_cast<std::int64_t>(i) + 1;
    c.db_version = 42;
    c.site_id.fill(0xab);
    c.cl = 1;
    c.seq = static_cast<std::int64_t>(i);
    c.ts = 123456789;
    cs.changes.push_back(c);
  }
  return f;
}

TEST(Wire, changeset_round_trips_every_value_type) {
  auto f = sample();
  auto bytes = encode(f);
  auto back = decode(bytes);
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->cluster_id, 7);
  EXPECT_EQ(back->changeset, f.changeset);
}

TEST(Wire, every_truncation_and_trailing_bytes_are_errors) {
  auto bytes = encode(sample());
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    auto r = decode(std::span<const std::byte>(bytes.data(), n));
    EXPECT_FALSE(r) << "prefix of " << n << " bytes decoded";
  }
  bytes.push_back(std::byte{0});
  EXPECT_FALSE(decode(bytes));
}

TEST(Wire, a_nan_real_is_refused) {
  // SQLite cannot hold NaN (it stores NULL), so a NaN can only come from a
  // hostile or broken peer; taking it would diverge from the sender.
  auto f = sample();
  f.changeset.changes[2].val = std::numeric_limits<double>::quiet_NaN();
  auto r = decode(encode(f));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("NaN"), std::string::npos);
  f.changeset.changes[2].val = std::numeric_limits<double>::infinity();
  auto inf = decode(encode(f));
  ASSERT_TRUE(inf) << inf.error().message;
  EXPECT_EQ(inf->changeset, f.changeset);
}

TEST(Wire, unknown_versions_and_random_garbage_are_rejected) {
  auto bytes = encode(sample());
  bytes[0] = std::byte{99};
  auto r = decode(bytes);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("unknown wire version 99"), std::string::npos);
  std::mt19937 rng(7);
  for (int i = 0; i < 20000; ++i) {
    std::vector<std::byte> junk(rng() % 300);
    for (auto& b : junk) b = static_cast<std::byte>(rng());
    if (!junk.empty() && rng() % 2 == 0) junk[0] = std::byte{version};
    (void)decode(junk);
    (void)decode_sync_request(junk);
    (void)decode_sync_response(junk);
  }
  // Mutations of a valid frame decode or fail cleanly.
  auto valid = encode(sample());
  for (int i = 0; i < 20000; ++i) {
    auto m = valid;
    m[rng() % m.size()] = static_cast<std::byte>(rng());
    (void)decode(m);
  }
}

TEST(Wire, sync_request_and_response_round_trip) {
  SyncRequestFrame req;
  req.cluster_id = 3;
  req.state.actor.fill(1);
  crdt::SiteId other{};
  other.fill(2);
  req.state.heads[other] = 10;
  req.state.need[other] = crdt::RangeSet{{2, 4}, {7, 7}};
  req.state.partial_need[other][9] = crdt::RangeSet{{3, 5}};
  auto back = decode_sync_request(encode(req));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->cluster_id, 3);
  EXPECT_EQ(back->state, req.state);

  SyncResponseFrame res;
  res.changesets.push_back(encode(sample()));
  res.empty.emplace_back(other, crdt::Range{5, 6});
  auto rb = decode_sync_response(encode(res));
  ASSERT_TRUE(rb) << rb.error().message;
  ASSERT_EQ(rb->changesets.size(), 1u);
  EXPECT_EQ(decode(rb->changesets[0])->changeset, sample().changeset);
  ASSERT_EQ(rb->empty.size(), 1u);
  EXPECT_EQ(rb->empty[0].second, (crdt::Range{5, 6}));
  auto bytes = encode(res);
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_FALSE(decode_sync_response(std::span<const std::byte>(bytes.data(), n)));
  }
}

}  // namespace
}  // namespace patina::io::wire

namespace patina::io::wire {
namespace {

ChangesetFrame big_sample() {
  auto f = sample();
  // Repetitive content: what real changesets look like to zstd.
  for (int i = 0; i < 200; ++i) {
    auto c = f.changeset.changes.back();
    c.val = std::string("running on worker-17 in region ord");
    f.changeset.changes.push_back(c);
  }
  return f;
}

TEST(WireCompression, compressed_frames_round_trip_and_keep_the_cluster_id) {
  auto f = big_sample();
  auto plain = encode(f);
  auto packed = compress(plain, 3);
  ASSERT_FALSE(packed.empty());
  EXPECT_LT(packed.size(), plain.size() / 4);
  EXPECT_EQ(packed[1], std::byte{compressed_kind});
  EXPECT_EQ(packed[2], plain[2]);  // cluster id readable without inflating
  auto back = decode(packed);
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->cluster_id, 7);
  EXPECT_EQ(back->changeset, f.changeset);
}

TEST(WireCompression, incompressible_frames_are_left_alone) {
  std::vector<std::byte> noise(64);
  std::mt19937 rng(1);
  for (auto& b : noise) b = static_cast<std::byte>(rng());
  EXPECT_TRUE(compress(noise, 3).empty());
}

TEST(WireCompression, corrupt_truncated_lying_and_nested_frames_are_errors) {
  auto packed = compress(encode(big_sample()), 3);
  ASSERT_FALSE(packed.empty());
  for (std::size_t n = 0; n < packed.size(); n += 7) {
    EXPECT_FALSE(decode(std::span<const std::byte>(packed.data(), n))) << n;
  }
  auto lying = packed;
  lying[9] = std::byte{0xff};  // claims another raw length
  EXPECT_FALSE(decode(lying));
  auto huge = packed;
  huge[12] = std::byte{0x7f};  // claims far more than inflated_max
  EXPECT_FALSE(decode(huge));
  auto flipped = packed;
  flipped[flipped.size() / 2] ^= std::byte{0x55};
  EXPECT_FALSE(decode(flipped));
  auto nested = compress(packed, 3);
  if (!nested.empty()) {
    EXPECT_FALSE(decode(nested));
  }
}

}  // namespace
}  // namespace patina::io::wire

namespace patina::io::wire {
namespace {

TEST(WireHops, hops_round_trip_and_are_patched_in_place_in_plain_and_compressed_frames) {
  auto f = big_sample();
  f.hops = 3;
  auto plain = encode(f);
  EXPECT_EQ(hops_of(plain), 3);
  set_hops(plain, 1);
  auto back = decode(plain);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->hops, 1);
  EXPECT_EQ(back->changeset, f.changeset);
  auto packed = compress(encode(f), 3);
  ASSERT_FALSE(packed.empty());
  EXPECT_EQ(hops_of(packed), 3);
  set_hops(packed, 0);
  auto inflated = decode(packed);
  ASSERT_TRUE(inflated);
  EXPECT_EQ(inflated->hops, 0);
  std::vector<std::byte> junk{std::byte{9}, std::byte{9}};
  EXPECT_FALSE(hops_of(junk));
}

TEST(WireHops, the_tree_range_round_trips_and_is_patched_in_place_in_plain_and_compressed_frames) {
  auto f = big_sample();
  EXPECT_EQ(tree_range_of(encode(f)), (std::pair<std::uint16_t, std::uint16_t>{1, 0}));  // default: empty
  f.tree_first = 0x1234;
  f.tree_last = 0xfedc;
  auto plain = encode(f);
  EXPECT_EQ(tree_range_of(plain), (std::pair<std::uint16_t, std::uint16_t>{0x1234, 0xfedc}));
  set_tree_range(plain, 7, 0x8000);
  auto back = decode(plain);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->tree_first, 7);
  EXPECT_EQ(back->tree_last, 0x8000);
  EXPECT_EQ(back->changeset, f.changeset);
  auto packed = compress(encode(f), 3);
  ASSERT_FALSE(packed.empty());
  EXPECT_EQ(tree_range_of(packed), (std::pair<std::uint16_t, std::uint16_t>{0x1234, 0xfedc}));
  set_tree_range(packed, 1, 0);
  auto inflated = decode(packed);
  ASSERT_TRUE(inflated);
  EXPECT_EQ(inflated->tree_first, 1);
  EXPECT_EQ(inflated->tree_last, 0);
  EXPECT_EQ(inflated->changeset, f.changeset);
  std::vector<std::byte> old_version = plain;
  old_version[0] = std::byte{2};
  EXPECT_FALSE(tree_range_of(old_version));
  auto refused = decode(old_version);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("unknown wire version 2"), std::string::npos);
}

TEST(WireCompact, a_row_insert_costs_little_more_than_its_values) {
  ChangesetFrame f;
  f.changeset.actor.fill(1);
  f.changeset.version = 1000;
  f.changeset.seqs = {0, 1};
  f.changeset.last_seq = 1;
  f.changeset.ts = 77;
  crdt::Change sentinel;
  sentinel.table = "tests";
  sentinel.pk = {1, 0x09, 0x03, 0xe8};
  sentinel.cid = "-1";
  sentinel.col_version = 1;
  sentinel.db_version = 1000;
  sentinel.site_id.fill(1);
  sentinel.cl = 1;
  sentinel.ts = 77;
  auto text = sentinel;
  text.cid = "text";
  text.val = std::string(40, 'x');
  text.seq = 1;
  f.changeset.changes = {sentinel, text};
  auto bytes = encode(f);
  EXPECT_LE(bytes.size(), 110u);  // 40 bytes of value; the rest is framing
  auto back = decode(bytes);
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->changeset, f.changeset);
  // Cells that differ from their frame (merged from other sites) keep theirs.
  f.changeset.changes[1].site_id.fill(2);
  f.changeset.changes[1].db_version = 5;
  f.changeset.changes[1].ts = 5;
  f.changeset.changes[1].col_version = -3;
  auto other = decode(encode(f));
  ASSERT_TRUE(other);
  EXPECT_EQ(other->changeset, f.changeset);
}

TEST(WireCompact, hostile_flags_and_varints_are_errors) {
  auto bytes = encode(sample());
  // The first change's flags byte follows the 34..38-byte header; find it by
  // re-encoding with zero changes.
  auto empty = sample();
  empty.changeset.changes.clear();
  auto head = encode(empty).size();
  auto bad = bytes;
  bad[head] = std::byte{2};  // same pk as the previous change
  EXPECT_FALSE(decode(bad));  // the first change cannot refer to a previous one
  bad = bytes;
  bad[head] = std::byte{0xE0};
  EXPECT_FALSE(decode(bad));  // unknown flags
  std::vector<std::byte> overlong(bytes.begin(), bytes.begin() + 21);
  for (int i = 0; i < 12; ++i) overlong.push_back(std::byte{0xff});
  EXPECT_FALSE(decode(overlong));  // an 11-byte varint
}

}  // namespace
}  // namespace patina::io::wire
