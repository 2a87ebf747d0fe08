#include "io/quic_endpoint.hpp"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <random>

#include <boost/asio/detached.hpp>
#include <gtest/gtest.h>

#include "io/quic_endpoint.hpp"
#include "io/tls_generate.hpp"
#include "tests/io/io_test_util.hpp"

namespace patina::io {
namespace {

using testing::run_coro;
using testing::sleep_ms;
namespace net = boost::asio;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::vector<std::byte> bytes_of(const std::string& s) {
  std::vector<std::byte> out(s.size());
  std::memcpy(out.data(), s.data(), s.size());
  return out;
}

std::string string_of(std::span<const std::byte> b) { return std::string(reinterpret_cast<const char*>(b.data()), b.size()); }

QuicConfig plaintext_config(std::string label) {
  QuicConfig c;
  c.bind_addr = "127.0.0.1:0";
  c.tls.plaintext = true;
  c.metric_labels = {{"ep", std::move(label)}};
  return c;
}

// Certificates for the TLS-mode tests, made once per process with the same
// functions `patina tls ... generate` uses.
struct Certs {
  fs::path dir;
  fs::path other_dir;
  Certs() {
    dir = fs::temp_directory_path() / fmt::format("patina-io-certs-{}", ::getpid());
    other_dir = dir / "other";
    fs::create_directories(other_dir);
    auto ca = tls::generate_ca_files(dir);
    EXPECT_TRUE(ca) << (ca ? "" : ca.error().message);
    auto server = tls::generate_server_files(dir, "127.0.0.1", dir / "ca_cert.pem", dir / "ca_key.pem");
    EXPECT_TRUE(server) << (server ? "" : server.error().message);
    auto client = tls::generate_client_files(dir, dir / "ca_cert.pem", dir / "ca_key.pem");
    EXPECT_TRUE(client) << (client ? "" : client.error().message);
    auto other = tls::generate_ca_files(other_dir);
    EXPECT_TRUE(other);
    auto other_client =
        tls::generate_client_files(other_dir, other_dir / "ca_cert.pem", other_dir / "ca_key.pem");
    EXPECT_TRUE(other_client);
  }
  ~Certs() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  QuicTlsConfig server_tls(bool verify_with_other_ca = false) const {
    QuicTlsConfig t;
    t.plaintext = false;
    t.cert_file = (dir / "server_cert.pem").string();
    t.key_file = (dir / "server_key.pem").string();
    t.ca_file = ((verify_with_other_ca ? other_dir : dir) / "ca_cert.pem").string();
    return t;
  }
  QuicTlsConfig mutual_tls(bool client_cert_from_other_ca = false) const {
    QuicTlsConfig t = server_tls();
    const fs::path& d = client_cert_from_other_ca ? other_dir : dir;
    t.client_cert_file = (d / "client_cert.pem").string();
    t.client_key_file = (d / "client_key.pem").string();
    return t;
  }
};

const Certs& certs() {
  static Certs c;
  return c;
}

std::shared_ptr<QuicEndpoint> open_ep(net::io_context& ioc, QuicConfig cfg, core::Metrics& metrics) {
  auto ep = QuicEndpoint::open(ioc.get_executor(), std::move(cfg), metrics);
  EXPECT_TRUE(ep) << (ep ? "" : ep.error().message);
  if (!ep) return nullptr;
  (*ep)->start();
  return *ep;
}

// Echoes every datagram back to its sender.
net::awaitable<void> echo_datagram(std::weak_ptr<QuicEndpoint> weak, UdpEndpoint peer, std::vector<std::byte> data) {
  auto ep = weak.lock();
  if (!ep) co_return;
  auto r = co_await ep->send_datagram(peer, std::move(data));
  if (!r) ADD_FAILURE() << "echo failed: " << r.error().message;
}

void install_echo(net::any_io_executor ex, const std::shared_ptr<QuicEndpoint>& ep) {
  std::weak_ptr<QuicEndpoint> weak = ep;
  ep->set_on_datagram([ex, weak](const UdpEndpoint& peer, std::span<const std::byte> p) {
    std::vector<std::byte> copy(p.begin(), p.end());
    net::co_spawn(ex, echo_datagram(weak, peer, std::move(copy)), net::detached);
  });
}

// Connects |a| to |b| and checks one datagram round trip.
net::awaitable<Result<void>> handshake_and_echo(std::shared_ptr<QuicEndpoint> a, std::shared_ptr<QuicEndpoint> b) {
  auto ex = co_await net::this_coro::executor;
  install_echo(ex, b);
  auto got = std::make_shared<std::vector<std::string>>();
  a->set_on_datagram([got](const UdpEndpoint&, std::span<const std::byte> p) { got->push_back(string_of(p)); });
  auto t0 = Clock::now();
  auto c = co_await a->connect(b->local_endpoint());
  if (!c) co_return c;
  std::printf("handshake (%s): %.2f ms\n",
              a->config().tls.plaintext ? "plaintext" : (a->config().tls.client_cert_file ? "mutual TLS" : "TLS"),
              std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  auto rtt = a->rtt(b->local_endpoint());
  if (!rtt) co_return make_error(Errc::internal, "no RTT for an established connection");
  auto payload = bytes_of("hello");
  auto s = co_await a->send_datagram(b->local_endpoint(), std::move(payload));
  if (!s) co_return s;
  for (int i = 0; i < 3000 && got->empty(); ++i) co_await sleep_ms(1);
  if (got->size() != 1 || (*got)[0] != "hello") co_return make_error(Errc::internal, "no datagram echo");
  co_return Result<void>{};
}

net::awaitable<void> shutdown(std::shared_ptr<QuicEndpoint> a, std::shared_ptr<QuicEndpoint> b) {
  if (a) a->close();
  if (b) b->close();
  co_await sleep_ms(10);
}

// Runs a two-endpoint test: |a_tls| dials |b_tls|; |expect_ok| says whether
// the handshake must succeed.
net::awaitable<void> run_mode(net::io_context& ioc, QuicTlsConfig a_tls, QuicTlsConfig b_tls, bool expect_ok) {
  core::Metrics metrics;
  QuicConfig ca = plaintext_config("a");
  ca.tls = a_tls;
  QuicConfig cb = plaintext_config("b");
  cb.tls = b_tls;
  auto a = open_ep(ioc, ca, metrics);
  auto b = open_ep(ioc, cb, metrics);
  if (!a || !b) co_return;
  auto r = co_await handshake_and_echo(a, b);
  if (expect_ok) {
    EXPECT_TRUE(r) << (r ? "" : r.error().message);
  } else {
    EXPECT_FALSE(r);
    if (!r) {
      EXPECT_NE(r.error().code, Errc::timeout) << "refusal should be explicit: " << r.error().message;
      std::printf("refused as expected: %s\n", r.error().message.c_str());
    }
    EXPECT_FALSE(a->has_client_connection(b->local_endpoint()));
  }
  co_await shutdown(a, b);
}

TEST(Quic, plaintext_handshake_and_datagram_echo) {
  PATINA_SKIP_WITHOUT_IO_URING();
  QuicTlsConfig t;
  t.plaintext = true;
  run_coro([&](net::io_context& ioc) { return run_mode(ioc, t, t, true); });
}

TEST(Quic, ca_verified_handshake) {
  PATINA_SKIP_WITHOUT_IO_URING();
  auto t = certs().server_tls();
  run_coro([&](net::io_context& ioc) { return run_mode(ioc, t, t, true); });
}

TEST(Quic, insecure_client_accepts_any_server) {
  PATINA_SKIP_WITHOUT_IO_URING();
  auto server = certs().server_tls();
  auto client = certs().server_tls(true);  // trusts another CA...
  client.insecure = true;                   // ...but does not verify
  run_coro([&](net::io_context& ioc) { return run_mode(ioc, client, server, true); });
}

TEST(Quic, mutual_tls_accepted) {
  PATINA_SKIP_WITHOUT_IO_URING();
  auto t = certs().mutual_tls();
  run_coro([&](net::io_context& ioc) { return run_mode(ioc, t, t, true); });
}

TEST(Quic, mutual_tls_without_client_cert_refused) {
  PATINA_SKIP_WITHOUT_IO_URING();
  auto server = certs().mutual_tls();
  auto client = certs().server_tls();
  run_coro([&](net::io_context& ioc) { return run_mode(ioc, client, server, false); });
}

TEST(Quic, mutual_tls_with_foreign_client_cert_refused) {
  PATINA_SKIP_WITHOUT_IO_URING();
  auto server = certs().mutual_tls();
  auto client = certs().mutual_tls(true);
  run_coro([&](net::io_context& ioc) { return run_mode(ioc, client, server, false); });
}

TEST(Quic, wrong_ca_refused) {
  PATINA_SKIP_WITHOUT_IO_URING();
  auto server = certs().server_tls();
  auto client = certs().server_tls(true);
  run_coro([&](net::io_context& ioc) { return run_mode(ioc, client, server, false); });
}

TEST(Quic, wrong_alpn_refused) {
  PATINA_SKIP_WITHOUT_IO_URING();
  QuicTlsConfig server;
  QuicTlsConfig client;
  client.alpn = "not-patina";
  run_coro([&](net::io_context& ioc) { return run_mode(ioc, client, server, false); });
}

net::awaitable<void> run_dual_stack(net::io_context& ioc) {
  core::Metrics metrics;
  QuicConfig ca = plaintext_config("a");
  ca.bind_addr = "[::]:0";
  auto a = QuicEndpoint::open(ioc.get_executor(), ca, metrics);
  if (!a) co_return;  // no IPv6 here
  (*a)->start();
  auto b = open_ep(ioc, plaintext_config("b"), metrics);
  if (!b) co_return;
  auto r = co_await handshake_and_echo(*a, b);  // b answers a's IPv4 address
  EXPECT_TRUE(r) << (r ? "" : r.error().message);
  co_await shutdown(*a, b);
}

TEST(Quic, dual_stack_endpoint_talks_to_ipv4_peer) {
  PATINA_SKIP_WITHOUT_IO_URING();
  run_coro([](net::io_context& ioc) { return run_dual_stack(ioc); });
}

TEST(Quic, tls_config_errors_are_reported) {
  QuicTlsConfig t;
  t.plaintext = false;
  t.cert_file = "/nonexistent/cert.pem";
  t.key_file = "/nonexistent/key.pem";
  t.insecure = true;
  EXPECT_FALSE(TlsContext::create(t));
  auto no_ca = certs().server_tls();
  no_ca.ca_file.reset();
  EXPECT_FALSE(TlsContext::create(no_ca));  // neither ca_file nor insecure
  auto mutual_no_ca = certs().mutual_tls();
  mutual_no_ca.ca_file.reset();
  mutual_no_ca.insecure = true;
  EXPECT_FALSE(TlsContext::create(mutual_no_ca));
}

TEST(Quic, config_from_gossip) {
  core::GossipConfig g;
  g.bind_addr = "127.0.0.1:4001";
  g.plaintext = true;
  g.idle_timeout_secs = 7;
  g.max_mtu = 1400;
  auto c = quic_config_from(g);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->idle_timeout, std::chrono::seconds(7));
  EXPECT_EQ(c->stateless_reset_key.size(), 32u);
  EXPECT_EQ(c->stateless_reset_key, quic_config_from(g)->stateless_reset_key) << "stable across restarts";
  EXPECT_EQ(c->max_mtu, 1400);
  g.max_mtu = 1000;
  EXPECT_FALSE(quic_config_from(g));
  g.max_mtu.reset();
  g.plaintext = false;
  EXPECT_FALSE(quic_config_from(g));
}

net::awaitable<void> run_many_datagrams(net::io_context& ioc) {
  core::Metrics metrics;
  auto a = open_ep(ioc, plaintext_config("a"), metrics);
  auto b = open_ep(ioc, plaintext_config("b"), metrics);
  if (!a || !b) co_return;
  install_echo(ioc.get_executor(), b);
  auto got = std::make_shared<std::size_t>(0);
  a->set_on_datagram([got](const UdpEndpoint&, std::span<const std::byte>) { ++*got; });
  const UdpEndpoint to = b->local_endpoint();
  auto t0 = Clock::now();
  auto c = co_await a->connect(to);
  auto handshake = Clock::now() - t0;
  EXPECT_TRUE(c);
  if (!c) co_return;
  std::printf("handshake (plaintext, first dial): %.2f ms\n",
              std::chrono::duration<double, std::milli>(handshake).count());
  {
    // Later dials, to fresh endpoints (no cached connection).
    std::vector<double> ms;
    for (int i = 0; i < 10; ++i) {
      auto other = open_ep(ioc, plaintext_config("other"), metrics);
      if (!other) break;
      auto t1 = Clock::now();
      auto r = co_await a->connect(other->local_endpoint());
      EXPECT_TRUE(r);
      ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t1).count());
      other->close();
    }
    std::sort(ms.begin(), ms.end());
    if (!ms.empty()) std::printf("handshake (plaintext), median of %zu: %.2f ms\n", ms.size(), ms[ms.size() / 2]);
  }
  // Ping-pong with up to 32 in flight.
  const std::size_t total = 2000;
  std::size_t sent = 0;
  std::vector<std::byte> payload(64, std::byte(7));
  t0 = Clock::now();
  for (int pauses = 0; *got < total && pauses < 10000;) {
    if (sent < total && sent - *got < 32) {
      auto r = co_await a->send_datagram(to, payload);
      EXPECT_TRUE(r);
      ++sent;
      continue;
    }
    co_await sleep_ms(0);
    ++pauses;
  }
  auto secs = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf("datagram echo: %zu of %zu round trips, %.0f/s\n", *got, total, static_cast<double>(*got) / secs);
  // Loopback loses nothing in practice, but datagrams are unreliable: allow 1%.
  EXPECT_GE(*got, total * 99 / 100);
  std::vector<std::byte> big(a->max_datagram_size() + 1);
  auto too_big = co_await a->send_datagram(to, big);
  EXPECT_FALSE(too_big);
  co_await shutdown(a, b);
}

