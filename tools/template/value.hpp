#pragma once
// The script's values. One variant holds Rhai's own types and handles into
// sql(...) answers (a result, a row, a cell, a SQL value, a pending
// to_json()/to_csv() output), so however a template walks a query result it
// shares it rather than copying it. Arrays and maps are shared too, and
// copied on write by the interpreter, so passing them around stays cheap.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <boost/json/value.hpp>

#include "tools/template/error.hpp"
#include "tools/template_script.hpp"

namespace patina::tools::tpl::detail {

namespace json = boost::json;

struct Value;
using Array = std::vector<Value>;
using ArrayP = std::shared_ptr<Array>;
using Map = std::map<std::string, Value>;
using MapP = std::shared_ptr<Map>;
using ResP = std::shared_ptr<const QueryResult>;

struct Range {
  std::int64_t start = 0, end = 0;
  bool inclusive = false;
};
struct RowRef {
  ResP res;
  std::size_t row = 0;
};
struct CellRef {
  ResP res;
  std::size_t row = 0, col = 0;
};
struct SqlVal {
  json::value v;
};
struct JsonOut {
  ResP res;
  bool pretty = false, as_array = false;
};
struct CsvOut {
  ResP res;
};

struct Value {
  std::variant<std::monostate, bool, std::int64_t, double, std::string, char32_t, ArrayP, MapP, Range, ResP,
               RowRef, CellRef, SqlVal, JsonOut, CsvOut>
      v;
  Value() = default;
  template <class T>
  Value(T x) : v(std::move(x)) {}  // NOLINT: implicit on purpose
  template <class T>
  const T* as() const { return std::get_if<T>(&v); }
  template <class T>
  T* as() { return std::get_if<T>(&v); }
  template <class T>
  bool is() const { return std::holds_alternative<T>(v); }
};

// The name type_of() gives, and error messages use.
const char* type_name(const Value& v);

// The JSON value of a cell.
const json::value& cell_json(const CellRef& c);

// A SQL value as a plain script value (NULL -> (), blob -> hex string);
// other values as they are.
Value plain(const Value& v);

// |s| quoted with |q| and escaped, as Rhai's debug form writes it.
std::string quote_debug(std::string_view s, char q);

// The display form; |what| fails for values that cannot be written.
std::string display(const Value& v, Pos pos);

// Rhai's debug form: strings quoted, arrays and maps in [..] and #{..}.
std::string debug_form(const Value& v);

}  // namespace patina::tools::tpl::detail
