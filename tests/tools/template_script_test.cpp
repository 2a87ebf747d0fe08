#include "tools/template_script.hpp"

#include <map>
#include <string>
#include <vector>

#include <boost/json.hpp>
#include <gtest/gtest.h>

namespace patina::tools::tpl {
namespace {

namespace json = boost::json;

class FakeHost : public Host {
 public:
  Result<QueryResult> sql(const json::value& statement) override {
    statements.push_back(json::serialize(statement));
    std::string q = statement.is_string() ? std::string(statement.get_string())
                                          : std::string(statement.get_array().at(0).get_string());
    if (!error.empty()) return make_error(Errc::sql, error);
    auto it = results.find(q);
    if (it == results.end()) return make_error(Errc::sql, "no such table: " + q);
    return it->second;
  }
  std::string hostname() override { return "node-1"; }

  std::map<std::string, QueryResult> results;
  std::vector<std::string> statements;
  std::string error;
};

QueryResult todos() {
  QueryResult r;
  r.columns = {"id", "title", "completed_at"};
  r.rows.push_back({json::value(1), json::value("Buy milk"), json::value(nullptr)});
  r.rows.push_back({json::value(2), json::value("Walk dog"), json::value(1700000000)});
  return r;
}

QueryResult tests_table() {
  QueryResult r;
  r.columns = {"id", "text", "score"};
  r.rows.push_back({json::value(1), json::value("a"), json::value(1.5)});
  r.rows.push_back({json::value(2), json::value("b,\"c\""), json::value(nullptr)});
  return r;
}

// Compiles and renders; returns the output or "ERROR: message".
std::string run(std::string_view src, FakeHost& host) {
  auto t = Template::compile(src, "t.tpl");
  if (!t) return "ERROR: " + t.error().message;
  std::string out;
  auto r = t->render(host, out);
  if (!r) {
    EXPECT_EQ(r.error().code, Errc::invalid_argument);
    return "ERROR: " + r.error().message;
  }
  return out;
}

std::string run(std::string_view src) {
  FakeHost host;
  host.results["SELECT * FROM tests;"] = tests_table();
  host.results["SELECT title, completed_at FROM todos"] = todos();
  return run(src, host);
}

std::string compile_error(std::string_view src) {
  auto t = Template::compile(src, "t.tpl");
  if (t) return "compiled";
  EXPECT_EQ(t.error().code, Errc::invalid_argument);
  return t.error().message;
}

TEST(TemplateScript, TextPassesThrough) {
  EXPECT_EQ(run(""), "");
  EXPECT_EQ(run("hello\n  world %> > <\n"), "hello\n  world %> > <\n");
  EXPECT_EQ(run("a<% %>b"), "ab");
  EXPECT_EQ(run("  <%= 1 %>  \n"), "  1  \n");  // no trimming
}

TEST(TemplateScript, TodosExample) {
  const char* src =
      "<% for todo in sql(\"SELECT title, completed_at FROM todos\") { %>\n"
      "[<% if todo.completed_at.is_null() { %> <% } else { %>X<% } %>] <%= todo.title %>\n"
      "<% } %>";
  FakeHost host;
  host.results["SELECT title, completed_at FROM todos"] = todos();
  EXPECT_EQ(run(src, host), "\n[ ] Buy milk\n\n[X] Walk dog\n");
  ASSERT_EQ(host.statements.size(), 1u);
  EXPECT_EQ(host.statements[0], "\"SELECT title, completed_at FROM todos\"");
}

TEST(TemplateScript, WritesValues) {
  EXPECT_EQ(run("<%= 42 %>|<%= -7 %>|<%= 2.0 %>|<%= 987.6543 %>|<%= 0.1 + 0.2 %>"),
            "42|-7|2.0|987.6543|0.30000000000000004");
  EXPECT_EQ(run("<%= \"str\" %>|<%= true %>|<%= false %>|<%= () %>|<%= 'c' %>"), "str|true|false||c");
  EXPECT_EQ(run("<%= [1, 2, \"a\", 'b', 1.5, ()] %>"), "[1, 2, \"a\", 'b', 1.5, ()]");
  EXPECT_EQ(run("<%= #{b: \"x\", a: 1, \"c d\": [true]} %>"), "#{\"a\": 1, \"b\": \"x\", \"c d\": [true]}");
  EXPECT_EQ(run("<%= 1..5 %> <%= 1..=5 %>"), "1..5 1..=5");
  EXPECT_EQ(run("<%= 1e20 %> <%= 1.5e-20 %> <%= 0.0 %>"), "1e20 1.5e-20 0.0");
  EXPECT_EQ(run("<%= \"a\\tb\\n\\u{e9}\\\"\" %>"), "a\tb\n\xc3\xa9\"");
  EXPECT_EQ(run("<%= hostname() %>"), "node-1");
}

TEST(TemplateScript, SqlValuesDisplayAndTypes) {
  FakeHost host;
  QueryResult r;
  r.columns = {"i", "f", "w", "t", "n", "b"};
  r.rows.push_back({json::value(7), json::value(2.0), json::value(1.25), json::value("txt"), json::value(nullptr),
                    json::value(json::array{0, 255, 16})});
  host.results["q"] = r;
  EXPECT_EQ(run("<% let r = sql(\"q\")[0]; %><%= r.i %>|<%= r.f %>|<%= r.w %>|<%= r.t %>|<%= r.n %>|<%= r.b %>", host),
            "7|2|1.25|txt||00ff10");
  EXPECT_EQ(run("<% let r = sql(\"q\")[0]; %><%= r.i + 1 %>|<%= r.f * 2 %>|<%= r.t + \"!\" %>|<%= r.i == 7 %>|"
                "<%= r.n == () %>|<%= r.t.to_upper() %>",
                host),
            "8|4.0|txt!|true|true|TXT");
  EXPECT_EQ(run("<% let q = sql(\"q\"); let r = q[0]; %><%= type_of(q) %> <%= type_of(r) %> <%= type_of(r.i) %> "
                "<%= r.i.to_json() %> <%= r.t.to_json() %> <%= r.n.to_json() %> <%= r.b.to_json() %> "
                "<%= r.f.to_json() %> <%= r.n.is_null() %> <%= r.i.is_null() %> <%= r.i.to_string() %>",
                host),
            "QueryResponse Row SqliteValue 7 \"txt\" null 00ff10 2.0 true false 7");
  EXPECT_EQ(run("<% for c in sql(\"q\")[0] { %><%= type_of(c) %>:<%= c.name() %>=<%= c.value() %>;<% } %>", host),
            "Cell:i=7;Cell:f=2;Cell:w=1.25;Cell:t=txt;Cell:n=;Cell:b=00ff10;");
}

TEST(TemplateScript, SqlParamsReachHost) {
  FakeHost host;
  host.results["SELECT ?"] = QueryResult{{"x"}, {}};
  host.results["SELECT :a"] = QueryResult{{"x"}, {}};
  EXPECT_EQ(run("<% sql(\"SELECT ?\", [1, \"two\", 3.5, true, (), [1]]); %>", host), "");
  EXPECT_EQ(run("<% sql(\"SELECT :a\", #{a: 1, b: \"x\"}); %>", host), "");
  ASSERT_EQ(host.statements.size(), 2u);
  EXPECT_EQ(json::parse(host.statements[0]), json::parse(R"(["SELECT ?",[1,"two",3.5,true,null,"[1]"]])"));
  EXPECT_EQ(json::parse(host.statements[1]), json::parse(R"(["SELECT :a",{"a":1,"b":"x"}])"));
}

TEST(TemplateScript, RowAccess) {
  EXPECT_EQ(run("<% for r in sql(\"SELECT * FROM tests;\") { %><%= r.id %>=<%= r[\"text\"] %>,<% } %>"),
            "1=a,2=b,\"c\",");
  EXPECT_EQ(run("<% let q = sql(\"SELECT * FROM tests;\"); %><%= q.len() %> <%= q[1].len() %> <%= q[0][1] %>"),
            "2 3 a");
  EXPECT_EQ(run("<% for r in sql(\"SELECT * FROM tests;\") {\n for (c, i) in r { %><%= i %><%= c.name() %>=<%= "
                "c.value() %> <% } } %>"),
            "0id=1 1text=a 2score=1.5 0id=2 1text=b,\"c\" 2score= ");
}

TEST(TemplateScript, ToJson) {
  EXPECT_EQ(run("<%= sql(\"SELECT * FROM tests;\").to_json() %>"),
            R"([{"id":1,"text":"a","score":1.5},{"id":2,"text":"b,\"c\"","score":null}])");
  EXPECT_EQ(run("<%= sql(\"SELECT * FROM tests;\").to_json(#{row_values_as_array: true}) %>"),
            R"([[1,"a",1.5],[2,"b,\"c\"",null]])");
  EXPECT_EQ(run("<%= sql(\"SELECT * FROM tests;\").to_json(#{pretty: true}) %>"),
            "[\n"
            "  {\n"
            "    \"id\": 1,\n"
            "    \"text\": \"a\",\n"
            "    \"score\": 1.5\n"
            "  },\n"
            "  {\n"
            "    \"id\": 2,\n"
            "    \"text\": \"b,\\\"c\\\"\",\n"
            "    \"score\": null\n"
            "  }\n"
            "]");
  EXPECT_EQ(run("<%= sql(\"SELECT * FROM tests;\").to_json(#{pretty: true, row_values_as_array: true}) %>"),
            "[\n  [\n    1,\n    \"a\",\n    1.5\n  ],\n  [\n    2,\n    \"b,\\\"c\\\"\",\n    null\n  ]\n]");
  FakeHost host;
  host.results["empty"] = QueryResult{{"a"}, {}};
  EXPECT_EQ(run("<%= sql(\"empty\").to_json() %>|<%= sql(\"empty\").to_json(#{pretty: true}) %>", host), "[]|[]");
  // Key order is column order, not sorted.
  host.results["zyx"] = QueryResult{{"z", "a"}, {{json::value(1), json::value(2)}}};
  EXPECT_EQ(run("<%= sql(\"zyx\").to_json() %>", host), R"([{"z":1,"a":2}])");
  EXPECT_EQ(run("<%= #{a: [1, \"x\"]}.to_json() %>"), R"({"a":[1,"x"]})");
}

