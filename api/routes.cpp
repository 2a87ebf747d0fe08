#include "api/routes.hpp"

#include <sys/stat.h>

#include <cctype>
#include <chrono>
#include <thread>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/json.hpp>
#include <fmt/format.h>

#include "api/statement.hpp"
#include "core/log.hpp"
#include "core/runtime.hpp"

namespace patina::api {

namespace net = boost::asio;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;

std::optional<std::string> query_param(std::string_view target, std::string_view name) {
  auto q = target.find('?');
  if (q == std::string_view::npos) return std::nullopt;
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    auto amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    auto eq = pair.find('=');
    std::string_view key = pair.substr(0, eq);
    if (key != name) continue;
    std::string_view raw = eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    std::string out;
    for (std::size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] == '%' && i + 2 < raw.size() + 0 && i + 2 <= raw.size() - 1 + 1) {
        auto hex = std::string(raw.substr(i + 1, 2));
        char* end = nullptr;
        long v = std::strtol(hex.c_str(), &end, 16);
        if (end == hex.c_str() + 2) {
          out.push_back(static_cast<char>(v));
          i += 2;
          continue;
        }
      }
      out.push_back(raw[i] == '+' ? ' ' : raw[i]);
    }
    return out;
  }
  return std::nullopt;
}

namespace {

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

json::value error_body(std::string_view msg) { return json::value{{"error", msg}}; }

bool is_json_request(const Request& req) {
  auto it = req.find(http::field::content_type);
  if (it == req.end()) return false;
  std::string_view ct = it->value();
  auto semi = ct.find(';');
  ct = ct.substr(0, semi);
  while (!ct.empty() && ct.back() == ' ') ct.remove_suffix(1);
  return ct == "application/json";
}

// Parses the JSON body of |req|, answering 415/400 itself when it can't.
net::awaitable<std::optional<json::value>> read_json(Request& req, Responder& res) {
  if (!is_json_request(req)) {
    co_await res.json(http::status::unsupported_media_type,
                      error_body("expected request with `Content-Type: application/json`"));
    co_return std::nullopt;
  }
  boost::system::error_code ec;
  json::value v = json::parse(req.body(), ec);
  if (ec) {
    co_await res.json(http::status::bad_request, error_body(fmt::format("malformed JSON body: {}", ec.message())));
    co_return std::nullopt;
  }
  co_return v;
}

// Parses a seconds parameter ("timeout=5", "timeout=0.5"); nullopt when absent.
Result<std::optional<double>> seconds_param(const Request& req, std::string_view name) {
  auto raw = query_param(req.target(), name);
  if (!raw) return std::optional<double>{};
  try {
    std::size_t used = 0;
    double v = std::stod(*raw, &used);
    if (used != raw->size() || v < 0) throw std::invalid_argument("x");
    return std::optional<double>{v};
  } catch (const std::exception&) {
    return make_error(Errc::invalid_argument, fmt::format("invalid {} parameter '{}'", name, *raw));
  }
}

// ---- Authorizer for API transactions --------------------------------------

constexpr const char* schema_change_refusal =
    "schema changes are not allowed in transactions: change the schema files and run `patina reload`, or POST "
    "/v1/migrations";

struct AuthContext {
  const LocalStore* store;
  std::string refusal;
};

int authorize(void* p, int action, const char* a1, const char*, const char* db_name, const char* trigger) {
  auto* ctx = static_cast<AuthContext*>(p);
  // Statements run by triggers are ours (change capture); the user cannot
  // create triggers through the API.
  if (trigger != nullptr) return SQLITE_OK;
  switch (action) {
    case SQLITE_INSERT:
    case SQLITE_UPDATE:
    case SQLITE_DELETE: {
      if (db_name != nullptr && std::string_view(db_name) == "temp") return SQLITE_OK;
      if (a1 == nullptr) return SQLITE_OK;
      if (std::string_view(a1) == "sqlite_master" || std::string_view(a1) == "sqlite_schema") {
        // The first use of an eponymous virtual table (generate_series)
        // compiles, and never runs, an UPDATE of the schema table. A real
        // schema change is refused by its own action (CREATE_*, DROP_*,
        // ALTER_TABLE), and SQLite itself refuses a user's UPDATE of it.
        if (action == SQLITE_UPDATE) return SQLITE_OK;
        if (ctx->refusal.empty()) {
          ctx->refusal = schema_change_refusal;
        }
        return SQLITE_DENY;
      }
      if (auto why = ctx->store->refuse_write(a1)) {
        if (ctx->refusal.empty()) ctx->refusal = *why;
        return SQLITE_DENY;
      }
      return SQLITE_OK;
    }
    case SQLITE_CREATE_INDEX: case SQLITE_CREATE_TABLE: case SQLITE_CREATE_TEMP_INDEX:
    case SQLITE_CREATE_TEMP_TABLE: case SQLITE_CREATE_TEMP_TRIGGER: case SQLITE_CREATE_TEMP_VIEW:
    case SQLITE_CREATE_TRIGGER: case SQLITE_CREATE_VIEW: case SQLITE_DROP_INDEX: case SQLITE_DROP_TABLE:
    case SQLITE_DROP_TEMP_INDEX: case SQLITE_DROP_TEMP_TABLE: case SQLITE_DROP_TEMP_TRIGGER:
    case SQLITE_DROP_TEMP_VIEW: case SQLITE_DROP_TRIGGER: case SQLITE_DROP_VIEW: case SQLITE_ALTER_TABLE:
    case SQLITE_CREATE_VTABLE: case SQLITE_DROP_VTABLE:
      if (ctx->refusal.empty()) {
        ctx->refusal = schema_change_refusal;
      }
      return SQLITE_DENY;
    case SQLITE_ATTACH:
    case SQLITE_DETACH:
      if (ctx->refusal.empty()) ctx->refusal = "ATTACH and DETACH are not allowed in transactions";
      return SQLITE_DENY;
    case SQLITE_PRAGMA:
      if (ctx->refusal.empty()) ctx->refusal = "PRAGMA statements are not allowed in transactions";
      return SQLITE_DENY;
    case SQLITE_TRANSACTION:
    case SQLITE_SAVEPOINT:
      if (ctx->refusal.empty()) {
        ctx->refusal = "a request is one transaction: BEGIN, COMMIT, ROLLBACK and SAVEPOINT are not allowed";
      }
      return SQLITE_DENY;
    default:
      return SQLITE_OK;
  }
}

// sqlite3_set_authorizer expires every prepared statement of the
// connection, the writer's cached ones included; so the authorizer is
// installed once per connection and judges only while a request's
// statement compiles (|current_auth| set), allowing everything else.
thread_local AuthContext* current_auth = nullptr;
thread_local sqlite3* authorizer_installed_on = nullptr;

int authorize_current(void*, int action, const char* a1, const char* a2, const char* db_name, const char* trigger) {
  if (current_auth == nullptr) return SQLITE_OK;
  return authorize(current_auth, action, a1, a2, db_name, trigger);
}

struct StatementResult {
  std::int64_t rows_affected = 0;
  double time = 0;
};

struct TxOutcome {
  std::vector<StatementResult> results;
  std::optional<std::int64_t> version;
  std::vector<crdt::Changeset> changesets;  // of |version|
};

// A refusal (client's fault, 400) versus an execution error (500).
struct TxError {
  bool refused = false;
  std::string message;
};

}  // namespace

