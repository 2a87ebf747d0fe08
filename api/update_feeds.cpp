#include "api/update_feeds.hpp"


#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>
#include <fmt/format.h>

#include "api/sub_plan.hpp"
#include "api/sub_state.hpp"
#include "core/log.hpp"
#include "core/runtime.hpp"
#include "crdt/packed_pk.hpp"

namespace patina::api {

namespace net = boost::asio;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto idle_feed_ttl = std::chrono::seconds(30);


json::value crdt_to_json(const crdt::Value& v) {
  return std::visit(
      [](const auto& x) -> json::value {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, crdt::Null>) return nullptr;
        else if constexpr (std::is_same_v<T, crdt::Bytes>) {
          json::array a;
          for (auto b : x) a.emplace_back(b);
          return a;
        } else {
          return json::value(x);
        }
      },
      v);
}


}  // namespace

struct UpdateFeeds::Feed {
  explicit Feed(net::any_io_executor ex) : wake(std::move(ex)) {}
  std::string id;
  std::string table;
  std::string exists_sql;  // SELECT 1 FROM t WHERE pk1 = ? AND ...
  std::size_t pk_width = 0;
  std::vector<std::shared_ptr<EventQueue>> clients;
  crdt::PkSet pending;
  bool overflowed = false;
  net::steady_timer wake;
};

UpdateFeeds::UpdateFeeds(net::any_io_executor ex, core::ReaderPool& matchers, core::Metrics& metrics,
                         std::size_t client_buffer, std::size_t pending_max)
    : ex_(std::move(ex)),
      matchers_(matchers),
      client_buffer_(client_buffer),
      pending_max_(pending_max),
      clients_(metrics.gauge("patina_update_feed_clients", "Clients of /v1/updates feeds")),
      notified_(metrics.counter("patina_update_feed_notifications_total", "notify events sent to update feeds")) {}

UpdateFeeds::~UpdateFeeds() = default;

net::awaitable<Result<SubscriptionStream>> UpdateFeeds::open(std::string table) {
  if (stopping_) co_return make_error(Errc::shutting_down, "the node is shutting down");
  auto it = feeds_.find(table);
  if (it == feeds_.end()) {
    auto job = [table](core::Db& db) -> Result<std::vector<std::string>> {
      auto clock = db.prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?");
      if (!clock) return tl::unexpected(clock.error());
      if (auto b = clock->bind(1, table + "__crsql_clock"); !b) return tl::unexpected(b.error());
      auto found = clock->step();
      if (!found) return tl::unexpected(found.error());
      if (!*found) return make_error(Errc::invalid_argument, fmt::format("table not found in schema: {}", table));
      auto pk = pk_columns(db, table);
      if (!pk) return tl::unexpected(pk.error());
      if (pk->empty()) return make_error(Errc::invalid_argument, fmt::format("table {} has no primary key", table));
      return std::move(*pk);
    };
    auto pk = co_await matchers_.run<std::vector<std::string>>("update feed table", std::move(job));
    if (!pk) co_return tl::unexpected(pk.error());
    it = feeds_.find(table);  // another client may have opened it meanwhile
    if (it == feeds_.end()) {
      auto feed = std::make_shared<Feed>(ex_);
      feed->id = new_uuid();
      feed->table = table;
      feed->pk_width = pk->size();
      std::string where;
      for (const auto& c : *pk) where += fmt::format("{}{} IS ?", where.empty() ? "" : " AND ", quote_ident(c));
      feed->exists_sql = fmt::format("SELECT 1 FROM {} WHERE {}", quote_ident(table), where);
      it = feeds_.emplace(table, feed).first;
      core::spawn(ex_, "update-feed", loop(feed));
    }
  }
  auto feed = it->second;
  SubscriptionStream s;
  s.id = feed->id;
  s.events = std::make_shared<EventQueue>(ex_, client_buffer_);
  s.events->on_lag([](std::int64_t) {
    return std::string(R"({"error":"this client fell behind the update feed and was dropped"})");
  });
  feed->clients.push_back(s.events);
  feed->wake.cancel();
  std::size_t n = 0;
  for (const auto& [t, f] : feeds_) n += f->clients.size();
  clients_.set(static_cast<double>(n));
  co_return s;
}