TEST(TemplateScript, ToCsv) {
  EXPECT_EQ(run("<%= sql(\"SELECT * FROM tests;\").to_csv() %>"),
            "id,text,score\n1,a,1.5\n2,\"b,\"\"c\"\"\",\n");
  FakeHost host;
  host.results["empty"] = QueryResult{{"a", "b"}, {}};
  EXPECT_EQ(run("<%= sql(\"empty\").to_csv() %>", host), "a,b\n");
  host.results["one"] = QueryResult{{"t"}, {{json::value("")}, {json::value(nullptr)}, {json::value("x\ny")}}};
  EXPECT_EQ(run("<%= sql(\"one\").to_csv() %>", host), "t\n\"\"\n\n\"x\ny\"\n");
}

TEST(TemplateScript, ForLoopsAndRanges) {
  EXPECT_EQ(run("<% for i in 0..3 { %><%= i %><% } %>"), "012");
  EXPECT_EQ(run("<% for i in 1..=3 { %><%= i %><% } %>"), "123");
  EXPECT_EQ(run("<% for (x, i) in [\"a\", \"b\"] { %><%= i %>:<%= x %> <% } %>"), "0:a 1:b ");
  EXPECT_EQ(run("<% for c in \"h\xc3\xa9!\" { %>[<%= c %>]<% } %>"), "[h][\xc3\xa9][!]");
  EXPECT_EQ(run("<% for i in 5..2 { %>x<% } %>"), "");
}

