// The HTTP API through the real binary: Corrosion's shapes, status codes and
// error bodies (SPEC.md §1).
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>

#include <atomic>
#include <fstream>
#include <sstream>
#include <thread>

#include <boost/json.hpp>
#include <fmt/format.h>

#include "tests/integration/api_agent.hpp"
#include "tests/integration/process.hpp"
#include "api/http_client.hpp"

namespace patina::testing {
namespace {

namespace json = boost::json;
using api::HttpConnection;
using api::HttpResponse;
using api::http_request;

json::value parse(const std::string& s) { return json::parse(s); }

class Api : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    agent_ = new ApiAgent();
    ASSERT_TRUE(agent_->ready()) << agent_->process().log();
  }
  static void TearDownTestSuite() {
    EXPECT_EQ(agent_->stop(), 0);
    delete agent_;
    agent_ = nullptr;
  }
  static HttpResponse post(const std::string& target, const std::string& body) {
    return http_request(agent_->api(), "POST", target, body);
  }
  static ApiAgent* agent_;
};
ApiAgent* Api::agent_ = nullptr;

TEST_F(Api, transaction_returns_version_and_actor_id) {
  auto r = post("/v1/transactions", R"J(["INSERT INTO tests (id, text) VALUES (1, 'one')"])J");
  ASSERT_EQ(r.status, 200) << r.body;
  auto v = parse(r.body).as_object();
  ASSERT_TRUE(v.contains("results") && v.contains("time") && v.contains("version") && v.contains("actor_id"));
  EXPECT_EQ(v["results"].as_array().size(), 1u);
  EXPECT_EQ(v["results"].as_array()[0].as_object().at("rows_affected").as_int64(), 1);
  EXPECT_TRUE(v["results"].as_array()[0].as_object().at("time").is_double());
  ASSERT_TRUE(v["version"].is_int64());
  std::int64_t first = v["version"].as_int64();
  std::string actor(v["actor_id"].as_string());
  EXPECT_EQ(actor.size(), 32u);
  EXPECT_EQ(actor.find_first_not_of("0123456789abcdef"), std::string::npos);

  // One request = one transaction = one version, however many statements.
  auto two = post("/v1/transactions",
                  R"J(["INSERT INTO tests (id, text) VALUES (2, 'two')", "UPDATE tests SET text = 'uno' WHERE id = 1"])J");
  ASSERT_EQ(two.status, 200) << two.body;
  EXPECT_EQ(parse(two.body).at("version").as_int64(), first + 1);
  EXPECT_EQ(std::string(parse(two.body).at("actor_id").as_string()), actor);

  // A write that changes nothing records nothing: version null.
  auto noop = post("/v1/transactions", R"J(["UPDATE tests SET text = 'uno' WHERE id = 1"])J");
  ASSERT_EQ(noop.status, 200) << noop.body;
  EXPECT_TRUE(parse(noop.body).at("version").is_null()) << noop.body;
  EXPECT_EQ(parse(noop.body).at("results").as_array()[0].at("rows_affected").as_int64(), 1);
}

TEST_F(Api, every_statement_form_and_parameter_type_round_trips) {
  auto r = post("/v1/transactions", R"J([
    ["INSERT INTO kinds (id, i, r, t, b, n) VALUES (?, ?, ?, ?, ?, ?)", [10, 42, 1.5, "text", [0, 1, 255], null]],
    ["INSERT INTO kinds (id, i, r, t) VALUES (:id, :i, :r, :t)", {":id": 11, ":i": true, ":r": 2, ":t": {"a": [1, 2]}}],
    {"query": "INSERT INTO kinds (id, i, t) VALUES (?, ?, ?)", "params": [12, -9007199254740993, "x"]},
    {"query": "INSERT INTO kinds (id, t) VALUES ($id, $t)", "named_params": {"$id": 13, "$t": "named"}},
    "INSERT INTO kinds (id, t) VALUES (14, 'plain')"
  ])J");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(parse(r.body).at("results").as_array().size(), 5u);

  auto q = post("/v1/queries", R"J(["SELECT id, i, r, t, b, n, typeof(r) FROM kinds WHERE id >= ? ORDER BY id", [10]])J");
  ASSERT_EQ(q.status, 200) << q.body;
  auto events = q.ndjson();
  ASSERT_EQ(events.size(), 7u) << q.body;
  EXPECT_EQ(json::serialize(events[0]), R"J({"columns":["id","i","r","t","b","n","typeof(r)"]})J");
  auto row = [&](std::size_t i) { return events[i].at("row").as_array(); };
  EXPECT_EQ(row(1)[0].as_int64(), 1);  // per-response row counter
  auto cells10 = row(1)[1].as_array();
  EXPECT_EQ(cells10[1].as_int64(), 42);
  EXPECT_TRUE(cells10[2].is_double());
  EXPECT_EQ(cells10[2].as_double(), 1.5);
  EXPECT_EQ(cells10[3].as_string(), "text");
  EXPECT_EQ(json::serialize(cells10[4]), "[0,1,255]");  // BLOB as bytes
  EXPECT_TRUE(cells10[5].is_null());
  auto cells11 = row(2)[1].as_array();
  EXPECT_EQ(cells11[1].as_int64(), 1);                      // true -> 1
  EXPECT_EQ(cells11[6].as_string(), "real");                // 2 into a REAL column
  EXPECT_EQ(cells11[3].as_string(), R"J({"a":[1,2]})J");     // objects -> raw JSON text
  EXPECT_TRUE(row(3)[1].as_array()[1].is_int64());
  EXPECT_EQ(row(3)[1].as_array()[1].as_int64(), -9007199254740993);  // exact i64
  EXPECT_EQ(row(4)[1].as_array()[3].as_string(), "named");
  EXPECT_EQ(row(5)[1].as_array()[3].as_string(), "plain");
  EXPECT_TRUE(events[6].as_object().contains("eoq"));
  EXPECT_TRUE(events[6].at("eoq").at("time").is_double());
}

