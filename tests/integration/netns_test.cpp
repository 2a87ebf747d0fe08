// Three real agents in network namespaces created by this test, joined by a
// bridge in a fourth: link delay and loss with tc netem where the kernel has
// it, a partition (one node's link down) during writes on both sides, then
// the heal — every acknowledged write must be everywhere and the digests
// equal. Needs root and `ip` (iproute2); skips with the reason otherwise.
// Nothing outside the namespaces is touched: the agents' addresses live on
// the namespaces' own links, their admin sockets in a scratch directory.
#include <gtest/gtest.h>
#include <unistd.h>

#include <set>
#include <thread>

#include <fmt/format.h>

#include "tests/integration/api_agent.hpp"
#include "tests/integration/process.hpp"

namespace patina::testing {
namespace {

using namespace std::chrono_literals;

class Namespaces {
 public:
  explicit Namespaces(int n) : tag_(fmt::format("pt{}", ::getpid() % 100000)) {
    if (::geteuid() != 0) {
      why_not_ = "needs root to create network namespaces";
      return;
    }
    if (!ip({"netns", "add", hub()})) {
      why_not_ = "`ip netns add` failed (no iproute2 or no CAP_SYS_ADMIN here)";
      return;
    }
    ok_ = ip({"-n", hub(), "link", "add", "br0", "type", "bridge"}) && ip({"-n", hub(), "link", "set", "br0", "up"});
    for (int i = 0; i < n && ok_; ++i) {
      std::string ns = name(i), peer = fmt::format("{}h{}", tag_, i);
      ok_ = ip({"netns", "add", ns}) && ip({"link", "add", peer, "type", "veth", "peer", "name", "eth0", "netns", ns}) &&
            ip({"link", "set", peer, "netns", hub()}) && ip({"-n", hub(), "link", "set", peer, "master", "br0"}) &&
            ip({"-n", hub(), "link", "set", peer, "up"}) &&
            ip({"-n", ns, "addr", "add", fmt::format("{}/24", addr(i)), "dev", "eth0"}) &&
            ip({"-n", ns, "link", "set", "eth0", "up"}) && ip({"-n", ns, "link", "set", "lo", "up"});
      if (ok_) made_ = i + 1;
    }
    if (!ok_) why_not_ = "creating veth links or the bridge failed";
  }
  ~Namespaces() {
    for (int i = 0; i < made_; ++i) ip({"netns", "del", name(i)});
    ip({"netns", "del", hub()});
  }
  bool ok() const { return ok_; }
  const std::string& why_not() const { return why_not_; }
  std::string name(int i) const { return fmt::format("{}n{}", tag_, i); }
  static std::string addr(int i) { return fmt::format("10.199.0.{}", i + 1); }
  bool netem(int i, const std::string& spec) {
    std::vector<std::string> args = {"ip", "netns", "exec", name(i), "tc", "qdisc", "add", "dev", "eth0", "root", "netem"};
    std::istringstream in(spec);
    for (std::string w; in >> w;) args.push_back(w);
    return run_command(args, ::testing::TempDir()).exit_code == 0;
  }
  bool link(int i, bool up) { return ip({"-n", name(i), "link", "set", "eth0", up ? "up" : "down"}); }