// ---- Handlers --------------------------------------------------------------

struct ApiRoutes::Handlers {
  explicit Handlers(ApiContext c) : ctx(std::move(c)) {}
  ApiContext ctx;

  // One HttpHandler per route, forwarding to a member function.
  template <net::awaitable<void> (Handlers::*Fn)(Request&, Responder&)>
  struct Bound final : HttpHandler {
    explicit Bound(Handlers& h) : h_(h) {}
    net::awaitable<void> handle(Request& req, Responder& res) override { return (h_.*Fn)(req, res); }
    Handlers& h_;  // owns this handler and outlives every request
  };

  net::awaitable<void> transactions_route(Request& req, Responder& res);
  net::awaitable<void> queries_route(Request& req, Responder& res);
  net::awaitable<void> table_stats_route(Request& req, Responder& res);
  net::awaitable<void> health_route(Request& req, Responder& res);
  net::awaitable<void> migrations_route(Request& req, Responder& res);
  net::awaitable<void> metrics_route(Request& req, Responder& res);

  Bound<&Handlers::transactions_route> transactions{*this};
  Bound<&Handlers::queries_route> queries{*this};
  Bound<&Handlers::table_stats_route> table_stats{*this};
  Bound<&Handlers::health_route> health{*this};
  Bound<&Handlers::migrations_route> migrations{*this};
  Bound<&Handlers::metrics_route> metrics{*this};