TEST_F(Api, corrosions_sql_functions_work_in_writes_and_queries) {
  auto w = post("/v1/transactions",
                R"J(["INSERT INTO tests (id, text) SELECT value, 'row ' || value FROM generate_series(1001, 1100)"])J");
  ASSERT_EQ(w.status, 200) << w.body;
  EXPECT_EQ(parse(w.body).at("results").as_array()[0].at("rows_affected").as_int64(), 100);
  auto q = post("/v1/queries", R"J("SELECT count(*), min(id), max(id) FROM tests WHERE id BETWEEN 1001 AND 1100")J");
  ASSERT_EQ(q.status, 200) << q.body;
  EXPECT_EQ(json::serialize(q.ndjson().at(1).at("row").as_array()[1]), "[100,1001,1100]");

  auto j = post("/v1/transactions", R"J([
    ["INSERT INTO tests (id, text) VALUES (?, ?)", [1201, "{\"app\": \"web\", \"region\": \"ams\", \"meta\": {\"v\": 1, \"w\": 2}}"]],
    ["INSERT INTO tests (id, text) VALUES (?, ?)", [1202, "{\"app\": \"db\", \"region\": \"ams\"}"]]
  ])J");
  ASSERT_EQ(j.status, 200) << j.body;
  auto sel = post("/v1/queries", R"J(["SELECT id FROM tests WHERE id IN (1201, 1202) AND corro_json_contains(?, text) ORDER BY id",
                                      ["{\"region\": \"ams\", \"meta\": {\"v\": 1}}"]])J");
  ASSERT_EQ(sel.status, 200) << sel.body;
  auto events = sel.ndjson();
  ASSERT_EQ(events.size(), 3u) << sel.body;
  EXPECT_EQ(json::serialize(events[1].at("row").as_array()[1]), "[1201]");

  // Invalid JSON is an error in the stream, as Corrosion's function raises one.
  auto bad = post("/v1/queries", R"J("SELECT corro_json_contains('{', '{}')")J");
  ASSERT_EQ(bad.status, 200) << bad.body;
  EXPECT_NE(bad.body.find("not valid JSON"), std::string::npos) << bad.body;
}

TEST_F(Api, client_errors_get_clear_status_codes_and_json_bodies) {
  auto malformed = post("/v1/transactions", "[\"INSERT INTO tests");
  EXPECT_EQ(malformed.status, 400);
  EXPECT_TRUE(malformed.json() && malformed.json()->as_object().contains("error")) << malformed.body;

  auto shape = post("/v1/transactions", R"J({"not": "an array"})J");
  EXPECT_EQ(shape.status, 422) << shape.body;
  auto shape2 = post("/v1/transactions", R"J([42])J");
  EXPECT_EQ(shape2.status, 422) << shape2.body;

  auto no_ct = http_request(agent_->api(), "POST", "/v1/transactions", R"J(["SELECT 1"])J", {});
  EXPECT_EQ(no_ct.status, 415) << no_ct.body;

  auto empty = post("/v1/transactions", "[]");
  EXPECT_EQ(empty.status, 400);
  auto e = parse(empty.body);
  EXPECT_EQ(e.at("results").as_array()[0].at("error").as_string(), "at least 1 statement is required");
  EXPECT_TRUE(e.at("version").is_null());
  EXPECT_EQ(e.at("time").as_double(), 0.0);

  auto sql = post("/v1/transactions", R"J(["INSERT INTO nowhere VALUES (1)"])J");
  EXPECT_EQ(sql.status, 500);
  EXPECT_NE(sql.body.find("no such table: nowhere"), std::string::npos) << sql.body;

  auto not_read_only = post("/v1/queries", R"J("DELETE FROM tests")J");
  EXPECT_EQ(not_read_only.status, 400);
  EXPECT_EQ(not_read_only.body, R"J({"error":"statement is not readonly"})J");

  auto bad_query = post("/v1/queries", R"J("SELEKT 1")J");
  EXPECT_EQ(bad_query.status, 400);
  EXPECT_NE(bad_query.body.find("syntax error"), std::string::npos) << bad_query.body;

  auto unknown = http_request(agent_->api(), "GET", "/v1/nothing-here");
  EXPECT_EQ(unknown.status, 404);
  auto wrong_method = http_request(agent_->api(), "GET", "/v1/transactions");
  EXPECT_EQ(wrong_method.status, 405);
}

TEST_F(Api, writes_to_internal_or_unreplicated_tables_and_schema_changes_are_refused) {
  auto internal = post("/v1/transactions", R"J(["DELETE FROM tests__crsql_clock"])J");
  EXPECT_EQ(internal.status, 400) << internal.body;
  EXPECT_NE(internal.body.find("internal to Patina"), std::string::npos) << internal.body;

  auto ddl = post("/v1/transactions", R"J(["CREATE TABLE sneaky (id INTEGER PRIMARY KEY)"])J");
  EXPECT_EQ(ddl.status, 400) << ddl.body;
  EXPECT_NE(ddl.body.find("schema changes are not allowed"), std::string::npos) << ddl.body;

  auto txn = post("/v1/transactions", R"J(["COMMIT"])J");
  EXPECT_EQ(txn.status, 400) << txn.body;

  // A refused statement rolls back the whole request.
  auto mixed = post("/v1/transactions",
                    R"J(["INSERT INTO tests (id, text) VALUES (500, 'x')", "DELETE FROM tests__crsql_clock"])J");
  EXPECT_EQ(mixed.status, 400);
  auto q = post("/v1/queries", R"J("SELECT count(*) FROM tests WHERE id = 500")J");
  EXPECT_EQ(q.ndjson().at(1).at("row").as_array()[1].as_array()[0].as_int64(), 0);
}

