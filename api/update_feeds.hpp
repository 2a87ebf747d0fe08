#pragma once
// Per-table primary-key change feeds (SPEC.md §1.7, POST /v1/updates/{t}):
// one shared feed per table, no snapshot, then {"notify":["update"|"delete",
// [pk...]]} for every changed row. The type is read from the database when
// the batch is sent (the row exists: update; it does not: delete), so an
// older change can never overwrite a newer one. Keys changed while a batch
// is being resolved are coalesced into the next one, once each.

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "api/event_queue.hpp"
#include "api/subscriptions.hpp"
#include "core/metrics.hpp"
#include "core/reader_pool.hpp"
#include "crdt/merge.hpp"

namespace patina::api {

class UpdateFeeds {
 public:
  UpdateFeeds(boost::asio::any_io_executor ex, core::ReaderPool& matchers, core::Metrics& metrics,
              std::size_t client_buffer, std::size_t pending_max);
  ~UpdateFeeds();

  // A client for |table|'s feed. invalid_argument: not a replicated table.
  boost::asio::awaitable<Result<SubscriptionStream>> open(std::string table);
  void rows_changed(const std::map<std::string, crdt::PkSet>& changed);
  void shutdown();

 private:
  struct Feed;
  boost::asio::awaitable<void> loop(std::shared_ptr<Feed> feed);

  boost::asio::any_io_executor ex_;
  core::ReaderPool& matchers_;
  std::size_t client_buffer_;
  std::size_t pending_max_;
  std::map<std::string, std::shared_ptr<Feed>> feeds_;
  bool stopping_ = false;
  core::Gauge& clients_;
  core::Counter& notified_;
};

}  // namespace patina::api
