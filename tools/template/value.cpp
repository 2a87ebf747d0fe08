#include "tools/template/value.hpp"

#include <cstdint>
#include <limits>

#include <boost/json.hpp>
#include <fmt/format.h>

#include "tools/template/format.hpp"

namespace patina::tools::tpl::detail {

const char* type_name(const Value& v) {
  static const char* const names[] = {"()",    "bool",          "i64",        "f64",        "string",
                                      "char",  "array",         "map",        "range",      "QueryResponse",
                                      "Row",   "Cell",          "SqliteValue", "JsonOutput", "CsvOutput"};
  return names[v.v.index()];
}

namespace {

// A SQL value as a plain script value: NULL -> (), blob -> hex string.
Value sql_plain(const json::value& j) {
  switch (j.kind()) {
    case json::kind::null: return Value{};
    case json::kind::bool_: return j.get_bool();
    case json::kind::int64: return j.get_int64();
    case json::kind::uint64:
      if (j.get_uint64() <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        return static_cast<std::int64_t>(j.get_uint64());
      }
      return static_cast<double>(j.get_uint64());
    case json::kind::double_: return j.get_double();
    default: return sql_display(j);
  }
}

}  // namespace

const json::value& cell_json(const CellRef& c) { return c.res->rows[c.row].at(c.col); }

Value plain(const Value& v) {
  if (auto* s = v.as<SqlVal>()) return sql_plain(s->v);
  return v;
}

std::string quote_debug(std::string_view s, char q) {
  std::string out(1, q);
  for (char c : s) {
    switch (c) {
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\\': out += "\\\\"; break;
      case '\0': out += "\\0"; break;
      default:
        if (c == q) out += '\\';
        out += c;
    }
  }
  return out + q;
}

// The display form; |what| fails for values that cannot be written.
std::string display(const Value& v, Pos pos) {
  if (v.is<std::monostate>()) return "";
  if (auto* b = v.as<bool>()) return *b ? "true" : "false";
  if (auto* i = v.as<std::int64_t>()) return std::to_string(*i);
  if (auto* d = v.as<double>()) return rhai_float_display(*d);
  if (auto* s = v.as<std::string>()) return *s;
  if (auto* c = v.as<char32_t>()) return encode_utf8(std::u32string(1, *c));
  if (v.is<ArrayP>() || v.is<MapP>()) return debug_form(v);
  if (auto* r = v.as<Range>()) return fmt::format("{}{}{}", r->start, r->inclusive ? "..=" : "..", r->end);
  if (v.is<ResP>()) fail(pos, "cannot write a query result: use .to_json() or .to_csv()");
  if (v.is<RowRef>()) fail(pos, "cannot write a row: write its columns (row.name) or its cells");
  if (auto* c = v.as<CellRef>()) return sql_display(cell_json(*c));
  if (auto* s = v.as<SqlVal>()) return sql_display(s->v);
  if (auto* j = v.as<JsonOut>()) return query_json(*j->res, j->pretty, j->as_array);
  return query_csv(*v.as<CsvOut>()->res);
}

std::string debug_form(const Value& v) {
  if (v.is<std::monostate>()) return "()";
  if (auto* s = v.as<std::string>()) return quote_debug(*s, '"');
  if (auto* c = v.as<char32_t>()) return quote_debug(encode_utf8(std::u32string(1, *c)), '\'');
  if (auto* a = v.as<ArrayP>()) {
    std::string out = "[";
    for (std::size_t i = 0; i < (*a)->size(); ++i) out += (i ? ", " : "") + debug_form((**a)[i]);
    return out + "]";
  }
  if (auto* m = v.as<MapP>()) {
    std::string out = "#{";
    bool first = true;
    for (const auto& [k, x] : **m) {
      out += (first ? "" : ", ") + quote_debug(k, '"') + ": " + debug_form(x);
      first = false;
    }
    return out + "}";
  }
  if (auto* s = v.as<SqlVal>()) {
    return s->v.is_null() ? "()" : s->v.is_string() ? quote_debug(s->v.get_string(), '"') : sql_display(s->v);
  }
  if (v.is<ResP>()) return "<query result>";
  if (v.is<RowRef>()) return "<row>";
  return display(v, Pos{});
}

}  // namespace patina::tools::tpl::detail