TEST(Quic, datagram_echo_many) {
  PATINA_SKIP_WITHOUT_IO_URING();
  run_coro([](net::io_context& ioc) { return run_many_datagrams(ioc); });
}

struct StreamSink {
  std::vector<std::vector<std::byte>> received;
  std::vector<std::string> errors;
};

net::awaitable<void> read_uni(std::shared_ptr<QuicStream> s, std::shared_ptr<StreamSink> sink) {
  auto data = co_await s->read_all(4 << 20, std::chrono::seconds(10));
  if (data) {
    sink->received.push_back(std::move(*data));
  } else {
    sink->errors.push_back(data.error().message);
  }
}

// Answers a request on a bidirectional stream with the reversed request.
net::awaitable<void> serve_bi(std::shared_ptr<QuicStream> s) {
  auto req = co_await s->read_all(1 << 20, std::chrono::seconds(10));
  if (!req) co_return;
  std::vector<std::byte> resp(req->rbegin(), req->rend());
  auto w = co_await s->write(std::move(resp), true);
  if (!w) ADD_FAILURE() << "response write failed: " << w.error().message;
}

void install_stream_server(net::any_io_executor ex, const std::shared_ptr<QuicEndpoint>& ep,
                           std::shared_ptr<StreamSink> sink) {
  ep->set_on_stream([ex, sink](std::shared_ptr<QuicStream> s) {
    if (s->unidirectional()) {
      net::co_spawn(ex, read_uni(s, sink), net::detached);
    } else {
      net::co_spawn(ex, serve_bi(s), net::detached);
    }
  });
}