TEST(TemplateScript, IfElse) {
  const char* src = "<% for n in [1, 2, 3] { if n == 1 { %>one<% } else if n == 2 { %>two<% } else { %>many<% } } %>";
  EXPECT_EQ(run(src), "onetwomany");
  EXPECT_EQ(run("<% let x = if 2 > 1 { \"yes\" } else { \"no\" }; %><%= x %>"), "yes");
  EXPECT_EQ(run("<%= if false { 1 } else if true { 2 } else { 3 } %>"), "2");
  EXPECT_EQ(run("<%= if false { 1 } %>"), "");
  EXPECT_EQ(run("<% let b = { let t = 3; t * 2 }; %><%= b %>"), "6");
  EXPECT_EQ(run("<% if 1 { } %>"), "ERROR: t.tpl:1:7: an if condition must be a bool, not i64");
}

TEST(TemplateScript, WhileBreakContinue) {
  EXPECT_EQ(run("<% let i = 0; while i < 10 { i += 1; if i % 2 == 0 { continue; } if i > 7 { break; } %><%= i %>,"
                "<% } %>"),
            "1,3,5,7,");
  EXPECT_EQ(run("<% let n = 0; loop { n += 1; if n == 4 { break } } %><%= n %>"), "4");
  EXPECT_EQ(run("<% for i in 0..10 { if i == 3 { break; } %><%= i %><% } %>"), "012");
  EXPECT_EQ(compile_error("<% break; %>"), "t.tpl:1:4: break outside a loop");
}

