#include "io/udp_ring.hpp"

#include <cstring>
#include <vector>

#include <gtest/gtest.h>

#include "io/udp_ring.hpp"
#include "tests/io/io_test_util.hpp"

namespace patina::io {
namespace {

using testing::run_coro;
using testing::sleep_ms;
namespace net = boost::asio;

struct Received {
  std::vector<int> seen;  // per sequence number
  std::size_t count = 0;
  std::size_t bad = 0;
  std::vector<std::size_t> sizes;
};

// Sends |total| numbered datagrams from one ring to another, never more than
// |window| ahead of what was received (pacing keeps SO_RCVBUF from overflowing).
net::awaitable<void> run_many(net::io_context& ioc, bool force_plain, int total) {
  core::Metrics metrics;
  UdpRingOptions ropts;
  ropts.force_plain_receive = force_plain;
  ropts.metric_labels = {{"ring", "rx"}};
  auto rx = UdpRing::open(ioc.get_executor(), ropts, metrics);
  EXPECT_TRUE(rx) << (rx ? "" : rx.error().message);
  if (!rx) co_return;
  UdpRingOptions topts;
  topts.metric_labels = {{"ring", "tx"}};
  auto tx = UdpRing::open(ioc.get_executor(), topts, metrics);
  EXPECT_TRUE(tx);
  if (!tx) co_return;
  auto state = std::make_shared<Received>();
  state->seen.assign(static_cast<std::size_t>(total), 0);
  (*rx)->start([state](const UdpEndpoint&, std::span<const std::byte> p) {
    int seq = -1;
    if (p.size() != 100) {
      ++state->bad;
      return;
    }
    std::memcpy(&seq, p.data(), sizeof seq);
    if (seq < 0 || seq >= static_cast<int>(state->seen.size())) {
      ++state->bad;
      return;
    }
    ++state->seen[static_cast<std::size_t>(seq)];
    ++state->count;
  });
  (*tx)->start([](const UdpEndpoint&, std::span<const std::byte>) {});
  const UdpEndpoint to = (*rx)->local_endpoint();
  std::vector<std::byte> buf(100);
  const std::size_t window = 256;
  int sent = 0;
  // Bounded: at most 20000 pauses of 1 ms.
  for (int pauses = 0; sent < total && pauses < 20000;) {
    if (static_cast<std::size_t>(sent) - state->count >= window) {
      co_await sleep_ms(1);
      ++pauses;
      continue;
    }
    std::memcpy(buf.data(), &sent, sizeof sent);
    EXPECT_TRUE((*tx)->send(to, buf));
    ++sent;
    if (sent % 64 == 0) co_await sleep_ms(0);  // let the receiver drain
  }
  for (int i = 0; i < 5000 && state->count < static_cast<std::size_t>(total); ++i) co_await sleep_ms(1);
  EXPECT_EQ(sent, total);
  EXPECT_EQ(state->count, static_cast<std::size_t>(total));
  EXPECT_EQ(state->bad, 0u);
  for (int i = 0; i < total; ++i) {
    if (state->seen[static_cast<std::size_t>(i)] != 1) {
      ADD_FAILURE() << "datagram " << i << " seen " << state->seen[static_cast<std::size_t>(i)] << " times";
      break;
    }
  }
  EXPECT_EQ((*rx)->multishot(), !force_plain);
  (*rx)->close();
  (*tx)->close();
  co_await sleep_ms(5);
}

TEST(UdpRing, ten_thousand_datagrams_none_lost) {
  PATINA_SKIP_WITHOUT_IO_URING();
  run_coro([](net::io_context& ioc) { return run_many(ioc, false, 10000); });
}

TEST(UdpRing, plain_receive_fallback_loses_nothing) {
  PATINA_SKIP_WITHOUT_IO_URING();
  run_coro([](net::io_context& ioc) { return run_many(ioc, true, 3000); });
}

net::awaitable<void> run_gso(net::io_context& ioc, bool disable_gso) {
  core::Metrics metrics;
  UdpRingOptions ropts;
  ropts.metric_labels = {{"ring", "rx"}};
  auto rx = UdpRing::open(ioc.get_executor(), ropts, metrics);
  UdpRingOptions topts;
  topts.disable_gso = disable_gso;
  topts.metric_labels = {{"ring", "tx"}};
  auto tx = UdpRing::open(ioc.get_executor(), topts, metrics);
  EXPECT_TRUE(rx && tx);
  if (!rx || !tx) co_return;
  EXPECT_EQ((*tx)->gso(), !disable_gso);
  auto state = std::make_shared<Received>();
  (*rx)->start([state](const UdpEndpoint&, std::span<const std::byte> p) {
    state->sizes.push_back(p.size());
    for (std::size_t i = 0; i < p.size(); ++i) {
      if (p[i] != std::byte(static_cast<unsigned char>(state->sizes.size()))) {
        ++state->bad;
        break;
      }
    }
  });
  (*tx)->start([](const UdpEndpoint&, std::span<const std::byte>) {});
  // 10 segments of 1200 bytes and a 500-byte tail; segment i is filled with i+1.
  std::vector<std::byte> payload;
  for (int i = 0; i < 10; ++i) payload.insert(payload.end(), 1200, std::byte(static_cast<unsigned char>(i + 1)));
  payload.insert(payload.end(), 500, std::byte(11));
  EXPECT_TRUE((*tx)->send((*rx)->local_endpoint(), payload, 1200));
  for (int i = 0; i < 2000 && state->sizes.size() < 11; ++i) co_await sleep_ms(1);
  EXPECT_EQ(state->sizes.size(), 11u);
  if (state->sizes.size() != 11u) co_return;
  for (int i = 0; i < 10; ++i) EXPECT_EQ(state->sizes[static_cast<std::size_t>(i)], 1200u);
  EXPECT_EQ(state->sizes[10], 500u);
  EXPECT_EQ(state->bad, 0u);
  EXPECT_EQ(metrics.counter("patina_udp_tx_datagrams_total", "", {{"ring", "tx"}}).value(), 11u);
  (*rx)->close();
  (*tx)->close();
  co_await sleep_ms(5);
}

TEST(UdpRing, gso_send_arrives_as_segments) {
  PATINA_SKIP_WITHOUT_IO_URING();
  run_coro([](net::io_context& ioc) { return run_gso(ioc, false); });
}

TEST(UdpRing, gso_disabled_sends_the_same_segments) {
  PATINA_SKIP_WITHOUT_IO_URING();
  run_coro([](net::io_context& ioc) { return run_gso(ioc, true); });
}

net::awaitable<void> run_truncated(net::io_context& ioc) {
  core::Metrics metrics;
  UdpRingOptions ropts;
  ropts.buffer_size = 2048;
  ropts.metric_labels = {{"ring", "rx"}};
  auto rx = UdpRing::open(ioc.get_executor(), ropts, metrics);
  UdpRingOptions topts;
  topts.metric_labels = {{"ring", "tx"}};
  auto tx = UdpRing::open(ioc.get_executor(), topts, metrics);
  EXPECT_TRUE(rx && tx);
  if (!rx || !tx) co_return;
  auto got = std::make_shared<std::vector<std::size_t>>();
  (*rx)->start([got](const UdpEndpoint&, std::span<const std::byte> p) { got->push_back(p.size()); });
  (*tx)->start([](const UdpEndpoint&, std::span<const std::byte>) {});
  std::vector<std::byte> big(5000, std::byte(1));
  std::vector<std::byte> small(10, std::byte(2));
  (*tx)->send((*rx)->local_endpoint(), big);
  (*tx)->send((*rx)->local_endpoint(), small);
  for (int i = 0; i < 2000 && got->empty(); ++i) co_await sleep_ms(1);
  EXPECT_EQ(got->size(), 1u);
  if (got->size() != 1u) co_return;
  EXPECT_EQ((*got)[0], 10u);
  EXPECT_EQ(metrics.counter("patina_udp_rx_truncated_total", "", {{"ring", "rx"}}).value(), 1u);
  (*rx)->close();
  (*tx)->close();
  co_await sleep_ms(5);
}

TEST(UdpRing, oversized_datagram_is_counted_not_fatal) {
  PATINA_SKIP_WITHOUT_IO_URING();
  run_coro([](net::io_context& ioc) { return run_truncated(ioc); });
}

net::awaitable<void> run_dual_stack(net::io_context& ioc) {
  core::Metrics metrics;
  UdpRingOptions ropts;
  ropts.bind_addr = "[::]:0";
  ropts.metric_labels = {{"ring", "rx"}};
  auto rx = UdpRing::open(ioc.get_executor(), ropts, metrics);
  UdpRingOptions topts;
  topts.metric_labels = {{"ring", "tx"}};
  auto tx = UdpRing::open(ioc.get_executor(), topts, metrics);
  if (!rx || !tx) {
    // No IPv6 on this host: nothing to check.
    co_return;
  }
  auto from = std::make_shared<std::vector<UdpEndpoint>>();
  (*rx)->start([from](const UdpEndpoint& f, std::span<const std::byte>) { from->push_back(f); });
  auto back = std::make_shared<int>(0);
  (*tx)->start([back](const UdpEndpoint&, std::span<const std::byte>) { ++*back; });
  std::vector<std::byte> one(4, std::byte(1));
  const UdpEndpoint to(net::ip::make_address("127.0.0.1"), (*rx)->local_endpoint().port());
  (*tx)->send(to, one);
  for (int i = 0; i < 2000 && from->empty(); ++i) co_await sleep_ms(1);
  EXPECT_EQ(from->size(), 1u);
  if (from->empty()) co_return;
  EXPECT_TRUE((*from)[0].address().is_v4()) << (*from)[0].address().to_string();
  EXPECT_EQ((*from)[0], (*tx)->local_endpoint());
  // Replying to the plain IPv4 endpoint from the dual-stack socket works.
  (*rx)->send((*from)[0], one);
  for (int i = 0; i < 2000 && *back == 0; ++i) co_await sleep_ms(1);
  EXPECT_EQ(*back, 1);
  (*rx)->close();
  (*tx)->close();
  co_await sleep_ms(5);
}

TEST(UdpRing, dual_stack_socket_names_ipv4_peers_plainly) {
  PATINA_SKIP_WITHOUT_IO_URING();
  run_coro([](net::io_context& ioc) { return run_dual_stack(ioc); });
}

TEST(UdpRing, parse_endpoint_accepts_v4_and_v6) {
  auto a = parse_endpoint("127.0.0.1:4001");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->port(), 4001);
  auto b = parse_endpoint("[::1]:0");
  ASSERT_TRUE(b);
  EXPECT_TRUE(b->address().is_v6());
  EXPECT_FALSE(parse_endpoint("nonsense"));
  EXPECT_FALSE(parse_endpoint("1.2.3.4:99999"));
}

}  // namespace
}  // namespace patina::io