net::awaitable<void> run_streams(net::io_context& ioc) {
  core::Metrics metrics;
  auto a = open_ep(ioc, plaintext_config("a"), metrics);
  auto b = open_ep(ioc, plaintext_config("b"), metrics);
  if (!a || !b) co_return;
  auto sink = std::make_shared<StreamSink>();
  install_stream_server(ioc.get_executor(), b, sink);
  const UdpEndpoint to = b->local_endpoint();

  // 1 MiB on a unidirectional stream, larger than every flow-control window.
  std::vector<std::byte> big(1 << 20);
  std::mt19937 rng(0x9a71);
  for (auto& x : big) x = std::byte(static_cast<unsigned char>(rng()));
  auto t0 = Clock::now();
  auto r = co_await a->send_uni(to, big);
  EXPECT_TRUE(r) << (r ? "" : r.error().message);
  for (int i = 0; i < 5000 && sink->received.empty() && sink->errors.empty(); ++i) co_await sleep_ms(1);
  std::printf("1 MiB uni stream: %.1f ms\n", std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  EXPECT_TRUE(sink->errors.empty()) << (sink->errors.empty() ? "" : sink->errors[0]);
  EXPECT_EQ(sink->received.size(), 1u);
  if (!sink->received.empty()) {
    EXPECT_TRUE(sink->received[0] == big) << "uni stream bytes differ";
  }

  // Several uni streams in sequence and bidirectional request/response.
  for (int i = 0; i < 300; ++i) {  // more than max_streams_uni (256)
    auto msg = bytes_of(fmt::format("broadcast {}", i));
    auto u = co_await a->send_uni(to, std::move(msg));
    EXPECT_TRUE(u) << (u ? "" : u.error().message);
    if (!u) break;
  }
  for (int i = 0; i < 5000 && sink->received.size() < 301; ++i) co_await sleep_ms(1);
  EXPECT_EQ(sink->received.size(), 301u);

  {
    // A request written in pieces, then FIN alone.
    auto s = co_await a->open_bi(to);
    EXPECT_TRUE(s);
    if (s) {
      auto part1 = bytes_of("ab");
      auto part2 = bytes_of("cd");
      EXPECT_TRUE(co_await (*s)->write(std::move(part1)));
      EXPECT_TRUE(co_await (*s)->write(std::move(part2)));
      EXPECT_TRUE(co_await (*s)->finish());
      auto resp = co_await (*s)->read_all(1024, std::chrono::seconds(5));
      EXPECT_TRUE(resp);
      if (resp) {
        EXPECT_EQ(string_of(*resp), "dcba");
      }
    }
  }
  for (int i = 0; i < 40; ++i) {  // more than max_streams_bidi (32): credit must come back
    auto req = bytes_of(fmt::format("request number {}", i));
    auto resp = co_await a->request(to, std::move(req), 1024);
    EXPECT_TRUE(resp) << (resp ? "" : resp.error().message);
    if (!resp) break;
    std::string expect = fmt::format("request number {}", i);
    std::reverse(expect.begin(), expect.end());
    EXPECT_EQ(string_of(*resp), expect);
  }
  co_await shutdown(a, b);
}

TEST(Quic, uni_and_bi_streams) {
  PATINA_SKIP_WITHOUT_IO_URING();
  run_coro([](net::io_context& ioc) { return run_streams(ioc); });
}

// Client connections are replaced every uni_streams_per_connection streams
// (ngtcp2 0.12 never frees a peer's finished uni streams); nothing is lost.
net::awaitable<void> run_uni_recycling(net::io_context& ioc) {
  core::Metrics metrics;
  QuicConfig ca = plaintext_config("a");
  ca.uni_streams_per_connection = 10;
  auto a = open_ep(ioc, ca, metrics);
  auto b = open_ep(ioc, plaintext_config("b"), metrics);
  if (!a || !b) co_return;
  auto sink = std::make_shared<StreamSink>();
  install_stream_server(ioc.get_executor(), b, sink);
  for (int i = 0; i < 35; ++i) {
    auto msg = bytes_of(fmt::format("change {}", i));
    auto r = co_await a->send_uni(b->local_endpoint(), std::move(msg));
    EXPECT_TRUE(r) << (r ? "" : r.error().message);
    if (!r) break;
  }
  for (int i = 0; i < 3000 && sink->received.size() < 35; ++i) co_await sleep_ms(1);
  EXPECT_EQ(sink->received.size(), 35u);
  EXPECT_EQ(metrics.counter("patina_quic_handshakes_client_total", "", {{"ep", "a"}}).value(), 4u);
  for (int i = 0; i < 2000 && a->connection_count() > 1; ++i) co_await sleep_ms(1);
  EXPECT_EQ(a->connection_count(), 1u) << "retired connections should close";
  co_await shutdown(a, b);
}

TEST(Quic, uni_stream_connections_are_recycled) {
  PATINA_SKIP_WITHOUT_IO_URING();
  run_coro([](net::io_context& ioc) { return run_uni_recycling(ioc); });
}

// Eight endpoints, every one talking to every other: many client and
// server connections per endpoint, datagrams and streams demultiplexed.
net::awaitable<void> run_mesh(net::io_context& ioc) {
  core::Metrics metrics;
  constexpr int n = 8;
  std::vector<std::shared_ptr<QuicEndpoint>> eps;
  std::vector<std::shared_ptr<std::map<std::string, int>>> datagrams;
  std::vector<std::shared_ptr<StreamSink>> sinks;
  for (int i = 0; i < n; ++i) {
    auto ep = open_ep(ioc, plaintext_config(fmt::format("n{}", i)), metrics);
    if (!ep) co_return;
    auto got = std::make_shared<std::map<std::string, int>>();
    ep->set_on_datagram([got](const UdpEndpoint&, std::span<const std::byte> p) { ++(*got)[string_of(p)]; });
    auto sink = std::make_shared<StreamSink>();
    install_stream_server(ioc.get_executor(), ep, sink);
    eps.push_back(ep);
    datagrams.push_back(got);
    sinks.push_back(sink);
  }
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) {
      if (i == j) continue;
      auto d = bytes_of(fmt::format("from {}", i));
      auto r = co_await eps[i]->send_datagram(eps[j]->local_endpoint(), std::move(d));
      EXPECT_TRUE(r) << (r ? "" : r.error().message);
      auto u = bytes_of(fmt::format("stream from {}", i));
      auto w = co_await eps[i]->send_uni(eps[j]->local_endpoint(), std::move(u));
      EXPECT_TRUE(w) << (w ? "" : w.error().message);
    }
  }
  auto complete = [&] {
    for (int j = 0; j < n; ++j) {
      if (datagrams[j]->size() != n - 1 || sinks[j]->received.size() != n - 1) return false;
    }
    return true;
  };
  for (int i = 0; i < 3000 && !complete(); ++i) co_await sleep_ms(1);
  for (int j = 0; j < n; ++j) {
    EXPECT_EQ(datagrams[j]->size(), static_cast<std::size_t>(n - 1)) << "endpoint " << j;
    EXPECT_EQ(sinks[j]->received.size(), static_cast<std::size_t>(n - 1)) << "endpoint " << j;
    for (auto& [text, count] : *datagrams[j]) EXPECT_EQ(count, 1) << text;
    // One connection per pair: whoever dialed first, the other answers on it.
    EXPECT_EQ(eps[j]->connection_count(), static_cast<std::size_t>(n - 1));
  }
  for (auto& ep : eps) ep->close();
  co_await sleep_ms(10);
}

