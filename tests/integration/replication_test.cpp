// Replication end to end between real agents on loopback: convergence under
// conflicting writes, large transactions arriving whole, restarts and
// crashes during a write load, no-op writes, cluster-id isolation and saved
// members. Every wait is bounded; digests come from `patina sync digest`.
#include <gtest/gtest.h>
#include <zdict.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "api/http_client.hpp"
#include "tests/integration/api_agent.hpp"
#include "tests/integration/process.hpp"

namespace patina::testing {
namespace {

using namespace std::chrono_literals;

double metric(const ApiAgent& a, const std::string& name) { return metric_sum(a.metrics(), name); }

std::string bootstrap_of(const ApiAgent& a) { return fmt::format("bootstrap = [\"{}\"]", a.gossip()); }

bool formed(std::initializer_list<const ApiAgent*> agents) {
  return wait_until(
      [&] {
        for (const auto* a : agents) {
          if (count_members(*a) != agents.size() - 1) return false;
        }
        return true;
      },
      20s);
}

bool write(const ApiAgent& a, const std::string& statements) {
  auto r = api::http_request(a.api(), "POST", "/v1/transactions", statements);
  return r.status == 200;
}

std::int64_t count_rows(const ApiAgent& a) {
  auto r = api::http_request(a.api(), "POST", "/v1/queries", R"J("SELECT count(*) FROM tests")J");
  if (r.status != 200) return -1;
  std::smatch m;
  static const std::regex row(R"R(\{"row":\[1,\[(\d+)\]\]\})R");
  if (!std::regex_search(r.body, m, row)) return -1;
  return std::stoll(m[1]);
}

bool same_digests(std::initializer_list<const ApiAgent*> agents) {
  std::set<std::string> seen;
  for (const auto* a : agents) {
    auto d = digest(*a);
    if (d.empty()) return false;
    seen.insert(d);
  }
  return seen.size() == 1;
}

TEST(Replication, concurrent_conflicting_writes_end_with_identical_digests) {
  ApiAgent a;
  ASSERT_TRUE(a.ready()) << a.process().log();
  ApiAgent b("", "", bootstrap_of(a));
  ApiAgent c("", "", bootstrap_of(a));
  ASSERT_TRUE(b.ready() && c.ready());
  ASSERT_TRUE(formed({&a, &b, &c}));

  // Three writers hammer the same 20 rows with different values.
  std::vector<std::thread> writers;
  std::atomic<int> acknowledged{0};
  const ApiAgent* nodes[] = {&a, &b, &c};
  for (int w = 0; w < 3; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; i < 60; ++i) {
        int id = (i * 7 + w) % 20;
        std::string sql = i % 10 == 9
                              ? fmt::format(R"J([["DELETE FROM tests WHERE id = ?", [{}]]])J", id)
                              : fmt::format(R"J([["INSERT INTO tests (id, text) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET text = excluded.text", [{}, "node{} write{}"]]])J",
                                            id, w, i);
        if (write(*nodes[w], sql)) ++acknowledged;
      }
    });
  }
  for (auto& t : writers) t.join();
  EXPECT_EQ(acknowledged.load(), 180);
  bool converged = wait_until([&] { return same_digests({&a, &b, &c}); }, 40s);
  EXPECT_TRUE(converged) << digest(a) << " " << digest(b) << " " << digest(c) << "\n" << rows(a) << "\n" << rows(b);
  EXPECT_EQ(rows(a), rows(b));
  EXPECT_EQ(rows(a), rows(c));
  EXPECT_EQ(a.stop(), 0);
  EXPECT_EQ(b.stop(), 0);
  EXPECT_EQ(c.stop(), 0);
}