  json::value exec_response(json::array results, double time, std::optional<std::int64_t> version) const {
    json::object o;
    o["results"] = std::move(results);
    o["time"] = time;
    o["version"] = version ? json::value(*version) : json::value(nullptr);
    o["actor_id"] = ctx.store.actor_id();
    return o;
  }
};

net::awaitable<void> ApiRoutes::Handlers::transactions_route(Request& req, Responder& res) {
  auto t0 = Clock::now();
  auto body = co_await read_json(req, res);
  if (!body) co_return;
  auto statements = parse_statements(*body);
  if (!statements) {
    co_await res.json(http::status::unprocessable_entity, error_body(statements.error().message));
    co_return;
  }
  if (statements->empty()) {
    json::array results;
    results.push_back(error_body("at least 1 statement is required"));
    co_await res.json(http::status::bad_request, exec_response(std::move(results), 0, std::nullopt));
    co_return;
  }
  auto timeout = seconds_param(req, "timeout");
  if (!timeout) {
    co_await res.json(http::status::bad_request, error_body(timeout.error().message));
    co_return;
  }
  core::JobOptions options;
  options.needs_free_space = true;
  if (*timeout && **timeout > 0) {
    options.timeout = std::chrono::milliseconds(static_cast<std::int64_t>(**timeout * 1000));
  }
  LocalStore* store = &ctx.store;
  auto job = [stmts = std::move(*statements), store](core::Db& db) -> Result<std::pair<TxOutcome, std::string>> {
    // Errors travel in the pair's string so refusals and SQL errors keep
    // their own status; a non-empty string fails the job (rolled back).
    TxOutcome out;
    if (auto r = store->begin_request(db); !r) return tl::unexpected(r.error());
    AuthContext auth{store, {}};
    for (const auto& st : stmts) {
      auto t = Clock::now();
      // The authorizer judges a statement when it is compiled; a cached
      // statement was judged then (and refusals never become permissions).
      if (authorizer_installed_on != db.get()) {
        sqlite3_set_authorizer(db.get(), &authorize_current, nullptr);
        authorizer_installed_on = db.get();
      }
      current_auth = &auth;
      auto stmt = prepare_bound_cached(db, st);
      current_auth = nullptr;
      if (!stmt) {
        store->abort_request(db);
        if (!auth.refusal.empty()) return make_error(Errc::invalid_argument, auth.refusal);
        return tl::unexpected(stmt.error());
      }
      auto run = (*stmt)->run();
      (*stmt)->reset();  // release its read of the database at once
      if (!run) {
        store->abort_request(db);
        return tl::unexpected(run.error());
      }
      out.results.push_back({sqlite3_changes64(db.get()), seconds_since(t)});
    }
    auto version = store->finish_request(db);
    if (!version) {
      store->abort_request(db);
      return tl::unexpected(version.error());
    }
    out.version = *version;
    if (*version) {
      auto changesets = store->local_changesets(db, **version);
      if (!changesets) {
        store->abort_request(db);
        return tl::unexpected(changesets.error());
      }
      out.changesets = std::move(*changesets);
    }
    return std::pair<TxOutcome, std::string>{std::move(out), std::string()};
  };
  auto r = co_await ctx.writer.submit<std::pair<TxOutcome, std::string>>("api transaction", std::move(job),
                                                                              options);
  if (!r) {
    json::array results;
    results.push_back(error_body(r.error().message));
    auto status = r.error().code == Errc::invalid_argument ? http::status::bad_request
                  : r.error().code == Errc::shutting_down  ? http::status::service_unavailable
                  : r.error().code == Errc::storage_full   ? http::status::insufficient_storage
                                                           : http::status::internal_server_error;
    co_await res.json(status, exec_response(std::move(results), seconds_since(t0), std::nullopt));
    co_return;
  }
  if (r->first.version && ctx.on_local_commit) ctx.on_local_commit(*r->first.version, std::move(r->first.changesets));
  json::array results;
  for (const auto& s : r->first.results) {
    results.push_back(json::value{{"rows_affected", s.rows_affected}, {"time", s.time}});
  }
  co_await res.json(http::status::ok, exec_response(std::move(results), seconds_since(t0), r->first.version));
}