TEST(Quic, mesh_of_eight_endpoints) {
  PATINA_SKIP_WITHOUT_IO_URING();
  run_coro([](net::io_context& ioc) { return run_mesh(ioc); });
}

net::awaitable<void> run_garbage(net::io_context& ioc) {
  core::Metrics metrics;
  auto b = open_ep(ioc, plaintext_config("b"), metrics);
  if (!b) co_return;
  UdpRingOptions gopts;
  gopts.metric_labels = {{"ring", "garbage"}};
  auto g = UdpRing::open(ioc.get_executor(), gopts, metrics);
  EXPECT_TRUE(g);
  if (!g) co_return;
  auto vn = std::make_shared<int>(0);
  (*g)->start([vn](const UdpEndpoint&, std::span<const std::byte> p) {
    // A Version Negotiation packet: long header, version 0.
    if (p.size() >= 5 && (p[0] & std::byte(0x80)) != std::byte(0) && p[1] == std::byte(0) && p[2] == std::byte(0) &&
        p[3] == std::byte(0) && p[4] == std::byte(0)) {
      ++*vn;
    }
  });
  std::mt19937 rng(0x6a5b);
  const int total = 1000;
  for (int i = 0; i < total; ++i) {
    std::vector<std::byte> junk(static_cast<std::size_t>(rng() % 1400));
    for (auto& x : junk) x = std::byte(static_cast<unsigned char>(rng()));
    if (i % 4 == 0 && junk.size() > 6) {
      junk[0] = std::byte(0xc0);  // long header, Initial, unknown version
      junk[1] = std::byte(0xba);
      junk[2] = std::byte(0xba);
      junk[3] = std::byte(0xba);
      junk[4] = std::byte(0xba);
    }
    (*g)->send(b->local_endpoint(), junk);
    if (i % 50 == 49) co_await sleep_ms(1);
  }
  auto bad_total = [&] {
    std::uint64_t sum = 0;
    for (const char* reason : {"unknown_version", "malformed", "unknown_connection", "not_initial", "accept_failed",
                               "too_many_connections"}) {
      sum += metrics.counter("patina_quic_bad_packets_total", "", {{"ep", "b"}, {"reason", reason}}).value();
    }
    return sum;
  };
  for (int i = 0; i < 3000 && bad_total() < static_cast<std::uint64_t>(total); ++i) co_await sleep_ms(1);
  EXPECT_EQ(bad_total(), static_cast<std::uint64_t>(total));
  EXPECT_GE(*vn, 1) << "unknown versions in full-size datagrams get a Version Negotiation answer";
  EXPECT_LE(*vn, 20) << "Version Negotiation answers are rate-limited";
  EXPECT_EQ(b->connection_count(), 0u);
  // Still healthy: a real client gets through.
  auto a = open_ep(ioc, plaintext_config("a"), metrics);
  if (a) {
    auto r = co_await handshake_and_echo(a, b);
    EXPECT_TRUE(r) << (r ? "" : r.error().message);
  }
  (*g)->close();
  co_await shutdown(a, b);
}

