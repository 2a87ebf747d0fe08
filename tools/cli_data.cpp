#include "tools/cli_data.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <string_view>

#include <boost/json.hpp>
#include <fmt/format.h>
#include <sqlite3.h>

#include "api/admin_client.hpp"
#include "api/http_client.hpp"
#include "core/sqlite.hpp"
#include "crdt/backup.hpp"
#include "crdt/change.hpp"
#include "io/wire.hpp"
#include "tools/crdt_store.hpp"

namespace patina::tools {

namespace json = boost::json;
namespace fs = std::filesystem;

int cli_fail(const std::string& message) {
  fmt::print(stderr, "patina: error: {}\n", message);
  return 1;
}

void print_event(const std::string& command, const std::string& message) {
  static std::mutex mu;
  std::lock_guard lock(mu);
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  fmt::print(stderr, "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z patina {}: {}\n", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, command, message);
}

Result<ApiTarget> api_target(const GlobalOptions& g) {
  auto rc = resolve_config(g);
  if (!rc) return tl::unexpected(rc.error());
  ApiTarget t;
  t.addr = rc->config.api.bind_addr.empty() ? "127.0.0.1:8080" : rc->config.api.bind_addr.front();
  // A wildcard listener is reached on loopback.
  if (t.addr.rfind("0.0.0.0:", 0) == 0) t.addr = "127.0.0.1:" + t.addr.substr(8);
  if (t.addr.rfind("[::]:", 0) == 0) t.addr = "[::1]:" + t.addr.substr(5);
  t.headers.emplace_back("content-type", "application/json");
  if (rc->config.api.bearer_token) t.headers.emplace_back("authorization", "Bearer " + *rc->config.api.bearer_token);
  return t;
}

namespace {

json::value statement_json(const SqlCommand& c) {
  json::array params;
  for (const auto& p : c.params) params.emplace_back(p);
  json::array st;
  st.emplace_back(c.sql);
  st.emplace_back(std::move(params));
  return st;
}

std::string target_path(const char* route, const SqlCommand& c) {
  return c.timeout ? fmt::format("{}?timeout={}", route, *c.timeout) : std::string(route);
}

// How long the CLI waits for the agent to make progress: the default, or
// longer than a --timeout the agent was asked to honour.
std::chrono::milliseconds client_wait(const SqlCommand& c) {
  if (!c.timeout || *c.timeout <= 0) return api::HttpConnection::default_idle_timeout;
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::min(*c.timeout, 86400.0) * 1000)) +
         std::chrono::seconds(5);
}

std::string cell_text(const json::value& v) {
  if (v.is_null()) return "";
  if (v.is_string()) return std::string(v.as_string());
  if (v.is_double()) return fmt::format("{}", v.as_double());
  if (v.is_array()) {
    std::string hex = "x'";
    for (const auto& b : v.as_array()) hex += fmt::format("{:02x}", b.is_int64() ? b.as_int64() : 0);
    return hex + "'";
  }
  return json::serialize(v);
}

std::string error_of(const api::HttpResponse& r) {
  if (auto j = r.json(); j && j->is_object()) {
    const auto& o = j->as_object();
    if (const auto* e = o.if_contains("error"); e && e->is_string()) return std::string(e->as_string());
    if (const auto* res = o.if_contains("results"); res && res->is_array()) {
      for (const auto& x : res->as_array()) {
        if (x.is_object() && x.as_object().contains("error")) return cell_text(x.as_object().at("error"));
      }
    }
  }
  return r.body.empty() ? fmt::format("HTTP {}", r.status) : fmt::format("HTTP {}: {}", r.status, r.body);
}

Result<std::string> db_path(const GlobalOptions& g) {
  auto rc = resolve_config(g);
  if (!rc) return tl::unexpected(rc.error());
  return rc->config.db.path;
}

}  // namespace