 private:
  std::string hub() const { return tag_ + "hub"; }
  static bool ip(std::vector<std::string> args) {
    args.insert(args.begin(), "ip");
    return run_command(args, ::testing::TempDir()).exit_code == 0;
  }
  std::string tag_;
  bool ok_ = false;
  int made_ = 0;
  std::string why_not_;
};

// An agent inside namespace |ns|, reached through the CLI run in the same
// namespace (HTTP) or through its admin socket (a file: any namespace).
class NsAgent {
 public:
  NsAgent(const std::string& ns, const std::string& addr, const std::string& bootstrap) : ns_(ns) {
    dir_.write("schema.sql", test_schema);
    dir_.write("config.toml", fmt::format(R"([db]
path = "{0}/state.db"
schema_paths = ["{0}/schema.sql"]
[api]
addr = "127.0.0.1:8080"
[gossip]
addr = "{1}:8787"
plaintext = true
{2}
[admin]
path = "{0}/admin.sock"
)",
                                          dir_.path().string(), addr, bootstrap));
    start();
  }
  bool start() {
    process_ = std::make_unique<Process>(
        std::vector<std::string>{"ip", "netns", "exec", ns_, patina_binary(), "agent", "-c", dir_.file("config.toml")},
        dir_.path(), dir_.file("agent.log"));
    return process_->wait_for_log("ready:", 20s);
  }
  int stop() {
    process_->signal(SIGTERM);
    return process_->wait_exit().value_or(-1);
  }
  RunResult cli(std::vector<std::string> args) {
    std::vector<std::string> argv = {"ip", "netns", "exec", ns_, patina_binary()};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back("--admin-path");
    argv.push_back(dir_.file("admin.sock"));
    argv.push_back("--api-addr");
    argv.push_back("127.0.0.1:8080");
    return run_command(argv, dir_.path());
  }
  bool write(int id, const std::string& text) {
    return cli({"exec", fmt::format("INSERT INTO tests (id, text) VALUES ({}, '{}') ON CONFLICT (id) DO UPDATE SET text = excluded.text", id, text)})
               .exit_code == 0;
  }
  std::int64_t count(const std::string& where = "1") {
    auto r = cli({"query", "SELECT count(*) FROM tests WHERE " + where});
    try {
      return r.exit_code == 0 ? std::stoll(r.out) : -1;
    } catch (...) {
      return -1;
    }
  }
  std::string digest() {
    auto r = cli({"sync", "digest"});
    auto at = r.out.find("\"digest\":\"");
    return r.exit_code == 0 && at != std::string::npos ? r.out.substr(at + 10, 16) : "";
  }
  std::size_t members() {
    auto r = cli({"cluster", "members"});
    std::size_t n = 0;
    for (auto at = r.out.find("\"addr\""); at != std::string::npos; at = r.out.find("\"addr\"", at + 1)) ++n;
    return r.exit_code == 0 ? n : 0;
  }
  Process& process() { return *process_; }

 private:
  std::string ns_;
  ScratchDir dir_;
  std::unique_ptr<Process> process_;
};

TEST(NetnsFaults, a_partition_with_writes_on_both_sides_heals_to_identical_nodes) {
  Namespaces net(3);
  if (!net.ok()) GTEST_SKIP() << "network namespace test skipped: " << net.why_not();
  bool have_netem = true;
  for (int i = 0; i < 3; ++i) have_netem = net.netem(i, "delay 20ms 10ms loss 2%") && have_netem;
  if (!have_netem) {
    std::cerr << "tc netem is not available in this kernel: running without delay and loss\n";
  }
  std::string bootstrap = fmt::format("bootstrap = [\"{}:8787\"]", Namespaces::addr(0));
  std::vector<std::unique_ptr<NsAgent>> nodes;
  for (int i = 0; i < 3; ++i) {
    nodes.push_back(std::make_unique<NsAgent>(net.name(i), Namespaces::addr(i), i == 0 ? "" : bootstrap));
    ASSERT_TRUE(nodes.back()->process().running()) << nodes.back()->process().log();
  }
  ASSERT_TRUE(wait_until([&] { return nodes[0]->members() == 2 && nodes[1]->members() == 2 && nodes[2]->members() == 2; },
                         60s))
      << nodes[2]->process().log();

  std::set<int> acknowledged;
  for (int id = 0; id < 10; ++id) {
    if (nodes[static_cast<std::size_t>(id % 3)]->write(id, "before")) acknowledged.insert(id);
  }
  // Node 2 is cut off; both sides keep writing, some to the same rows.
  ASSERT_TRUE(net.link(2, false));
  for (int id = 5; id < 20; ++id) {
    if (nodes[0]->write(id, "majority")) acknowledged.insert(id);
    if (nodes[2]->write(id + 10, "minority")) acknowledged.insert(id + 10);
  }
  std::this_thread::sleep_for(2s);
  // It really was cut off: nothing written on the other side reached it.
  EXPECT_EQ(nodes[2]->count("text = 'majority'"), 0);
  EXPECT_EQ(nodes[0]->count("text = 'minority'"), 0);
  ASSERT_TRUE(net.link(2, true));
  bool healed = wait_until(
      [&] {
        auto d = nodes[0]->digest();
        return !d.empty() && d == nodes[1]->digest() && d == nodes[2]->digest();
      },
      90s);
  EXPECT_TRUE(healed) << nodes[2]->process().log();
  for (auto& n : nodes) EXPECT_EQ(n->count(), static_cast<std::int64_t>(acknowledged.size()));
  for (auto& n : nodes) EXPECT_EQ(n->stop(), 0);
}

}  // namespace
}  // namespace patina::testing