TEST(Quic, garbage_is_counted_and_harmless) {
  PATINA_SKIP_WITHOUT_IO_URING();
  run_coro([](net::io_context& ioc) { return run_garbage(ioc); });
}

net::awaitable<void> run_redial(net::io_context& ioc) {
  core::Metrics metrics_a;
  core::Metrics metrics_b1;
  core::Metrics metrics_b2;
  auto a = open_ep(ioc, plaintext_config("a"), metrics_a);
  auto b = open_ep(ioc, plaintext_config("b"), metrics_b1);
  if (!a || !b) co_return;
  const UdpEndpoint to = b->local_endpoint();
  auto r = co_await handshake_and_echo(a, b);
  EXPECT_TRUE(r);
  EXPECT_TRUE(a->has_client_connection(to));
  // The peer restarts on the same port.
  b->close();
  b.reset();
  co_await sleep_ms(20);
  for (int i = 0; i < 2000 && a->has_client_connection(to); ++i) co_await sleep_ms(1);
  EXPECT_FALSE(a->has_client_connection(to)) << "peer's CONNECTION_CLOSE should drop the cached connection";
  QuicConfig cb = plaintext_config("b");
  cb.bind_addr = fmt::format("127.0.0.1:{}", to.port());
  auto b2 = open_ep(ioc, cb, metrics_b2);
  if (!b2) co_return;
  auto r2 = co_await handshake_and_echo(a, b2);
  EXPECT_TRUE(r2) << (r2 ? "" : r2.error().message);
  EXPECT_EQ(metrics_a.counter("patina_quic_handshakes_client_total", "", {{"ep", "a"}}).value(), 2u);
  // An explicit disconnect also leads to a fresh dial.
  a->disconnect(to);
  EXPECT_FALSE(a->has_client_connection(to));
  auto r3 = co_await a->connect(to);
  EXPECT_TRUE(r3);
  EXPECT_EQ(metrics_a.counter("patina_quic_handshakes_client_total", "", {{"ep", "a"}}).value(), 3u);
  co_await shutdown(a, b2);
}

