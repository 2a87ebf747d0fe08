#pragma once
// HTTP and WebSocket routes of subscriptions and update feeds:
//   POST /v1/subscriptions            body: one Statement; NDJSON stream
//   GET  /v1/subscriptions/{id}       attach; NDJSON, or WebSocket on Upgrade
//   GET  /v1/subscriptions?q=<sql>    WebSocket: create or attach by SQL
//   POST /v1/updates/{table}          NDJSON notify stream
// Query params: from=<change id>, skip_rows=true. Over WebSocket every
// event is one text message, the same JSON as an NDJSON line.

#include "api/http_server.hpp"
#include "api/subscriptions.hpp"
#include "api/update_feeds.hpp"

namespace patina::api {

class SubscriptionRoutes {
 public:
  SubscriptionRoutes(Subscriptions& subs, UpdateFeeds& feeds);
  ~SubscriptionRoutes();
  void install(HttpServer& server);

 private:
  struct Handlers;
  std::unique_ptr<Handlers> handlers_;
};

}  // namespace patina::api