TEST(Replication, a_100000_row_transaction_is_never_seen_in_part) {
  ApiAgent a;
  ASSERT_TRUE(a.ready()) << a.process().log();
  ApiAgent b("", "", bootstrap_of(a));
  ASSERT_TRUE(b.ready());
  ASSERT_TRUE(formed({&a, &b}));

  std::atomic<bool> stop{false};
  std::set<std::int64_t> observed;
  std::thread poller([&] {
    for (int i = 0; i < 20000 && !stop; ++i) {  // bounded: stops when told, or by count
      observed.insert(count_rows(b));
      std::this_thread::sleep_for(5ms);
    }
  });
  ASSERT_TRUE(write(a, R"J(["INSERT INTO tests (id, text) WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 100000) SELECT x, 'row ' || x FROM n"])J"));
  bool arrived = wait_until([&] { return count_rows(b) == 100000; }, 90s);
  stop = true;
  poller.join();
  EXPECT_TRUE(arrived) << b.process().log();
  observed.erase(-1);  // a query that failed is no observation
  for (auto n : observed) EXPECT_TRUE(n == 0 || n == 100000) << "a reader saw " << n << " rows";
  EXPECT_TRUE(same_digests({&a, &b}));
  EXPECT_EQ(a.stop(), 0);
  EXPECT_EQ(b.stop(), 0);
}

TEST(Replication, nodes_stopped_or_killed_during_a_write_load_catch_up) {
  ApiAgent a;
  ASSERT_TRUE(a.ready()) << a.process().log();
  ApiAgent b("", "", bootstrap_of(a));
  ApiAgent c("", "", bootstrap_of(a));
  ASSERT_TRUE(b.ready() && c.ready());
  ASSERT_TRUE(formed({&a, &b, &c}));

  std::atomic<bool> stop{false};
  std::atomic<int> next{0};
  std::vector<int> acknowledged;
  std::thread load([&] {
    for (int i = 0; i < 3000 && !stop; ++i) {
      int id = next++;
      if (write(a, fmt::format(R"J([["INSERT INTO tests (id, text) VALUES (?, 'load')", [{}]]])J", id))) {
        acknowledged.push_back(id);
      }
      std::this_thread::sleep_for(2ms);
    }
  });
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(b.stop(), 0);    // graceful
  EXPECT_EQ(c.kill(), 128 + SIGKILL);  // a crash: nothing saved at exit
  std::this_thread::sleep_for(1s);
  ASSERT_TRUE(b.start()) << b.process().log();
  ASSERT_TRUE(c.start()) << c.process().log();
  std::this_thread::sleep_for(1s);
  stop = true;
  load.join();
  ASSERT_GT(acknowledged.size(), 50u);
  bool converged = wait_until([&] { return same_digests({&a, &b, &c}); }, 60s);
  EXPECT_TRUE(converged) << c.process().log();
  EXPECT_EQ(count_rows(b), static_cast<std::int64_t>(acknowledged.size()));
  EXPECT_EQ(count_rows(c), static_cast<std::int64_t>(acknowledged.size()));
  // The bookkeeping came back consistent with the data after the crash.
  auto check = run_patina({"sync", "check-bookie-consistency", "--admin-path", c.admin_path()}, c.dir().path());
  EXPECT_EQ(check.exit_code, 0) << check.err;
  EXPECT_EQ(a.stop(), 0);
  EXPECT_EQ(b.stop(), 0);
  EXPECT_EQ(c.stop(), 0);
}

TEST(Replication, a_node_that_joins_late_receives_everything_through_sync) {
  ApiAgent a;
  ASSERT_TRUE(a.ready()) << a.process().log();
  // Many versions, one of them big (chunked), before b exists at all.
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(write(a, fmt::format(R"J([["INSERT INTO tests (id, text) VALUES (?, 'early')", [{}]]])J", i)));
  }
  ASSERT_TRUE(write(a, R"J(["INSERT INTO tests (id, text) WITH RECURSIVE n(x) AS (SELECT 1000 UNION ALL SELECT x + 1 FROM n WHERE x < 6000) SELECT x, 'bulk ' || x FROM n"])J"));
  ASSERT_TRUE(write(a, R"J(["DELETE FROM tests WHERE id < 10"])J"));
  ApiAgent b("", "", bootstrap_of(a));
  ASSERT_TRUE(b.ready());
  EXPECT_TRUE(wait_until([&] { return same_digests({&a, &b}); }, 60s)) << b.process().log();
  EXPECT_EQ(count_rows(b), 40 + 5001);
  auto gen = run_patina({"sync", "generate", "--admin-path", b.admin_path()}, b.dir().path());
  EXPECT_EQ(gen.exit_code, 0);
  EXPECT_NE(gen.out.find("\"heads\""), std::string::npos) << gen.out;
  EXPECT_EQ(a.stop(), 0);
  EXPECT_EQ(b.stop(), 0);
}

