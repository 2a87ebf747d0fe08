// Codec: round trips, every truncation, random garbage, version and bounds.
#include "swim/codec.hpp"

#include <gtest/gtest.h>

#include <cstdlib>

#include "swim/prng.hpp"
#include "tests/swim/test_util.hpp"

namespace patina::swim {
namespace {

using test::make_identity;

std::uint64_t seed_for_codec() {
  if (const char* s = std::getenv("PATINA_SWIM_SEED")) return std::strtoull(s, nullptr, 0);
  return 0xC0DEC;
}

Packet sample_packet(MessageKind kind) {
  Packet p;
  p.cluster_id = 7;
  p.kind = kind;
  p.src = make_identity(1, 111, 7, 3);
  p.src_incarnation = 42;
  if (kind != MessageKind::announce) p.dst = make_identity(2, 222, 7);
  p.probe_number = has_probe_number(kind) ? 0xDEADBEEF : 0;
  if (has_other(kind)) p.other = make_identity(3, 333, 7, 3);
  if (kind == MessageKind::feed)
    p.feed = {MemberUpdate{make_identity(4), 1, MemberState::alive},
              MemberUpdate{make_identity(5), 2, MemberState::suspect}};
  if (kind == MessageKind::announce) p.digest = Bytes(16, std::byte{0x5A});
  p.updates = {MemberUpdate{make_identity(6), 9, MemberState::down},
               MemberUpdate{make_identity(7, 5, 7, 1), 0, MemberState::alive}};
  return p;
}

std::vector<MessageKind> all_kinds() {
  std::vector<MessageKind> v;
  for (std::uint8_t k = 1; k <= message_kind_max; ++k) v.push_back(static_cast<MessageKind>(k));
  return v;
}

TEST(SwimCodec, round_trips_every_message_kind) {
  for (MessageKind kind : all_kinds()) {
    const Packet p = sample_packet(kind);
    const Bytes b = encode(p);
    EXPECT_EQ(
        b.size(), encoded_size_without_lists(p) +
                      [&] {
                        std::size_t n = 0;
                        for (auto& u : p.feed) n += encoded_size(u, p.cluster_id);
                        for (auto& u : p.updates) n += encoded_size(u, p.cluster_id);
                        return n;
                      }())
        << to_string(kind);
    auto d = decode(b);
    ASSERT_TRUE(d.has_value()) << to_string(kind) << ": " << to_string(d.error().code);
    EXPECT_EQ(*d, p) << to_string(kind);
    EXPECT_EQ(encode(*d), b);  // invariant 3
  }
}

TEST(SwimCodec, header_is_little_endian_with_leading_version) {
  const Bytes b = encode(sample_packet(MessageKind::ping));
  ASSERT_GE(b.size(), 4u);
  EXPECT_EQ(std::to_integer<int>(b[0]), protocol_version);
  EXPECT_EQ(std::to_integer<int>(b[1]), 7);  // cluster_id low byte
  EXPECT_EQ(std::to_integer<int>(b[2]), 0);
  EXPECT_EQ(std::to_integer<int>(b[3]), static_cast<int>(MessageKind::ping) | 0x80);  // + has dst
  const Bytes announce = encode(sample_packet(MessageKind::announce));
  EXPECT_EQ(std::to_integer<int>(announce[3]), static_cast<int>(MessageKind::announce));
}

// What an idle member sends most: a ping and an ack per probe period. Both
// identities have IPv4 addresses and the packet's cluster id.
TEST(SwimCodec, a_ping_between_ipv4_members_is_compact) {
  Packet p;
  p.cluster_id = 7;
  p.kind = MessageKind::ping;
  p.src = make_identity(1, 111, 7);
  p.dst = make_identity(2, 222, 7);
  p.src_incarnation = 3;
  p.probe_number = 100;
  const Bytes b = encode(p);
  // header 4 + 2 × (16 id + 1 flags + 6 addr + 8 ts) + 1 inc + 1 probe + 2 count
  EXPECT_EQ(b.size(), 4u + 2 * 31 + 1 + 1 + 2);
  auto d = decode(b);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->src.addr, "10.0.0.2:4001");
  EXPECT_EQ(*d, p);
}

TEST(SwimCodec, addresses_round_trip_in_every_form) {
  const std::vector<std::string> addrs{
      "127.0.0.1:8787",   "0.0.0.0:0",        "255.255.255.255:65535", "[::1]:4001",
      "[2001:db8::7]:80", "[::ffff:10.0.0.1]:9", "[fe80::1%eth0]:4001",  "node-1.example:4001",
      "127.000.0.1:1",    "127.0.0.1:01",     "[2001:DB8::7]:80",      "1.2.3.4:65536",
      "1.2.3.4",          "x",                "[::1]",                 ":1"};
  for (const auto& addr : addrs) {
    Packet p = sample_packet(MessageKind::gossip);
    p.src.addr = addr;
    const Bytes b = encode(p);
    auto d = decode(b);
    ASSERT_TRUE(d.has_value()) << addr;
    EXPECT_EQ(d->src.addr, addr);
    EXPECT_EQ(encode(*d), b) << addr;
    EXPECT_EQ(b.size(), encoded_size_without_lists(p) + encoded_size(p.updates[0], p.cluster_id) +
                            encoded_size(p.updates[1], p.cluster_id))
        << addr;
  }
}

// Invariant 3 needs one spelling per packet: the longer ones are rejected.
TEST(SwimCodec, non_canonical_spellings_are_rejected) {
  Packet p = sample_packet(MessageKind::gossip);
  p.updates.clear();
  p.src.addr = "10.0.0.9:4001";
  const Bytes b = encode(p);
  const std::size_t flags_at = 4 + 16;
  ASSERT_EQ(std::to_integer<int>(b[flags_at]) & 0x03, 1);  // binary IPv4
  // The same address as text.
  Bytes as_text(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(flags_at));
  as_text.push_back(std::byte{static_cast<unsigned char>(std::to_integer<int>(b[flags_at]) & ~0x03)});
  as_text.push_back(std::byte{static_cast<unsigned char>(p.src.addr.size())});
  for (char c : p.src.addr) as_text.push_back(static_cast<std::byte>(c));
  as_text.insert(as_text.end(), b.begin() + static_cast<std::ptrdiff_t>(flags_at + 1 + 6), b.end());
  EXPECT_EQ(decode(as_text).error().code, Errc::malformed_packet);
  // The packet's own cluster id written out.
  Bytes with_cluster = b;
  with_cluster[flags_at] = std::byte{static_cast<unsigned char>(std::to_integer<int>(b[flags_at]) | 0x08)};
  const std::size_t after_ts = flags_at + 1 + 6 + 8;
  const std::byte cluster[2] = {std::byte{7}, std::byte{0}};
  with_cluster.insert(with_cluster.begin() + static_cast<std::ptrdiff_t>(after_ts), cluster, cluster + 2);
  EXPECT_EQ(decode(with_cluster).error().code, Errc::malformed_packet);
  // An overlong varint: incarnation 42 as two bytes.
  const std::size_t inc_at = flags_at + 1 + 6 + 8 + 2;  // sample src has a member_id
  ASSERT_EQ(std::to_integer<int>(b[inc_at]), 42);
  Bytes overlong = b;
  overlong[inc_at] = std::byte{42 | 0x80};
  overlong.insert(overlong.begin() + static_cast<std::ptrdiff_t>(inc_at + 1), std::byte{0});
  EXPECT_EQ(decode(overlong).error().code, Errc::malformed_packet);
  // Unknown identity flag bits.
  Bytes bad_flags = b;
  bad_flags[flags_at] = std::byte{static_cast<unsigned char>(std::to_integer<int>(b[flags_at]) | 0x10)};
  EXPECT_EQ(decode(bad_flags).error().code, Errc::malformed_packet);
  ASSERT_TRUE(decode(b).has_value());
}

TEST(SwimCodec, identities_of_another_cluster_keep_their_cluster_id) {
  Packet p = sample_packet(MessageKind::feed);
  p.feed[0].id.cluster_id = 9;
  p.feed[1].id.cluster_id = 0;
  auto d = decode(encode(p));
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(*d, p);
}

TEST(SwimCodec, every_truncation_is_an_error) {
  for (MessageKind kind : all_kinds()) {
    const Bytes b = encode(sample_packet(kind));
    for (std::size_t len = 0; len < b.size(); ++len) {
      auto d = decode(std::span(b.data(), len));
      ASSERT_FALSE(d.has_value()) << to_string(kind) << " len " << len;
      EXPECT_EQ(d.error().code, Errc::malformed_packet);
    }
  }
}

TEST(SwimCodec, trailing_bytes_are_an_error) {
  Bytes b = encode(sample_packet(MessageKind::gossip));
  b.push_back(std::byte{0});
  auto d = decode(b);
  ASSERT_FALSE(d.has_value());
  EXPECT_EQ(d.error().code, Errc::malformed_packet);
}

TEST(SwimCodec, unknown_version_is_rejected_before_parsing) {
  Bytes b = encode(sample_packet(MessageKind::ping));
  b[0] = std::byte{1};  // the previous format
  auto d = decode(b);
  ASSERT_FALSE(d.has_value());
  EXPECT_EQ(d.error().code, Errc::unsupported_version);
  const Bytes only_version{std::byte{9}};
  EXPECT_EQ(decode(only_version).error().code, Errc::unsupported_version);
}

TEST(SwimCodec, out_of_range_enums_and_flags_are_rejected) {
  Bytes b = encode(sample_packet(MessageKind::gossip));
  Bytes bad_kind = b;
  bad_kind[3] = std::byte{0};
  EXPECT_EQ(decode(bad_kind).error().code, Errc::malformed_packet);
  bad_kind[3] = std::byte{message_kind_max + 1};
  EXPECT_EQ(decode(bad_kind).error().code, Errc::malformed_packet);
  Bytes bad_kind_bits = b;
  bad_kind_bits[3] = std::byte{static_cast<int>(MessageKind::gossip) | 0x40};
  EXPECT_EQ(decode(bad_kind_bits).error().code, Errc::malformed_packet);
  // The last byte is the state of the last update.
  Bytes bad_state = b;
  bad_state.back() = std::byte{3};
  EXPECT_EQ(decode(bad_state).error().code, Errc::malformed_packet);
}

TEST(SwimCodec, huge_counts_do_not_allocate_or_over_read) {
  Packet p = sample_packet(MessageKind::gossip);
  p.updates.clear();
  Bytes b = encode(p);
  // Claim 65535 updates with no bytes behind them.
  b[b.size() - 2] = std::byte{0xFF};
  b[b.size() - 1] = std::byte{0xFF};
  EXPECT_EQ(decode(b).error().code, Errc::malformed_packet);
}

TEST(SwimCodec, random_garbage_never_crashes) {
  Prng prng(0xF0CA);
  std::size_t decoded = 0;
  for (int i = 0; i < 20000; ++i) {
    Bytes b(static_cast<std::size_t>(prng.below(300)));
    for (auto& x : b) x = static_cast<std::byte>(prng.below(256));
    if (!b.empty() && prng.chance(1, 2)) b[0] = std::byte{protocol_version};
    auto d = decode(b);
    if (d) {
      ++decoded;
      EXPECT_EQ(encode(*d), b);
    }
  }
  SUCCEED() << decoded << " garbage inputs happened to decode";
}

TEST(SwimCodec, mutated_valid_packets_never_crash) {
  Prng prng(0xBAD);
  const Bytes base = encode(sample_packet(MessageKind::feed));
  for (int i = 0; i < 20000; ++i) {
    Bytes b = base;
    const auto flips = 1 + prng.below(4);
    for (std::uint64_t f = 0; f < flips; ++f)
      b[static_cast<std::size_t>(prng.below(b.size()))] = static_cast<std::byte>(prng.below(256));
    auto d = decode(b);
    if (d) {
      EXPECT_EQ(encode(*d), b);
    }
  }
}

Identity random_identity(Prng& r) {
  Identity id;
  for (auto& b : id.id) b = static_cast<std::uint8_t>(r.below(256));
  id.addr.resize(1 + r.below(255));
  for (auto& c : id.addr) c = static_cast<char>(r.below(256));
  id.ts = r.next_u64();
  id.cluster_id = static_cast<std::uint16_t>(r.below(65536));
  if (r.chance(1, 2)) id.member_id = static_cast<std::uint16_t>(r.below(65536));
  return id;
}

std::vector<MemberUpdate> random_updates(Prng& r, std::size_t max) {
  std::vector<MemberUpdate> v(r.below(max + 1));
  for (auto& u : v) {
    u.id = random_identity(r);
    u.incarnation = r.next_u64();
    u.state = static_cast<MemberState>(r.below(3));
  }
  return v;
}

// Property: every well-formed packet survives encode → decode unchanged, and
// its encoded size is what the trimming arithmetic predicts.
TEST(SwimCodec, random_packets_round_trip) {
  Prng r(seed_for_codec());
  for (int i = 0; i < 2000; ++i) {
    Packet p;
    p.cluster_id = static_cast<std::uint16_t>(r.below(65536));
    p.kind = static_cast<MessageKind>(1 + r.below(message_kind_max));
    p.src = random_identity(r);
    p.src_incarnation = r.next_u64();
    if (r.chance(1, 2)) p.dst = random_identity(r);
    if (has_probe_number(p.kind)) p.probe_number = static_cast<std::uint32_t>(r.next_u64());
    if (has_other(p.kind)) p.other = random_identity(r);
    if (p.kind == MessageKind::feed) p.feed = random_updates(r, 5);
    if (p.kind == MessageKind::announce) {
      p.digest.resize(r.below(64));
      for (auto& b : p.digest) b = static_cast<std::byte>(r.below(256));
    }
    p.updates = random_updates(r, 5);
    const Bytes b = encode(p);
    std::size_t expected = encoded_size_without_lists(p);
    for (const auto& u : p.feed) expected += encoded_size(u, p.cluster_id);
    for (const auto& u : p.updates) expected += encoded_size(u, p.cluster_id);
    ASSERT_EQ(b.size(), expected);
    auto d = decode(b);
    ASSERT_TRUE(d.has_value()) << i;
    ASSERT_EQ(*d, p) << i;
  }
}

TEST(SwimCodec, snapshot_round_trip_and_truncation) {
  std::vector<MemberUpdate> members{MemberUpdate{make_identity(1), 3, MemberState::alive},
                                    MemberUpdate{make_identity(2, 9, 0, 4), 0, MemberState::down}};
  const Bytes b = encode_snapshot(members);
  auto d = decode_snapshot(b);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(*d, members);
  for (std::size_t len = 0; len < b.size(); ++len)
    EXPECT_EQ(decode_snapshot(std::span(b.data(), len)).error().code, Errc::malformed_snapshot);
  const Bytes empty = encode_snapshot({});
  ASSERT_TRUE(decode_snapshot(empty).has_value());
  EXPECT_TRUE(decode_snapshot(empty)->empty());
}

}  // namespace
}  // namespace patina::swim
