// `patina template` against a real agent: Corrosion's template examples
// render the node's rows; in watch mode a write re-renders the file and
// runs the command, an edited template is rendered again, and a template
// that does not compile is refused with file:line:column.
#include <gtest/gtest.h>

#include <algorithm>
#include <csignal>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "api/http_client.hpp"
#include "tests/integration/api_agent.hpp"
#include "tests/integration/process.hpp"

namespace patina::testing {
namespace {

using namespace std::chrono_literals;

bool write(const ApiAgent& a, const std::string& statements) {
  return api::http_request(a.api(), "POST", "/v1/transactions", statements).status == 200;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The todo list of Corrosion's examples/fly/templates/todos.rhai, on the
// test schema (text = title, an empty text = not done).
const char* todos_template =
    "<% for todo in sql(\"SELECT id, text FROM tests ORDER BY id\") { %>\n"
    "[<% if todo.text == \"\" { %> <% } else { %>X<% } %>] <%= todo.id %>\n"
    "<% } %>";

TEST(Template, renders_once_with_corrosions_examples_and_refuses_a_broken_template) {
  ApiAgent a;
  ASSERT_TRUE(a.ready()) << a.process().log();
  ASSERT_TRUE(write(a, R"J(["INSERT INTO tests (id, text) VALUES (1, 'done')", "INSERT INTO tests VALUES (2, '')"])J"));
  const auto& dir = a.dir();
  dir.write("todos.rhai", todos_template);
  dir.write("json.rhai", "<%= sql(\"SELECT id, text FROM tests ORDER BY id\").to_json(#{pretty: true}) %>");

  auto r = run_patina({"template", "--api-addr", a.api(), "--once", dir.file("todos.rhai") + ":" + dir.file("out/todos"),
                       dir.file("json.rhai") + ":" + dir.file("out/rows.json")},
                      dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(slurp(dir.file("out/todos")), "\n[X] 1\n\n[ ] 2\n");
  EXPECT_EQ(slurp(dir.file("out/rows.json")),
            "[\n  {\n    \"id\": 1,\n    \"text\": \"done\"\n  },\n  {\n    \"id\": 2,\n    \"text\": \"\"\n  }\n]");

  // A statement with parameters, as an array (Corrosion's sql(q, [params])).
  dir.write("csv.rhai", "<%= sql(\"SELECT id, text FROM tests WHERE id > ?\", [1]).to_csv() %>");
  r = run_patina({"template", "--api-addr", a.api(), "-o", dir.file("csv.rhai") + ":" + dir.file("out/rows.csv")},
                 dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(slurp(dir.file("out/rows.csv")), "id,text\n2,\n");

  // A script function that runs its own query, called from a loop.
  dir.write("fn.rhai",
            "<% fn label(id) { let r = sql(\"SELECT text FROM tests WHERE id = ?\", [id]); "
            "if r[0].text == \"\" { return `#${id}: (empty)`; } `#${id}: ${r[0].text}` } %>"
            "<% for i in 1..=2 { %><%= label(i) %>\n<% } %>");
  r = run_patina({"template", "--api-addr", a.api(), "-o", dir.file("fn.rhai") + ":" + dir.file("out/fn.txt")},
                 dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(slurp(dir.file("out/fn.txt")), "#1: done\n#2: (empty)\n");

  // Broken: one line naming the file, line and column; the output is kept.
  dir.write("broken.rhai", "ok\n<% for x in [1, 2] { %>\n<%= x + %>\n<% } %>");
  r = run_patina({"template", "--api-addr", a.api(), "--once", dir.file("broken.rhai") + ":" + dir.file("out/todos")},
                 dir.path());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(dir.file("broken.rhai") + ":3:"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(slurp(dir.file("out/todos")), "\n[X] 1\n\n[ ] 2\n");

  // A query the agent refuses fails the render with SQLite's message.
  dir.write("badsql.rhai", "<%= sql(\"SELECT nope FROM tests\").to_json() %>");
  r = run_patina({"template", "--api-addr", a.api(), "--once", dir.file("badsql.rhai") + ":" + dir.file("out/bad")},
                 dir.path());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("no such column: nope"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir.file("out/bad")));

  r = run_patina({"template", "--api-addr", a.api(), "no-colon"}, dir.path());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("is not SRC:DST[:CMD]"), std::string::npos) << r.err;
}

TEST(Template, watching_re_renders_on_writes_and_on_an_edited_template_and_runs_the_command) {
  ApiAgent a;
  ASSERT_TRUE(a.ready()) << a.process().log();
  ASSERT_TRUE(write(a, R"J(["INSERT INTO tests (id, text) VALUES (1, 'a')"])J"));
  const auto& dir = a.dir();
  dir.write("list.rhai", "<% for r in sql(\"SELECT text FROM tests ORDER BY id\") { %><%= r.text %>,<% } %>");
  const std::string out = dir.file("out/list");
  // The command counts the renders it followed.
  const std::string cmd = fmt::format("echo rendered >> {}", dir.file("renders"));
  Process watcher({patina_binary(), "template", "--api-addr", a.api(), dir.file("list.rhai") + ":" + out + ":" + cmd},
                  dir.path(), dir.file("template.log"));
  ASSERT_TRUE(wait_until([&] { return slurp(out) == "a,"; }, 20s)) << watcher.log();

  ASSERT_TRUE(write(a, R"J(["INSERT INTO tests (id, text) VALUES (2, 'b')", "UPDATE tests SET text = 'A' WHERE id = 1"])J"));
  EXPECT_TRUE(wait_until([&] { return slurp(out) == "A,b,"; }, 20s)) << slurp(out) << watcher.log();
  ASSERT_TRUE(write(a, R"J(["DELETE FROM tests WHERE id = 1"])J"));
  EXPECT_TRUE(wait_until([&] { return slurp(out) == "b,"; }, 20s)) << slurp(out) << watcher.log();
  auto renders = [&] {
    auto text = slurp(dir.file("renders"));
    return std::count(text.begin(), text.end(), '\n');
  };
  EXPECT_TRUE(wait_until([&] { return renders() >= 3; }, 20s)) << slurp(dir.file("renders"));

  // An edited template is compiled and rendered again; a broken edit is
  // logged and the last good version stays in use.
  dir.write("list.rhai", "<% for r in sql(\"SELECT text FROM tests ORDER BY id\") { %>[<%= r.text %>]<% } %>");
  EXPECT_TRUE(wait_until([&] { return slurp(out) == "[b]"; }, 20s)) << slurp(out) << watcher.log();
  dir.write("list.rhai", "<% for r in { %>");
  EXPECT_TRUE(watcher.wait_for_log("does not compile; keeping the last version")) << watcher.log();
  ASSERT_TRUE(write(a, R"J(["INSERT INTO tests (id, text) VALUES (3, 'c')"])J"));
  EXPECT_TRUE(wait_until([&] { return slurp(out) == "[b][c]"; }, 20s)) << slurp(out) << watcher.log();

  EXPECT_TRUE(watcher.running()) << watcher.log();
  watcher.signal(SIGTERM);
  EXPECT_TRUE(watcher.wait_exit().has_value());
}

}  // namespace
}  // namespace patina::testing