TEST_F(Api, oversize_body_gets_413) {
  std::string big(17 * 1024 * 1024, ' ');
  big[0] = '[';
  big[big.size() - 1] = ']';
  auto r = post("/v1/transactions", big);
  EXPECT_EQ(r.status, 413);
  EXPECT_NE(r.body.find("exceeds the limit"), std::string::npos) << r.body;
}

TEST_F(Api, table_stats_health_and_metrics) {
  ASSERT_EQ(post("/v1/transactions", R"J(["INSERT OR REPLACE INTO tests (id) VALUES (900), (901)"])J").status, 200);
  auto stats = post("/v1/table_stats", R"J({"tables": ["tests", "missing"]})J");
  ASSERT_EQ(stats.status, 200) << stats.body;
  auto s = parse(stats.body);
  EXPECT_GE(s.at("total_row_count").as_int64(), 2);
  EXPECT_EQ(json::serialize(s.at("invalid_tables")), R"J(["missing"])J");

  auto health = http_request(agent_->api(), "GET", "/v1/health");
  EXPECT_EQ(health.status, 200) << health.body;  // a quiet node is healthy
  auto h = parse(health.body).at("response").as_object();
  for (const char* k : {"gaps", "members", "p99_lag", "queue_size"}) EXPECT_TRUE(h.contains(k)) << k;
  auto strict = http_request(agent_->api(), "GET", "/v1/health?gaps=0&max_queue=0&failure_status=500");
  EXPECT_EQ(strict.status, 200);
  auto bad = http_request(agent_->api(), "GET", "/v1/health?gaps=lots");
  EXPECT_EQ(bad.status, 400);

  auto metrics = http_request(agent_->metrics(), "GET", "/metrics", "", {});
  ASSERT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.body.find("patina_http_requests_total{route=\"transactions\",status=\"200\"}"),
            std::string::npos);
  EXPECT_NE(metrics.body.find("# TYPE patina_writer_queue_depth gauge"), std::string::npos);
  EXPECT_NE(metrics.body.find("patina_writer_batch_jobs_bucket"), std::string::npos);
  EXPECT_NE(metrics.body.find("patina_db_size_bytes"), std::string::npos);
  EXPECT_NE(metrics.body.find("patina_watchdog_stalls_total 0"), std::string::npos);
  EXPECT_NE(metrics.body.find("patina_reader_busy"), std::string::npos);
}

TEST_F(Api, migrations_create_replicated_tables_with_the_schema_rules) {
  auto m = post("/v1/migrations", R"J(["CREATE TABLE extra (id TEXT NOT NULL PRIMARY KEY, v INTEGER)"])J");
  ASSERT_EQ(m.status, 200) << m.body;
  EXPECT_EQ(parse(m.body).at("results").as_array().size(), 0u);
  auto w = post("/v1/transactions", R"J(["INSERT INTO extra (id, v) VALUES ('a', 1)"])J");
  EXPECT_EQ(w.status, 200) << w.body;
  EXPECT_TRUE(parse(w.body).at("version").is_int64());

  auto bad = post("/v1/migrations", R"J(["CREATE TABLE nopk (v INTEGER)"])J");
  EXPECT_EQ(bad.status, 400) << bad.body;
  auto destructive = post("/v1/migrations", R"J(["CREATE TABLE extra (id TEXT NOT NULL PRIMARY KEY)"])J");
  EXPECT_EQ(destructive.status, 400) << destructive.body;
  EXPECT_NE(destructive.body.find("extra"), std::string::npos);
}

TEST_F(Api, keep_alive_connection_serves_many_requests) {
  HttpConnection c(agent_->api());
  for (int i = 0; i < 50; ++i) {
    auto r = c.post_json("/v1/transactions", fmt::format(R"J([["INSERT OR REPLACE INTO tests (id, text) VALUES (?, ?)", [{}, "k"]]])J", 2000 + i));
    ASSERT_EQ(r.status, 200) << r.body;
  }
}

TEST(ApiAuth, bearer_token_and_endpoint_name) {
  ApiAgent agent("", "endpoint_name = \"edge-7\"\nauthz = { bearer-token = \"s3cret\" }");
  ASSERT_TRUE(agent.ready()) << agent.process().log();
  auto none = http_request(agent.api(), "POST", "/v1/queries", R"J("SELECT 1")J");
  EXPECT_EQ(none.status, 401);
  auto wrong = http_request(agent.api(), "POST", "/v1/queries", R"J("SELECT 1")J",
                            {{"content-type", "application/json"}, {"authorization", "Bearer s3cres"}});
  EXPECT_EQ(wrong.status, 401);
  std::vector<std::pair<std::string, std::string>> ok_headers{{"content-type", "application/json"},
                                                               {"authorization", "Bearer s3cret"}};
  EXPECT_EQ(http_request(agent.api(), "POST", "/v1/queries", R"J("SELECT 1")J", ok_headers).status, 200);
  auto misdirected = ok_headers;
  misdirected.emplace_back("x-corrosion-requested-endpoint-name", "edge-8");
  EXPECT_EQ(http_request(agent.api(), "POST", "/v1/queries", R"J("SELECT 1")J", misdirected).status, 421);
  auto directed = ok_headers;
  directed.emplace_back("x-corrosion-requested-endpoint-name", "edge-7");
  EXPECT_EQ(http_request(agent.api(), "POST", "/v1/queries", R"J("SELECT 1")J", directed).status, 200);
  EXPECT_EQ(agent.stop(), 0);
}