// A version that names a table this node lacks (a peer migrated first)
// waits, buffered, and is merged once the schema catches up, through
// /v1/migrations or a schema reload; the operator verbs show and drive it.
TEST(Replication, versions_naming_a_table_a_node_lacks_wait_for_its_schema_and_are_merged_then) {
  ApiAgent a;
  ASSERT_TRUE(a.ready()) << a.process().log();
  ApiAgent b("", "", bootstrap_of(a));
  ASSERT_TRUE(b.ready());
  ASSERT_TRUE(formed({&a, &b}));
  const std::string later = "CREATE TABLE later (id INTEGER NOT NULL PRIMARY KEY, v TEXT NOT NULL DEFAULT '')";
  const std::string later2 = "CREATE TABLE later2 (id INTEGER NOT NULL PRIMARY KEY, v TEXT NOT NULL DEFAULT '')";
  auto migrated = api::http_request(a.api(), "POST", "/v1/migrations", "[\"" + later + "\", \"" + later2 + "\"]");
  ASSERT_EQ(migrated.status, 200) << migrated.body;
  auto w = api::http_request(a.api(), "POST", "/v1/transactions", R"J(["INSERT INTO later (id, v) VALUES (1, 'one')"])J");
  ASSERT_EQ(w.status, 200) << w.body;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(w.body, m, std::regex(R"R("version":(\d+))R"))) << w.body;
  const std::string version = m[1];
  ASSERT_TRUE(std::regex_search(w.body, m, std::regex(R"R("actor_id":"([0-9a-f-]+)")R"))) << w.body;
  const std::string actor = m[1];
  auto actor_version = [&](const ApiAgent& n) {
    return run_patina({"actor", "version", actor, version, "--admin-path", n.admin_path()}, n.dir().path());
  };
  // On its origin the version is current; on b it arrives and waits whole.
  auto own = actor_version(a);
  EXPECT_EQ(own.exit_code, 0) << own.err;
  EXPECT_NE(own.out.find("{\"current\":{\"db_version\":" + version + ",\"last_seq\":0}}"), std::string::npos) << own.out;
  ASSERT_TRUE(wait_until([&] { return actor_version(b).out.find("\"partial\"") != std::string::npos; }, 20s))
      << actor_version(b).out << b.process().log();
  auto early = run_patina({"sync", "process-buffered-changes", actor, version, "--admin-path", b.admin_path()},
                          b.dir().path());
  EXPECT_NE(early.exit_code, 0);
  EXPECT_NE(early.err.find("does not have"), std::string::npos) << early.err;

  // The migration on b lets it in, and a subscriber-visible query sees it.
  migrated = api::http_request(b.api(), "POST", "/v1/migrations", "[\"" + later + "\"]");
  ASSERT_EQ(migrated.status, 200) << migrated.body;
  auto q = api::http_request(b.api(), "POST", "/v1/queries", R"J("SELECT v FROM later WHERE id = 1")J");
  EXPECT_NE(q.body.find(R"({"row":[1,["one"]]})"), std::string::npos) << q.body;
  auto now = actor_version(b);
  EXPECT_NE(now.out.find("\"current\""), std::string::npos) << now.out;
  auto again = run_patina({"sync", "process-buffered-changes", actor, version, "--admin-path", b.admin_path()},
                          b.dir().path());
  EXPECT_NE(again.exit_code, 0);
  EXPECT_NE(again.err.find("version not fully buffered"), std::string::npos) << again.err;

  // The same through the schema files and `patina reload`.
  ASSERT_TRUE(write(a, R"J(["INSERT INTO later2 (id, v) VALUES (2, 'two')"])J"));
  ASSERT_TRUE(write(a, R"J(["INSERT INTO tests (id, text) VALUES (2, 'after')"])J"));
  ASSERT_TRUE(wait_until([&] { return count_rows(b) == 1; }, 20s));
  b.dir().write("schema.sql", std::string(test_schema) + later + ";\n" + later2 + ";\n");
  auto reload = run_patina({"reload", "--admin-path", b.admin_path()}, b.dir().path());
  ASSERT_EQ(reload.exit_code, 0) << reload.err;
  EXPECT_TRUE(wait_until(
      [&] {
        auto r = api::http_request(b.api(), "POST", "/v1/queries", R"J("SELECT v FROM later2")J");
        return r.body.find(R"({"row":[1,["two"]]})") != std::string::npos;
      },
      10s))
      << b.process().log();
  EXPECT_TRUE(wait_until([&] { return same_digests({&a, &b}); }, 30s));
  auto gaps = run_patina({"sync", "reconcile-gaps", "--admin-path", b.admin_path()}, b.dir().path());
  EXPECT_EQ(gaps.exit_code, 0) << gaps.err;
  EXPECT_NE(gaps.err.find("reconciled gaps for"), std::string::npos) << gaps.err;
  auto consistent = run_patina({"sync", "check-bookie-consistency", "--admin-path", b.admin_path()}, b.dir().path());
  EXPECT_EQ(consistent.exit_code, 0) << consistent.err;
  auto bad = run_patina({"actor", "version", "not-an-actor", "1", "--admin-path", b.admin_path()}, b.dir().path());
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("\"not-an-actor\" is not an actor id"), std::string::npos) << bad.err;
  auto plumtree = run_patina({"plumtree", "stats", "--admin-path", b.admin_path()}, b.dir().path());
  EXPECT_NE(plumtree.exit_code, 0);
  EXPECT_NE(plumtree.err.find("not using plumtree broadcast"), std::string::npos) << plumtree.err;
  EXPECT_EQ(a.stop(), 0);
  EXPECT_EQ(b.stop(), 0);
}