int cmd_exec(const GlobalOptions& g, const SqlCommand& c) {
  auto t = api_target(g);
  if (!t) return cli_fail(t.error().message);
  json::array body;
  body.push_back(statement_json(c));
  auto start = std::chrono::steady_clock::now();
  auto r = api::http_request(t->addr, "POST", target_path("/v1/transactions", c), json::serialize(body), t->headers,
                             client_wait(c));
  if (r.status == 0) return cli_fail(fmt::format("no answer from the agent's API at {}: {}", t->addr, r.error));
  if (r.status != 200) return cli_fail(error_of(r));
  auto j = r.json();
  std::int64_t rows = 0;
  if (j) {
    for (const auto& x : j->at("results").as_array()) rows += x.at("rows_affected").as_int64();
  }
  const auto& version = j->at("version");
  fmt::print("Rows affected: {}{}\n", rows,
             version.is_null() ? std::string(" (no change recorded)") : fmt::format(" (version {})", version.as_int64()));
  if (c.timer) {
    fmt::print("Run Time: {:.6f}s\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return 0;
}

int cmd_query(const GlobalOptions& g, const SqlCommand& c) {
  auto t = api_target(g);
  if (!t) return cli_fail(t.error().message);
  auto start = std::chrono::steady_clock::now();
  // Rows are printed as the NDJSON stream brings them: a large result
  // shows at once and never sits whole in memory.
  std::string partial;  // a line split between two reads
  std::optional<std::string> failed;
  auto print_line = [&](std::string_view line) {
    if (line.empty() || failed) return;
    boost::system::error_code ec;
    auto ev = json::parse(line, ec);
    if (ec || !ev.is_object()) {
      failed = fmt::format("unexpected line in the answer: {}", line.substr(0, 200));
      return;
    }
    const auto& o = ev.as_object();
    if (const auto* cols = o.if_contains("columns"); cols && c.columns && cols->is_array()) {
      std::vector<std::string> names;
      for (const auto& n : cols->as_array()) names.push_back(cell_text(n));
      fmt::print("{}\n", fmt::join(names, "|"));
    } else if (const auto* row = o.if_contains("row")) {
      const auto* pair = row->if_array();
      if (pair == nullptr || pair->size() != 2 || !(*pair)[1].is_array()) {
        failed = fmt::format("unexpected row in the answer: {}", line.substr(0, 200));
        return;
      }
      std::vector<std::string> cells;
      for (const auto& v : (*pair)[1].as_array()) cells.push_back(cell_text(v));
      fmt::print("{}\n", fmt::join(cells, "|"));
    } else if (const auto* err = o.if_contains("error")) {
      failed = cell_text(*err);
    }
  };
  auto on_body = [&](std::string_view piece) {
    for (auto nl = piece.find('\n'); nl != std::string_view::npos; nl = piece.find('\n')) {
      if (partial.empty()) {
        print_line(piece.substr(0, nl));
      } else {
        partial.append(piece.substr(0, nl));
        print_line(partial);
        partial.clear();
      }
      piece.remove_prefix(nl + 1);
    }
    partial.append(piece);
  };
  api::HttpConnection conn(t->addr, client_wait(c));
  auto r = conn.request("POST", target_path("/v1/queries", c), json::serialize(statement_json(c)), t->headers,
                        on_body);
  if (r.status == 0) return cli_fail(fmt::format("no answer from the agent's API at {}: {}", t->addr, r.error));
  if (r.status != 200) return cli_fail(error_of(r));
  print_line(partial);
  if (failed) return cli_fail(*failed);
  if (c.timer) {
    fmt::print("Run Time: {:.6f}s\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return 0;
}

int cmd_db_sample_changes(const GlobalOptions& g, const std::string& out_dir, std::int64_t limit) {
  auto src = db_path(g);
  if (!src) return cli_fail(src.error().message);
  std::error_code ec;
  if (!fs::exists(*src, ec)) return cli_fail(fmt::format("database {} does not exist", *src));
  fs::create_directories(out_dir, ec);
  if (ec) return cli_fail(fmt::format("cannot create {}: {}", out_dir, ec.message()));
  auto db = core::Db::open(*src, core::Db::Mode::read_only);
  if (!db) return cli_fail(db.error().message);
  (void)db->exec("PRAGMA busy_timeout = 30000");
  // One snapshot for the whole read, so every version comes out whole.
  if (auto r = db->exec("BEGIN"); !r) return cli_fail(r.error().message);
  auto stmt = db->prepare(
      "WITH recent AS (SELECT DISTINCT site_id, db_version FROM crsql_changes ORDER BY db_version DESC LIMIT ?) "
      "SELECT c.\"table\", c.pk, c.cid, c.val, c.col_version, c.db_version, c.site_id, c.cl, c.seq, c.ts "
      "FROM crsql_changes AS c JOIN recent AS r ON r.site_id = c.site_id AND r.db_version = c.db_version "
      "ORDER BY c.site_id, c.db_version, c.seq");
  if (!stmt) return cli_fail(fmt::format("{}: {}", *src, stmt.error().message));
  (void)stmt->bind(1, limit);
  std::vector<crdt::Changeset> versions;
  for (;;) {
    auto row = stmt->step();
    if (!row) return cli_fail(fmt::format("reading {}: {}", *src, row.error().message));
    if (!*row) break;
    crdt::Change c = crdt::change_from_row(stmt->get());
    if (versions.empty() || versions.back().actor != c.site_id || versions.back().version != c.db_version) {
      crdt::Changeset cs;
      cs.actor = c.site_id;
      cs.version = c.db_version;
      cs.ts = c.ts;
      versions.push_back(std::move(cs));
    }
    versions.back().last_seq = c.seq;
    versions.back().changes.push_back(std::move(c));
  }
  std::size_t bytes = 0;
  for (auto& cs : versions) {
    cs.seqs = crdt::Range{0, cs.last_seq};
    auto frame = io::wire::encode(io::wire::ChangesetFrame{.changeset = cs});
    auto file = fs::path(out_dir) / fmt::format("{}-{}.frame", crdt::to_hex(cs.actor), cs.version);
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(frame.data()), static_cast<std::streamsize>(frame.size()));
    if (!out) return cli_fail(fmt::format("cannot write {}", file.string()));
    bytes += frame.size();
  }
  fmt::print("wrote {} versions ({} bytes) to {}; train a dictionary with: zstd --train {}/* -o DICT\n",
             versions.size(), bytes, out_dir, out_dir);
  return 0;
}

int cmd_backup(const GlobalOptions& g, const std::string& path) {
  auto src = db_path(g);
  if (!src) return cli_fail(src.error().message);
  std::error_code ec;
  if (fs::exists(path, ec)) return cli_fail(fmt::format("{} already exists; refusing to overwrite it", path));
  if (!fs::exists(*src, ec)) return cli_fail(fmt::format("database {} does not exist", *src));
  {
    // VACUUM INTO reads one consistent snapshot, even while the agent writes.
    auto db = core::Db::open(*src, core::Db::Mode::read_only);
    if (!db) return cli_fail(db.error().message);
    (void)db->exec("PRAGMA busy_timeout = 30000");
    auto stmt = db->prepare("VACUUM INTO ?");
    if (!stmt) return cli_fail(stmt.error().message);
    (void)stmt->bind(1, path);
    if (auto r = stmt->run(); !r) return cli_fail(fmt::format("backup of {} failed: {}", *src, r.error().message));
  }
  auto copy = core::Db::open(path, core::Db::Mode::read_write);
  if (!copy) return cli_fail(copy.error().message);
  // The members this node saw are its own view; a restored node finds its
  // peers through bootstrap like any new one.
  std::vector<std::string> clear = {"__patina_members"};
  if (auto r = crdt::BackupCleaner::make_node_neutral(copy->get(), clear); !r) {
    fs::remove(path, ec);
    return cli_fail(fmt::format("cleaning the backup failed: {}", r.error().message));
  }
  (void)copy->exec("PRAGMA journal_mode = WAL; PRAGMA wal_checkpoint(TRUNCATE)");
  fmt::print("backup of {} written to {} (node-neutral: restores get their own identity)\n", *src, path);
  return 0;
}

int cmd_restore(const GlobalOptions& g, const RestoreOptions& o) {
  auto rc = resolve_config(g);
  if (!rc) return cli_fail(rc.error().message);
  const auto& cfg = rc->config;
  std::error_code ec;
  if (!fs::exists(o.path, ec)) return cli_fail(fmt::format("snapshot {} does not exist", o.path));
  if (!o.force && api::AdminClient::is_answering(cfg.admin.uds_path)) {
    return cli_fail(fmt::format("an agent answers on {}: stop it first (or pass --force to restore under it)",
                                cfg.admin.uds_path));
  }
  std::optional<crdt::SiteId> identity;
  if (o.actor_id) {
    std::string hex;
    for (char ch : *o.actor_id) {
      if (ch != '-') hex += ch;
    }
    crdt::SiteId id{};
    if (!crdt::site_id_from_hex(hex, id)) return cli_fail(fmt::format("'{}' is not an actor id", *o.actor_id));
    identity = id;
  } else if (o.self_actor_id) {
    auto live = core::Db::open(cfg.db.path, core::Db::Mode::read_only);
    if (!live) return cli_fail(fmt::format("--self-actor-id: {}", live.error().message));
    auto v = live->query_value("SELECT site_id FROM __patina_sites WHERE ordinal = 0");
    if (!v || !*v || !std::holds_alternative<core::Blob>(**v) || std::get<core::Blob>(**v).bytes.size() != 16) {
      return cli_fail(fmt::format("--self-actor-id: {} has no identity to keep", cfg.db.path));
    }
    crdt::SiteId id{};
    std::copy_n(std::get<core::Blob>(**v).bytes.begin(), 16, id.begin());
    identity = id;
  }
  // Work on a copy: the snapshot itself stays untouched.
  std::string staged = cfg.db.path + ".restore";
  fs::create_directories(fs::path(cfg.db.path).parent_path(), ec);
  fs::remove(staged, ec);
  fs::copy_file(o.path, staged, ec);
  if (ec) return cli_fail(fmt::format("cannot copy {} to {}: {}", o.path, staged, ec.message()));
  {
    auto snap = core::Db::open(staged, core::Db::Mode::read_write);
    if (!snap) return cli_fail(snap.error().message);
    (void)snap->exec("PRAGMA journal_mode = DELETE");
    Result<void> ok;
    if (identity) {
      auto r = crdt::BackupCleaner::adopt_identity(snap->get(), *identity);
      if (!r) return cli_fail(fmt::format("adopting the identity failed: {}", r.error().message));
    } else {
      auto r = crdt::BackupCleaner::make_node_neutral(snap->get());
      if (!r) return cli_fail(fmt::format("cleaning the snapshot failed: {}", r.error().message));
    }
  }
  fs::remove_all(cfg.db.subscriptions_path, ec);
  // The online backup API copies page by page under SQLite's own locks on the
  // live database, so a reader never sees a half-written file.
  auto src = core::Db::open(staged, core::Db::Mode::read_only);
  auto dst = core::Db::open(cfg.db.path, core::Db::Mode::read_write);
  if (!src || !dst) return cli_fail(fmt::format("cannot open {} for restore", cfg.db.path));
  (void)dst->exec("PRAGMA busy_timeout = 30000");
  sqlite3_backup* b = sqlite3_backup_init(dst->get(), "main", src->get(), "main");
  if (b == nullptr) return cli_fail(fmt::format("restore failed: {}", sqlite3_errmsg(dst->get())));
  int rc_step = sqlite3_backup_step(b, -1);
  sqlite3_backup_finish(b);
  if (rc_step != SQLITE_DONE) return cli_fail(fmt::format("restore failed: {}", sqlite3_errstr(rc_step)));
  (void)dst->exec("PRAGMA journal_mode = WAL; PRAGMA wal_checkpoint(TRUNCATE)");
  fs::remove(staged, ec);
  fmt::print("restored {} into {}{}\n", o.path, cfg.db.path,
             identity ? fmt::format(" keeping actor id {}", crdt::to_hex(*identity))
                      : std::string(" (the node gets a new identity on start)"));
  return 0;
}

int cmd_db_lock(const GlobalOptions& g, const std::vector<std::string>& command) {
  auto path = db_path(g);
  if (!path) return cli_fail(path.error().message);
  auto db = core::Db::open(*path, core::Db::Mode::read_write);
  if (!db) return cli_fail(db.error().message);
  (void)db->exec("PRAGMA busy_timeout = 30000");
  if (auto r = db->exec("BEGIN EXCLUSIVE"); !r) return cli_fail(fmt::format("cannot lock {}: {}", *path, r.error().message));
  std::string shell;
  for (const auto& part : command) shell += (shell.empty() ? "" : " ") + part;
  int status = std::system(shell.c_str());
  (void)db->exec("ROLLBACK");
  if (status == -1) return cli_fail(fmt::format("cannot run '{}'", shell));
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace patina::tools
