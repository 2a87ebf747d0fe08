#pragma once
// Templates in Corrosion's format (`patina template`, SPEC.md §7.5): text
// with <% code %> and <%= expression %> tags, the code in the subset of
// Rhai that Corrosion's templates use. Compiling turns the template into
// one script (text between tags is written as it stands, <%= e %> writes
// e); rendering runs it against a Host, which answers sql(...) and
// hostname(). Pure: no sockets, files or clocks here.
//
// The Rhai subset (anything else is a compile error naming line:column):
//   statements  let/const x = e;  x = e;  x += e (-= *= /=);  if c {..}
//               else if c {..} else {..};  for x in e {..};  for (x, i) in
//               e {..};  while c {..};  do {..} while|until c;  loop {..};
//               break;  continue;
//               { block };  e;  return [e];  // and /* */ comments;
//               fn name(a, b) {..} at the top level (hoisted, overloaded
//               by arity, sees only its parameters; x.name(..) binds this,
//               by value: assigning to it is an error)
//   expressions integer, float, "string" (\n \t \r \" \\ \0 \u{..}),
//               `interpolated ${e}` strings, 'c' chars, true, false, ();
//               [array], #{map: e, "key": e}; a.b, a[i], a.f(args), f(args);
//               unary - !; * / %; + -; .. ..=; < <= > >=; == !=; &&; ||;
//               if c { e } else { e } as an expression; switch e { 1 => a,
//               2 | 3 => b, 4..=9 if c => { .. }, "s" => c, _ => d }
//   values      (), bool, int (i64, overflow is an error), float, string,
//               char, array, map, range, and from sql(...): query result
//               (iterates rows), row (row.col or row["col"]; iterates
//               cells), cell (.name(), .value()), SQL value (.is_null(),
//               .to_json(), .to_string())
//   functions   sql(q), sql(q, [params]), sql(q, #{named}), hostname(),
//               write(x); result.to_json(), result.to_json(#{pretty: true,
//               row_values_as_array: true}), result.to_csv(); len, is_empty,
//               to_string, to_int, to_float, to_upper, to_lower, trim,
//               contains, starts_with, ends_with, index_of, sub_string,
//               replace, split, join, push, keys, values, type_of, abs,
//               is_null
//
// Writing a value: strings as they are, () and SQL NULL as nothing, SQL
// blobs as hex, arrays and maps in Rhai's debug form. Writing
// result.to_json() gives a JSON array of objects (of arrays with
// row_values_as_array), serde_json's pretty layout with pretty: true;
// result.to_csv() gives a header line and one line per row (RFC 4180
// quoting, "\n" line ends).
//
// A render is bounded: at most 10,000,000 operations and nesting 256 deep,
// so a template cannot hang its renderer.

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/value.hpp>

#include "core/result.hpp"

namespace patina::tools::tpl {

// The answer to one sql(...): column names and rows of cells as the HTTP
// API gives them (null, integer, real, text; a blob as an array of bytes).
struct QueryResult {
  std::vector<std::string> columns;
  std::vector<std::vector<boost::json::value>> rows;
};

class Host {
 public:
  virtual ~Host() = default;
  // |statement| is in the API's statement JSON: "sql", ["sql", [params]]
  // or ["sql", {named params}].
  virtual Result<QueryResult> sql(const boost::json::value& statement) = 0;
  virtual std::string hostname() = 0;
};

class Template {
 public:
  // Errc::invalid_argument naming |name|:line:column for a template or
  // script that cannot be parsed, or uses what the subset lacks.
  static Result<Template> compile(std::string_view source, std::string name);

  // Runs the template, appending its output to |out|. Errors (a failed
  // sql(...), a type error, an unknown function or column) name
  // |name|:line:column; |out| then holds what was written before.
  Result<void> render(Host& host, std::string& out) const;

  ~Template();
  Template(Template&&) noexcept;
  Template& operator=(Template&&) noexcept;

  struct Program;  // the parsed script

 private:
  explicit Template(std::unique_ptr<Program> program);
  std::unique_ptr<Program> program_;
};

}  // namespace patina::tools::tpl