// Sets db.min_free_space_mb in |a|'s config file (not applied until a
// restart or `patina reload`).
void set_disk_floor(const ApiAgent& a, const std::string& mb) {
  std::ifstream in(a.config_path());
  std::stringstream text;
  text << in.rdbuf();
  std::string config = std::regex_replace(text.str(), std::regex("min_free_space_mb = [0-9]+\n"), "");
  config.replace(config.find("[db]\n"), 5, "[db]\nmin_free_space_mb = " + mb + "\n");
  std::ofstream(a.config_path()) << config;
}

TEST(Replication, a_node_below_its_disk_floor_refuses_writes_holds_changes_and_catches_up_after_reload) {
  ApiAgent a;
  ASSERT_TRUE(a.ready()) << a.process().log();
  ApiAgent b("", "", bootstrap_of(a));
  ASSERT_TRUE(b.ready());
  ASSERT_TRUE(formed({&a, &b}));
  // A floor of 1 EiB: no disk has that much free, so b is "full".
  set_disk_floor(b, "1099511627776");
  auto lift = run_patina({"reload", "--admin-path", b.admin_path()}, b.dir().path());
  ASSERT_EQ(lift.exit_code, 0) << lift.err;

  auto refused = api::http_request(b.api(), "POST", "/v1/transactions", R"J(["INSERT INTO tests (id) VALUES (7)"])J");
  EXPECT_EQ(refused.status, 507) << refused.body;
  EXPECT_NE(refused.body.find(R"("error":"disk space low: )"), std::string::npos) << refused.body;
  auto migration = api::http_request(b.api(), "POST", "/v1/migrations",
                                     R"J(["CREATE TABLE more (id INTEGER NOT NULL PRIMARY KEY)"])J");
  EXPECT_EQ(migration.status, 507) << migration.body;
  // Reads go on.
  auto read = api::http_request(b.api(), "POST", "/v1/queries", R"J("SELECT count(*) FROM tests")J");
  EXPECT_EQ(read.status, 200) << read.body;

  // A write elsewhere reaches b, which holds it rather than failing or dropping it.
  ASSERT_TRUE(write(a, R"J(["INSERT INTO tests (id, text) VALUES (1, 'held')"])J"));
  EXPECT_TRUE(wait_until([&] { return metric(b, "patina_apply_held_total") >= 1; }, 20s)) << b.process().log();
  EXPECT_EQ(count_rows(b), 0);
  EXPECT_TRUE(b.process().running());

  // Space "freed": a reload lowers the floor; the held change lands, writes are taken.
  set_disk_floor(b, "0");
  auto reload = run_patina({"reload", "--admin-path", b.admin_path()}, b.dir().path());
  ASSERT_EQ(reload.exit_code, 0) << reload.err;
  EXPECT_TRUE(wait_until([&] { return count_rows(b) == 1; }, 20s)) << b.process().log();
  EXPECT_TRUE(write(b, R"J(["INSERT INTO tests (id, text) VALUES (7, 'after')"])J"));
  EXPECT_TRUE(wait_until([&] { return same_digests({&a, &b}); }, 30s));
  auto log = b.process().log();
  EXPECT_NE(log.find("disk space low: "), std::string::npos) << log;
  EXPECT_NE(log.find("holding peers' changes"), std::string::npos) << log;
  EXPECT_NE(log.find("db.min_free_space_mb 64 -> 1099511627776"), std::string::npos) << log;
  EXPECT_NE(log.find("db.min_free_space_mb 1099511627776 -> 0"), std::string::npos) << log;
  EXPECT_NE(log.find("disk space back above the floor"), std::string::npos) << log;
  EXPECT_EQ(a.stop(), 0);
  EXPECT_EQ(b.stop(), 0);
}

TEST(Replication, no_op_writes_send_no_bytes) {
  ApiAgent a;
  ASSERT_TRUE(a.ready()) << a.process().log();
  ApiAgent b("", "", bootstrap_of(a));
  ASSERT_TRUE(b.ready());
  ASSERT_TRUE(formed({&a, &b}));
  ASSERT_TRUE(write(a, R"J(["INSERT INTO tests (id, text) VALUES (1, 'x')"])J"));
  ASSERT_TRUE(wait_until([&] { return count_rows(b) == 1; }, 20s));
  // Counted once the peer acknowledged the frame, which may be a little after b applied it.
  EXPECT_TRUE(wait_until([&] { return metric(a, "patina_broadcast_frames_sent_total") > 0; }, 10s));
  double sent = metric(a, "patina_broadcast_frames_sent_total");
  auto r = api::http_request(a.api(), "POST", "/v1/transactions",
                             R"J(["UPDATE tests SET text = 'x' WHERE id = 1", "DELETE FROM tests WHERE id = 99"])J");
  ASSERT_EQ(r.status, 200) << r.body;
  std::this_thread::sleep_for(1s);
  EXPECT_EQ(metric(a, "patina_broadcast_frames_sent_total"), sent);
  EXPECT_EQ(a.stop(), 0);
  EXPECT_EQ(b.stop(), 0);
}

TEST(Replication, a_node_of_another_cluster_id_receives_nothing) {
  ApiAgent a;
  ASSERT_TRUE(a.ready()) << a.process().log();
  ApiAgent b("", "", bootstrap_of(a));
  ASSERT_TRUE(b.ready());
  ASSERT_TRUE(formed({&a, &b}));

  auto set = run_patina({"cluster", "set-id", "7", "--admin-path", b.admin_path()}, b.dir().path());
  ASSERT_EQ(set.exit_code, 0) << set.err;
  ASSERT_TRUE(wait_until([&] { return count_members(a) == 0 && count_members(b) == 0; }, 30s))
      << a.process().log() << b.process().log();
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(write(a, fmt::format(R"J([["INSERT INTO tests (id, text) VALUES (?, 'cluster 0')", [{}]]])J", i)));
  }
  // Several sync rounds (min_sync_backoff is 1 s) and any broadcast would
  // have landed by now.
  std::this_thread::sleep_for(4s);
  EXPECT_EQ(count_rows(b), 0);
  EXPECT_EQ(count_members(b), 0u);

  // The id survives a restart; back in cluster 0, b catches up by sync.
  ASSERT_EQ(b.stop(), 0);
  ASSERT_TRUE(b.start());
  std::this_thread::sleep_for(2s);
  EXPECT_EQ(count_rows(b), 0);
  set = run_patina({"cluster", "set-id", "0", "--admin-path", b.admin_path()}, b.dir().path());
  ASSERT_EQ(set.exit_code, 0) << set.err;
  EXPECT_TRUE(wait_until([&] { return count_rows(b) == 5; }, 30s)) << b.process().log();
  EXPECT_EQ(a.stop(), 0);
  EXPECT_EQ(b.stop(), 0);
}