TEST(TemplateScript, VariablesAndScopes) {
  EXPECT_EQ(run("<% let x = 1; let x = x + 1; %><%= x %>"), "2");
  EXPECT_EQ(run("<% let x = 1; { let x = 5; x += 1; } %><%= x %>"), "1");
  EXPECT_EQ(run("<% let x = 1; { x = 5; } %><%= x %>"), "5");
  EXPECT_EQ(run("<% { let y = 1; } %><%= y %>"), "ERROR: t.tpl:1:25: variable not found: y");
  EXPECT_EQ(run("<% z = 1; %>"), "ERROR: t.tpl:1:4: variable not found: z");
  EXPECT_EQ(run("<% const c = 1; c = 2; %>"), "ERROR: t.tpl:1:17: cannot modify constant c");
  EXPECT_EQ(run("<% let s = \"a\"; s += 1; s += 'b'; %><%= s %>"), "a1b");
  EXPECT_EQ(run("<% let a = [1]; let b = a; b.push(2); push(a, 3); a[0] = 9; %><%= a %><%= b %>"),
            "[9, 3][1, 2]");
  EXPECT_EQ(run("<% let m = #{}; m.k = 1; m[\"j\"] = 2; %><%= m %> <%= m.none %>"), "#{\"j\": 2, \"k\": 1} ");
}

TEST(TemplateScript, Interpolation) {
  EXPECT_EQ(run("<% let n = \"w\"; %><%= `hi ${n}, ${1 + 2}! ${ #{a: 1}.a }` %>"), "hi w, 3! 1");
  EXPECT_EQ(run("<%= `plain` %>|<%= `` %>"), "plain|");
}

TEST(TemplateScript, Operators) {
  EXPECT_EQ(run("<%= 1 + 2 * 3 %> <%= (1 + 2) * 3 %> <%= 7 / 2 %> <%= 7 % 3 %> <%= -2 * -3 %> <%= 10 - 2 - 3 %>"),
            "7 9 3 1 6 5");
  EXPECT_EQ(run("<%= 1 + 2.5 %> <%= 7 / 2.0 %> <%= 1 == 1.0 %> <%= 1 != \"1\" %> <%= \"a\" < \"b\" %> <%= 'a' < 'b' %>"),
            "3.5 3.5 true true true true");
  EXPECT_EQ(run("<%= true || false && false %> <%= !true || true %> <%= 1 < 2 == true %> <%= 1 + 1 == 2 && 2 > 1 %>"),
            "true true true true");
  EXPECT_EQ(run("<%= \"n\" + 1 %> <%= 1 + \"n\" %> <%= 'a' + \"b\" %> <%= [1] + [2] %> <%= \"x\" + 2.0 %>"),
            "n1 1n ab [1, 2] x2.0");
  EXPECT_EQ(run("<%= false && (1 / 0 == 1) %> <%= true || x %>"), "false true");
  EXPECT_EQ(run("<%= 1 && true %>"), "ERROR: t.tpl:1:5: an operand of && or || must be a bool, not i64");
}

