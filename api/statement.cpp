#include "api/statement.hpp"

#include <limits>

#include <boost/json/serialize.hpp>
#include <fmt/format.h>

namespace patina::api {

namespace json = boost::json;

core::SqlValue value_from_json(const json::value& v) {
  switch (v.kind()) {
    case json::kind::null: return nullptr;
    case json::kind::bool_: return std::int64_t{v.get_bool() ? 1 : 0};
    case json::kind::int64: return v.get_int64();
    case json::kind::uint64: {
      auto u = v.get_uint64();
      if (u <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return static_cast<std::int64_t>(u);
      return static_cast<double>(u);
    }
    case json::kind::double_: return v.get_double();
    case json::kind::string: return std::string(v.get_string());
    case json::kind::array: {
      const auto& a = v.get_array();
      core::Blob blob;
      blob.bytes.reserve(a.size());
      for (const auto& e : a) {
        std::int64_t b = -1;
        if (e.is_int64()) b = e.get_int64();
        else if (e.is_uint64() && e.get_uint64() <= 255) b = static_cast<std::int64_t>(e.get_uint64());
        if (b < 0 || b > 255) return json::serialize(v);
        blob.bytes.push_back(static_cast<std::uint8_t>(b));
      }
      return blob;
    }
    case json::kind::object: return json::serialize(v);
  }
  return nullptr;
}

json::value value_to_json(const core::SqlValue& v) {
  return std::visit(
      [](const auto& x) -> json::value {
        using V = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<V, std::nullptr_t>) {
          return nullptr;
        } else if constexpr (std::is_same_v<V, core::Blob>) {
          json::array a;
          a.reserve(x.bytes.size());
          for (auto b : x.bytes) a.emplace_back(static_cast<std::int64_t>(b));
          return a;
        } else {
          return json::value(x);
        }
      },
      v);
}

namespace {

Result<std::vector<core::SqlValue>> positional(const json::value& v) {
  if (!v.is_array()) return make_error(Errc::invalid_argument, "params must be an array");
  std::vector<core::SqlValue> out;
  for (const auto& e : v.get_array()) out.push_back(value_from_json(e));
  return out;
}

Result<std::vector<std::pair<std::string, core::SqlValue>>> named(const json::value& v) {
  if (!v.is_object()) return make_error(Errc::invalid_argument, "named_params must be an object");
  std::vector<std::pair<std::string, core::SqlValue>> out;
  for (const auto& [k, e] : v.get_object()) out.emplace_back(std::string(k), value_from_json(e));
  return out;
}

}  // namespace

Result<Statement> parse_statement(const json::value& v) {
  Statement st;
  if (v.is_string()) {
    st.sql = std::string(v.get_string());
    return st;
  }
  if (v.is_object()) {
    const auto& o = v.get_object();
    const json::value* q = o.if_contains("query");
    if (q == nullptr || !q->is_string()) {
      return make_error(Errc::invalid_argument, "a statement object needs a string \"query\"");
    }
    st.sql = std::string(q->get_string());
    const json::value* p = o.if_contains("params");
    const json::value* n = o.if_contains("named_params");
    if (p != nullptr && !p->is_null()) {
      auto r = positional(*p);
      if (!r) return tl::unexpected(r.error());
      st.params = std::move(*r);
    } else if (n != nullptr && !n->is_null()) {
      auto r = named(*n);
      if (!r) return tl::unexpected(r.error());
      st.named_params = std::move(*r);
    }
    return st;
  }
  if (v.is_array() && v.get_array().size() == 2 && v.get_array()[0].is_string()) {
    st.sql = std::string(v.get_array()[0].get_string());
    const auto& second = v.get_array()[1];
    if (second.is_array()) {
      st.params = *positional(second);
      return st;
    }
    if (second.is_object()) {
      st.named_params = *named(second);
      return st;
    }
  }
  return make_error(Errc::invalid_argument,
                    "a statement must be a string, [sql, [params]], [sql, {named params}] or "
                    "{\"query\": sql, \"params\": [...], \"named_params\": {...}}");
}

Result<std::vector<Statement>> parse_statements(const json::value& v) {
  if (!v.is_array()) return make_error(Errc::invalid_argument, "expected a JSON array of statements");
  std::vector<Statement> out;
  for (const auto& e : v.get_array()) {
    auto st = parse_statement(e);
    if (!st) return tl::unexpected(st.error());
    out.push_back(std::move(*st));
  }
  return out;
}

namespace {

Result<void> bind_all(core::Stmt& stmt, const Statement& st) {
  int expected = sqlite3_bind_parameter_count(stmt.get());
  if (!st.named_params.empty()) {
    for (const auto& [name, value] : st.named_params) {
      int index = sqlite3_bind_parameter_index(stmt.get(), name.c_str());
      if (index == 0) {
        return make_error(Errc::sql, fmt::format("no parameter named '{}' in the statement (named parameters "
                                                 "include their sigil, e.g. \":id\")", name));
      }
      if (auto r = stmt.bind(index, value); !r) return r;
    }
    return {};
  }
  if (static_cast<int>(st.params.size()) > expected) {
    return make_error(Errc::sql, fmt::format("the statement has {} parameters but {} were given", expected,
                                             st.params.size()));
  }
  for (std::size_t i = 0; i < st.params.size(); ++i) {
    if (auto r = stmt.bind(static_cast<int>(i + 1), st.params[i]); !r) return r;
  }
  return {};
}

}  // namespace

Result<core::Stmt> prepare_bound(core::Db& db, const Statement& st) {
  auto stmt = db.prepare(st.sql);
  if (!stmt) return tl::unexpected(stmt.error());
  if (stmt->get() == nullptr) return make_error(Errc::sql, "the statement is empty");
  if (auto r = bind_all(*stmt, st); !r) return tl::unexpected(r.error());
  return stmt;
}

Result<core::Stmt*> prepare_bound_cached(core::Db& db, const Statement& st) {
  auto stmt = db.cached(st.sql);
  if (!stmt) return tl::unexpected(stmt.error());
  if ((*stmt)->get() == nullptr) return make_error(Errc::sql, "the statement is empty");
  if (auto r = bind_all(**stmt, st); !r) return tl::unexpected(r.error());
  return *stmt;
}

}  // namespace patina::api