TEST(Replication, the_tree_broadcast_reaches_each_of_8_members_once_through_forwarders) {
  // 8 nodes: 7 peers each, more than the tree's 6 groups, so some members
  // get every change from a forwarder (two hops), none twice.
  std::vector<std::unique_ptr<ApiAgent>> agents;
  agents.push_back(std::make_unique<ApiAgent>());
  ASSERT_TRUE(agents[0]->ready()) << agents[0]->process().log();
  for (int i = 1; i < 8; ++i) {
    agents.push_back(std::make_unique<ApiAgent>("", "", bootstrap_of(*agents[0])));
    ASSERT_TRUE(agents.back()->ready());
  }
  ASSERT_TRUE(wait_until(
      [&] {
        for (const auto& a : agents) {
          if (count_members(*a) != 7) return false;
        }
        return true;
      },
      30s));
  const int writes = 24;
  for (int i = 0; i < writes; ++i) {
    ASSERT_TRUE(write(*agents[static_cast<std::size_t>(i) % agents.size()],
                      fmt::format(R"J([["INSERT INTO tests (id, text) VALUES (?, 'tree')", [{}]]])J", i)));
  }
  for (const auto& a : agents) EXPECT_TRUE(wait_until([&] { return count_rows(*a) == writes; }, 30s));
  double received = 0, sent = 0, forwarded = 0;
  auto read_counters = [&] {
    received = sent = forwarded = 0;
    for (const auto& a : agents) {
      received += metric(*a, "patina_broadcast_frames_received_total");
      sent += metric(*a, "patina_broadcast_frames_sent_total");
      forwarded += metric(*a, "patina_broadcast_tree_forwarded_total");
    }
  };
  // A frame counts as sent when its stream is acknowledged, which can come
  // after the receiver applied it; more than 7 per write would be a repeat.
  wait_until(
      [&] {
        read_counters();
        return sent >= writes * 7.0;
      },
      10s);
  EXPECT_EQ(received, writes * 7.0);
  EXPECT_EQ(sent, writes * 7.0);
  EXPECT_GT(forwarded, 0);
  for (auto& a : agents) EXPECT_EQ(a->stop(), 0);
}