namespace {

// Events a reader thread streams to the request's coroutine.
struct QueryEvent {
  enum Kind { data, failed_before_stream, done } kind = data;
  int status = 200;
  std::string text;
  bool last = false;  // data that ends the stream: only |done| follows
};

struct QueryStream {
  explicit QueryStream(net::any_io_executor ex) : channel(ex, 16) {}
  core::CrossThreadChannel<QueryEvent> channel;
  std::atomic<bool> abandoned{false};

  // Called on the reader thread: waits for room (back-pressure from a slow
  // client) but gives up once the request is gone.
  bool send(QueryEvent ev) {
    for (int spins = 0;; ++spins) {
      if (abandoned.load()) return false;
      if (channel.try_send(boost::system::error_code{}, ev)) return true;
      core::ReaderPool::keep_alive();  // other queries need not wait for this client
      std::this_thread::sleep_for(std::chrono::microseconds(spins < 100 ? 50 : 2000));
    }
  }
};

// True when |sql| starts with a data-changing keyword (after comments and
// blanks, and a WITH clause is not looked into).
bool writes_data(std::string_view sql) {
  std::size_t i = 0;
  while (i < sql.size()) {
    if (std::isspace(static_cast<unsigned char>(sql[i]))) {
      ++i;
    } else if (sql.substr(i, 2) == "--") {
      auto nl = sql.find('\n', i);
      i = nl == std::string_view::npos ? sql.size() : nl + 1;
    } else if (sql.substr(i, 2) == "/*") {
      auto end = sql.find("*/", i + 2);
      i = end == std::string_view::npos ? sql.size() : end + 2;
    } else {
      break;
    }
  }
  std::string word;
  while (i < sql.size() && std::isalpha(static_cast<unsigned char>(sql[i]))) {
    word.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(sql[i++]))));
  }
  return word == "INSERT" || word == "UPDATE" || word == "DELETE" || word == "REPLACE" || word == "UPSERT";
}

constexpr std::size_t query_chunk_bytes = 32 * 1024;

Result<int> run_query(core::Db& db, const Statement& st, QueryStream& out) {
  auto t0 = Clock::now();
  auto stmt = prepare_bound(db, st);
  if (!stmt && writes_data(st.sql)) {
    // Writes to replicated tables do not even prepare on a reader (their
    // capture triggers call functions only the writer has): say what matters.
    out.send({QueryEvent::failed_before_stream, 400, json::serialize(error_body("statement is not readonly"))});
    return 0;
  }
  if (!stmt) {
    out.send({QueryEvent::failed_before_stream, 400, json::serialize(error_body(stmt.error().message))});
    return 0;
  }
  if (sqlite3_stmt_readonly(stmt->get()) == 0) {
    out.send({QueryEvent::failed_before_stream, 400, json::serialize(error_body("statement is not readonly"))});
    return 0;
  }
  json::array columns;
  for (int i = 0; i < stmt->column_count(); ++i) columns.emplace_back(sqlite3_column_name(stmt->get(), i));
  std::string buf = json::serialize(json::value{{"columns", std::move(columns)}});
  buf += '\n';
  std::int64_t rowid = 0;
  for (;;) {
    auto row = stmt->step();
    if (!row) {
      buf += json::serialize(error_body(row.error().message));
      buf += '\n';
      out.send({QueryEvent::data, 200, std::move(buf), true});
      out.send({QueryEvent::done, 200, {}});
      return 0;  // reported in the stream
    }
    if (!*row) break;
    json::array cells;
    for (int i = 0; i < stmt->column_count(); ++i) cells.push_back(value_to_json(stmt->column(i)));
    json::array event;
    event.emplace_back(++rowid);
    event.emplace_back(std::move(cells));
    buf += json::serialize(json::value{{"row", std::move(event)}});
    buf += '\n';
    if (buf.size() >= query_chunk_bytes) {
      if (!out.send({QueryEvent::data, 200, std::move(buf)})) return 0;
      buf.clear();
    }
  }
  buf += json::serialize(json::value{{"eoq", {{"time", seconds_since(t0)}}}});
  buf += '\n';
  out.send({QueryEvent::data, 200, std::move(buf), true});
  out.send({QueryEvent::done, 200, {}});
  return 0;
}

}  // namespace

