#include "api/subscriptions.hpp"

#include <algorithm>
#include <deque>
#include <filesystem>
#include <random>

#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>
#include <fmt/format.h>

#include "api/sub_plan.hpp"
#include "api/sub_state.hpp"
#include "core/log.hpp"
#include "core/runtime.hpp"

namespace patina::api {

namespace net = boost::asio;
namespace json = boost::json;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string query_hash(std::string_view sql) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : sql) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return fmt::format("{:016x}", h);
}

std::string new_uuid() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  std::uint64_t a = rng();
  std::uint64_t b = rng();
  a = (a & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;  // version 4
  b = (b & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;  // variant 1
  return fmt::format("{:08x}-{:04x}-{:04x}-{:04x}-{:012x}", a >> 32, (a >> 16) & 0xffff, a & 0xffff, b >> 48,
                     b & 0xffffffffffffULL);
}

namespace {

std::string simple(std::string id) {
  id.erase(std::remove(id.begin(), id.end(), '-'), id.end());
  return id;
}

std::string error_line(std::string_view msg) { return json::serialize(json::value{{"error", msg}}); }

// The replicated tables, read from the database itself (a table with a
// clock table), so a job needs nothing from the writer's structures.
Result<std::set<std::string>> replicated_tables(core::Db& db) {
  auto st = db.prepare(
      "SELECT s.name FROM sqlite_schema s WHERE s.type = 'table' AND EXISTS "
      "(SELECT 1 FROM sqlite_schema c WHERE c.type = 'table' AND c.name = s.name || '__crsql_clock')");
  if (!st) return tl::unexpected(st.error());
  std::set<std::string> out;
  for (;;) {
    auto row = st->step();
    if (!row) return tl::unexpected(row.error());
    if (!*row) break;
    out.insert(st->column_text(0));
  }
  return out;
}

std::string columns_line(const SubPlan& plan) {
  json::array cols;
  for (const auto& c : plan.columns()) cols.emplace_back(c);
  return json::serialize(json::value{{"columns", std::move(cols)}});
}

struct Snapshot {
  std::shared_ptr<const std::vector<std::string>> rows;
  double seconds = 0;  // how long the query or the copy took
  std::int64_t last_change_id = 0;
  std::size_t size = 0;
};

struct Evaluated {
  std::vector<std::string> events;
  std::int64_t first_id = 0;
  std::size_t rows = 0;
  double seconds = 0;
};

Evaluated to_events(std::vector<SubChange> changes, std::size_t rows, Clock::time_point t0) {
  Evaluated out;
  out.rows = rows;
  out.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  if (!changes.empty()) out.first_id = changes.front().change_id;
  out.events.reserve(changes.size());
  for (const auto& c : changes) out.events.push_back(c.event());
  return out;
}

}  // namespace

struct Subscriptions::Waiter {
  explicit Waiter(net::any_io_executor ex) : timer(std::move(ex)) {}
  std::optional<std::int64_t> from;
  bool skip_rows = false;
  bool done = false;
  Result<SubscriptionStream> result = make_error(Errc::internal, "not attached");
  net::steady_timer timer;
};

struct Subscriptions::Sub {
  explicit Sub(net::any_io_executor ex) : wake(std::move(ex)) {}
  std::string id;
  std::string hash;
  std::string sql;
  std::optional<std::string> restore_path;
  std::shared_ptr<SubState> state;  // touched only by the current job
  std::set<std::string> watched;    // empty until ready: then every table counts
  std::string columns;
  SubPlan::Mode mode = SubPlan::Mode::full;
  std::string full_reason;
  std::map<std::string, std::string> statements;  // table -> restricted SQL, for `subs info`
  bool ready = false;
  bool stopped = false;
  bool loop_running = false;
  ChangedRows pending;
  std::size_t pending_count = 0;
  bool overflow = false;
  std::deque<std::pair<std::int64_t, std::string>> log;
  std::int64_t last_id = 0;
  std::size_t rows = 0;
  std::vector<std::shared_ptr<EventQueue>> clients;
  std::vector<std::shared_ptr<Waiter>> waiting;
  net::steady_timer wake;
  Clock::time_point idle_since = Clock::now();
  std::uint64_t evaluations = 0;
  double busy_seconds = 0;
  Clock::time_point created = Clock::now();
};

Subscriptions::Subscriptions(net::any_io_executor ex, core::ReaderPool& matchers, core::Metrics& metrics,
                             SubscriptionOptions options)
    : ex_(std::move(ex)),
      matchers_(matchers),
      metrics_(metrics),
      options_(std::move(options)),
      count_(metrics.gauge("patina_subscriptions", "Subscriptions on this node")),
      clients_(metrics.gauge("patina_subscription_clients", "Clients attached to subscriptions")),
      pending_(metrics.gauge("patina_subscription_pending_pks",
                             "Changed primary keys queued for subscriptions to re-evaluate")),
      events_(metrics.counter("patina_subscription_events_total", "Change events produced by subscriptions")),
      lagged_(metrics.counter("patina_subscription_clients_lagged_total",
                              "Subscription clients dropped because they fell behind")),
      match_seconds_(metrics.histogram("patina_subscription_match_seconds",
                                       "Time to re-evaluate a subscription for a batch of changes")) {}

Subscriptions::~Subscriptions() = default;

// Attached clients, counted per subscription (O(subscriptions), not
// O(clients): it runs on every attach). Clients that left are pruned on
// the next publish or sweep; prune_ended() drops them at once.
std::size_t Subscriptions::streams() const {
  std::size_t n = 0;
  for (const auto& [id, sub] : by_id_) n += sub->clients.size();
  return n;
}

void Subscriptions::prune_ended(Sub& sub) {
  auto ended = std::remove_if(sub.clients.begin(), sub.clients.end(),
                              [](const std::shared_ptr<EventQueue>& c) { return c->ended(); });
  if (ended == sub.clients.end()) return;
  sub.clients.erase(ended, sub.clients.end());
  if (sub.clients.empty()) sub.idle_since = Clock::now();
}

std::shared_ptr<Subscriptions::Sub> Subscriptions::register_sub(std::string id, std::string sql,
                                                                std::optional<std::string> restore_path,
                                                                std::shared_ptr<SubState> state) {
  auto sub = std::make_shared<Sub>(ex_);
  sub->state = std::move(state);
  sub->id = std::move(id);
  sub->sql = std::move(sql);
  sub->hash = query_hash(sub->sql);
  sub->restore_path = std::move(restore_path);
  by_id_[sub->id] = sub;
  by_sql_[sub->sql] = sub;
  count_.set(static_cast<double>(by_id_.size()));
  sub->loop_running = true;
  core::spawn(ex_, "subscription", loop(sub));
  if (!sweeping_) {
    sweeping_ = true;
    core::spawn(ex_, "subscription-sweep", sweep());
  }
  return sub;
}

void Subscriptions::discover() {
  auto log = core::log::get("subs");
  std::error_code ec;
  if (options_.path.empty() || !fs::is_directory(options_.path, ec)) return;
  for (const auto& entry : fs::directory_iterator(options_.path, ec)) {
    auto file = entry.path() / "sub.sqlite";
    std::map<std::string, std::string> meta;
    if (auto db = fs::exists(file, ec) ? core::Db::open(file.string(), core::Db::Mode::read_only)
                                       : Result<core::Db>(make_error(Errc::not_found, "no file"));
        db) {
      if (auto st = db->prepare("SELECT key, value FROM meta"); st) {
        while (true) {
          auto row = st->step();
          if (!row || !*row) break;
          meta[st->column_text(0)] = st->column_text(1);
        }
      }
    }
    if (meta["state"] != "completed" || meta["id"].empty() || meta["sql"].empty() || by_sql_.count(meta["sql"])) {
      log->info("removing subscription directory {}: not saved by a graceful shutdown", entry.path().string());
      fs::remove_all(entry.path(), ec);
      continue;
    }
    log->info("restoring subscription {} ({})", meta["id"], meta["sql"]);
    register_sub(meta["id"], meta["sql"], file.string(), nullptr);
  }
}

net::awaitable<Result<SubscriptionStream>> Subscriptions::subscribe(Statement st, std::optional<std::int64_t> from,
                                                                   bool skip_rows) {
  if (stopping_) co_return make_error(Errc::shutting_down, "the node is shutting down");
  auto job = [st = std::move(st)](core::Db& db) -> Result<SubPlan> {
    auto tables = replicated_tables(db);
    if (!tables) return tl::unexpected(tables.error());
    return SubPlan::make(db, st, *tables);
  };
  auto plan = co_await matchers_.run<SubPlan>("subscription plan", std::move(job));
  if (!plan) co_return tl::unexpected(plan.error());
  if (auto it = by_sql_.find(plan->sql()); it != by_sql_.end()) {
    auto found = it->second;
    co_return co_await join(found, from, skip_rows);
  }
  if (from) {
    co_return make_error(Errc::invalid_argument,
                         "a `from` query param was supplied, but no existing subscription found");
  }
  if (by_id_.size() >= options_.subscriptions_max) {
    co_return make_error(Errc::busy, fmt::format("this node already has {} subscriptions, its limit "
                                                 "(api.subscriptions_max)",
                                                 by_id_.size()));
  }
  std::string sql = plan->sql();
  auto sub = register_sub(new_uuid(), std::move(sql), std::nullopt, std::make_shared<SubState>(std::move(*plan)));
  co_return co_await join(sub, std::nullopt, skip_rows);
}

net::awaitable<Result<SubscriptionStream>> Subscriptions::attach(std::string id, std::optional<std::int64_t> from,
                                                                bool skip_rows) {
  if (stopping_) co_return make_error(Errc::shutting_down, "the node is shutting down");
  auto it = by_id_.find(id);
  if (it == by_id_.end()) co_return make_error(Errc::not_found, fmt::format("could not find subscription with id {}", id));
  auto found = it->second;
  co_return co_await join(found, from, skip_rows);
}

net::awaitable<Result<SubscriptionStream>> Subscriptions::join(std::shared_ptr<Sub> sub,
                                                              std::optional<std::int64_t> from, bool skip_rows) {
  if (streams() >= options_.streams_max) {
    for (auto& [id, other] : by_id_) prune_ended(*other);
  }
  if (streams() >= options_.streams_max) {
    co_return make_error(Errc::busy, fmt::format("this node already serves {} subscription streams, its limit "
                                                 "(api.subscription_streams_max)",
                                                 options_.streams_max));
  }
  auto w = std::make_shared<Waiter>(ex_);
  w->from = from;
  w->skip_rows = skip_rows;
  sub->waiting.push_back(w);
  sub->wake.cancel();
  while (!w->done) {
    w->timer.expires_at(Clock::time_point::max());
    co_await w->timer.async_wait(core::use_nothrow);
  }
  co_return std::move(w->result);
}

void Subscriptions::rows_changed(const std::map<std::string, crdt::PkSet>& changed) {
  if (changed.empty() || stopping_) return;
  std::size_t total = 0;
  for (auto& [id, sub] : by_id_) {
    if (sub->stopped) continue;
    bool touched = false;
    for (const auto& [table, pks] : changed) {
      if (sub->ready && sub->watched.count(table) == 0) continue;
      touched = true;
      if (sub->overflow) continue;
      auto& list = sub->pending[table];
      list.insert(list.end(), pks.begin(), pks.end());
      sub->pending_count += pks.size();
    }
    if (!touched) continue;
    if (sub->pending_count > options_.pending_max) {
      // Too many to re-evaluate key by key: one full refresh instead, and
      // the queue stays bounded.
      sub->overflow = true;
      sub->pending.clear();
      sub->pending_count = 0;
    }
    sub->wake.cancel();
  }
  for (auto& [id, sub] : by_id_) total += sub->pending_count;
  pending_.set(static_cast<double>(total));
}

void Subscriptions::publish(Sub& sub, std::vector<std::string> events, std::int64_t first_id) {
  std::int64_t id = first_id;
  for (auto& line : events) {
    sub.log.emplace_back(id, line);
    for (auto& c : sub.clients) {
      if (!c->ended()) {
        bool was_lagged = c->lagged();
        c->push(line, id);
        if (!was_lagged && c->lagged()) lagged_.inc();
      }
    }
    sub.last_id = id++;
  }
  while (sub.log.size() > options_.log_retained) sub.log.pop_front();
  events_.inc(events.size());
  prune_ended(sub);
}

void Subscriptions::remove(const std::shared_ptr<Sub>& sub, const std::string& why, bool delete_files) {
  core::log::get("subs")->info("removing subscription {}: {}", sub->id, why);
  sub->stopped = true;
  sub->wake.cancel();
  for (auto& c : sub->clients) c->fail(error_line(fmt::format("subscription {} was removed: {}", sub->id, why)));
  sub->clients.clear();
  for (auto& w : sub->waiting) {
    w->result = make_error(Errc::internal, fmt::format("subscription {} was removed: {}", sub->id, why));
    w->done = true;
    w->timer.cancel();
  }
  sub->waiting.clear();
  by_id_.erase(sub->id);
  if (auto it = by_sql_.find(sub->sql); it != by_sql_.end() && it->second == sub) by_sql_.erase(it);
  count_.set(static_cast<double>(by_id_.size()));
  if (delete_files && !options_.path.empty()) {
    std::error_code ec;
    fs::remove_all(fs::path(options_.path) / simple(sub->id), ec);
  }
}

net::awaitable<void> Subscriptions::loop(std::shared_ptr<Sub> sub) {
  auto log = core::log::get("subs");
  std::optional<Snapshot> fresh;  // a snapshot no event has outdated yet
  struct Running {
    Sub& s;
    ~Running() { s.loop_running = false; }
  } running{*sub};
  while (!sub->stopped && !stopping_) {
    if (!sub->ready) {
      // First run of the query, or restore of a saved subscription.
      struct Init {
        std::shared_ptr<SubState> state;
        Snapshot snapshot;
        std::vector<std::pair<std::int64_t, std::string>> log;
        Evaluated missed;
      };
      auto state = sub->state;
      std::string sql = sub->sql;
      auto restore = sub->restore_path;
      auto job = [state, sql, restore](core::Db& db) mutable -> Result<Init> {
        auto t0 = Clock::now();
        Init out;
        if (restore) {
          auto tables = replicated_tables(db);
          if (!tables) return tl::unexpected(tables.error());
          Statement st;
          st.sql = sql;
          auto plan = SubPlan::make(db, st, *tables);
          if (!plan) return tl::unexpected(plan.error());
          state = std::make_shared<SubState>(std::move(*plan));
          auto saved = state->load(*restore);
          std::error_code ec;
          fs::remove(*restore, ec);  // a crash from now on must not restore stale rows
          if (!saved) return tl::unexpected(saved.error());
          out.log = std::move(saved->log);
          // Whatever changed while the node was down.
          auto missed = state->refresh(db);
          if (!missed) return tl::unexpected(missed.error());
          out.missed = to_events(std::move(*missed), state->size(), t0);
        } else {
          if (auto r = state->initialize(db); !r) return tl::unexpected(r.error());
          out.snapshot.rows = std::make_shared<const std::vector<std::string>>(state->snapshot());
          out.snapshot.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
        }
        out.snapshot.last_change_id = state->last_change_id();
        out.snapshot.size = state->size();
        out.state = std::move(state);
        return out;
      };
      auto r = co_await matchers_.run<Init>("subscription query", std::move(job), options_.query_timeout);
      if (sub->stopped) co_return;
      if (!r) {
        log->warn("subscription {} failed to start: {}", sub->id, r.error().message);
        for (auto& w : sub->waiting) {
          w->result = r.error().code == Errc::sql ? make_error(Errc::invalid_argument, r.error().message)
                                                  : tl::unexpected(r.error());
          w->done = true;
          w->timer.cancel();
        }
        sub->waiting.clear();
        remove(sub, fmt::format("its query failed: {}", r.error().message), true);
        co_return;
      }
      sub->state = r->state;
      const auto& plan = sub->state->plan();
      sub->watched = plan.watched();
      sub->columns = columns_line(plan);
      sub->mode = plan.mode();
      sub->full_reason = plan.full_reason();
      for (std::size_t i = 0; i < plan.tables().size(); ++i) {
        sub->statements[plan.tables()[i].table] = plan.restricted_sql(i, 1);
      }
      if (plan.mode() == SubPlan::Mode::full) {
        for (const auto& t : plan.watched()) sub->statements[t] = plan.full_sql();
      }
      for (auto it = sub->pending.begin(); it != sub->pending.end();) {
        if (sub->watched.count(it->first) == 0) {
          sub->pending_count -= it->second.size();
          it = sub->pending.erase(it);
        } else {
          ++it;
        }
      }
      sub->rows = r->snapshot.size;
      if (sub->restore_path) {
        for (auto& e : r->log) sub->log.push_back(std::move(e));
        sub->last_id = r->snapshot.last_change_id - static_cast<std::int64_t>(r->missed.events.size());
        if (!r->missed.events.empty()) {
          log->info("subscription {}: {} changes while the node was down", sub->id, r->missed.events.size());
          publish(*sub, std::move(r->missed.events), r->missed.first_id);
        }
        sub->last_id = r->snapshot.last_change_id;
        sub->restore_path.reset();
      } else {
        fresh = std::move(r->snapshot);
        log->info("subscription {} created ({} rows, {} mode{}): {}", sub->id, sub->rows,
                  sub->mode == SubPlan::Mode::incremental ? "incremental" : "full",
                  sub->full_reason.empty() ? "" : ": " + sub->full_reason, sub->sql);
      }
      sub->ready = true;
      continue;
    }
    if (!sub->waiting.empty()) {
      auto waiting = std::move(sub->waiting);
      sub->waiting.clear();
      bool need_snapshot = std::any_of(waiting.begin(), waiting.end(), [](const std::shared_ptr<Waiter>& w) {
        return !(w->from && *w->from > 0) && !w->skip_rows;
      });
      if (need_snapshot && (!fresh || fresh->last_change_id != sub->last_id)) {
        auto state = sub->state;
        auto job = [state](core::Db&) -> Result<Snapshot> {
          auto t0 = Clock::now();
          Snapshot s;
          s.rows = std::make_shared<const std::vector<std::string>>(state->snapshot());
          s.last_change_id = state->last_change_id();
          s.size = state->size();
          s.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
          return s;
        };
        auto r = co_await matchers_.run<Snapshot>("subscription snapshot", std::move(job));
        if (sub->stopped) co_return;
        if (!r) {
          for (auto& w : waiting) {
            w->result = tl::unexpected(r.error());
            w->done = true;
            w->timer.cancel();
          }
          continue;
        }
        fresh = std::move(*r);
      }
      for (auto& w : waiting) {
        SubscriptionStream s;
        s.id = sub->id;
        s.hash = sub->hash;
        s.events = std::make_shared<EventQueue>(ex_, options_.client_buffer);
        std::string id = sub->id;
        s.events->on_lag([id](std::int64_t last) {
          return error_line(fmt::format("this client fell behind the subscription's changes and was dropped; "
                                        "resume with GET /v1/subscriptions/{}?from={}",
                                        id, last));
        });
        if (w->from && *w->from > 0) {
          std::int64_t from = *w->from;
          std::int64_t oldest = sub->log.empty() ? sub->last_id + 1 : sub->log.front().first;
          if (from + 1 < oldest && from < sub->last_id) {
            s.head.push_back(error_line(
                fmt::format("subscription already deleted older changes, min change id: {}", oldest)));
            s.events->close();
          } else {
            for (const auto& [cid, line] : sub->log) {
              if (cid > from) s.head.push_back(line);
            }
          }
        } else if (!w->skip_rows) {
          s.head.push_back(sub->columns);
          s.rows = fresh->rows;
          s.tail = (json::serialize(
              json::value{{"eoq", {{"time", fresh->seconds}, {"change_id", fresh->last_change_id}}}}));
        }
        if (!s.events->ended()) sub->clients.push_back(s.events);
        clients_.set(static_cast<double>(streams()));
        w->result = std::move(s);
        w->done = true;
        w->timer.cancel();
      }
      continue;
    }
    if (sub->pending_count > 0 || sub->overflow) {
      auto pending = std::move(sub->pending);
      sub->pending.clear();
      sub->pending_count = 0;
      bool refresh = sub->overflow;
      sub->overflow = false;
      auto state = sub->state;
      // A snapshot is outdated by the events to come; letting the job own
      // it frees a million lines on the matcher thread, not the reactor.
      std::shared_ptr<const std::vector<std::string>> stale;
      if (fresh) stale = std::move(fresh->rows);
      fresh.reset();
      auto job = [state, pending = std::move(pending), refresh, stale](core::Db& db) -> Result<Evaluated> {
        auto t0 = Clock::now();
        auto changes = refresh ? state->refresh(db) : state->match(db, pending);
        if (!changes) return tl::unexpected(changes.error());
        return to_events(std::move(*changes), state->size(), t0);
      };
      auto r = co_await matchers_.run<Evaluated>("subscription match", std::move(job), options_.query_timeout);
      if (sub->stopped) co_return;
      if (!r) {
        // The state may be half-updated: the subscription cannot go on.
        remove(sub, fmt::format("re-evaluating changed rows failed: {}", r.error().message), true);
        co_return;
      }
      ++sub->evaluations;
      sub->busy_seconds += r->seconds;
      sub->rows = r->rows;
      match_seconds_.observe(r->seconds);
      if (!r->events.empty()) publish(*sub, std::move(r->events), r->first_id);
      continue;
    }
    sub->wake.expires_at(Clock::time_point::max());
    co_await sub->wake.async_wait(core::use_nothrow);
  }
}

net::awaitable<void> Subscriptions::sweep() {
  net::steady_timer timer(ex_);
  while (!stopping_) {
    timer.expires_after(std::chrono::seconds(std::min<std::int64_t>(60, std::max<std::int64_t>(1, options_.idle_ttl.count() / 4))));
    co_await timer.async_wait(core::use_nothrow);
    if (stopping_) break;
    std::vector<std::shared_ptr<Sub>> idle;
    for (auto& [id, sub] : by_id_) {
      prune_ended(*sub);
      if (sub->ready && sub->clients.empty() && sub->waiting.empty() && Clock::now() - sub->idle_since > options_.idle_ttl) {
        idle.push_back(sub);
      }
    }
    for (auto& sub : idle) remove(sub, "no client for the idle timeout", true);
    clients_.set(static_cast<double>(streams()));
  }
}

json::value Subscriptions::list() const {
  json::array out;
  for (const auto& [id, sub] : by_id_) {
    double age = std::chrono::duration<double>(Clock::now() - sub->created).count();
    json::object o;
    o["id"] = sub->id;
    o["hash"] = sub->hash;
    o["sql"] = sub->sql;
    o["ms_per_sec_cost"] = age > 0 ? sub->busy_seconds * 1000.0 / age : 0.0;
    std::size_t clients = 0;
    for (const auto& c : sub->clients) clients += c->ended() ? 0 : 1;
    o["clients"] = clients;
    out.push_back(std::move(o));
  }
  return out;
}

Result<json::value> Subscriptions::info(std::optional<std::string> id, std::optional<std::string> hash) const {
  for (const auto& [sid, sub] : by_id_) {
    if ((id && *id == sub->id) || (hash && *hash == sub->hash)) {
      double age = std::chrono::duration<double>(Clock::now() - sub->created).count();
      json::object o;
      o["id"] = sub->id;
      o["hash"] = sub->hash;
      o["path"] = (fs::path(options_.path) / simple(sub->id) / "sub.sqlite").string();
      o["last_change_id"] = sub->last_id;
      o["original_query"] = sub->sql;
      json::object statements;
      for (const auto& [t, s] : sub->statements) statements[t] = s;
      o["statements"] = std::move(statements);
      o["ms_per_sec_cost"] = age > 0 ? sub->busy_seconds * 1000.0 / age : 0.0;
      o["mode"] = sub->mode == SubPlan::Mode::incremental ? "incremental" : "full";
      if (!sub->full_reason.empty()) o["full_reason"] = sub->full_reason;
      o["rows"] = sub->rows;
      o["evaluations"] = sub->evaluations;
      std::size_t clients = 0;
      for (const auto& c : sub->clients) clients += c->ended() ? 0 : 1;
      o["clients"] = clients;
      o["retained_changes"] = sub->log.size();
      o["min_change_id"] = sub->log.empty() ? sub->last_id : sub->log.front().first;
      return json::value(std::move(o));
    }
  }
  return make_error(Errc::not_found, "no such subscription");
}

net::awaitable<void> Subscriptions::shutdown() {
  if (stopping_) co_return;
  stopping_ = true;
  auto log = core::log::get("subs");
  for (auto& [id, sub] : by_id_) {
    sub->wake.cancel();
    for (auto& c : sub->clients) c->fail(error_line("the node is shutting down; resume with from=<last change id>"));
    for (auto& w : sub->waiting) {
      w->result = make_error(Errc::shutting_down, "the node is shutting down");
      w->done = true;
      w->timer.cancel();
    }
    sub->waiting.clear();
  }
  // Each loop finishes its current job (bounded by the query timeout).
  net::steady_timer timer(ex_);
  for (int i = 0; i < 6000; ++i) {
    bool busy = std::any_of(by_id_.begin(), by_id_.end(), [](const auto& kv) { return kv.second->loop_running; });
    if (!busy) break;
    timer.expires_after(std::chrono::milliseconds(10));
    co_await timer.async_wait(core::use_nothrow);
  }
  std::size_t saved = 0;
  for (auto& [id, sub] : by_id_) {
    if (!sub->ready || sub->loop_running || options_.path.empty()) continue;
    auto dir = fs::path(options_.path) / simple(sub->id);
    SubState::Saved data;
    data.meta = {{"id", sub->id}, {"hash", sub->hash}, {"state", "completed"}};
    data.log.assign(sub->log.begin(), sub->log.end());
    auto state = sub->state;
    auto job = [state, dir, data = std::move(data)](core::Db&) -> Result<int> {
      std::error_code ec;
      fs::create_directories(dir, ec);
      if (ec) return make_error(Errc::io, fmt::format("create {}: {}", dir.string(), ec.message()));
      if (auto r = state->save((dir / "sub.sqlite").string(), data); !r) return tl::unexpected(r.error());
      return 0;
    };
    auto r = co_await matchers_.run<int>("save subscription", std::move(job));
    if (!r) log->warn("cannot save subscription {}: {}", sub->id, r.error().message);
    else ++saved;
  }
  if (!by_id_.empty()) log->info("saved {} of {} subscriptions under {}", saved, by_id_.size(), options_.path);
}

}  // namespace patina::api