TEST(Replication, the_gossip_method_still_replicates) {
  const std::string method = "broadcast = \"gossip\"\n";
  ApiAgent a("", "", method);
  ASSERT_TRUE(a.ready()) << a.process().log();
  ApiAgent b("", "", method + bootstrap_of(a));
  ApiAgent c("", "", method + bootstrap_of(a));
  ASSERT_TRUE(b.ready() && c.ready());
  ASSERT_TRUE(formed({&a, &b, &c}));
  for (int i = 0; i < 6; ++i) {
    const ApiAgent& on = i % 3 == 0 ? a : (i % 3 == 1 ? b : c);
    ASSERT_TRUE(write(on, fmt::format(R"J([["INSERT INTO tests (id, text) VALUES (?, 'gossip')", [{}]]])J", i)));
  }
  for (const ApiAgent* n : {&a, &b, &c}) EXPECT_TRUE(wait_until([&] { return count_rows(*n) == 6; }, 30s));
  EXPECT_TRUE(same_digests({&a, &b, &c}));
  EXPECT_EQ(metric(a, "patina_broadcast_tree_forwarded_total"), 0);
  EXPECT_EQ(a.stop(), 0);
  EXPECT_EQ(b.stop(), 0);
  EXPECT_EQ(c.stop(), 0);
}