TEST(Quic, redial_after_peer_restart) {
  PATINA_SKIP_WITHOUT_IO_URING();
  run_coro([](net::io_context& ioc) { return run_redial(ioc); });
}

// The peer vanishes without CONNECTION_CLOSE (a crash) and comes back on
// the same port: our cached connection dies by idle timeout, then re-dials.
net::awaitable<void> run_crash_redial(net::io_context& ioc) {
  core::Metrics metrics;
  QuicConfig ca = plaintext_config("a");
  ca.idle_timeout = std::chrono::milliseconds(800);
  auto a = open_ep(ioc, ca, metrics);
  auto b = open_ep(ioc, plaintext_config("b"), metrics);
  if (!a || !b) co_return;
  const UdpEndpoint to = b->local_endpoint();
  auto c = co_await a->connect(to);
  EXPECT_TRUE(c);
  b->close(false);
  b.reset();
  co_await sleep_ms(20);  // let the kernel cancel the old socket's receive
  QuicConfig cb = plaintext_config("b2");
  cb.bind_addr = fmt::format("127.0.0.1:{}", to.port());
  auto b2 = open_ep(ioc, cb, metrics);
  if (!b2) co_return;
  auto got = std::make_shared<int>(0);
  b2->set_on_datagram([got](const UdpEndpoint&, std::span<const std::byte>) { ++*got; });
  std::vector<std::byte> ping(8, std::byte(1));
  // Bounded: at most 50 tries, 100 ms apart.
  for (int i = 0; i < 50 && *got == 0; ++i) {
    if (!a->try_send_datagram(to, ping)) {
      auto r = co_await a->send_datagram(to, ping);  // dials when the old connection is gone
      if (!r) ADD_FAILURE() << r.error().message;
    }
    co_await sleep_ms(100);
  }
  EXPECT_GT(*got, 0) << "datagrams never reached the restarted peer";
  co_await shutdown(a, b2);
}

TEST(Quic, redial_after_peer_crash) {
  PATINA_SKIP_WITHOUT_IO_URING();
  run_coro([](net::io_context& ioc) { return run_crash_redial(ioc); });
}

// With a stateless-reset key that survives the restart, the restarted peer
// resets our stale connection at once: no idle timeout to wait for.
net::awaitable<void> run_crash_reset(net::io_context& ioc) {
  core::Metrics metrics;
  auto a = open_ep(ioc, plaintext_config("a"), metrics);  // idle timeout 30 s
  QuicConfig cb = plaintext_config("b");
  cb.stateless_reset_key = "a key persisted by the node";
  auto b = open_ep(ioc, cb, metrics);
  if (!a || !b) co_return;
  const UdpEndpoint to = b->local_endpoint();
  auto c = co_await a->connect(to);
  EXPECT_TRUE(c);
  b->close(false);
  b.reset();
  co_await sleep_ms(20);
  cb.bind_addr = fmt::format("127.0.0.1:{}", to.port());
  cb.metric_labels = {{"ep", "b2"}};
  auto b2 = open_ep(ioc, cb, metrics);
  if (!b2) co_return;
  auto got = std::make_shared<int>(0);
  b2->set_on_datagram([got](const UdpEndpoint&, std::span<const std::byte>) { ++*got; });
  std::vector<std::byte> ping(64, std::byte(1));
  // Bounded: 50 tries, 100 ms apart, far below the 30 s idle timeout.
  for (int i = 0; i < 50 && *got == 0; ++i) {
    if (!a->try_send_datagram(to, ping)) {
      auto r = co_await a->send_datagram(to, ping);
      if (!r) ADD_FAILURE() << r.error().message;
    }
    co_await sleep_ms(100);
  }
  EXPECT_GT(*got, 0) << "the stale connection was not reset";
  co_await shutdown(a, b2);
}