TEST(TemplateScript, ArithmeticErrors) {
  EXPECT_EQ(run("<%= 9223372036854775807 + 1 %>"),
            "ERROR: t.tpl:1:25: integer overflow in 9223372036854775807 + 1");
  EXPECT_EQ(run("\n  <%= 1 / 0 %>"), "ERROR: t.tpl:2:9: division by zero");
  EXPECT_EQ(run("<%= 5 % 0 %>"), "ERROR: t.tpl:1:7: division by zero");
  EXPECT_EQ(run("<%= [1] - 1 %>"), "ERROR: t.tpl:1:9: no operator -(array, i64)");
}

TEST(TemplateScript, Builtins) {
  EXPECT_EQ(run("<%= \"héllo\".len() %> <%= len([1, 2]) %> <%= #{a: 1}.len() %> <%= \"\".is_empty() %>"),
            "5 2 1 true");
  EXPECT_EQ(run("<%= \"42\".to_int() + 1 %> <%= 3.9.to_int() %> <%= 2.to_float() %> <%= \"1.5\".to_float() %>"),
            "43 3 2.0 1.5");
  EXPECT_EQ(run("<%= \"aBc\".to_upper() %> <%= \"aBc\".to_lower() %> <%= \"[\" + \"  x \".trim() + \"]\" %>"),
            "ABC abc [x]");
  EXPECT_EQ(run("<%= \"hello\".contains(\"ell\") %> <%= \"hello\".contains('z') %> <%= [1, 2].contains(2) %> "
                "<%= #{a: 1}.contains(\"a\") %>"),
            "true false true true");
  EXPECT_EQ(run("<%= \"hello\".starts_with(\"he\") %> <%= \"hello\".ends_with(\"lo\") %> <%= \"héllo\".index_of(\"l\") %> "
                "<%= \"abc\".index_of('z') %>"),
            "true true 2 -1");
  EXPECT_EQ(run("<%= \"héllo\".sub_string(1, 3) %> <%= \"hello\".sub_string(3) %> <%= \"a-b-c\".replace(\"-\", \"+\") %>"),
            "éll lo a+b+c");
  EXPECT_EQ(run("<%= \"a,b,,c\".split(\",\") %> <%= [\"x\", 1, 'y'].join(\"-\") %> <%= join([], \",\") %>"),
            "[\"a\", \"b\", \"\", \"c\"] x-1-y ");
  EXPECT_EQ(run("<%= #{b: 2, a: 1}.keys() %> <%= values(#{b: 2, a: 1}) %>"), "[\"a\", \"b\"] [1, 2]");
  EXPECT_EQ(run("<%= type_of(()) %> <%= type_of(1) %> <%= type_of(1.0) %> <%= type_of(\"\") %> <%= type_of('c') %> "
                "<%= type_of([]) %> <%= type_of(#{}) %> <%= type_of(1..2) %> <%= type_of(true) %>"),
            "() i64 f64 string char array map range bool");
  EXPECT_EQ(run("<%= abs(-3) %> <%= (-2.5).abs() %> <%= ().is_null() %> <%= 1.is_null() %> <%= 12.to_string() + \"!\" %>"),
            "3 2.5 true false 12!");
  EXPECT_EQ(run("<%= \"x\".to_int() %>"), "ERROR: t.tpl:1:9: cannot convert \"x\" to an integer");
  EXPECT_EQ(run("<%= \"abc\"[1] %> <%= [1, 2, 3][-1] %>"), "b 3");
  EXPECT_EQ(run("<%= [1][3] %>"), "ERROR: t.tpl:1:8: array index 3 out of bounds (length 1)");
}