TEST(Replication, compressed_broadcasts_replicate_between_nodes) {
  const std::string compression = "compression = { enabled = true, level = 3 }\n";
  ApiAgent a("", "", compression);
  ASSERT_TRUE(a.ready()) << a.process().log();
  ApiAgent b("", "", compression + bootstrap_of(a));
  ASSERT_TRUE(b.ready()) << b.process().log();
  ASSERT_TRUE(formed({&a, &b}));
  ASSERT_TRUE(write(a, R"J(["INSERT INTO tests (id, text) WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 2000) SELECT x, 'machine ' || x || ' is running in region ord' FROM n"])J"));
  EXPECT_TRUE(wait_until([&] { return count_rows(b) == 2000; }, 30s)) << b.process().log();
  EXPECT_TRUE(same_digests({&a, &b}));
  // 2000 rows of ~40 bytes of text each, and their clocks: compressed, far
  // less than that went out (each frame once per member: one member here).
  double bytes = metric(a, "patina_broadcast_bytes_sent_total");
  EXPECT_GT(bytes, 0);
  EXPECT_LT(bytes, 2000 * 40);
  EXPECT_EQ(a.stop(), 0);
  EXPECT_EQ(b.stop(), 0);
}

// gossip.compression with a trained dictionary, the way an operator sets it
// up: samples from `patina db sample-changes`, a dictionary trained on them
// (zstd --train does the same as ZDICT here), dict_dir and dict_file. A node
// without the dictionary cannot read those broadcasts, says so, and still
// converges through sync, which never uses dictionaries.
TEST(Replication, broadcasts_compressed_with_a_trained_dictionary_replicate_and_sync_covers_nodes_without_it) {
  ScratchDir shared;
  {
    ApiAgent s;
    ASSERT_TRUE(s.ready()) << s.process().log();
    for (int i = 0; i < 300; ++i) {
      ASSERT_TRUE(write(s, fmt::format(R"J([["INSERT INTO tests (id, text) VALUES (?, ?)", [{}, "machine {} started in {}"]]])J",
                                       i, i * 7919 % 100000, i % 3 ? "ord" : "ams")));
    }
    auto sampled = run_patina({"db", "sample-changes", "--out", shared.file("samples"), "--limit", "1000", "--db-path",
                               s.db_path()},
                              s.dir().path());
    ASSERT_EQ(sampled.exit_code, 0) << sampled.err;
    EXPECT_NE(sampled.out.find("wrote 300 versions"), std::string::npos) << sampled.out;
    EXPECT_EQ(s.stop(), 0);
  }
  std::string samples;
  std::vector<std::size_t> sizes;
  for (const auto& e : std::filesystem::directory_iterator(shared.file("samples"))) {
    std::ifstream in(e.path(), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    samples += bytes;
    sizes.push_back(bytes.size());
  }
  ASSERT_EQ(sizes.size(), 300u);
  std::string dict(2048, '\0');
  std::size_t size = ZDICT_trainFromBuffer(dict.data(), dict.size(), samples.data(), sizes.data(),
                                           static_cast<unsigned>(sizes.size()));
  ASSERT_FALSE(ZDICT_isError(size)) << ZDICT_getErrorName(size);
  dict.resize(size);
  std::filesystem::create_directories(shared.file("dicts"));
  std::ofstream(shared.file("dicts/patina.dict"), std::ios::binary) << dict;

  const std::string with_dict = fmt::format(
      "[gossip.compression]\nenabled = true\ndict_dir = \"{}\"\ndict_file = \"patina.dict\"\n", shared.file("dicts"));
  ApiAgent a(with_dict);
  ASSERT_TRUE(a.ready()) << a.process().log();
  ApiAgent b(with_dict, "", bootstrap_of(a));
  ASSERT_TRUE(b.ready()) << b.process().log();
  ApiAgent c("", "", "compression = { enabled = true, level = 3 }\n" + bootstrap_of(a));
  ASSERT_TRUE(c.ready()) << c.process().log();
  ASSERT_TRUE(formed({&a, &b, &c}));
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(write(a, fmt::format(R"J([["INSERT INTO tests (id, text) VALUES (?, ?)", [{}, "machine {} stopped in ord"]]])J",
                                     i, i * 31)));
  }
  EXPECT_TRUE(wait_until([&] { return count_rows(b) == 20; }, 20s)) << b.process().log();
  EXPECT_TRUE(wait_until([&] { return count_rows(c) == 20; }, 30s)) << c.process().log();
  EXPECT_TRUE(wait_until([&] { return same_digests({&a, &b, &c}); }, 30s));
  // Frames go dictionary-compressed when that makes them smaller (how many
  // of these ~100-byte frames do depends on the dictionary trained); b reads
  // every one, c none.
  EXPECT_GE(metric(a, R"(patina_broadcast_compressed_total{dictionary="trained"})"), 1);
  EXPECT_EQ(metric(b, "patina_broadcast_bad_frames_total"), 0);
  EXPECT_GE(metric(c, "patina_broadcast_bad_frames_total"), 1);
  EXPECT_NE(a.process().log().find("compressing with"), std::string::npos) << a.process().log();
  EXPECT_NE(c.process().log().find("which is not in this node's gossip.compression.dict_dir"), std::string::npos)
      << c.process().log();

  auto reloaded = run_patina({"reload-dicts", "--admin-path", b.admin_path()}, b.dir().path());
  EXPECT_EQ(reloaded.exit_code, 0) << reloaded.err;
  EXPECT_NE(reloaded.err.find("loaded zstd dictionaries"), std::string::npos) << reloaded.err;
  auto unset = run_patina({"reload-dicts", "--admin-path", c.admin_path()}, c.dir().path());
  EXPECT_NE(unset.exit_code, 0);
  EXPECT_NE(unset.err.find("dict_dir is not set"), std::string::npos) << unset.err;
  EXPECT_EQ(a.stop(), 0);
  EXPECT_EQ(b.stop(), 0);
  EXPECT_EQ(c.stop(), 0);

  // A dict_file that is not there stops the agent at start, naming the key.
  ApiAgent bad(fmt::format("[gossip.compression]\nenabled = true\ndict_dir = \"{}\"\ndict_file = \"missing.dict\"\n",
                           shared.file("dicts")));
  EXPECT_FALSE(bad.ready());
  EXPECT_NE(bad.process().log().find("gossip.compression.dict_file"), std::string::npos) << bad.process().log();
}

