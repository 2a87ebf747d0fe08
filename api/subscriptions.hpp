#pragma once
// The subscription engine's reactor half (SPEC.md §1.6, §6): the registry
// of subscriptions (one per distinct expanded query), their change logs,
// the clients attached to them and the loop that feeds each one.
//
// Threads: everything here runs on the reactor. The SQL work — the first
// run of a query, re-evaluating changed rows, snapshots, saving — runs as
// jobs on the matcher pool (a ReaderPool of its own), one job at a time per
// subscription, so a subscription's SubState is only ever touched by its
// current job.
//
// Ordering: a subscription is registered before its first query runs, so
// every commit after that point reaches its pending set; a client is added
// to the fan-out in the same reactor step that hands it a snapshot (or a
// replay from the log), so the change ids it sees are contiguous.
//
// Persistence: at graceful shutdown every subscription is saved under
// <subscriptions_path>/<id>/sub.sqlite; at boot those are restored with
// their ids and change ids, then re-evaluated once (a full diff) so that
// nothing committed while the node was down is missed. A file not saved by
// a graceful shutdown is discarded, as Corrosion does.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/json/value.hpp>

#include "api/event_queue.hpp"
#include "api/statement.hpp"
#include "core/metrics.hpp"
#include "core/reader_pool.hpp"
#include "core/result.hpp"
#include "crdt/merge.hpp"

namespace patina::api {

struct SubscriptionOptions {
  std::string path;                         // subscriptions_path
  std::size_t subscriptions_max = 1024;     // distinct subscriptions on this node
  std::size_t streams_max = 20000;          // clients attached at once
  std::size_t client_buffer = 10240;        // events queued per client before it is dropped
  std::size_t log_retained = 4096;          // change events kept for `from=` resumes
  std::size_t pending_max = 100000;         // changed pks queued per subscription before a full refresh
  std::chrono::seconds idle_ttl{600};       // a subscription with no client this long is removed
  std::chrono::milliseconds query_timeout{60000};
};

// A client attached to a subscription: the first lines to send, then the
// queue of live events.
struct SubscriptionStream {
  std::string id;    // hyphenated uuid
  std::string hash;  // 16 hex
  std::vector<std::string> head;  // columns, or replayed changes
  // The current rows, shared by every client that attached at that point
  // (no copy of a million lines per client), then the eoq line.
  std::shared_ptr<const std::vector<std::string>> rows;
  std::string tail;
  std::shared_ptr<EventQueue> events;
};

class SubState;

class Subscriptions {
 public:
  Subscriptions(boost::asio::any_io_executor ex, core::ReaderPool& matchers, core::Metrics& metrics,
                SubscriptionOptions options);
  ~Subscriptions();

  // Boot, before the reactor runs: registers the subscriptions saved by the
  // last graceful shutdown and deletes anything else under the path.
  void discover();

  // Creates or finds the subscription for |st| and attaches a client.
  // Errors: invalid_argument (400), not_found (404), busy (429), others 500.
  boost::asio::awaitable<Result<SubscriptionStream>> subscribe(Statement st, std::optional<std::int64_t> from,
                                                              bool skip_rows);
  // Attaches a client to an existing subscription by id.
  boost::asio::awaitable<Result<SubscriptionStream>> attach(std::string id, std::optional<std::int64_t> from,
                                                           bool skip_rows);

  // Every committed change to replicated rows (table -> packed pks).
  void rows_changed(const std::map<std::string, crdt::PkSet>& changed);

  // Admin: [{"id","hash","sql",...}] and one subscription's details.
  boost::json::value list() const;
  Result<boost::json::value> info(std::optional<std::string> id, std::optional<std::string> hash) const;

  // Shutdown: ends every client stream and saves every subscription.
  boost::asio::awaitable<void> shutdown();

 private:
  struct Sub;
  struct Waiter;
  boost::asio::awaitable<void> loop(std::shared_ptr<Sub> sub);
  boost::asio::awaitable<void> sweep();
  boost::asio::awaitable<Result<SubscriptionStream>> join(std::shared_ptr<Sub> sub, std::optional<std::int64_t> from,
                                                         bool skip_rows);
  std::shared_ptr<Sub> register_sub(std::string id, std::string sql, std::optional<std::string> restore_path,
                                    std::shared_ptr<SubState> state);
  void remove(const std::shared_ptr<Sub>& sub, const std::string& why, bool delete_files);
  void publish(Sub& sub, std::vector<std::string> events, std::int64_t first_id);
  std::size_t streams() const;
  void prune_ended(Sub& sub);

  boost::asio::any_io_executor ex_;
  core::ReaderPool& matchers_;
  core::Metrics& metrics_;
  SubscriptionOptions options_;
  std::map<std::string, std::shared_ptr<Sub>> by_id_;
  std::map<std::string, std::shared_ptr<Sub>> by_sql_;
  bool stopping_ = false;
  bool sweeping_ = false;
  core::Gauge& count_;
  core::Gauge& clients_;
  core::Gauge& pending_;
  core::Counter& events_;
  core::Counter& lagged_;
  core::Histogram& match_seconds_;
};

// A random (version 4) uuid, hyphenated.
std::string new_uuid();

// 16 hex digits identifying a query's text (FNV-1a 64; Corrosion uses
// seahash: the value is opaque either way).
std::string query_hash(std::string_view sql);

}  // namespace patina::api