namespace {

// Runs the query on a reader thread, streaming its events into |s|. A named
// coroutine with parameters by value (CP.51/CP.53): it outlives the request
// handler's frame if the client goes away.
net::awaitable<void> produce_query(core::ReaderPool* readers, Statement statement, std::shared_ptr<QueryStream> s,
                                   std::optional<std::chrono::milliseconds> limit) {
  auto job = [statement = std::move(statement), s](core::Db& db) { return run_query(db, statement, *s); };
  auto r = co_await readers->run<int>("api query", std::move(job), limit);
  if (!r) {
    // The pool refused the job, or it failed before streaming anything.
    s->channel.try_send(boost::system::error_code{},
                        QueryEvent{QueryEvent::failed_before_stream, 500, json::serialize(error_body(r.error().message))});
    s->channel.try_send(boost::system::error_code{}, QueryEvent{QueryEvent::done, 200, {}});
  }
}

}  // namespace

net::awaitable<void> ApiRoutes::Handlers::queries_route(Request& req, Responder& res) {
  auto body = co_await read_json(req, res);
  if (!body) co_return;
  auto st = parse_statement(*body);
  if (!st) {
    co_await res.json(http::status::unprocessable_entity, error_body(st.error().message));
    co_return;
  }
  auto timeout = seconds_param(req, "timeout");
  if (!timeout) {
    co_await res.json(http::status::bad_request, error_body(timeout.error().message));
    co_return;
  }
  double secs = timeout->value_or(60.0);
  std::optional<std::chrono::milliseconds> limit;
  if (secs > 0) limit = std::chrono::milliseconds(static_cast<std::int64_t>(secs * 1000));

  auto stream = std::make_shared<QueryStream>(co_await net::this_coro::executor);
  core::spawn(co_await net::this_coro::executor, "query", produce_query(&ctx.readers, std::move(*st), stream, limit));

  bool streaming = false;
  for (;;) {
    auto [ec, ev] = co_await stream->channel.async_receive(core::use_nothrow);
    if (ec) break;
    if (ev.kind == QueryEvent::failed_before_stream) {
      if (!streaming) {
        co_await res.text(static_cast<http::status>(ev.status), ev.text, "application/json");
        stream->abandoned = true;
        co_return;
      }
      ev.text += '\n';
      co_await res.chunk(ev.text);
      break;
    }
    if (ev.kind == QueryEvent::done) break;
    if (!streaming && ev.last) {
      // The whole answer in one event (most queries, under 32 KiB): one
      // write instead of header, chunk and last chunk, each its own segment.
      co_await res.whole_stream(http::status::ok, ev.text);
      stream->abandoned = true;
      co_return;
    }
    if (!streaming) {
      streaming = true;
      if (!co_await res.begin_stream(http::status::ok)) break;
    }
    if (!co_await res.chunk(ev.text)) break;
  }
  stream->abandoned = true;
  if (streaming) co_await res.end_stream();
}

