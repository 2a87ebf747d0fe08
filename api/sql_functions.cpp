#include "api/sql_functions.hpp"

#include <cstdint>
#include <cstring>
#include <limits>
#include <new>
#include <string>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

namespace patina::api {
namespace {

// ---- generate_series ------------------------------------------------------

enum SeriesColumn { col_value = 0, col_start = 1, col_stop = 2, col_step = 3 };
constexpr std::int64_t default_stop = 4294967295;

struct SeriesCursor {
  sqlite3_vtab_cursor base;  // first: SQLite casts between the two
  std::int64_t start = 0;
  std::int64_t step = 1;  // > 0
  std::int64_t count = 0;  // number of values
  std::int64_t index = 0;  // 0-based position of the current row
  bool descending = false;
  std::int64_t args[3] = {0, default_stop, 1};  // start, stop, step as given

  std::int64_t value() const {
    const std::int64_t k = descending ? count - 1 - index : index;
    return static_cast<std::int64_t>(static_cast<__int128>(start) + static_cast<__int128>(k) * step);
  }
};

int series_connect(sqlite3* db, void*, int, const char* const*, sqlite3_vtab** out, char**) {
  int rc = sqlite3_declare_vtab(db, "CREATE TABLE x(value, start HIDDEN, stop HIDDEN, step HIDDEN)");
  if (rc != SQLITE_OK) return rc;
  auto* tab = static_cast<sqlite3_vtab*>(sqlite3_malloc(sizeof(sqlite3_vtab)));
  if (tab == nullptr) return SQLITE_NOMEM;
  std::memset(tab, 0, sizeof(*tab));
  sqlite3_vtab_config(db, SQLITE_VTAB_INNOCUOUS);
  *out = tab;
  return SQLITE_OK;
}

int series_disconnect(sqlite3_vtab* tab) {
  sqlite3_free(tab);
  return SQLITE_OK;
}

// idxNum bit i (0 start, 1 stop, 2 step): that argument is passed, in that
// order. A hidden column constrained in a way we cannot use makes this plan
// impossible (SQLITE_CONSTRAINT), so SQLite never runs it with a default.
int series_best_index(sqlite3_vtab* tab, sqlite3_index_info* info) {
  int use[3] = {-1, -1, -1};
  bool unusable[3] = {false, false, false};
  for (int i = 0; i < info->nConstraint; ++i) {
    const auto& c = info->aConstraint[i];
    if (c.iColumn < col_start) continue;
    const int which = c.iColumn - col_start;
    if (!c.usable) {
      unusable[which] = true;
      continue;
    }
    if (c.op == SQLITE_INDEX_CONSTRAINT_EQ) use[which] = i;
  }
  // An argument that is given but not available in this plan (a join's
  // other side supplies it): only plans that have it may run.
  for (int which = 0; which < 3; ++which)
    if (unusable[which] && use[which] < 0) return SQLITE_CONSTRAINT;
  int argv = 0;
  int mask = 0;
  for (int which = 0; which < 3; ++which) {
    if (use[which] < 0) continue;
    info->aConstraintUsage[use[which]].argvIndex = ++argv;
    info->aConstraintUsage[use[which]].omit = 1;
    mask |= 1 << which;
  }
  info->idxNum = mask;
  if ((mask & 3) == 3) {
    info->estimatedCost = 2.0;
    info->estimatedRows = 1000;
  } else {
    info->estimatedCost = 2147483647.0;
    info->estimatedRows = 2147483647;
  }
  (void)tab;
  return SQLITE_OK;
}

int series_open(sqlite3_vtab*, sqlite3_vtab_cursor** out) {
  auto* cur = new (std::nothrow) SeriesCursor{};
  if (cur == nullptr) return SQLITE_NOMEM;
  *out = &cur->base;
  return SQLITE_OK;
}

int series_close(sqlite3_vtab_cursor* base) {
  delete reinterpret_cast<SeriesCursor*>(base);
  return SQLITE_OK;
}

int series_filter(sqlite3_vtab_cursor* base, int mask, const char*, int argc, sqlite3_value** argv) {
  auto* cur = reinterpret_cast<SeriesCursor*>(base);
  std::int64_t given[3] = {0, default_stop, 1};
  bool null_arg = false;
  int at = 0;
  for (int which = 0; which < 3; ++which) {
    if ((mask & (1 << which)) == 0 || at >= argc) continue;
    if (sqlite3_value_type(argv[at]) == SQLITE_NULL) null_arg = true;
    given[which] = sqlite3_value_int64(argv[at++]);
  }
  std::memcpy(cur->args, given, sizeof(given));
  cur->index = 0;
  cur->count = 0;
  if (null_arg) return SQLITE_OK;  // NULL anywhere: no rows
  const std::int64_t start = given[0], stop = given[1];
  std::int64_t step = given[2];
  cur->descending = step < 0;
  if (step == 0) step = 1;
  if (step == std::numeric_limits<std::int64_t>::min()) step = std::numeric_limits<std::int64_t>::max();
  if (step < 0) step = -step;
  cur->start = start;
  cur->step = step;
  if (start > stop) return SQLITE_OK;
  const __int128 span = static_cast<__int128>(stop) - start;
  // Up to 2^64 values (the whole range by 1): more than anyone reads, but
  // the count must not wrap to zero.
  const __int128 count = span / step + 1;
  cur->count = count > std::numeric_limits<std::int64_t>::max() ? std::numeric_limits<std::int64_t>::max()
                                                                  : static_cast<std::int64_t>(count);
  return SQLITE_OK;
}

int series_next(sqlite3_vtab_cursor* base) {
  ++reinterpret_cast<SeriesCursor*>(base)->index;
  return SQLITE_OK;
}

int series_eof(sqlite3_vtab_cursor* base) {
  auto* cur = reinterpret_cast<SeriesCursor*>(base);
  return cur->index >= cur->count ? 1 : 0;
}

int series_column(sqlite3_vtab_cursor* base, sqlite3_context* ctx, int column) {
  auto* cur = reinterpret_cast<SeriesCursor*>(base);
  sqlite3_result_int64(ctx, column == col_value ? cur->value() : cur->args[column - col_start]);
  return SQLITE_OK;
}

int series_rowid(sqlite3_vtab_cursor* base, sqlite3_int64* rowid) {
  *rowid = reinterpret_cast<SeriesCursor*>(base)->index + 1;
  return SQLITE_OK;
}

sqlite3_module make_series_module() {
  sqlite3_module m{};
  m.iVersion = 0;
  m.xCreate = nullptr;  // eponymous only: no CREATE VIRTUAL TABLE
  m.xConnect = series_connect;
  m.xBestIndex = series_best_index;
  m.xDisconnect = series_disconnect;
  m.xDestroy = series_disconnect;
  m.xOpen = series_open;
  m.xClose = series_close;
  m.xFilter = series_filter;
  m.xNext = series_next;
  m.xEof = series_eof;
  m.xColumn = series_column;
  m.xRowid = series_rowid;
  return m;
}

const sqlite3_module series_module = make_series_module();

// ---- corro_json_contains --------------------------------------------------

bool contains(const boost::json::value& selector, const boost::json::value& object) {
  if (selector.is_object() && object.is_object()) {
    const auto& o = object.get_object();
    for (const auto& [key, value] : selector.get_object()) {
      const auto* found = o.if_contains(key);
      if (found == nullptr || !contains(value, *found)) return false;
    }
    return true;
  }
  return selector == object;
}

void json_contains_fn(sqlite3_context* ctx, int, sqlite3_value** argv) {
  boost::json::value parsed[2];
  for (int i = 0; i < 2; ++i) {
    if (sqlite3_value_type(argv[i]) != SQLITE_TEXT) {
      std::string msg = "corro_json_contains: argument " + std::to_string(i + 1) + " must be JSON text";
      sqlite3_result_error(ctx, msg.c_str(), -1);
      return;
    }
    const auto* text = reinterpret_cast<const char*>(sqlite3_value_text(argv[i]));
    const auto size = static_cast<std::size_t>(sqlite3_value_bytes(argv[i]));
    boost::system::error_code ec;
    parsed[i] = boost::json::parse(std::string_view(text, size), ec);
    if (ec) {
      std::string msg = "corro_json_contains: argument " + std::to_string(i + 1) + " is not valid JSON: " + ec.message();
      sqlite3_result_error(ctx, msg.c_str(), -1);
      return;
    }
  }
  sqlite3_result_int(ctx, contains(parsed[0], parsed[1]) ? 1 : 0);
}

int auto_entry(sqlite3* db, char**, const sqlite3_api_routines*) { return register_sql_functions(db); }

}  // namespace

int register_sql_functions(sqlite3* db) {
  int rc = sqlite3_create_module(db, "generate_series", &series_module, nullptr);
  if (rc != SQLITE_OK) return rc;
  return sqlite3_create_function_v2(db, "corro_json_contains", 2,
                                    SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS, nullptr,
                                    &json_contains_fn, nullptr, nullptr, nullptr);
}

void register_sql_functions_for_every_connection() {
  // SQLite keeps one entry per distinct function pointer: calling twice is a no-op.
  sqlite3_auto_extension(reinterpret_cast<void (*)()>(&auto_entry));
}

}  // namespace patina::api
