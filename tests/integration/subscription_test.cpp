// Subscriptions and update feeds through the real binary: NDJSON streams,
// shared subscriptions, from= and skip_rows=, resume after a restart,
// changes replicated from another node, a slow client dropped with an error
// while a fast one keeps receiving, WebSocket with an independent client
// (Python `websockets`), /v1/updates, limits, refusals and `patina subs`.
#include <gtest/gtest.h>

#include <regex>
#include <set>

#include <boost/json.hpp>
#include <fmt/format.h>

#include "api/http_client.hpp"
#include "tests/integration/api_agent.hpp"
#include "tests/integration/process.hpp"
#include "api/stream_client.hpp"

namespace patina::testing {
using api::StreamClient;

namespace {

using namespace std::chrono_literals;
namespace json = boost::json;

bool write(const ApiAgent& a, const std::string& statements) {
  auto r = api::http_request(a.api(), "POST", "/v1/transactions", statements);
  return r.status == 200;
}

json::value next_json(StreamClient& s, std::chrono::milliseconds timeout = 10s) {
  auto line = s.next_line(timeout);
  if (!line) return nullptr;
  boost::system::error_code ec;
  auto v = json::parse(*line, ec);
  return ec ? json::value(*line) : v;
}

// Reads |n| change events; their [type, rowid, cells, id] arrays.
std::vector<json::array> changes(StreamClient& s, std::size_t n) {
  std::vector<json::array> out;
  while (out.size() < n) {
    auto v = next_json(s);
    if (!v.is_object() || !v.as_object().contains("change")) break;
    out.push_back(v.at("change").as_array());
  }
  return out;
}

const char* sub_sql = R"J("SELECT id, text FROM tests WHERE id < 100")J";

TEST(Subscriptions, create_stream_share_resume_and_refuse) {
  ApiAgent a;
  ASSERT_TRUE(a.ready()) << a.process().log();
  ASSERT_TRUE(write(a, R"J(["INSERT INTO tests (id, text) VALUES (1, 'one')", "INSERT INTO tests VALUES (2, 'two')"])J"));

  StreamClient s(a.api(), "POST", "/v1/subscriptions", sub_sql);
  ASSERT_EQ(s.status(), 200);
  std::string id = s.header("corro-query-id");
  EXPECT_TRUE(std::regex_match(id, std::regex("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"))) << id;
  EXPECT_TRUE(std::regex_match(s.header("corro-query-hash"), std::regex("[0-9a-f]{16}")));
  EXPECT_EQ(json::serialize(next_json(s)), R"({"columns":["id","text"]})");
  EXPECT_EQ(json::serialize(next_json(s)), R"({"row":[1,[1,"one"]]})");
  EXPECT_EQ(json::serialize(next_json(s)), R"({"row":[2,[2,"two"]]})");
  auto eoq = next_json(s);
  ASSERT_TRUE(eoq.is_object() && eoq.as_object().contains("eoq")) << eoq;
  EXPECT_EQ(eoq.at("eoq").at("change_id").as_int64(), 0);

  ASSERT_TRUE(write(a, R"J(["INSERT INTO tests VALUES (3, 'three')", "UPDATE tests SET text = 'uno' WHERE id = 1"])J"));
  auto got = changes(s, 2);
  ASSERT_EQ(got.size(), 2u);
  std::set<std::string> first_batch{json::serialize(got[0]), json::serialize(got[1])};
  EXPECT_TRUE(first_batch.count(R"(["insert",3,[3,"three"],1])") || first_batch.count(R"(["insert",3,[3,"three"],2])"));
  EXPECT_TRUE(first_batch.count(R"(["update",1,[1,"uno"],1])") || first_batch.count(R"(["update",1,[1,"uno"],2])"));
  // Each write's events are read before the next write: changes to one key
  // that land in one re-evaluation batch are reported as their net effect.
  ASSERT_TRUE(write(a, R"J(["DELETE FROM tests WHERE id = 2", "INSERT INTO tests VALUES (500, 'filtered out')"])J"));
  got = changes(s, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(json::serialize(got[0]), R"(["delete",2,[2,"two"],3])");
  ASSERT_TRUE(write(a, R"J(["INSERT INTO tests VALUES (2, 'two again')"])J"));  // resurrection: a new row id
  got = changes(s, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(json::serialize(got[0]), R"(["insert",4,[2,"two again"],4])");

  // The same query (parameters inlined) shares the subscription: current
  // rows and the latest change id.
  StreamClient same(a.api(), "POST", "/v1/subscriptions",
                    R"J(["SELECT id, text FROM tests WHERE id < ?", [100]])J");
  ASSERT_EQ(same.status(), 200);
  EXPECT_EQ(same.header("corro-query-id"), id);
  std::vector<std::string> lines;
  for (int i = 0; i < 5; ++i) lines.push_back(json::serialize(next_json(same)));
  EXPECT_EQ(lines[1], R"({"row":[1,[1,"uno"]]})");
  EXPECT_EQ(lines[2], R"({"row":[3,[3,"three"]]})");
  EXPECT_EQ(lines[3], R"({"row":[4,[2,"two again"]]})");
  EXPECT_NE(lines[4].find(R"("change_id":4)"), std::string::npos) << lines[4];

  // from=N replays the changes after N, then goes live.
  StreamClient resumed(a.api(), "GET", fmt::format("/v1/subscriptions/{}?from=2", id));
  ASSERT_EQ(resumed.status(), 200);
  auto replay = changes(resumed, 2);
  ASSERT_EQ(replay.size(), 2u);
  EXPECT_EQ(replay[0].at(3).as_int64(), 3);
  EXPECT_EQ(replay[1].at(3).as_int64(), 4);
  // skip_rows: live changes only.
  StreamClient live(a.api(), "GET", fmt::format("/v1/subscriptions/{}?skip_rows=true", id));
  ASSERT_EQ(live.status(), 200);
  ASSERT_TRUE(write(a, R"J(["UPDATE tests SET text = 'tres' WHERE id = 3"])J"));
  for (auto* c : {&s, &same, &resumed, &live}) {
    auto ev = changes(*c, 1);
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_EQ(json::serialize(ev[0]), R"(["update",3,[3,"tres"],5])");
  }

  // Refusals, each with a JSON error.
  auto missing = api::http_request(a.api(), "GET", "/v1/subscriptions/00000000-0000-4000-8000-000000000000", "");
  EXPECT_EQ(missing.status, 404);
  EXPECT_NE(missing.body.find("could not find subscription with id"), std::string::npos);
  auto from_new = api::http_request(a.api(), "POST", "/v1/subscriptions?from=3", R"J("SELECT id FROM tests")J");
  EXPECT_EQ(from_new.status, 400);
  EXPECT_NE(from_new.body.find("no existing subscription found"), std::string::npos) << from_new.body;
  auto bad_sql = api::http_request(a.api(), "POST", "/v1/subscriptions", R"J("SELEC id FROM tests")J");
  EXPECT_EQ(bad_sql.status, 400);
  EXPECT_NE(bad_sql.body.find("\"error\""), std::string::npos);
  auto internal = api::http_request(a.api(), "POST", "/v1/subscriptions", R"J("SELECT * FROM __patina_state")J");
  EXPECT_EQ(internal.status, 400);
  EXPECT_NE(internal.body.find("replicated tables"), std::string::npos) << internal.body;
  auto two = api::http_request(a.api(), "POST", "/v1/subscriptions", R"J("SELECT 1 FROM tests; SELECT 2")J");
  EXPECT_EQ(two.status, 400);
  auto write_sql = api::http_request(a.api(), "POST", "/v1/subscriptions", R"J("DELETE FROM tests")J");
  EXPECT_EQ(write_sql.status, 400);
  auto shape = api::http_request(a.api(), "POST", "/v1/subscriptions", R"J({"nope": 1})J");
  EXPECT_EQ(shape.status, 422);
  auto malformed = api::http_request(a.api(), "POST", "/v1/subscriptions", R"J("SELECT)J");
  EXPECT_EQ(malformed.status, 400);
  auto bad_from = api::http_request(a.api(), "GET", fmt::format("/v1/subscriptions/{}?from=x", id), "");
  EXPECT_EQ(bad_from.status, 400);

  // Aggregates are maintained by re-evaluation, never wrong.
  StreamClient agg(a.api(), "POST", "/v1/subscriptions", R"J("SELECT count(*), max(id) FROM tests")J");
  ASSERT_EQ(agg.status(), 200);
  next_json(agg);
  EXPECT_EQ(json::serialize(next_json(agg)), R"({"row":[1,[4,500]]})");
  next_json(agg);
  ASSERT_TRUE(write(a, R"J(["DELETE FROM tests WHERE id = 500"])J"));
  auto agg_changes = changes(agg, 2);
  ASSERT_EQ(agg_changes.size(), 2u);
  EXPECT_EQ(json::serialize(agg_changes[0]), R"(["delete",1,[4,500],1])");
  EXPECT_EQ(json::serialize(agg_changes[1]), R"(["insert",2,[3,3],2])");

  // patina subs list / info.
  auto list = run_patina({"subs", "list", "--admin-path", a.admin_path()}, a.dir().path());
  ASSERT_EQ(list.exit_code, 0) << list.out;
  EXPECT_NE(list.out.find(id), std::string::npos) << list.out;
  auto info = run_patina({"subs", "info", "--id", id, "--admin-path", a.admin_path()}, a.dir().path());
  ASSERT_EQ(info.exit_code, 0) << info.out;
  EXPECT_NE(info.out.find(R"("last_change_id":5)"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find(R"("mode":"incremental")"), std::string::npos) << info.out;
  auto nope = run_patina({"subs", "info", "--hash", "0000000000000000", "--admin-path", a.admin_path()},
                         a.dir().path());
  EXPECT_NE(nope.exit_code, 0);
}

TEST(Subscriptions, resume_after_a_restart_with_contiguous_change_ids) {
  ApiAgent a;
  ASSERT_TRUE(a.ready()) << a.process().log();
  ASSERT_TRUE(write(a, R"J(["INSERT INTO tests VALUES (1, 'one')"])J"));
  std::string id;
  {
    StreamClient s(a.api(), "POST", "/v1/subscriptions", sub_sql);
    ASSERT_EQ(s.status(), 200);
    id = s.header("corro-query-id");
    for (int i = 0; i < 3; ++i) next_json(s);
    ASSERT_TRUE(write(a, R"J(["INSERT INTO tests VALUES (2, 'two')"])J"));
    ASSERT_EQ(changes(s, 1).size(), 1u);
  }
  ASSERT_EQ(a.stop(), 0);
  EXPECT_TRUE(std::filesystem::exists(a.dir().file("data/subscriptions")));
  ASSERT_TRUE(a.start()) << a.process().log();
  ASSERT_TRUE(write(a, R"J(["UPDATE tests SET text = 'deux' WHERE id = 2"])J"));
  StreamClient r(a.api(), "GET", fmt::format("/v1/subscriptions/{}?from=1", id));
  ASSERT_EQ(r.status(), 200) << a.process().log();
  auto got = changes(r, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(json::serialize(got[0]), R"(["update",2,[2,"deux"],2])");
  // A crash loses nothing acknowledged, but the subscription (not saved by
  // a graceful shutdown) is gone, as in Corrosion: clients re-subscribe.
  a.kill();
  ASSERT_TRUE(a.start());
  auto gone = api::http_request(a.api(), "GET", fmt::format("/v1/subscriptions/{}", id), "");
  EXPECT_EQ(gone.status, 404);
}

TEST(Subscriptions, changes_replicated_from_another_node_reach_subscribers) {
  ApiAgent a;
  ASSERT_TRUE(a.ready());
  ApiAgent b("", "", fmt::format("bootstrap = [\"{}\"]", a.gossip()));
  ASSERT_TRUE(b.ready());
  ASSERT_TRUE(wait_until([&] { return count_members(a) == 1 && count_members(b) == 1; }, 20s));
  StreamClient s(b.api(), "POST", "/v1/subscriptions", sub_sql);
  ASSERT_EQ(s.status(), 200);
  for (int i = 0; i < 2; ++i) next_json(s);  // columns, eoq
  ASSERT_TRUE(write(a, R"J(["INSERT INTO tests VALUES (7, 'from a')"])J"));
  auto got = changes(s, 1);
  ASSERT_EQ(got.size(), 1u) << b.process().log();
  EXPECT_EQ(json::serialize(got[0]), R"(["insert",1,[7,"from a"],1])");
}

TEST(Subscriptions, a_slow_client_is_dropped_with_an_error_while_a_fast_one_keeps_up) {
  ApiAgent a("", "subscription_client_buffer = 200");
  ASSERT_TRUE(a.ready());
  StreamClient fast(a.api(), "POST", "/v1/subscriptions", sub_sql);
  StreamClient slow(a.api(), "POST", "/v1/subscriptions", sub_sql, 4096);
  ASSERT_EQ(fast.status(), 200);
  ASSERT_EQ(slow.status(), 200);
  for (int i = 0; i < 2; ++i) next_json(fast);
  std::string big(10000, 'x');
  std::int64_t received = 0;
  for (int tx = 0; tx < 40; ++tx) {
    std::string stmt = fmt::format(
        R"J(["WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 49) INSERT OR REPLACE INTO tests SELECT i, '{}' || {} FROM n"])J",
        big, tx);
    ASSERT_TRUE(write(a, stmt));
    // The fast client drains each batch.
    auto got = changes(fast, 50);
    ASSERT_EQ(got.size(), 50u) << "tx " << tx;
    received += 50;
  }
  EXPECT_EQ(received, 2000);
  // The slow one: some events, then one error, then the end of the stream.
  std::string rest = slow.rest(20s);
  auto err = rest.rfind(R"({"error":)");
  ASSERT_NE(err, std::string::npos) << rest.substr(0, 300);
  EXPECT_NE(rest.find("fell behind", err), std::string::npos);
  EXPECT_TRUE(slow.ended());
  auto m = api::http_request(a.metrics(), "GET", "/metrics", "", {});
  EXPECT_NE(m.body.find("patina_subscription_clients_lagged_total 1"), std::string::npos);
}

TEST(Subscriptions, websocket_with_an_independent_python_client) {
  // Debian's python3 (python3-websockets), not whatever python3 PATH finds.
  std::string python = std::filesystem::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
  auto probe = run_command({python, "-c", "import websockets"}, ::testing::TempDir());
  if (probe.exit_code != 0) GTEST_SKIP() << "python3-websockets is not installed";
  ApiAgent a;
  ASSERT_TRUE(a.ready());
  ASSERT_TRUE(write(a, R"J(["INSERT INTO tests VALUES (1, 'one')"])J"));
  a.dir().write("ws_client.py", R"PY(
import asyncio, json, sys, urllib.parse, urllib.request
import websockets

async def main(api):
    q = urllib.parse.quote("SELECT id, text FROM tests WHERE id < 100")
    async with websockets.connect(f"ws://{api}/v1/subscriptions?q={q}") as ws:
        sub_id = ws.response_headers["corro-query-id"]
        for _ in range(3):                      # columns, row, eoq
            print(await asyncio.wait_for(ws.recv(), 10), flush=True)
        body = json.dumps(["INSERT INTO tests VALUES (2, 'two')"]).encode()
        req = urllib.request.Request(f"http://{api}/v1/transactions", body, {"Content-Type": "application/json"})
        await asyncio.get_running_loop().run_in_executor(None, urllib.request.urlopen, req)
        print(await asyncio.wait_for(ws.recv(), 10), flush=True)
    # Resume by id with from=.
    async with websockets.connect(f"ws://{api}/v1/subscriptions/{sub_id}?from=0&skip_rows=true") as ws:
        body = json.dumps(["DELETE FROM tests WHERE id = 1"]).encode()
        req = urllib.request.Request(f"http://{api}/v1/transactions", body, {"Content-Type": "application/json"})
        await asyncio.get_running_loop().run_in_executor(None, urllib.request.urlopen, req)
        print(await asyncio.wait_for(ws.recv(), 10), flush=True)
    try:
        async with websockets.connect(f"ws://{api}/v1/subscriptions?q=" + urllib.parse.quote("SELECT * FROM nope")):
            pass
    except websockets.exceptions.InvalidStatusCode as e:
        print("refused", e.status_code, flush=True)

asyncio.run(main(sys.argv[1]))
)PY");
  auto r = run_command({python, a.dir().file("ws_client.py"), a.api()}, a.dir().path(), 30s);
  ASSERT_EQ(r.exit_code, 0) << r.out << a.process().log();
  std::vector<std::string> lines;
  std::istringstream in(r.out);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  ASSERT_EQ(lines.size(), 6u) << r.out;
  EXPECT_EQ(lines[0], R"({"columns":["id","text"]})");
  EXPECT_EQ(lines[1], R"({"row":[1,[1,"one"]]})");
  EXPECT_NE(lines[2].find(R"("change_id":0)"), std::string::npos);
  EXPECT_EQ(lines[3], R"({"change":["insert",2,[2,"two"],1]})");
  EXPECT_EQ(lines[4], R"({"change":["delete",1,[1,"one"],2]})");
  EXPECT_EQ(lines[5], "refused 400");
}

TEST(Subscriptions, updates_feed_and_limits) {
  ApiAgent a("", "subscriptions_max = 2");
  ASSERT_TRUE(a.ready());
  StreamClient feed(a.api(), "POST", "/v1/updates/tests");
  ASSERT_EQ(feed.status(), 200);
  EXPECT_FALSE(feed.header("corro-query-id").empty());
  ASSERT_TRUE(write(a, R"J(["INSERT INTO tests VALUES (1, 'one')", "INSERT INTO tests VALUES (2, 'two')"])J"));
  std::set<std::string> got;
  for (int i = 0; i < 2; ++i) got.insert(json::serialize(next_json(feed)));
  EXPECT_EQ(got, (std::set<std::string>{R"({"notify":["update",[1]]})", R"({"notify":["update",[2]]})"}));
  ASSERT_TRUE(write(a, R"J(["UPDATE tests SET text = 'uno' WHERE id = 1"])J"));
  EXPECT_EQ(json::serialize(next_json(feed)), R"({"notify":["update",[1]]})");
  ASSERT_TRUE(write(a, R"J(["DELETE FROM tests WHERE id = 2"])J"));
  EXPECT_EQ(json::serialize(next_json(feed)), R"({"notify":["delete",[2]]})");
  auto unknown = api::http_request(a.api(), "POST", "/v1/updates/nope", "");
  EXPECT_EQ(unknown.status, 400);
  EXPECT_NE(unknown.body.find("table not found in schema: nope"), std::string::npos);

  StreamClient one(a.api(), "POST", "/v1/subscriptions", R"J("SELECT id FROM tests")J");
  StreamClient two(a.api(), "POST", "/v1/subscriptions", R"J("SELECT text FROM tests")J");
  ASSERT_EQ(one.status(), 200);
  ASSERT_EQ(two.status(), 200);
  auto three = api::http_request(a.api(), "POST", "/v1/subscriptions", R"J("SELECT id, text FROM tests")J");
  EXPECT_EQ(three.status, 429);
  EXPECT_NE(three.body.find("api.subscriptions_max"), std::string::npos) << three.body;
}

}  // namespace
}  // namespace patina::testing