net::awaitable<void> ApiRoutes::Handlers::table_stats_route(Request& req, Responder& res) {
  auto body = co_await read_json(req, res);
  if (!body) co_return;
  const json::value* tables = body->is_object() ? body->as_object().if_contains("tables") : nullptr;
  std::vector<std::string> names;
  bool ok = tables != nullptr && tables->is_array();
  if (ok) {
    for (const auto& t : tables->as_array()) {
      if (!t.is_string()) ok = false;
      else names.emplace_back(t.as_string());
    }
  }
  if (!ok) {
    co_await res.json(http::status::unprocessable_entity, error_body("expected {\"tables\": [\"name\", ...]}"));
    co_return;
  }
  // Callables are built as named locals, never as temporaries inside a
  // co_await expression: g++ 12 destroys such temporaries twice.
  auto job = [names](core::Db& db) -> Result<json::value> {
    std::int64_t total = 0;
    json::array invalid;
    auto exists = db.prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?");
    if (!exists) return tl::unexpected(exists.error());
    for (const auto& name : names) {
      exists->reset();
      if (auto b = exists->bind(1, name); !b) return tl::unexpected(b.error());
      auto found = exists->step();
      if (!found) return tl::unexpected(found.error());
      if (!*found) {
        invalid.emplace_back(name);
        continue;
      }
      std::string quoted = "\"";
      for (char c : name) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
      quoted += "\"";
      auto count = db.query_value("SELECT count(*) FROM " + quoted);
      if (!count) return tl::unexpected(count.error());
      if (*count) total += std::get<std::int64_t>(**count);
    }
    return json::value{{"total_row_count", total}, {"invalid_tables", std::move(invalid)}};
  };
  auto r = co_await ctx.readers.run<json::value>("table stats", std::move(job));
  if (!r) {
    json::object failed;
    failed["total_row_count"] = 0;
    failed["invalid_tables"] = json::array();
    co_await res.json(http::status::internal_server_error, failed);
    co_return;
  }
  co_await res.json(http::status::ok, *r);
}

net::awaitable<void> ApiRoutes::Handlers::health_route(Request& req, Responder& res) {
  std::optional<double> limits[5];
  const char* names[5] = {"gaps", "p99_lag", "max_queue", "queue_size", "failure_status"};
  for (int i = 0; i < 5; ++i) {
    auto p = seconds_param(req, names[i]);
    if (!p) {
      auto body = error_body(p.error().message);
      co_await res.json(http::status::bad_request, body);
      co_return;
    }
    limits[i] = *p;
  }
  auto [gaps_max, lag_max, max_queue, queue_param, failure] = limits;
  auto& f = ctx.health;
  // Gaps are counted from the persisted bookkeeping, as Corrosion does.
  auto count_gaps = [](core::Db& db) -> Result<std::int64_t> {
    auto exists = db.query_value(
        "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = '__patina_bookkeeping_gaps'");
    if (!exists) return tl::unexpected(exists.error());
    if (!*exists) return 0;  // no replication state yet
    auto v = db.query_value("SELECT coalesce(sum(\"end\" - start + 1), 0) FROM __patina_bookkeeping_gaps");
    if (!v) return tl::unexpected(v.error());
    return *v ? std::get<std::int64_t>(**v) : 0;
  };
  auto counted = co_await ctx.readers.run<std::int64_t>("health gaps", std::move(count_gaps));
  if (!counted) {
    auto body = error_body(counted.error().message);
    co_await res.json(http::status::internal_server_error, body);
    co_return;
  }
  f.gaps = *counted;
  std::int64_t gaps = f.gaps.load();
  std::int64_t queue = f.queue_size.load();
  double lag = f.p99_lag.load();
  bool unhealthy = false;
  if (gaps_max && static_cast<double>(gaps) > *gaps_max) unhealthy = true;
  if (max_queue && static_cast<double>(queue) > *max_queue) unhealthy = true;
  // Patina differs from Corrosion on purpose: no lag data (nothing was
  // applied lately) means a quiet cluster, which is healthy.
  if (lag_max && lag >= 0 && lag > *lag_max && (!queue_param || static_cast<double>(queue) > *queue_param)) {
    unhealthy = true;
  }
  // Where Corrosion would have stopped (a full disk), Patina stays up but
  // refuses writes and holds peers' changes: not a node to send writes to.
  const bool short_of_space = ctx.writer.short_of_space();
  if (short_of_space) unhealthy = true;
  json::object response;
  response["gaps"] = gaps;
  response["members"] = f.members.load();
  response["p99_lag"] = lag >= 0 ? json::value(lag) : json::value(0.0);
  response["queue_size"] = queue;
  response["disk_space_low"] = short_of_space;
  int failure_status = failure ? static_cast<int>(*failure) : 503;
  if (failure_status < 100 || failure_status > 599) failure_status = 503;
  json::object body;
  body["response"] = std::move(response);
  auto status = unhealthy ? static_cast<http::status>(failure_status) : http::status::ok;
  co_await res.json(status, body);
}

