// tools/consul_mirror: what `patina consul sync` writes for each change of
// the Consul agent's services and checks.
#include "tools/consul_mirror.hpp"

#include <gtest/gtest.h>

#include <boost/json.hpp>

namespace patina::tools::consul {
namespace {

const char* services_body = R"({"web1": {"ID": "web1", "Service": "web", "Tags": ["b", "a"],
  "Meta": {"z": "1", "app_id": "7"}, "Port": 8080, "Address": "10.0.0.1", "Weights": {"Passing": 1}},
  "db": {"ID": "db", "Service": "pg", "Tags": null, "Meta": null, "Port": 5432, "Address": ""}})";
const char* checks_body = R"({"c1": {"CheckID": "c1", "Name": "http", "Status": "passing", "Notes": "",
  "Output": "ok", "ServiceID": "web1", "ServiceName": "web"}})";

std::vector<std::string> sqls(const Mirror::Plan& p) {
  std::vector<std::string> out;
  // The first three words: verb and table.
  for (const auto& s : p.statements) out.push_back(s.sql.substr(0, s.sql.find(' ', s.sql.find(' ', 7) + 1)));
  return out;
}

TEST(ConsulMirror, parses_consul_answers_and_refuses_garbage) {
  auto s = parse_services(services_body);
  ASSERT_TRUE(s) << s.error().message;
  ASSERT_EQ(s->size(), 2u);
  const Service& web = s->at("web1");
  EXPECT_EQ(web.name, "web");
  EXPECT_EQ(tags_json(web), R"(["b","a"])");
  EXPECT_EQ(meta_json(web), R"({"app_id":"7","z":"1"})");  // sorted keys
  EXPECT_EQ(web.port, 8080);
  EXPECT_EQ(tags_json(s->at("db")), "[]");
  EXPECT_EQ(meta_json(s->at("db")), "{}");
  auto c = parse_checks(checks_body);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->at("c1").service_id, "web1");

  EXPECT_FALSE(parse_services("garbage"));
  EXPECT_FALSE(parse_services("[]"));
  EXPECT_FALSE(parse_services(R"({"a": {"ID": "a", "Port": "80"}})"));
  EXPECT_FALSE(parse_services(R"({"a": {"ID": "a", "Tags": [1]}})"));
  auto bad = parse_checks(R"({"c": {"CheckID": "c", "Status": "on fire"}})");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("unknown Status 'on fire'"), std::string::npos);
}

TEST(ConsulMirror, writes_only_what_changed_and_deletes_what_consul_lost) {
  auto services = *parse_services(services_body);
  auto checks = *parse_checks(checks_body);
  Mirror m("n1");
  // First pass (full): every row, plus the clean-up of rows Consul lacks.
  auto p = m.plan(services, checks, true, 1000);
  EXPECT_EQ(p.services.upserted, 2u);
  EXPECT_EQ(p.checks.upserted, 1u);
  EXPECT_EQ(sqls(p), (std::vector<std::string>{"INSERT INTO consul_services", "INSERT INTO consul_services",
                                               "DELETE FROM consul_services", "INSERT INTO consul_checks",
                                               "DELETE FROM consul_checks"}));
  EXPECT_EQ(boost::json::serialize(p.statements[0].params),
            R"(["n1","db","pg","[]","{}",5432,"",1000])");
  m.commit(std::move(p));

  // Nothing changed: nothing written.
  EXPECT_TRUE(m.plan(services, checks, false, 2000).statements.empty());
  // A check's output alone is not a change (Corrosion's rule)...
  checks.at("c1").output = "still ok";
  EXPECT_TRUE(m.plan(services, checks, false, 2000).statements.empty());
  // ...unless its notes ask for it.
  checks.at("c1").notes = R"({"hash_include": ["status", "output"]})";
  p = m.plan(services, checks, false, 2000);
  EXPECT_EQ(p.checks.upserted, 1u);
  m.commit(std::move(p));
  checks.at("c1").notes.clear();
  checks.at("c1").status = "critical";
  p = m.plan(services, checks, false, 3000);
  EXPECT_EQ(p.checks.upserted, 1u);
  m.commit(std::move(p));

  // A tag changes: that service only.
  services.at("web1").tags.push_back("c");
  p = m.plan(services, checks, false, 4000);
  EXPECT_EQ(p.services.upserted, 1u);
  EXPECT_EQ(p.statements.size(), 1u);
  m.commit(std::move(p));

  // Consul lost a service and the check: deleted once, then nothing.
  services.erase("db");
  checks.clear();
  p = m.plan(services, checks, false, 5000);
  EXPECT_EQ(p.services.deleted, 1u);
  EXPECT_EQ(p.checks.deleted, 1u);
  EXPECT_EQ(sqls(p), (std::vector<std::string>{"DELETE FROM consul_services", "DELETE FROM consul_checks"}));
  m.commit(std::move(p));
  EXPECT_TRUE(m.plan(services, checks, false, 6000).statements.empty());
  EXPECT_EQ(m.services_known(), 1u);
  EXPECT_EQ(m.checks_known(), 0u);
}

TEST(ConsulMirror, rows_read_back_at_start_match_what_consul_says) {
  auto services = *parse_services(services_body);
  auto checks = *parse_checks(checks_body);
  Mirror m("n1");
  // As the agent returns the rows the mirror wrote earlier.
  boost::json::array web{"web1", "web", R"(["b","a"])", R"({"app_id":"7","z":"1"})", 8080, "10.0.0.1"};
  boost::json::array db{"db", "pg", "[]", "{}", 5432, ""};
  boost::json::array c1{"c1", "http", "passing", "ok", "web1", "web"};
  m.seed({*service_from_row(web), *service_from_row(db)}, {*check_from_row(c1)});
  EXPECT_TRUE(m.plan(services, checks, false, 1).statements.empty());
  // Stored text that is not our JSON is rewritten.
  boost::json::array odd{"db", "pg", "not json", "{}", 5432, ""};
  m.seed({*service_from_row(web), *service_from_row(odd)}, {*check_from_row(c1)});
  EXPECT_EQ(m.plan(services, checks, false, 1).services.upserted, 1u);
}

}  // namespace
}  // namespace patina::tools::consul
