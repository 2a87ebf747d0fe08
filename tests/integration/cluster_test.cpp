// Several real agents on loopback forming a cluster: SWIM over QUIC
// datagrams, seen through the admin socket.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <random>
#include <sstream>

#include <thread>

#include <boost/json.hpp>
#include <fmt/format.h>

#include "api/http_client.hpp"
#include "tests/integration/api_agent.hpp"
#include "tests/integration/process.hpp"

namespace patina::testing {
namespace {

TEST(Cluster, three_agents_join_through_bootstrap_and_see_each_other) {
  ApiAgent a;
  ASSERT_TRUE(a.ready()) << a.process().log();
  ASSERT_FALSE(a.gossip().empty());
  std::string bootstrap = fmt::format("bootstrap = [\"{}\"]", a.gossip());
  ApiAgent b("", "", bootstrap);
  ApiAgent c("", "", bootstrap);
  ASSERT_TRUE(b.ready()) << b.process().log();
  ASSERT_TRUE(c.ready()) << c.process().log();

  bool converged = false;
  for (int i = 0; i < 100 && !converged; ++i) {
    converged = count_members(a) == 2 && count_members(b) == 2 && count_members(c) == 2;
    if (!converged) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(converged) << a.process().log() << b.process().log() << c.process().log();

  auto states = run_patina({"cluster", "membership-states", "--admin-path", b.dir().file("admin.sock")},
                           b.dir().path());
  EXPECT_EQ(states.exit_code, 0);
  EXPECT_NE(states.out.find(fmt::format("\"addr\":\"{}\"", a.gossip())), std::string::npos) << states.out;
  EXPECT_NE(states.out.find("\"state\":\"Alive\""), std::string::npos) << states.out;

  // A graceful leave is seen by the others as Down at once.
  EXPECT_EQ(c.stop(), 0);
  bool down = false;
  for (int i = 0; i < 100 && !down; ++i) {
    down = count_members(a) == 1 && count_members(b) == 1;
    if (!down) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(down) << a.process().log();
  EXPECT_TRUE(a.process().wait_for_log("member down"));
  EXPECT_EQ(b.stop(), 0);
  EXPECT_EQ(a.stop(), 0);
}

TEST(Cluster, a_write_on_any_node_reaches_every_node_by_broadcast) {
  ApiAgent a;
  ASSERT_TRUE(a.ready()) << a.process().log();
  std::string bootstrap = fmt::format("bootstrap = [\"{}\"]", a.gossip());
  ApiAgent b("", "", bootstrap);
  ApiAgent c("", "", bootstrap);
  ASSERT_TRUE(b.ready() && c.ready());
  bool formed = false;
  for (int i = 0; i < 100 && !formed; ++i) {
    formed = count_members(a) == 2 && count_members(b) == 2 && count_members(c) == 2;
    if (!formed) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(formed);
  bool health_counts = false;
  for (int i = 0; i < 50 && !health_counts; ++i) {
    auto h = api::http_request(a.api(), "GET", "/v1/health", "", {});
    health_counts = h.body.find("\"members\":2") != std::string::npos;
    if (!health_counts) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(health_counts);

  auto w1 = api::http_request(a.api(), "POST", "/v1/transactions",
                              R"J(["INSERT INTO tests (id, text) VALUES (1, 'from a')"])J");
  ASSERT_EQ(w1.status, 200) << w1.body;
  // c updates row 1 only once the row has reached it (an UPDATE of a row a
  // node does not have yet changes nothing there, by design).
  for (int i = 0; i < 100 && rows(c).find("from a") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_NE(rows(c).find("from a"), std::string::npos) << c.process().log();
  auto w2 = api::http_request(c.api(), "POST", "/v1/transactions",
                              R"J(["INSERT INTO tests (id, text) VALUES (2, 'from c')", "UPDATE tests SET text = 'c wins' WHERE id = 1"])J");
  ASSERT_EQ(w2.status, 200) << w2.body;
  std::string expected = "{\"columns\":[\"id\",\"text\"]}\n{\"row\":[1,[1,\"c wins\"]]}\n{\"row\":[2,[2,\"from c\"]]}\n";
  bool converged = false;
  for (int i = 0; i < 100 && !converged; ++i) {  // bounded: 10 s
    converged = rows(a) == expected && rows(b) == expected && rows(c) == expected;
    if (!converged) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(converged) << rows(a) << rows(b) << rows(c);

  // A change already applied is not applied or forwarded again: the
  // bookkeeping knows the version. Every node has each version exactly once.
  auto v = api::http_request(b.api(), "POST", "/v1/transactions",
                             R"J(["INSERT INTO tests (id, text) VALUES (3, 'from b')"])J");
  ASSERT_EQ(v.status, 200);
  for (int i = 0; i < 100; ++i) {
    if (rows(a).find("from b") != std::string::npos && rows(c).find("from b") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_NE(rows(a).find("from b"), std::string::npos);
  EXPECT_NE(rows(c).find("from b"), std::string::npos);
  EXPECT_EQ(a.stop(), 0);
  EXPECT_EQ(b.stop(), 0);
  EXPECT_EQ(c.stop(), 0);
}

TEST(Cluster, a_node_that_missed_writes_catches_up_by_sync) {
  ApiAgent a;
  ASSERT_TRUE(a.ready()) << a.process().log();
  std::string bootstrap = fmt::format("bootstrap = [\"{}\"]", a.gossip());
  ApiAgent b("", "", bootstrap);
  ASSERT_TRUE(b.ready()) << b.process().log();
  bool formed = false;
  for (int i = 0; i < 100 && !formed; ++i) {
    formed = count_members(a) == 1 && count_members(b) == 1;
    if (!formed) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(formed);

  // b is down while a writes: no broadcast can reach it.
  ASSERT_EQ(b.stop(), 0);
  for (int i = 0; i < 20; ++i) {
    auto w = api::http_request(a.api(), "POST", "/v1/transactions",
                               fmt::format(R"J([["INSERT INTO tests (id, text) VALUES (?, 'missed')", [{}]]])J", i));
    ASSERT_EQ(w.status, 200) << w.body;
  }
  ASSERT_TRUE(b.start()) << b.process().log();
  std::string expected = rows(a);
  bool caught_up = false;
  for (int i = 0; i < 300 && !caught_up; ++i) {  // bounded: 30 s
    caught_up = rows(b) == expected;
    if (!caught_up) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(caught_up) << rows(b) << b.process().log();
  EXPECT_TRUE(b.process().wait_for_log("versions", std::chrono::seconds(1))) << b.process().log();  // "sync with ...: applied N versions"
  EXPECT_EQ(a.stop(), 0);
  EXPECT_EQ(b.stop(), 0);
}

TEST(Cluster, mutual_tls_with_generated_certificates_forms_a_cluster_and_replicates) {
  ScratchDir certs;
  ASSERT_EQ(run_patina({"tls", "ca", "generate"}, certs.path()).exit_code, 0);
  ASSERT_EQ(run_patina({"tls", "server", "generate", "127.0.0.1", "--ca-key", "ca_key.pem", "--ca-cert", "ca_cert.pem"},
                       certs.path())
                .exit_code,
            0);
  ASSERT_EQ(run_patina({"tls", "client", "generate", "--ca-key", "ca_key.pem", "--ca-cert", "ca_cert.pem"}, certs.path())
                .exit_code,
            0);
  std::string tls = fmt::format(
      "[gossip.tls]\ncert_file = \"{0}/server_cert.pem\"\nkey_file = \"{0}/server_key.pem\"\n"
      "ca_file = \"{0}/ca_cert.pem\"\n[gossip.tls.client]\ncert_file = \"{0}/client_cert.pem\"\n"
      "key_file = \"{0}/client_key.pem\"\n",
      certs.path().string());
  ApiAgent a("", "", tls);
  ASSERT_TRUE(a.ready()) << a.process().log();
  ApiAgent b("", "", fmt::format("bootstrap = [\"{}\"]\n", a.gossip()) + tls);
  ASSERT_TRUE(b.ready()) << b.process().log();
  bool formed = false;
  for (int i = 0; i < 100 && !formed; ++i) {
    formed = count_members(a) == 1 && count_members(b) == 1;
    if (!formed) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(formed) << a.process().log() << b.process().log();
  ASSERT_EQ(api::http_request(a.api(), "POST", "/v1/transactions",
                              R"J(["INSERT INTO tests (id, text) VALUES (1, 'over tls')"])J")
                .status,
            200);
  bool replicated = false;
  for (int i = 0; i < 100 && !replicated; ++i) {
    replicated = rows(b).find("over tls") != std::string::npos;
    if (!replicated) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(replicated) << b.process().log();

  // A node without a client certificate is refused by mutual TLS: never a member.
  std::string no_client = fmt::format(
      "bootstrap = [\"{1}\"]\n[gossip.tls]\ncert_file = \"{0}/server_cert.pem\"\nkey_file = \"{0}/server_key.pem\"\n"
      "ca_file = \"{0}/ca_cert.pem\"\n",
      certs.path().string(), a.gossip());
  ApiAgent intruder("", "", no_client);
  ASSERT_TRUE(intruder.ready()) << intruder.process().log();
  std::this_thread::sleep_for(std::chrono::seconds(2));
  EXPECT_EQ(count_members(a), 1u);
  EXPECT_EQ(count_members(intruder), 0u);
  EXPECT_EQ(intruder.stop(), 0);
  EXPECT_EQ(a.stop(), 0);
  EXPECT_EQ(b.stop(), 0);
}

// Sends |count| random datagrams to |addr| ("ip:port") from a plain socket.
void send_garbage(const std::string& addr, int count) {
  auto colon = addr.rfind(':');
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<std::uint16_t>(std::stoi(addr.substr(colon + 1))));
  inet_pton(AF_INET, addr.substr(0, colon).c_str(), &to.sin_addr);
  int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  std::mt19937 rng(42);
  for (int i = 0; i < count; ++i) {
    std::vector<unsigned char> junk(1 + rng() % 1400);
    for (auto& b : junk) b = static_cast<unsigned char>(rng());
    ::sendto(fd, junk.data(), junk.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof(to));
  }
  ::close(fd);
}

std::uint64_t metric_value(const ApiAgent& a, const std::string& name) {
  auto r = api::http_request(a.metrics(), "GET", "/metrics", "", {});
  std::uint64_t total = 0;
  std::stringstream ss(r.body);
  for (std::string line; std::getline(ss, line);) {
    if (line.rfind(name, 0) == 0) total += std::stoull(line.substr(line.rfind(' ') + 1));
  }
  return total;
}

TEST(Cluster, five_agents_notice_a_kill_9_and_the_restart_rejoins_and_garbage_is_counted) {
  auto first = std::make_unique<ApiAgent>();
  ASSERT_TRUE(first->ready()) << first->process().log();
  std::string bootstrap = fmt::format("bootstrap = [\"{}\"]", first->gossip());
  std::vector<std::unique_ptr<ApiAgent>> agents;
  agents.push_back(std::move(first));
  for (int i = 0; i < 4; ++i) {
    agents.push_back(std::make_unique<ApiAgent>("", "", bootstrap));
    ASSERT_TRUE(agents.back()->ready()) << agents.back()->process().log();
  }
  auto all_see = [&](std::size_t n, std::size_t skip) {
    for (std::size_t i = 0; i < agents.size(); ++i) {
      if (i != skip && count_members(*agents[i]) != n) return false;
    }
    return true;
  };
  bool formed = false;
  for (int i = 0; i < 300 && !formed; ++i) {
    formed = all_see(4, agents.size());
    if (!formed) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(formed);

  // Garbage at a gossip port is dropped and counted; the node stays a member.
  send_garbage(agents[1]->gossip(), 200);
  bool counted = false;
  for (int i = 0; i < 100 && !counted; ++i) {
    counted = metric_value(*agents[1], "patina_quic_bad_packets_total") > 0;
    if (!counted) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(counted);

  // kill -9: no goodbye, so the others must detect it (probe, suspicion, down).
  agents[4]->process().signal(SIGKILL);
  ASSERT_TRUE(agents[4]->process().wait_exit().has_value());
  bool noticed = false;
  for (int i = 0; i < 900 && !noticed; ++i) {  // up to 90 s: default WAN timings
    noticed = all_see(3, 4);
    if (!noticed) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(noticed) << agents[0]->process().log();
  EXPECT_EQ(count_members(*agents[1]), 3u);  // garbage did not cost it its membership

  // The restart (same data, so the same actor id) rejoins with a newer identity.
  ASSERT_TRUE(agents[4]->start()) << agents[4]->process().log();
  bool rejoined = false;
  for (int i = 0; i < 300 && !rejoined; ++i) {
    rejoined = all_see(4, agents.size());
    if (!rejoined) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(rejoined) << agents[4]->process().log();
  for (auto& a : agents) EXPECT_EQ(a->stop(), 0);
}

}  // namespace
}  // namespace patina::testing

namespace patina::testing {
namespace {

TEST(Cluster, a_bootstrap_host_name_is_resolved) {
  ApiAgent a;
  ASSERT_TRUE(a.ready()) << a.process().log();
  auto port = a.gossip().substr(a.gossip().rfind(':') + 1);
  ApiAgent b("", "", fmt::format("bootstrap = [\"localhost:{}\"]", port));
  ASSERT_TRUE(b.ready()) << b.process().log();
  EXPECT_TRUE(wait_until([&] { return count_members(a) == 1 && count_members(b) == 1; }, std::chrono::seconds(20)))
      << b.process().log();
  // A name that does not resolve is a warning naming the entry, not a failure.
  ApiAgent c("", "", "bootstrap = [\"no-such-host.invalid:4001\"]");
  ASSERT_TRUE(c.ready()) << c.process().log();
  EXPECT_TRUE(c.process().wait_for_log("no-such-host.invalid", std::chrono::seconds(10))) << c.process().log();
  EXPECT_EQ(a.stop(), 0);
  EXPECT_EQ(b.stop(), 0);
  EXPECT_EQ(c.stop(), 0);
}

}  // namespace
}  // namespace patina::testing