TEST(Replication, a_restarted_node_rejoins_from_saved_members_without_bootstrap) {
  ApiAgent a;
  ASSERT_TRUE(a.ready()) << a.process().log();
  ApiAgent b("", "", bootstrap_of(a));
  ApiAgent c("", "", bootstrap_of(a));
  ASSERT_TRUE(b.ready());
  ASSERT_TRUE(c.ready());
  ASSERT_TRUE(formed({&a, &b, &c}));
  ASSERT_EQ(c.stop(), 0);
  // Every member was saved, not only the first (a statement left unreset
  // once made the save fail from the second member on).
  EXPECT_EQ(c.process().log().find("cannot save member states"), std::string::npos) << c.process().log();
  // Drop the bootstrap line: only the saved member states can lead c back.
  std::ifstream in(c.config_path());
  std::stringstream text;
  text << in.rdbuf();
  std::string config = std::regex_replace(text.str(), std::regex("bootstrap = .*\n"), "");
  std::ofstream(c.config_path()) << config;
  ASSERT_TRUE(c.start()) << c.process().log();
  EXPECT_TRUE(c.process().wait_for_log("restored 2 saved member states", 10s)) << c.process().log();
  EXPECT_TRUE(wait_until([&] { return count_members(c) == 2 && count_members(a) == 2 && count_members(b) == 2; },
                         20s))
      << c.process().log();
  ASSERT_TRUE(write(a, R"J(["INSERT INTO tests (id, text) VALUES (1, 'after restart')"])J"));
  EXPECT_TRUE(wait_until([&] { return count_rows(c) == 1; }, 20s));
  EXPECT_EQ(a.stop(), 0);
  EXPECT_EQ(b.stop(), 0);
  EXPECT_EQ(c.stop(), 0);
}

}  // namespace
}  // namespace patina::testing
