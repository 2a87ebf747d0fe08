#include <gtest/gtest.h>

#include "core/config.hpp"

namespace patina::core {
namespace {

constexpr const char* minimal = R"(
[db]
path = "/tmp/x/state.db"

[api]
addr = "127.0.0.1:8080"

[gossip]
addr = "127.0.0.1:8787"
plaintext = true
)";

Result<LoadedConfig> parse(std::string_view text, Environment env = {}) {
  return parse_config(text, "test.toml", env);
}

TEST(Config, minimal_file_gets_corrosion_defaults) {
  auto c = parse(minimal);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->config.db.path, "/tmp/x/state.db");
  EXPECT_EQ(c->config.db.subscriptions_path, "/tmp/x/subscriptions");
  EXPECT_EQ(c->config.db.cache_size_kib, -1048576);
  EXPECT_EQ(c->config.db.min_free_space_mb, 64u);
  ASSERT_EQ(c->config.api.bind_addr.size(), 1u);
  EXPECT_EQ(c->config.api.bind_addr[0], "127.0.0.1:8080");
  EXPECT_EQ(c->config.api.max_body_bytes, 16u * 1024 * 1024);
  EXPECT_EQ(c->config.gossip.idle_timeout_secs, 30);
  EXPECT_EQ(c->config.perf.processing_queue_len, 20000);
  EXPECT_EQ(c->config.perf.apply_queue_max_batch_size, 16000);
  EXPECT_EQ(c->config.watchdog.stall_ms, 1000);
  EXPECT_EQ(c->config.watchdog.action, WatchdogConfig::Action::exit);
  EXPECT_FALSE(c->config.watchdog.debug_commands);
  EXPECT_EQ(c->config.gossip.broadcast, GossipConfig::Broadcast::tree);
  EXPECT_TRUE(c->warnings.empty());
}

TEST(Config, broadcast_method_is_tree_or_gossip) {
  auto gossip = parse(std::string(minimal) + "broadcast = \"gossip\"\n");
  ASSERT_TRUE(gossip) << gossip.error().message;
  EXPECT_EQ(gossip->config.gossip.broadcast, GossipConfig::Broadcast::gossip);
  auto tree = parse(std::string(minimal) + "broadcast = \"tree\"\n");
  ASSERT_TRUE(tree) << tree.error().message;
  EXPECT_EQ(tree->config.gossip.broadcast, GossipConfig::Broadcast::tree);
  auto bad = parse(std::string(minimal) + "broadcast = \"flood\"\n");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message,
            "test.toml:11:13: gossip.broadcast: expected \"tree\", \"gossip\" or a [gossip.broadcast.plumtree] table, "
            "got \"flood\"");
}