TEST(Quic, stateless_reset_after_peer_crash) {
  PATINA_SKIP_WITHOUT_IO_URING();
  run_coro([](net::io_context& ioc) { return run_crash_reset(ioc); });
}

net::awaitable<void> run_idle(net::io_context& ioc, bool keep_alive) {
  core::Metrics metrics;
  QuicConfig ca = plaintext_config("a");
  ca.idle_timeout = std::chrono::milliseconds(600);
  ca.keep_alive = keep_alive;
  QuicConfig cb = plaintext_config("b");
  cb.idle_timeout = std::chrono::milliseconds(600);
  auto a = open_ep(ioc, ca, metrics);
  auto b = open_ep(ioc, cb, metrics);
  if (!a || !b) co_return;
  const UdpEndpoint to = b->local_endpoint();
  auto c = co_await a->connect(to);
  EXPECT_TRUE(c);
  if (keep_alive) {
    // Keep-alive PINGs every 300 ms hold the connection open well past 600 ms.
    co_await sleep_ms(2000);
    EXPECT_TRUE(a->has_client_connection(to));
    EXPECT_EQ(b->connection_count(), 1u);
  } else {
    for (int i = 0; i < 5000 && (a->connection_count() > 0 || b->connection_count() > 0); ++i) co_await sleep_ms(1);
    EXPECT_EQ(a->connection_count(), 0u);
    EXPECT_EQ(b->connection_count(), 0u);
    // And the next use simply re-dials.
    auto again = co_await a->connect(to);
    EXPECT_TRUE(again);
  }
  co_await shutdown(a, b);
}

TEST(Quic, idle_timeout_closes) {
  PATINA_SKIP_WITHOUT_IO_URING();
  run_coro([](net::io_context& ioc) { return run_idle(ioc, false); });
}

TEST(Quic, keep_alive_holds_idle_connection) {
  PATINA_SKIP_WITHOUT_IO_URING();
  run_coro([](net::io_context& ioc) { return run_idle(ioc, true); });
}

net::awaitable<void> run_generated_files(net::io_context&) {
  const Certs& c = certs();
  for (const char* name : {"ca_cert.pem", "ca_key.pem", "server_cert.pem", "server_key.pem", "client_cert.pem",
                           "client_key.pem"}) {
    EXPECT_TRUE(fs::exists(c.dir / name)) << name;
  }
  auto perms = fs::status(c.dir / "server_key.pem").permissions();
  EXPECT_EQ(perms & (fs::perms::group_all | fs::perms::others_all), fs::perms::none);
  co_return;
}

TEST(TlsGenerate, writes_corrosion_file_names_with_private_keys) {
  run_coro([](net::io_context& ioc) { return run_generated_files(ioc); });
}

TEST(TlsGenerate, rejects_missing_ca) {
  auto r = tls::generate_server_files(fs::temp_directory_path(), "127.0.0.1", "/nonexistent/ca_cert.pem",
                                      "/nonexistent/ca_key.pem");
  EXPECT_FALSE(r);
}

// A peer that dialed us is answered over its own connection: one connection
// per pair, one handshake. With reuse_inbound off, the answer dials back.
net::awaitable<void> run_reuse_inbound(net::io_context& ioc, bool reuse) {
  core::Metrics metrics;
  QuicConfig cb = plaintext_config("b");
  cb.reuse_inbound = reuse;
  auto a = open_ep(ioc, plaintext_config("a"), metrics);
  auto b = open_ep(ioc, cb, metrics);
  if (!a || !b) co_return;
  auto r = co_await handshake_and_echo(a, b);
  EXPECT_TRUE(r) << (r ? "" : r.error().message);
  const double b_dials = metrics.counter("patina_quic_handshakes_client_total", "", {{"ep", "b"}}).value();
  EXPECT_EQ(b_dials, reuse ? 0u : 1u);
  EXPECT_EQ(b->connection_count(), reuse ? 1u : 2u);
  EXPECT_TRUE(b->has_client_connection(a->local_endpoint()));
  EXPECT_TRUE(b->rtt(a->local_endpoint()).has_value());
  // Streams work in the other direction too: b opens a uni and a bidi one.
  auto sink = std::make_shared<StreamSink>();
  install_stream_server(co_await net::this_coro::executor, a, sink);
  auto sent = co_await b->send_uni(a->local_endpoint(), bytes_of("from b"));
  EXPECT_TRUE(sent) << (sent ? "" : sent.error().message);
  for (int i = 0; i < 3000 && sink->received.empty(); ++i) co_await sleep_ms(1);
  EXPECT_EQ(sink->received.size(), 1u);
  if (!sink->received.empty()) {
    EXPECT_EQ(string_of(sink->received[0]), "from b");
  }
  auto answer = co_await b->request(a->local_endpoint(), bytes_of("abc"), 1024);
  EXPECT_TRUE(answer) << (answer ? "" : answer.error().message);
  if (answer) {
    EXPECT_EQ(string_of(*answer), "cba");
  }
  EXPECT_EQ(b->connection_count(), reuse ? 1u : 2u);
  co_await shutdown(a, b);
}