void UpdateFeeds::rows_changed(const std::map<std::string, crdt::PkSet>& changed) {
  if (stopping_) return;
  for (const auto& [table, pks] : changed) {
    auto it = feeds_.find(table);
    if (it == feeds_.end()) continue;
    auto& feed = *it->second;
    for (const auto& pk : pks) {
      if (feed.pending.size() >= pending_max_) {
        feed.overflowed = true;  // reported once the batch goes out
        break;
      }
      feed.pending.insert(pk);
    }
    feed.wake.cancel();
  }
}

net::awaitable<void> UpdateFeeds::loop(std::shared_ptr<Feed> feed) {
  auto idle_since = Clock::now();
  while (!stopping_) {
    auto ended = std::remove_if(feed->clients.begin(), feed->clients.end(),
                                [](const std::shared_ptr<EventQueue>& c) { return c->ended(); });
    if (ended != feed->clients.end()) {
      feed->clients.erase(ended, feed->clients.end());
      if (feed->clients.empty()) idle_since = Clock::now();
    }
    if (feed->clients.empty()) {
      feed->pending.clear();
      if (Clock::now() - idle_since >= idle_feed_ttl) break;
      feed->wake.expires_after(idle_feed_ttl);
      co_await feed->wake.async_wait(core::use_nothrow);
      continue;
    }
    if (feed->pending.empty()) {
      feed->wake.expires_after(idle_feed_ttl);
      co_await feed->wake.async_wait(core::use_nothrow);
      continue;
    }
    auto pending = std::move(feed->pending);
    feed->pending.clear();
    bool overflowed = feed->overflowed;
    feed->overflowed = false;
    auto sql = feed->exists_sql;
    auto width = feed->pk_width;
    auto job = [pending = std::move(pending), sql, width](core::Db& db) -> Result<std::vector<std::string>> {
      std::vector<std::string> out;
      for (const auto& packed : pending) {
        auto values = crdt::PackedPk::unpack(packed);
        if (!values || values->size() != width) continue;
        auto st = db.cached(sql);
        if (!st) return tl::unexpected(st.error());
        for (std::size_t i = 0; i < values->size(); ++i) {
          if (auto b = (*st)->bind(static_cast<int>(i + 1), to_sql_value((*values)[i])); !b) return tl::unexpected(b.error());
        }
        auto row = (*st)->step();
        (*st)->reset();
        if (!row) return tl::unexpected(row.error());
        json::array pk;
        for (const auto& v : *values) pk.push_back(crdt_to_json(v));
        json::array notify;
        notify.emplace_back(*row ? "update" : "delete");
        notify.emplace_back(std::move(pk));
        out.push_back(json::serialize(json::value{{"notify", std::move(notify)}}));
      }
      return out;
    };
    auto r = co_await matchers_.run<std::vector<std::string>>("update feed batch", std::move(job));
    if (!r) {
      core::log::get("subs")->warn("update feed for {}: {}", feed->table, r.error().message);
      continue;
    }
    for (auto& c : feed->clients) {
      for (const auto& line : *r) {
        if (!c->push(line)) break;
      }
      // Keys were dropped: the client must know its view is incomplete.
      if (overflowed) {
        c->fail(R"({"error":"too many changed rows queued for this update feed; some keys were not reported"})");
      }
    }
    notified_.inc(r->size());
  }
  if (auto it = feeds_.find(feed->table); it != feeds_.end() && it->second == feed) feeds_.erase(it);
}

void UpdateFeeds::shutdown() {
  stopping_ = true;
  for (auto& [t, f] : feeds_) {
    for (auto& c : f->clients) c->fail(R"({"error":"the node is shutting down"})");
    f->wake.cancel();
  }
}

}  // namespace patina::api