// A huge transaction's COMMIT writes for a long time without progress
// callbacks; the watchdog (stall_ms 1000, action exit) must not take it for
// a deadlock and kill the node.
TEST(ApiLoad, a_half_million_row_transaction_commits_without_tripping_the_watchdog) {
  ApiAgent a;
  ASSERT_TRUE(a.ready()) << a.process().log();
  auto r = api::http_request(
      a.api(), "POST", "/v1/transactions",
      R"J(["WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500000) INSERT INTO tests SELECT i, 'row ' || i FROM n"])J");
  ASSERT_EQ(r.status, 200) << r.body << a.process().log();
  EXPECT_TRUE(a.process().running()) << a.process().log();
  auto count = api::http_request(a.api(), "POST", "/v1/queries", R"J("SELECT count(*) FROM tests")J");
  EXPECT_NE(count.body.find("[500000]"), std::string::npos) << count.body;
  EXPECT_EQ(a.process().log().find("stalled"), std::string::npos) << a.process().log();
}

TEST(ApiLoad, hundred_connections_every_acknowledged_write_is_present) {
  ApiAgent agent;
  ASSERT_TRUE(agent.ready()) << agent.process().log();
  constexpr int connections = 100;
  constexpr int writes = 20;
  std::atomic<int> acknowledged{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < connections; ++c) {
    threads.emplace_back([&, c] {
      HttpConnection conn(agent.api());
      for (int i = 0; i < writes; ++i) {
        auto r = conn.post_json("/v1/transactions",
                                fmt::format(R"J([["INSERT INTO tests (id, text) VALUES (?, 'w')", [{}]]])J",
                                            c * 1000 + i));
        if (r.status == 200) ++acknowledged;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(acknowledged.load(), connections * writes);
  auto q = http_request(agent.api(), "POST", "/v1/queries", R"J("SELECT count(*) FROM tests")J");
  EXPECT_EQ(q.ndjson().at(1).at("row").as_array()[1].as_array()[0].as_int64(), acknowledged.load());
  EXPECT_EQ(agent.stop(), 0);
}

TEST(ApiShutdown, sigterm_mid_stream_loses_no_acknowledged_write) {
  ApiAgent agent;
  ASSERT_TRUE(agent.ready()) << agent.process().log();
  std::atomic<bool> stop{false};
  std::vector<std::vector<int>> acked(8);
  std::vector<std::thread> threads;
  for (int c = 0; c < 8; ++c) {
    threads.emplace_back([&, c] {
      HttpConnection conn(agent.api());
      for (int i = 0; i < 100000 && !stop; ++i) {
        int id = c * 1000000 + i;
        auto r = conn.post_json("/v1/transactions",
                                fmt::format(R"J([["INSERT INTO tests (id, text) VALUES (?, 'w')", [{}]]])J", id));
        if (r.status != 200) break;
        acked[c].push_back(id);
      }
    });
  }
  // Let writes flow, then SIGTERM while they are in flight.
  for (int i = 0; i < 500; ++i) {
    std::size_t total = 0;
    for (auto& a : acked) total += a.size();
    if (total >= 200) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  agent.process().signal(SIGTERM);
  auto code = agent.process().wait_exit();
  stop = true;
  for (auto& t : threads) t.join();
  EXPECT_EQ(code, 0) << agent.process().log();

  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(agent.db_path().c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT 1 FROM tests WHERE id = ?", -1, &stmt, nullptr), SQLITE_OK);
  std::size_t checked = 0;
  for (auto& ids : acked) {
    for (int id : ids) {
      sqlite3_reset(stmt);
      sqlite3_bind_int(stmt, 1, id);
      EXPECT_EQ(sqlite3_step(stmt), SQLITE_ROW) << "acknowledged write " << id << " is missing";
      ++checked;
    }
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  EXPECT_GE(checked, 200u);
}

TEST(ApiCurl, curl_as_an_external_client) {
  if (std::system("command -v curl >/dev/null 2>&1") != 0) GTEST_SKIP() << "curl is not installed";
  ApiAgent agent;
  ASSERT_TRUE(agent.ready()) << agent.process().log();
  std::string out = agent.dir().file("curl.out");
  std::string cmd = fmt::format(
      "curl -sS -o {} -w '%{{http_code}}' -H 'content-type: application/json' "
      "-d '[\"INSERT INTO tests (id, text) VALUES (77, '\"'\"'curl'\"'\"')\"]' http://{}/v1/transactions > {}.code",
      out, agent.api(), out);
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  std::ifstream code_in(out + ".code");
  std::string code;
  code_in >> code;
  EXPECT_EQ(code, "200");
  std::string q = fmt::format(
      "curl -sS -H 'content-type: application/json' -d '\"SELECT text FROM tests WHERE id = 77\"' "
      "http://{}/v1/queries > {}",
      agent.api(), out);
  ASSERT_EQ(std::system(q.c_str()), 0);
  std::ifstream in(out);
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_NE(ss.str().find(R"J({"row":[1,["curl"]]})J"), std::string::npos) << ss.str();
  EXPECT_EQ(agent.stop(), 0);
}

TEST(ApiShedding, a_route_at_its_concurrency_limit_sheds_with_503) {
  // One reader connection, held by a slow query, keeps table_stats requests
  // (limit 4) in flight; the fifth is shed.
  ApiAgent agent("\n[perf]\nreader_connections = 1\n");
  ASSERT_TRUE(agent.ready()) << agent.process().log();
  std::thread slow([&] {
    auto r = http_request(agent.api(), "POST", "/v1/queries?timeout=3",
                          R"J("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c")J");
    EXPECT_EQ(r.status, 200);  // the timeout is reported inside the stream
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  // Eight concurrent table_stats while the reader is held: whatever the
  // order they arrive in, four are in flight and four are shed.
  std::vector<std::thread> clients;
  std::atomic<int> ok{0};
  std::atomic<int> shed{0};
  std::atomic<int> shed_body_ok{0};
  for (int i = 0; i < 8; ++i) {
    clients.emplace_back([&] {
      auto r = http_request(agent.api(), "POST", "/v1/table_stats", R"J({"tables": ["tests"]})J");
      if (r.status == 200) ++ok;
      if (r.status == 503) {
        ++shed;
        if (r.body == "max concurrency limit reached") ++shed_body_ok;
      }
    });
  }
  for (auto& t : clients) t.join();
  slow.join();
  EXPECT_EQ(ok.load(), 4);
  EXPECT_EQ(shed.load(), 4);
  EXPECT_EQ(shed_body_ok.load(), 4);
  EXPECT_EQ(agent.stop(), 0);
}

TEST(SchemaReload, reload_applies_new_tables_and_columns_and_refuses_destructive_changes) {
  ApiAgent agent;
  ASSERT_TRUE(agent.ready()) << agent.process().log();
  std::string admin = agent.dir().file("admin.sock");
  agent.dir().write("schema.sql", std::string(test_schema) +
                                      "CREATE TABLE later (id TEXT NOT NULL PRIMARY KEY, n INTEGER);\n");
  auto reload = run_patina({"reload", "--admin-path", admin}, agent.dir().path());
  ASSERT_EQ(reload.exit_code, 0) << reload.out << agent.process().log();
  EXPECT_TRUE(agent.process().wait_for_log("created tables [later]")) << agent.process().log();
  auto w = http_request(agent.api(), "POST", "/v1/transactions", R"J(["INSERT INTO later (id, n) VALUES ('a', 1)"])J");
  EXPECT_EQ(w.status, 200) << w.body;

  // Dropping a column is destructive: refused, naming the file, table and column.
  std::string without_n = std::string(test_schema) + "CREATE TABLE later (id TEXT NOT NULL PRIMARY KEY);\n";
  agent.dir().write("schema.sql", without_n);
  auto refused = run_patina({"reload", "--admin-path", admin}, agent.dir().path());
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.out.find("later"), std::string::npos) << refused.out;
  EXPECT_NE(refused.out.find("n"), std::string::npos) << refused.out;
  auto still = http_request(agent.api(), "POST", "/v1/transactions", R"J(["UPDATE later SET n = 2 WHERE id = 'a'"])J");
  EXPECT_EQ(still.status, 200) << still.body;  // nothing was half-applied
  EXPECT_EQ(agent.stop(), 0);
}

// An agent whose database lives on a tmpfs of its own (|tmpfs_mib| MiB),
// mounted in a user and mount namespace, with |filler_mib| MiB of it taken by
// a file the test deletes (through /proc/PID/root) to free space.
class TmpfsAgent {
 public:
  static bool supported() {
    ScratchDir dir;
    return run_command({"unshare", "-rm", "true"}, dir.path()).exit_code == 0;
  }

  TmpfsAgent(int tmpfs_mib, int filler_mib, const std::string& db_extra, const std::string& gossip_extra = "") {
    std::filesystem::create_directories(dir_.file("mnt"));
    dir_.write("schema.sql", test_schema);
    dir_.write("config.toml", fmt::format(R"([db]
path = "{0}/mnt/state.db"
schema_paths = ["{0}/schema.sql"]
{1}

[api]
addr = "127.0.0.1:0"

[gossip]
addr = "127.0.0.1:0"
plaintext = true
{2}

[admin]
path = "{0}/admin.sock"
)",
                                          dir_.path().string(), db_extra, gossip_extra));
    process_ = std::make_unique<Process>(
        std::vector<std::string>{
            "unshare", "-rm", "sh", "-c",
            fmt::format("mount -t tmpfs -o size={0}m tmpfs '{1}' && head -c {2}m /dev/zero > '{1}/filler' && "
                        "exec '{3}' agent -c '{4}'",
                        tmpfs_mib, dir_.file("mnt"), filler_mib, patina_binary(), dir_.file("config.toml"))},
        dir_.path(), dir_.file("agent.log"));
    if (process_->wait_for_log("ready:")) api_ = ready_field(process_->log(), "api");
  }

  bool ready() const { return !api_.empty(); }
  const std::string& api() const { return api_; }
  Process& process() { return *process_; }
  const ScratchDir& dir() const { return dir_; }

  // The filler deleted from inside the agent's mount namespace (unshare
  // execs, so the process is the agent itself).
  bool free_filler() {
    std::error_code ec;
    return std::filesystem::remove(fmt::format("/proc/{}/root{}", process_->pid(), dir_.file("mnt/filler")), ec);
  }

  // config.toml with |from| replaced by |to|, then `patina reload`.
  RunResult reconfigure(const std::string& from, const std::string& to) {
    std::ifstream in(dir_.file("config.toml"));
    std::stringstream text;
    text << in.rdbuf();
    std::string config = text.str();
    auto at = config.find(from);
    if (at == std::string::npos) return RunResult{1, "", from + " is not in the config"};
    config.replace(at, from.size(), to);
    dir_.write("config.toml", config);
    return run_patina({"reload", "--admin-path", dir_.file("admin.sock")}, dir_.path());
  }

 private:
  ScratchDir dir_;
  std::unique_ptr<Process> process_;
  std::string api_;
};

// Inserts rows of 200 KB into kinds from id |from| until a write is refused
// (at most 400); the refusal, or a default response when all went through.
HttpResponse fill_with_blobs(const std::string& api, int from, int& acknowledged) {
  for (int i = from; i < from + 400; ++i) {
    auto r = http_request(api, "POST", "/v1/transactions",
                          fmt::format(R"J(["INSERT INTO kinds (id, b) VALUES ({}, randomblob(200000))"])J", i));
    if (r.status != 200) return r;
    ++acknowledged;
  }
  return HttpResponse{};
}

// The row of count(*), sum(length(b)) over kinds ("" when the query fails).
std::string blob_count(const std::string& api) {
  auto body = http_request(api, "POST", "/v1/queries", R"J("SELECT count(*), sum(length(b)) FROM kinds")J").body;
  auto row = body.find(R"({"row":)");
  return row == std::string::npos ? std::string() : body.substr(row, body.find('\n', row) - row);
}

TEST(ApiDisk, a_filling_disk_gets_507_at_the_floor_and_a_full_one_gets_507_too_until_space_is_freed) {
  if (!TmpfsAgent::supported()) GTEST_SKIP() << "unshare -rm (user namespaces) is not available here";
  TmpfsAgent agent(32, 4, "min_free_space_mb = 8");
  ASSERT_TRUE(agent.ready()) << agent.process().log();
  int acknowledged = 0;
  auto refused = fill_with_blobs(agent.api(), 0, acknowledged);
  EXPECT_EQ(refused.status, 507) << refused.body << agent.process().log();
  EXPECT_NE(refused.body.find("disk space low: "), std::string::npos) << refused.body;
  EXPECT_GT(acknowledged, 20);
  EXPECT_TRUE(agent.process().running());
  auto count = http_request(agent.api(), "POST", "/v1/queries", R"J("SELECT count(*) FROM kinds")J");
  EXPECT_NE(count.body.find(fmt::format(R"({{"row":[1,[{}]]}})", acknowledged)), std::string::npos) << count.body;

  // Without the floor the same load runs into SQLite's "database or disk is
  // full": the write that did not fit gets 507 too, and the node stays up.
  auto reload = agent.reconfigure("min_free_space_mb = 8", "min_free_space_mb = 0");
  ASSERT_EQ(reload.exit_code, 0) << reload.out << reload.err;
  int more = 0;
  auto full = fill_with_blobs(agent.api(), 1000, more);
  EXPECT_EQ(full.status, 507) << full.body << agent.process().log();
  EXPECT_NE(full.body.find("database or disk is full"), std::string::npos) << full.body;
  // (|more| may be 0: checkpoints may have taken what the floor kept free.)
  auto health = http_request(agent.api(), "GET", "/v1/health", "");
  EXPECT_EQ(health.status, 503) << health.body;
  EXPECT_NE(health.body.find(R"("disk_space_low":true)"), std::string::npos) << health.body;
  EXPECT_TRUE(agent.process().running()) << agent.process().log();
  count = http_request(agent.api(), "POST", "/v1/queries", R"J("SELECT count(*) FROM kinds")J");
  EXPECT_NE(count.body.find(fmt::format(R"({{"row":[1,[{}]]}})", acknowledged + more)), std::string::npos)
      << count.body;

  // A while full: the checkpointer retries meanwhile (every 200 ms).
  std::this_thread::sleep_for(std::chrono::seconds(1));
  // Space freed: writes are taken again, and nothing acknowledged was lost.
  ASSERT_TRUE(agent.free_filler());
  auto after = http_request(agent.api(), "POST", "/v1/transactions",
                            R"J(["INSERT INTO kinds (id, b) VALUES (5000, randomblob(200000))"])J");
  EXPECT_EQ(after.status, 200) << after.body << agent.process().log();
  count = http_request(agent.api(), "POST", "/v1/queries", R"J("SELECT count(*) FROM kinds")J");
  EXPECT_NE(count.body.find(fmt::format(R"({{"row":[1,[{}]]}})", acknowledged + more + 1)), std::string::npos)
      << count.body;
  health = http_request(agent.api(), "GET", "/v1/health", "");
  EXPECT_EQ(health.status, 200) << health.body;
  EXPECT_NE(health.body.find(R"("disk_space_low":false)"), std::string::npos) << health.body;
  auto log = agent.process().log();
  EXPECT_NE(log.find("the disk is full ("), std::string::npos) << log;
  EXPECT_NE(log.find(" after the disk was full"), std::string::npos) << log;
  EXPECT_EQ(log.find("fatal storage error"), std::string::npos) << log;
  // Checkpoints retried every 200 ms on the full disk: logged per episode, not per try.
  std::size_t checkpoint_warnings = 0;
  for (auto at = log.find("WAL checkpoint failed"); at != std::string::npos;
       at = log.find("WAL checkpoint failed", at + 1)) {
    ++checkpoint_warnings;
  }
  EXPECT_LE(checkpoint_warnings, 2u) << log;
  agent.process().signal(SIGTERM);
  EXPECT_EQ(agent.process().wait_exit(std::chrono::seconds(30)), std::optional<int>(0)) << agent.process().log();
}

TEST(ApiDisk, a_peer_whose_disk_fills_holds_changes_and_catches_up_whole_once_space_is_freed) {
  if (!TmpfsAgent::supported()) GTEST_SKIP() << "unshare -rm (user namespaces) is not available here";
  ApiAgent writer;
  ASSERT_TRUE(writer.ready()) << writer.process().log();
  // No floor: the peer's merges run into SQLITE_FULL itself, mostly at
  // COMMIT, where the whole batch (and what it noted in memory) is undone.
  TmpfsAgent peer(32, 24, "min_free_space_mb = 0", fmt::format("bootstrap = [\"{}\"]", writer.gossip()));
  ASSERT_TRUE(peer.ready()) << peer.process().log();
  bool joined = false;
  for (int i = 0; i < 300 && !joined; ++i) {
    joined = count_members(writer) == 1;
    if (!joined) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(joined) << peer.process().log();
  // 12 MB for a peer with about 7 MiB left.
  for (int i = 0; i < 60; ++i) {
    auto r = http_request(writer.api(), "POST", "/v1/transactions",
                          fmt::format(R"J(["INSERT INTO kinds (id, b) VALUES ({}, randomblob(200000))"])J", i));
    ASSERT_EQ(r.status, 200) << r.body;
  }
  EXPECT_TRUE(peer.process().wait_for_log("holding peers' changes", std::chrono::seconds(60)))
      << peer.process().log();
  EXPECT_TRUE(peer.process().running());
  EXPECT_NE(blob_count(peer.api()), blob_count(writer.api()));

  ASSERT_TRUE(peer.free_filler());
  bool caught_up = false;
  for (int i = 0; i < 600 && !caught_up; ++i) {
    caught_up = blob_count(peer.api()) == blob_count(writer.api());
    if (!caught_up) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(caught_up) << blob_count(peer.api()) << " vs " << blob_count(writer.api()) << "\n"
                         << peer.process().log();
  auto log = peer.process().log();
  EXPECT_NE(log.find("the disk is full ("), std::string::npos) << log;
  EXPECT_EQ(log.find("fatal storage error"), std::string::npos) << log;
  auto check = run_patina({"sync", "check-bookie-consistency", "--admin-path", peer.dir().file("admin.sock")},
                          peer.dir().path());
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
  peer.process().signal(SIGTERM);
  EXPECT_EQ(peer.process().wait_exit(std::chrono::seconds(30)), std::optional<int>(0)) << peer.process().log();
  EXPECT_EQ(writer.stop(), 0);
}

TEST(Cli, query_prints_a_large_streamed_result_whole_and_in_order) {
  ApiAgent a;
  ASSERT_TRUE(a.ready()) << a.process().log();
  // 30,000 rows of ~60 bytes: about 2 MB of NDJSON, many reads, lines split
  // across them.
  auto w = http_request(a.api(), "POST", "/v1/transactions",
                        R"J(["WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 30000) )J"
                        R"J(INSERT INTO tests (id, text) SELECT x, printf('row %06d of the streamed result set', x) FROM c"])J");
  ASSERT_EQ(w.status, 200) << w.body;
  auto query = run_patina({"query", "--api-addr", a.api(), "--columns", "SELECT id, text FROM tests ORDER BY id"},
                          a.dir().path(), std::chrono::seconds(60));
  ASSERT_EQ(query.exit_code, 0) << query.err;
  std::istringstream lines(query.out);
  std::string line;
  ASSERT_TRUE(std::getline(lines, line));
  EXPECT_EQ(line, "id|text");
  int n = 0;
  bool in_order = true;
  while (std::getline(lines, line)) {
    ++n;
    if (line != fmt::format("{}|row {:06d} of the streamed result set", n, n)) in_order = false;
  }
  EXPECT_EQ(n, 30000);
  EXPECT_TRUE(in_order);
  EXPECT_EQ(a.stop(), 0);
}

TEST(Cli, exec_query_backup_and_restore_on_another_node) {
  ApiAgent a;
  ASSERT_TRUE(a.ready()) << a.process().log();
  auto exec = run_patina({"exec", "-c", a.config_path(), "--api-addr", a.api(), "INSERT INTO tests (id, text) VALUES (?, ?)", "--param", "7",
                          "--param", "hello|world"},
                         a.dir().path());
  EXPECT_EQ(exec.exit_code, 0) << exec.out;
  EXPECT_NE(exec.out.find("Rows affected: 1 (version 1)"), std::string::npos) << exec.out;
  auto query = run_patina({"query", "-c", a.config_path(), "--api-addr", a.api(), "--columns", "SELECT id, text FROM tests ORDER BY id"},
                          a.dir().path());
  EXPECT_EQ(query.exit_code, 0) << query.out;
  EXPECT_EQ(query.out, "id|text\n7|hello|world\n");
  auto bad = run_patina({"query", "-c", a.config_path(), "--api-addr", a.api(), "SELECT nope FROM tests"}, a.dir().path());
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.out.find("patina: error: no such column: nope"), std::string::npos) << bad.out;
  auto actor_a = parse(http_request(a.api(), "POST", "/v1/transactions",
                                    R"J(["INSERT INTO tests (id, text) VALUES (8, 'eight')"])J")
                           .body)
                     .at("actor_id");

  std::string snapshot = a.dir().file("snapshot.db");
  auto backup = run_patina({"backup", "-c", a.config_path(), snapshot}, a.dir().path());
  ASSERT_EQ(backup.exit_code, 0) << backup.out;
  auto again = run_patina({"backup", "-c", a.config_path(), snapshot}, a.dir().path());
  EXPECT_EQ(again.exit_code, 1);  // never overwrites

  ApiAgent b;
  ASSERT_TRUE(b.ready()) << b.process().log();
  auto refused = run_patina({"restore", "-c", b.config_path(), snapshot}, b.dir().path());
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.out.find("an agent answers"), std::string::npos) << refused.out;
  ASSERT_EQ(b.stop(), 0);
  auto restore = run_patina({"restore", "-c", b.config_path(), snapshot}, b.dir().path());
  ASSERT_EQ(restore.exit_code, 0) << restore.out;
  ASSERT_TRUE(b.start()) << b.process().log();

  auto rows = [](const std::string& api) {
    return http_request(api, "POST", "/v1/queries", R"J("SELECT id, text FROM tests ORDER BY id")J").body;
  };
  EXPECT_EQ(rows(a.api()).substr(0, rows(a.api()).find("eoq")), rows(b.api()).substr(0, rows(b.api()).find("eoq")));
  auto wb = http_request(b.api(), "POST", "/v1/transactions", R"J(["INSERT INTO tests (id, text) VALUES (9, 'b')"])J");
  ASSERT_EQ(wb.status, 200) << wb.body;
  EXPECT_NE(parse(wb.body).at("actor_id"), actor_a);  // a new identity
  EXPECT_EQ(parse(wb.body).at("version").as_int64(), 1);
  EXPECT_EQ(a.stop(), 0);
  EXPECT_EQ(b.stop(), 0);
}

}  // namespace
}  // namespace patina::testing

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace patina::testing {
namespace {

int connect_to(const std::string& addr) {
  auto colon = addr.rfind(':');
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<std::uint16_t>(std::stoi(addr.substr(colon + 1))));
  ::inet_pton(AF_INET, addr.substr(0, colon).c_str(), &sa.sin_addr);
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// True when the server closed |fd| within |ms| (read returns 0 or an error).
bool closed_within(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, ms) <= 0) return false;
  char c;
  return ::recv(fd, &c, 1, 0) <= 0;
}

TEST(ApiTimeouts, a_trickled_header_is_cut_off_but_an_idle_keep_alive_connection_stays) {
  ApiAgent a("", "header_timeout_secs = 1\nidle_timeout_secs = 30\n");
  ASSERT_TRUE(a.ready()) << a.process().log();
  int slow = connect_to(a.api());
  int idle = connect_to(a.api());
  ASSERT_GE(slow, 0);
  ASSERT_GE(idle, 0);
  std::string partial = "POST /v1/queries HTTP/1.1\r\nHost: x\r\n";
  ASSERT_EQ(::send(slow, partial.data(), partial.size(), 0), static_cast<ssize_t>(partial.size()));
  EXPECT_TRUE(closed_within(slow, 5000)) << "a header trickling in past header_timeout_secs must be cut off";
  // The idle connection sent nothing and is still served.
  std::string body = R"J("SELECT 1")J";
  std::string request = fmt::format(
      "POST /v1/queries HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
      body.size(), body);
  ASSERT_EQ(::send(idle, request.data(), request.size(), 0), static_cast<ssize_t>(request.size()));
  pollfd p{idle, POLLIN, 0};
  ASSERT_GT(::poll(&p, 1, 5000), 0);
  char buf[512];
  auto n = ::recv(idle, buf, sizeof buf, 0);
  ASSERT_GT(n, 0);
  EXPECT_NE(std::string(buf, static_cast<std::size_t>(n)).find("200 OK"), std::string::npos);
  ::close(slow);
  ::close(idle);
  auto r = api::http_request(a.metrics(), "GET", "/metrics", "", {});
  EXPECT_NE(r.body.find("patina_http_request_timeouts_total{server=\"api\"} 1"), std::string::npos);
  EXPECT_EQ(a.stop(), 0);
}

// A TCP port that completes handshakes (the kernel's backlog) but whose
// owner never reads or answers: an agent stalled for good.
class SilentListener {
 public:
  SilentListener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || ::listen(fd_, 16) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
      return;
    }
    addr_ = fmt::format("127.0.0.1:{}", ntohs(sa.sin_port));
  }
  ~SilentListener() {
    if (fd_ >= 0) ::close(fd_);
  }
  const std::string& addr() const { return addr_; }

 private:
  int fd_ = -1;
  std::string addr_;
};