TEST(TemplateScript, CompileErrorsNameLineAndColumn) {
  EXPECT_EQ(compile_error("text\n  <% let x = 1;"), "t.tpl:2:3: unterminated <% tag (no closing %>)");
  EXPECT_EQ(compile_error("line1\nline2\nab <% let = 3; %>"), "t.tpl:3:11: unexpected '=', expected a variable name");
  EXPECT_EQ(compile_error("<% let x = 1 let y = 2; %>"), "t.tpl:1:14: unexpected 'let', expected ';'");
  EXPECT_EQ(compile_error("<% if true { %>x"), "t.tpl:1:17: unexpected end of template, expected '}'");
  EXPECT_EQ(compile_error("<% } %>"), "t.tpl:1:4: unexpected '}', expected a statement");
  EXPECT_EQ(compile_error("<%= %>"), "t.tpl:1:1: empty <%= %> tag");
  EXPECT_EQ(compile_error("<% \"abc %>"), "t.tpl:1:4: unterminated string");
  EXPECT_EQ(compile_error("<% try { } catch { } %>"), "t.tpl:1:4: 'try' is not supported in templates");
  EXPECT_EQ(compile_error("<% do { } %>"), "t.tpl:1:13: unexpected end of template, expected 'while' or 'until'");
  EXPECT_EQ(compile_error("<%= 99999999999999999999 %>"), "t.tpl:1:5: integer literal 99999999999999999999 is too large");
  EXPECT_EQ(compile_error("<% /* x %>"), "t.tpl:1:4: unterminated /* comment");
  EXPECT_EQ(compile_error("<% // just a comment %>ok"), "compiled");
}

TEST(TemplateScript, ScriptFunctionsAreHoistedAndSeeOnlyTheirParameters) {
  EXPECT_EQ(run("<% fn greet(name, n) { \"hi \" + name + n } %><%= greet(\"a\", 1) %>"), "hi a1");
  // Callable above the definition, recursive, with return in loops.
  EXPECT_EQ(run("<%= fact(5) %><% fn fact(n) { if n <= 1 { return 1; } n * fact(n - 1) } %>"), "120");
  EXPECT_EQ(run("<% fn first_big(a) { for x in a { if x > 2 { return x; } } -1 } %>"
                "<%= first_big([1, 5, 3]) %> <%= first_big([1]) %>"),
            "5 -1");
  EXPECT_EQ(run("<% fn nothing() { return; } %><%= type_of(nothing()) %>"), "()");
  // Overloaded by arity; a method call binds `this`.
  EXPECT_EQ(run("<% fn f() { 0 } fn f(a) { a } fn twice() { this * 2 } let n = 21; %><%= f() %>,<%= f(7) %>,<%= n.twice() %>"),
            "0,7,42");
  EXPECT_EQ(run("<% fn grow() { this += 1; } let n = 1; n.grow(); %>"),
            "ERROR: t.tpl:1:16: cannot modify this: a method's receiver is passed by value in templates");
  // Text inside a function body is written when it is called.
  EXPECT_EQ(run("<% fn row(x) { %>[<%= x %>]<% } %><% for i in 1..=3 { row(i); } %>"), "[1][2][3]");
  // A function sees only its parameters, not the caller's variables.
  EXPECT_EQ(run("<% let x = 1; fn f() { x } %><%= f() %>"), "ERROR: t.tpl:1:24: variable not found: x");
  // A return at the top level ends the render.
  EXPECT_EQ(run("a<% return; %>b"), "a");
  // Runaway recursion is bounded, not a crash.
  EXPECT_NE(run("<% fn f(n) { f(n + 1) } f(0); %>").find("nesting deeper than 256 levels"), std::string::npos);
  EXPECT_EQ(compile_error("<% if true { fn f() {} } %>"),
            "t.tpl:1:14: functions can only be defined at the top level of a template");
  EXPECT_EQ(compile_error("<% for i in 0..2 { } fn f() { break; } %>"), "t.tpl:1:31: break outside a loop");
  EXPECT_EQ(compile_error("<% fn f(a, a) { } %>"), "t.tpl:1:4: parameter a is declared twice");
}