net::awaitable<void> ApiRoutes::Handlers::migrations_route(Request& req, Responder& res) {
  auto t0 = Clock::now();
  auto body = co_await read_json(req, res);
  if (!body) co_return;
  std::vector<std::string> statements;
  bool ok = body->is_array();
  if (ok) {
    for (const auto& s : body->as_array()) {
      if (!s.is_string()) ok = false;
      else statements.emplace_back(s.as_string());
    }
  }
  if (!ok) {
    co_await res.json(http::status::unprocessable_entity, error_body("expected a JSON array of SQL strings"));
    co_return;
  }
  LocalStore* store = &ctx.store;
  using Rows = std::map<std::string, crdt::PkSet>;
  auto job = [statements, store](core::Db& db) -> Result<Rows> { return store->migrate(db, statements); };
  core::JobOptions options;
  options.needs_free_space = true;
  auto r = co_await ctx.writer.submit<Rows>("api migrations", std::move(job), options);
  if (!r) {
    json::array results;
    results.push_back(error_body(r.error().message));
    co_await res.json(r.error().code == Errc::invalid_argument ? http::status::bad_request
                      : r.error().code == Errc::storage_full   ? http::status::insufficient_storage
                                                                : http::status::internal_server_error,
                      exec_response(std::move(results), seconds_since(t0), std::nullopt));
    co_return;
  }
  if (!r->empty() && ctx.on_rows_merged) ctx.on_rows_merged(std::move(*r));
  co_await res.json(http::status::ok, exec_response(json::array(), seconds_since(t0), std::nullopt));
}

net::awaitable<void> ApiRoutes::Handlers::metrics_route(Request&, Responder& res) {
  auto& m = ctx.metrics;
  // stat() is a metadata lookup, not I/O that can stall: fine on the reactor.
  struct stat st{};
  if (::stat(ctx.db_path.c_str(), &st) == 0) {
    m.gauge("patina_db_size_bytes", "Size of the database file").set(static_cast<double>(st.st_size));
  }
  if (::stat((ctx.db_path + "-wal").c_str(), &st) == 0) {
    m.gauge("patina_db_wal_size_bytes", "Size of the WAL file").set(static_cast<double>(st.st_size));
  }
  co_await res.text(http::status::ok, m.render(), "text/plain; version=0.0.4");
}

ApiRoutes::ApiRoutes(ApiContext ctx) : handlers_(std::make_unique<Handlers>(std::move(ctx))) {}
ApiRoutes::~ApiRoutes() = default;

void ApiRoutes::install(HttpServer& server) {
  server.add_route({http::verb::post, "/v1/transactions", "transactions", 128, &handlers_->transactions});
  server.add_route({http::verb::post, "/v1/queries", "queries", 128, &handlers_->queries});
  server.add_route({http::verb::post, "/v1/table_stats", "table_stats", 4, &handlers_->table_stats});
  server.add_route({http::verb::get, "/v1/health", "health", 4, &handlers_->health});
  server.add_route({http::verb::post, "/v1/migrations", "migrations", 4, &handlers_->migrations});
}

HttpHandler& ApiRoutes::metrics_handler() { return handlers_->metrics; }

}  // namespace patina::api