TEST(HttpClient, a_stalled_server_ends_the_call_with_an_error_not_a_hang) {
  SilentListener silent;
  ASSERT_FALSE(silent.addr().empty());
  HttpConnection c(silent.addr(), std::chrono::milliseconds(300));
  auto r = c.request("POST", "/v1/queries", R"("SELECT 1")");
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.error.find("no progress within 0.3 s"), std::string::npos) << r.error;
  // The connection is unusable afterwards, and says why at once.
  auto again = c.request("POST", "/v1/queries", R"("SELECT 1")");
  EXPECT_EQ(again.status, 0);
  EXPECT_EQ(again.error, r.error);
  // Not an address: an error, not an exception.
  for (std::string bad : {"localhost", "127.0.0.1", "127.0.0.1:http", "127.0.0.1:70000", "[::1"}) {
    auto b = http_request(bad, "GET", "/");
    EXPECT_EQ(b.status, 0);
    EXPECT_NE(b.error.find("is not an IP:port address"), std::string::npos) << bad << ": " << b.error;
  }
}

TEST(Cli, exec_and_query_give_up_on_an_agent_that_never_answers) {
  SilentListener silent;
  ASSERT_FALSE(silent.addr().empty());
  ScratchDir dir;
  // --timeout asks the agent to give up after 1 s; the CLI waits 5 s more.
  auto exec = run_patina({"exec", "--api-addr", silent.addr(), "--timeout", "1", "INSERT INTO tests (id) VALUES (1)"},
                         dir.path());
  EXPECT_EQ(exec.exit_code, 1) << exec.out << exec.err;
  EXPECT_NE(exec.err.find("no answer from the agent's API at " + silent.addr() + ": no progress within 6 s"),
            std::string::npos)
      << exec.err;
  auto query = run_patina({"query", "--api-addr", silent.addr(), "--timeout", "1", "SELECT 1"}, dir.path());
  EXPECT_EQ(query.exit_code, 1) << query.out << query.err;
  EXPECT_NE(query.err.find("no progress within 6 s"), std::string::npos) << query.err;
}

}  // namespace
}  // namespace patina::testing