TEST(TemplateScript, DoLoopsRunTheirBodyFirst) {
  EXPECT_EQ(run("<% let i = 0; do { %><%= i %><% i += 1; } while i < 3; %>"), "012");
  EXPECT_EQ(run("<% let i = 5; do { %><%= i %><% i += 1; } while i < 3; %>"), "5");
  EXPECT_EQ(run("<% let i = 0; do { i += 1; if i == 2 { continue; } %><%= i %><% } until i >= 4; %>"), "134");
  EXPECT_EQ(run("<% let i = 0; do { i += 1; if i > 1 { break; } } while true; %><%= i %>"), "2");
  EXPECT_EQ(run("<% do { } while 1; %>"), "ERROR: t.tpl:1:17: a do loop condition must be a bool, not i64");
}

TEST(TemplateScript, SwitchPicksTheFirstMatchingArm) {
  auto name = [](const std::string& v) {
    return run("<%= switch " + v +
               " { 1 => \"one\", 2 | 3 => \"two or three\", 4..=9 if " + v +
               " != 5 => \"four to nine\", 10..20 => \"tens\", -1 => \"minus\", \"x\" => \"ex\", _ => \"other\" } %>");
  };
  EXPECT_EQ(name("1"), "one");
  EXPECT_EQ(name("3"), "two or three");
  EXPECT_EQ(name("4"), "four to nine");
  EXPECT_EQ(name("5"), "other");  // its guard fails
  EXPECT_EQ(name("9"), "four to nine");
  EXPECT_EQ(name("19"), "tens");
  EXPECT_EQ(name("20"), "other");  // exclusive end
  EXPECT_EQ(name("-1"), "minus");
  EXPECT_EQ(name("\"x\""), "ex");
  EXPECT_EQ(name("2.5"), "other");  // ranges match integers only
  // No arm matches and no default: ().
  EXPECT_EQ(run("[<%= switch 7 { 1 => 1 } %>]"), "[]");
  // Arms as blocks, writing text; a statement needs no ';'.
  EXPECT_EQ(run("<% for n in 0..3 { switch n { 0 => { %>zero<% } 1 => { %>one<% } _ => { %>many<% } } %>,<% } %>"),
            "zero,one,many,");
  // Its value, from a function.
  EXPECT_EQ(run("<% fn kind(s) { switch s { \"started\" | \"running\" => true, _ => false } } %>"
                "<%= kind(\"running\") %> <%= kind(\"stopped\") %>"),
            "true false");
  EXPECT_EQ(compile_error("<% switch 1 { y => 1 } %>"),
            "t.tpl:1:15: a switch case must be a constant (a literal or a range of literals)");
  EXPECT_EQ(compile_error("<% switch 1 { _ => 1, 2 => 2 } %>"), "t.tpl:1:23: the default case _ must come last in a switch");
  EXPECT_EQ(compile_error("<% switch 1 { 1 => 1 2 => 2 } %>"), "t.tpl:1:22: unexpected number 2, expected ',' or '}'");
}

TEST(TemplateScript, RuntimeErrorsNameLineAndColumn) {
  EXPECT_EQ(run("a\n<% for r in sql(\"SELECT * FROM tests;\") { %>\n  <%= r.nope %><% } %>"),
            "ERROR: t.tpl:3:9: no such column: nope");
  EXPECT_EQ(run("<% let r = sql(\"SELECT * FROM tests;\")[0]; %>\n<%= r[\"zz\"] %>"),
            "ERROR: t.tpl:2:6: no such column: zz");
  EXPECT_EQ(run("\n\n   <%= frobnicate(1, \"a\") %>"), "ERROR: t.tpl:3:8: no function frobnicate(i64, string)");
  EXPECT_EQ(run("<%= 1.len() %>"), "ERROR: t.tpl:1:7: no function len(i64)");
  EXPECT_EQ(run("<%= sql(\"SELECT * FROM tests;\") %>"),
            "ERROR: t.tpl:1:5: cannot write a query result: use .to_json() or .to_csv()");
}