TEST(Config, full_file_with_aliases) {
  auto c = parse(R"(
[db]
path = "/var/lib/patina/state.db"
schema_paths = ["/etc/patina/schema", "/etc/patina/extra.sql"]
subscriptions_path = "/var/lib/patina/subs"
cache_size_kib = -2048

[api]
bind_addr = ["127.0.0.1:8080", "[::1]:8080"]
endpoint_name = "edge-1"
authz = { bearer = "secret" }
max_body_bytes = 1048576

[gossip]
bind_addr = "0.0.0.0:8787"
external_addr = "10.0.0.1:8787"
bootstrap = ["node2:8787", "10.0.0.3:8787"]
max_mtu = 1400
idle_timeout_secs = 10
disable_gso = true
member_id = 7
compression = { enabled = true, level = 5 }

[gossip.tls]
cert_file = "c.pem"
key_file = "k.pem"
ca_file = "ca.pem"
[gossip.tls.client]
cert_file = "cc.pem"
key_file = "ck.pem"

[gossip.broadcast.plumtree]
prune_threshold = 3

[admin]
path = "/run/patina/admin.sock"

[telemetry]
prometheus.addr = "127.0.0.1:9090"

[log]
format = "json"
colors = false

[perf]
sql_tx_timeout = 30
apply_queue_batch_threshold_ratio = 0.5

[watchdog]
stall_ms = 250
action = "log"
debug_commands = true
)");
  ASSERT_TRUE(c) << c.error().message;
  const Config& k = c->config;
  EXPECT_EQ(k.db.schema_paths.size(), 2u);
  EXPECT_EQ(k.db.subscriptions_path, "/var/lib/patina/subs");
  EXPECT_EQ(k.api.bind_addr.size(), 2u);
  EXPECT_EQ(k.api.bearer_token, "secret");
  EXPECT_EQ(k.api.endpoint_name, "edge-1");
  EXPECT_EQ(k.api.max_body_bytes, 1048576u);
  EXPECT_EQ(k.gossip.external_addr, "10.0.0.1:8787");
  EXPECT_EQ(k.gossip.bootstrap.size(), 2u);
  EXPECT_EQ(k.gossip.max_mtu, 1400);
  EXPECT_TRUE(k.gossip.disable_gso);
  EXPECT_EQ(k.gossip.member_id, 7);
  EXPECT_TRUE(k.gossip.compression.enabled);
  EXPECT_EQ(k.gossip.compression.level, 5);
  ASSERT_TRUE(k.gossip.tls);
  EXPECT_EQ(k.gossip.tls->ca_file, "ca.pem");
  ASSERT_TRUE(k.gossip.tls->client);
  EXPECT_EQ(k.gossip.tls->client->key_file, "ck.pem");
  ASSERT_TRUE(k.gossip.plumtree);
  EXPECT_EQ(k.gossip.plumtree->prune_threshold, 3);
  EXPECT_EQ(k.gossip.broadcast, GossipConfig::Broadcast::gossip);  // plumtree table: the rounds
  EXPECT_EQ(k.admin.uds_path, "/run/patina/admin.sock");
  EXPECT_EQ(k.telemetry.prometheus_addr, "127.0.0.1:9090");
  EXPECT_EQ(k.log.format, log::Format::json);
  EXPECT_FALSE(k.log.colors);
  EXPECT_EQ(k.perf.sql_tx_timeout, 30);
  EXPECT_DOUBLE_EQ(k.perf.apply_queue_batch_threshold_ratio, 0.5);
  EXPECT_EQ(k.watchdog.stall_ms, 250);
  EXPECT_EQ(k.watchdog.action, WatchdogConfig::Action::log);
  EXPECT_TRUE(k.watchdog.debug_commands);
}

TEST(Config, missing_required_key_names_section_line) {
  auto c = parse("[db]\npath = \"/x\"\n\n[api]\nendpoint_name = \"a\"\n\n[gossip]\naddr = \"127.0.0.1:1\"\nplaintext = true\n");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().message, "test.toml:4:1: api.bind_addr: required key is missing");
}

TEST(Config, missing_required_section) {
  auto c = parse("[db]\npath = \"/x\"\n[api]\naddr = \"127.0.0.1:1\"\n");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().message, "test.toml:1:1: gossip: required section is missing");
}

TEST(Config, wrong_type_names_line_and_column) {
  auto c = parse("[db]\npath = \"/x\"\n[api]\naddr = \"127.0.0.1:1\"\n[gossip]\naddr = \"127.0.0.1:2\"\nplaintext = true\nmax_mtu = \"big\"\n");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().message, "test.toml:8:11: gossip.max_mtu: expected an integer, got a string");
}

TEST(Config, invalid_toml_reports_position) {
  auto c = parse("[db]\npath = \n");
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("test.toml:2:"), std::string::npos) << c.error().message;
  EXPECT_NE(c.error().message.find("invalid TOML"), std::string::npos);
}