TEST(Quic, a_peer_that_dialed_us_is_answered_on_its_connection) {
  PATINA_SKIP_WITHOUT_IO_URING();
  run_coro([](net::io_context& ioc) { return run_reuse_inbound(ioc, true); });
}

TEST(Quic, without_reuse_inbound_the_answer_dials_back) {
  PATINA_SKIP_WITHOUT_IO_URING();
  run_coro([](net::io_context& ioc) { return run_reuse_inbound(ioc, false); });
}

// The peer that dialed us crashes and restarts on the same port: what we
// send on its old connection draws a stateless reset, after which we dial.
net::awaitable<void> run_stale_inbound(net::io_context& ioc) {
  core::Metrics metrics;
  auto a = open_ep(ioc, plaintext_config("a"), metrics);
  auto b = open_ep(ioc, plaintext_config("b"), metrics);
  if (!a || !b) co_return;
  auto r = co_await handshake_and_echo(a, b);
  EXPECT_TRUE(r) << (r ? "" : r.error().message);
  const UdpEndpoint a_addr = a->local_endpoint();
  a->close(false);  // a crash: no CONNECTION_CLOSE
  a.reset();
  QuicConfig ca = plaintext_config("a2");
  ca.bind_addr = fmt::format("127.0.0.1:{}", a_addr.port());
  auto a2 = open_ep(ioc, ca, metrics);
  if (!a2) co_return;
  auto got = std::make_shared<int>(0);
  a2->set_on_datagram([got](const UdpEndpoint&, std::span<const std::byte>) { ++*got; });
  const std::vector<std::byte> payload = bytes_of(std::string(100, 'x'));  // large enough to draw a reset
  for (int i = 0; i < 200 && *got == 0; ++i) {
    if (!b->try_send_datagram(a_addr, payload)) (void)co_await b->send_datagram(a_addr, payload);
    co_await sleep_ms(10);
  }
  EXPECT_GT(*got, 0) << "b never reached the restarted peer";
  EXPECT_EQ(metrics.counter("patina_quic_handshakes_client_total", "", {{"ep", "b"}}).value(), 1u);
  co_await shutdown(a2, b);
}

// Request/answer traffic: with the ACK hold each ACK rides on the answer or
// the next request, so a round trip is two UDP datagrams instead of four.
// Returns the datagrams both sides sent for |rounds| round trips.
net::awaitable<double> ping_pong_datagrams(net::io_context& ioc, std::chrono::milliseconds hold, int rounds) {
  core::Metrics metrics;
  QuicConfig ca = plaintext_config("a");
  QuicConfig cb = plaintext_config("b");
  ca.ack_hold = hold;
  cb.ack_hold = hold;
  auto a = open_ep(ioc, ca, metrics);
  auto b = open_ep(ioc, cb, metrics);
  if (!a || !b) co_return 0;
  auto r = co_await handshake_and_echo(a, b);
  EXPECT_TRUE(r) << (r ? "" : r.error().message);
  co_await sleep_ms(50);  // handshake leftovers (HANDSHAKE_DONE, its ACKs) settle
  auto sent = [&] {
    return metrics.counter("patina_udp_tx_datagrams_total", "", {{"ep", "a"}}).value() +
           metrics.counter("patina_udp_tx_datagrams_total", "", {{"ep", "b"}}).value();
  };
  auto got = std::make_shared<int>(0);
  a->set_on_datagram([got](const UdpEndpoint&, std::span<const std::byte>) { ++*got; });
  const double before = sent();
  const UdpEndpoint to = b->local_endpoint();
  for (int i = 0; i < rounds; ++i) {
    auto s = co_await a->send_datagram(to, bytes_of(fmt::format("ping {}", i)));
    EXPECT_TRUE(s) << (s ? "" : s.error().message);
    for (int w = 0; w < 3000 && *got <= i; ++w) co_await sleep_ms(1);
    EXPECT_EQ(*got, i + 1) << "no answer to ping " << i;
    if (*got != i + 1) break;
  }
  co_await sleep_ms(100);  // the last ACKs, held or not, go out
  const double n = sent() - before;
  std::printf("%d round trips, ack_hold %lld ms: %.0f UDP datagrams\n", rounds,
              static_cast<long long>(hold.count()), n);
  co_await shutdown(a, b);
  co_return n;
}

TEST(Quic, held_acks_ride_on_answers) {
  PATINA_SKIP_WITHOUT_IO_URING();
  constexpr int rounds = 40;
  double held = 0;
  double immediate = 0;
  run_coro([&](net::io_context& ioc) -> net::awaitable<void> {
    held = co_await ping_pong_datagrams(ioc, std::chrono::milliseconds(20), rounds);
  });
  run_coro([&](net::io_context& ioc) -> net::awaitable<void> {
    immediate = co_await ping_pong_datagrams(ioc, std::chrono::milliseconds(0), rounds);
  });
  // About two datagrams per round trip (plus the last ACKs). Without the
  // hold ngtcp2 sends the ACK of a quickly answered packet on its own; how
  // often depends on the machine's speed, so that count is only printed.
  EXPECT_LE(held, 2.25 * rounds);
  EXPECT_GT(immediate, 0);
}

TEST(Quic, a_crashed_dialer_is_dialed_after_its_stateless_reset) {
  PATINA_SKIP_WITHOUT_IO_URING();
  run_coro([](net::io_context& ioc) { return run_stale_inbound(ioc); });
}

}  // namespace
}  // namespace patina::io
