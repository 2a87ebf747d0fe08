// Several real agents on loopback forming a cluster: SWIM over QUIC
// datagrams, seen through the admin socket.
#include <gtest/gtest.h>

#include <thread>

#include <boost/json.hpp>
#include <fmt/format.h>

#include "tests/integration/api_agent.hpp"
#include "tests/integration/process.hpp"

namespace patina::testing {
namespace {

std::size_t count_members(const ApiAgent& a) {
  auto r = run_patina({"cluster", "members", "--admin-path", a.dir().file("admin.sock")}, a.dir().path());
  if (r.exit_code != 0) return 0;
  std::size_t n = 0;
  for (auto at = r.out.find("\"addr\""); at != std::string::npos; at = r.out.find("\"addr\"", at + 1)) ++n;
  return n;
}

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

}  // namespace
}  // namespace patina::testing