TEST(TemplateScript, OutputKeptUpToError) {
  FakeHost host;
  auto t = Template::compile("before <%= 1 / 0 %> after", "t.tpl");
  ASSERT_TRUE(t);
  std::string out;
  EXPECT_FALSE(t->render(host, out));
  EXPECT_EQ(out, "before ");
}

TEST(TemplateScript, HostSqlErrorPropagates) {
  FakeHost host;
  host.error = "database is locked";
  auto out = run("x<% let q = sql(\"SELECT 1\"); %>", host);
  EXPECT_EQ(out, "ERROR: t.tpl:1:13: sql failed: database is locked");
}

TEST(TemplateScript, RenderTwiceIsIndependent) {
  auto t = Template::compile("<% let a = [1]; a.push(2); %><%= a %>", "t.tpl");
  ASSERT_TRUE(t);
  FakeHost host;
  std::string out;
  ASSERT_TRUE(t->render(host, out));
  ASSERT_TRUE(t->render(host, out));
  EXPECT_EQ(out, "[1, 2][1, 2]");
}

TEST(TemplateScript, OperationsLimit) {
  EXPECT_EQ(run("<% loop {} %>"), "ERROR: t.tpl:1:9: template ran more than 10000000 operations");
  auto out = run("<% let i = 0; while true { i += 1; } %>");
  EXPECT_NE(out.find("template ran more than 10000000 operations"), std::string::npos) << out;
}

TEST(TemplateScript, NestingLimit) {
  std::string deep = "<%= " + std::string(300, '(') + "1" + std::string(300, ')') + " %>";
  EXPECT_NE(compile_error(deep).find("nesting deeper than 256 levels"), std::string::npos);
  std::string blocks = "<% " + std::string(300, '{') + std::string(300, '}') + " %>";
  EXPECT_NE(compile_error(blocks).find("nesting deeper than 256 levels"), std::string::npos);
  std::string sum = "<%= 1";
  for (int i = 0; i < 300; ++i) sum += " + 1";
  EXPECT_NE(compile_error(sum + " %>").find("nesting deeper than 256 levels"), std::string::npos);
  std::string props = "<%= #{}";
  for (int i = 0; i < 300; ++i) props += ".a";
  EXPECT_NE(compile_error(props + " %>").find("nesting deeper than 256 levels"), std::string::npos);
  std::string ifs;
  for (int i = 0; i < 300; ++i) ifs += "<% if true { %>";
  EXPECT_NE(compile_error(ifs).find("nesting deeper than 256 levels"), std::string::npos);
  std::string ok = "<%= " + std::string(100, '(') + "1" + std::string(100, ')') + " %>";
  EXPECT_EQ(run(ok), "1");
}

// Every prefix of a template either compiles or fails cleanly, and every
// compiled prefix renders or fails cleanly.
TEST(TemplateScript, PrefixesNeverCrash) {
  const std::string src =
      "<% let m = #{a: [1, 2.5, \"x\"], \"k\": ()}; /* c */ for (r, i) in sql(\"SELECT * FROM tests;\") { %>"
      "<%= `${i}: ${r.text} ${r[\"id\"] * 2}` %>\n<% if r.score.is_null() { continue; } else { m.a.push(i); } "
      "} // done\n %><%= m %> <%= sql(\"SELECT * FROM tests;\").to_json(#{pretty: true}) %>";
  const std::string want = "0: a 2\n1: b,\"c\" 4\n#{\"a\": [1, 2.5, \"x\", 0], \"k\": ()} [\n  {\n    \"id";
  ASSERT_EQ(run(src).substr(0, want.size()), want);
  for (std::size_t n = 0; n < src.size(); ++n) {
    FakeHost host;
    host.results["SELECT * FROM tests;"] = tests_table();
    auto out = run(src.substr(0, n), host);
    (void)out;
  }
}

}  // namespace
}  // namespace patina::tools::tpl