TEST(Config, bad_address_and_cross_key_rules) {
  auto bad_addr = parse("[db]\npath = \"/x\"\n[api]\naddr = \"localhost\"\n[gossip]\naddr = \"127.0.0.1:2\"\nplaintext = true\n");
  ASSERT_FALSE(bad_addr);
  EXPECT_EQ(bad_addr.error().message, "test.toml:4:8: api.addr: 'localhost' is not an ip:port socket address");

  auto no_tls = parse("[db]\npath = \"/x\"\n[api]\naddr = \"127.0.0.1:1\"\n[gossip]\naddr = \"127.0.0.1:2\"\n");
  ASSERT_FALSE(no_tls);
  EXPECT_EQ(no_tls.error().message,
            "test.toml:5:1: gossip: either plaintext = true or a [gossip.tls] section is required");

  auto mtu = parse(std::string(minimal) + "max_mtu = 1000\n");
  ASSERT_FALSE(mtu);
  EXPECT_NE(mtu.error().message.find("gossip.max_mtu: must be at least 1200"), std::string::npos);

  auto action = parse(std::string(minimal) + "[watchdog]\naction = \"reboot\"\n");
  ASSERT_FALSE(action);
  EXPECT_NE(action.error().message.find("watchdog.action"), std::string::npos);
}

TEST(Config, the_disk_floor_is_a_non_negative_size_in_mib) {
  auto db = [](const std::string& line) {
    return parse("[db]\npath = \"/x\"\n" + line + "\n[api]\naddr = \"127.0.0.1:1\"\n[gossip]\naddr = "
                 "\"127.0.0.1:2\"\nplaintext = true\n");
  };
  auto off = db("min_free_space_mb = 0");
  ASSERT_TRUE(off) << off.error().message;
  EXPECT_EQ(off->config.db.min_free_space_mb, 0u);
  auto negative = db("min_free_space_mb = -5");
  ASSERT_FALSE(negative);
  EXPECT_NE(negative.error().message.find("test.toml:3:21: db.min_free_space_mb"), std::string::npos)
      << negative.error().message;
  auto huge = db("min_free_space_mb = 1099511627777");
  ASSERT_FALSE(huge);
  EXPECT_NE(huge.error().message.find("db.min_free_space_mb: must be at most 2^40"), std::string::npos)
      << huge.error().message;
}

TEST(Config, unknown_keys_are_warnings_with_position) {
  auto c = parse(std::string(minimal) + "colour = 3\n[mystery]\nx = 1\n");
  ASSERT_TRUE(c) << c.error().message;
  ASSERT_EQ(c->warnings.size(), 2u);
  EXPECT_EQ(c->warnings[0], "test.toml:11:10: unknown config key 'gossip.colour' ignored");
  EXPECT_EQ(c->warnings[1], "test.toml:12:1: unknown config key 'mystery' ignored");
}

TEST(Config, environment_overrides_with_double_underscore) {
  Environment env{{"DB__PATH", "/env/state.db"},
                  {"API__ADDR", "127.0.0.1:9000,127.0.0.1:9001"},
                  {"GOSSIP__MAX_MTU", "1300"},
                  {"GOSSIP__DISABLE_GSO", "true"},
                  {"WATCHDOG__STALL_MS", "500"},
                  {"PATH", "/usr/bin"},
                  {"HOME__X", "ignored: not a config section"}};
  auto c = parse(minimal, env);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->config.db.path, "/env/state.db");
  ASSERT_EQ(c->config.api.bind_addr.size(), 2u);
  EXPECT_EQ(c->config.api.bind_addr[1], "127.0.0.1:9001");
  EXPECT_EQ(c->config.gossip.max_mtu, 1300);
  EXPECT_TRUE(c->config.gossip.disable_gso);
  EXPECT_EQ(c->config.watchdog.stall_ms, 500);
}

TEST(Config, environment_can_supply_a_required_key_and_its_errors_name_the_variable) {
  auto ok = parse("[api]\naddr = \"127.0.0.1:1\"\n[gossip]\naddr = \"127.0.0.1:2\"\nplaintext = true\n",
                  {{"DB__PATH", "/from/env.db"}});
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(ok->config.db.path, "/from/env.db");

  auto bad = parse(minimal, {{"GOSSIP__MAX_MTU", "lots"}});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message, "environment variable GOSSIP__MAX_MTU: gossip.max_mtu: expected an integer, got a string");
}

TEST(Config, missing_file_is_an_error) {
  auto c = load_config_file("/nonexistent/patina.toml", {});
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, Errc::not_found);
}

}  // namespace
}  // namespace patina::core
