#include "api/sub_routes.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/json.hpp>
#include <fmt/format.h>

#include "api/routes.hpp"
#include "core/log.hpp"
#include "core/runtime.hpp"

namespace patina::api {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace json = boost::json;

namespace {

constexpr std::size_t chunk_bytes = 64 * 1024;

json::value error_body(std::string_view msg) { return json::value{{"error", msg}}; }

http::status status_of(const Error& e) {
  switch (e.code) {
    case Errc::invalid_argument:
    case Errc::sql: return http::status::bad_request;
    case Errc::not_found: return http::status::not_found;
    case Errc::busy: return http::status::too_many_requests;
    case Errc::shutting_down: return http::status::service_unavailable;
    default: return http::status::internal_server_error;
  }
}

struct StreamParams {
  std::optional<std::int64_t> from;
  bool skip_rows = false;
};

Result<StreamParams> stream_params(const Request& req) {
  StreamParams p;
  if (auto f = query_param(req.target(), "from")) {
    try {
      std::size_t used = 0;
      long long v = std::stoll(*f, &used);
      if (used != f->size() || v < 0) throw std::invalid_argument("x");
      p.from = v;
    } catch (const std::exception&) {
      return make_error(Errc::invalid_argument, fmt::format("invalid from parameter '{}'", *f));
    }
  }
  if (auto s = query_param(req.target(), "skip_rows")) {
    if (*s == "true" || *s == "1") p.skip_rows = true;
    else if (*s == "false" || *s == "0" || s->empty()) p.skip_rows = false;
    else return make_error(Errc::invalid_argument, fmt::format("invalid skip_rows parameter '{}'", *s));
  }
  return p;
}

// |message| must outlive the call (a literal or a named string): no
// temporaries with destructors inside co_await expressions (g++ 12).
net::awaitable<void> fail(Responder& res, http::status status, std::string_view message) {
  auto body = error_body(message);
  co_await res.json(status, body);
}

bool wants_websocket(const Request& req) { return websocket::is_upgrade(req); }

std::string path_tail(const Request& req, std::string_view prefix) {
  std::string_view target = req.target();
  target = target.substr(0, target.find('?'));
  return std::string(target.substr(prefix.size()));
}

// NDJSON: the head, then live events until the stream ends or the client
// goes away.
net::awaitable<void> stream_ndjson(Responder& res, SubscriptionStream s) {
  std::vector<std::pair<std::string, std::string>> headers{{"corro-query-id", s.id}};
  if (!s.hash.empty()) headers.emplace_back("corro-query-hash", s.hash);
  if (!co_await res.begin_stream(http::status::ok, std::move(headers))) {
    s.events->close();
    co_return;
  }
  res.leave_limit();
  std::string buf;
  bool ok = true;
  auto add = [&buf](const std::string& line) {
    buf += line;
    buf += '\n';
  };
  for (const auto& line : s.head) {
    add(line);
    if (buf.size() >= chunk_bytes) {
      ok = co_await res.chunk(buf);
      buf.clear();
      if (!ok) break;
    }
  }
  if (ok && s.rows) {
    for (const auto& line : *s.rows) {
      add(line);
      if (buf.size() >= chunk_bytes) {
        ok = co_await res.chunk(buf);
        buf.clear();
        if (!ok) break;
      }
    }
  }
  if (ok && !s.tail.empty()) add(s.tail);
  s.head.clear();
  s.rows.reset();
  if (!ok || (!buf.empty() && !co_await res.chunk(buf))) {
    s.events->close();
    co_return;
  }
  for (;;) {
    auto lines = co_await s.events->next(chunk_bytes);
    if (lines.empty()) break;
    buf.clear();
    for (auto& l : lines) {
      buf += l;
      buf += '\n';
    }
    if (!co_await res.chunk(buf)) {
      s.events->close();
      co_return;
    }
  }
  co_await res.end_stream();
}

// Reads (and drops) client messages so pings and the close handshake are
// answered; a read error means the client is gone.
net::awaitable<void> ws_reader(websocket::stream<beast::tcp_stream&>* ws, std::shared_ptr<EventQueue> events,
                               std::shared_ptr<bool> done) {
  beast::flat_buffer buf;
  for (;;) {
    auto [ec, n] = co_await ws->async_read(buf, core::use_nothrow);
    if (ec) break;
    buf.consume(buf.size());
  }
  events->close();
  *done = true;
}

net::awaitable<void> stream_websocket(Request& req, Responder& res, SubscriptionStream s) {
  websocket::stream<beast::tcp_stream&> ws(res.stream());
  ws.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
  std::string id = s.id;
  std::string hash = s.hash;
  ws.set_option(websocket::stream_base::decorator([id, hash](websocket::response_type& r) {
    r.set("corro-query-id", id);
    if (!hash.empty()) r.set("corro-query-hash", hash);
  }));
  ws.read_message_max(64 * 1024);
  auto [ec] = co_await ws.async_accept(req, core::use_nothrow);
  res.upgraded();
  res.leave_limit();
  if (ec) {
    s.events->close();
    co_return;
  }
  ws.text(true);
  auto done = std::make_shared<bool>(false);
  core::spawn(co_await net::this_coro::executor, "websocket-reader", ws_reader(&ws, s.events, done));
  bool ok = true;
  std::vector<const std::string*> first;
  for (const auto& line : s.head) first.push_back(&line);
  if (s.rows) {
    for (const auto& line : *s.rows) first.push_back(&line);
  }
  if (!s.tail.empty()) first.push_back(&s.tail);
  for (const std::string* line : first) {
    auto [wec, n] = co_await ws.async_write(net::buffer(*line), core::use_nothrow);
    if (wec) {
      ok = false;
      break;
    }
  }
  first.clear();
  s.head.clear();
  s.rows.reset();
  while (ok) {
    auto lines = co_await s.events->next(chunk_bytes);
    if (lines.empty()) break;
    for (auto& l : lines) {
      auto [wec, n] = co_await ws.async_write(net::buffer(l), core::use_nothrow);
      if (wec) {
        ok = false;
        break;
      }
    }
  }
  s.events->close();
  if (ok) {
    auto [cec] = co_await ws.async_close(websocket::close_code::normal, core::use_nothrow);
    (void)cec;
  }
  // The reader holds a pointer to |ws|: it must end before this frame does.
  beast::get_lowest_layer(ws).socket().cancel();
  net::steady_timer t(co_await net::this_coro::executor);
  for (int i = 0; i < 500 && !*done; ++i) {
    boost::system::error_code ignored;
    beast::get_lowest_layer(ws).socket().shutdown(net::ip::tcp::socket::shutdown_both, ignored);
    t.expires_after(std::chrono::milliseconds(10));
    co_await t.async_wait(core::use_nothrow);
  }
}

}  // namespace

struct SubscriptionRoutes::Handlers {
  Handlers(Subscriptions& s, UpdateFeeds& f) : subs(s), feeds(f) {}
  Subscriptions& subs;
  UpdateFeeds& feeds;

  template <net::awaitable<void> (Handlers::*Fn)(Request&, Responder&)>
  struct Bound final : HttpHandler {
    explicit Bound(Handlers& h) : h_(h) {}
    net::awaitable<void> handle(Request& req, Responder& res) override { return (h_.*Fn)(req, res); }
    Handlers& h_;
  };

  net::awaitable<void> create(Request& req, Responder& res);
  net::awaitable<void> create_ws(Request& req, Responder& res);
  net::awaitable<void> get(Request& req, Responder& res);
  net::awaitable<void> updates(Request& req, Responder& res);

  net::awaitable<void> deliver(Request& req, Responder& res, Result<SubscriptionStream> s, bool ws) {
    if (!s) {
      auto body = error_body(s.error().message);
      co_await res.json(status_of(s.error()), body);
      co_return;
    }
    if (ws) co_await stream_websocket(req, res, std::move(*s));
    else co_await stream_ndjson(res, std::move(*s));
  }

  Bound<&Handlers::create> create_h{*this};
  Bound<&Handlers::create_ws> create_ws_h{*this};
  Bound<&Handlers::get> get_h{*this};
  Bound<&Handlers::updates> updates_h{*this};
};

net::awaitable<void> SubscriptionRoutes::Handlers::create(Request& req, Responder& res) {
  auto ct = req.find(http::field::content_type);
  if (ct == req.end() || std::string_view(ct->value()).substr(0, 16) != "application/json") {
    co_await fail(res, http::status::unsupported_media_type, "expected request with `Content-Type: application/json`");
    co_return;
  }
  boost::system::error_code ec;
  json::value v = json::parse(req.body(), ec);
  if (ec) {
    std::string message = fmt::format("malformed JSON body: {}", ec.message());
    co_await fail(res, http::status::bad_request, message);
    co_return;
  }
  auto st = parse_statement(v);
  if (!st) {
    co_await fail(res, http::status::unprocessable_entity, st.error().message);
    co_return;
  }
  auto params = stream_params(req);
  if (!params) {
    co_await fail(res, http::status::bad_request, params.error().message);
    co_return;
  }
  auto s = co_await subs.subscribe(std::move(*st), params->from, params->skip_rows);
  co_await deliver(req, res, std::move(s), false);
}

net::awaitable<void> SubscriptionRoutes::Handlers::create_ws(Request& req, Responder& res) {
  if (!wants_websocket(req)) {
    auto body = error_body("GET /v1/subscriptions is the WebSocket endpoint (?q=<sql>); use POST for NDJSON");
    co_await res.json(http::status::bad_request, body);
    co_return;
  }
  auto q = query_param(req.target(), "q");
  if (!q || q->empty()) {
    co_await fail(res, http::status::bad_request, "missing q=<url-encoded SELECT statement>");
    co_return;
  }
  auto params = stream_params(req);
  if (!params) {
    co_await fail(res, http::status::bad_request, params.error().message);
    co_return;
  }
  Statement st;
  st.sql = *q;
  auto s = co_await subs.subscribe(std::move(st), params->from, params->skip_rows);
  co_await deliver(req, res, std::move(s), true);
}

net::awaitable<void> SubscriptionRoutes::Handlers::get(Request& req, Responder& res) {
  auto params = stream_params(req);
  if (!params) {
    co_await fail(res, http::status::bad_request, params.error().message);
    co_return;
  }
  std::string id = path_tail(req, "/v1/subscriptions/");
  auto s = co_await subs.attach(std::move(id), params->from, params->skip_rows);
  co_await deliver(req, res, std::move(s), wants_websocket(req));
}

net::awaitable<void> SubscriptionRoutes::Handlers::updates(Request& req, Responder& res) {
  std::string table = path_tail(req, "/v1/updates/");
  auto s = co_await feeds.open(std::move(table));
  co_await deliver(req, res, std::move(s), false);
}

SubscriptionRoutes::SubscriptionRoutes(Subscriptions& subs, UpdateFeeds& feeds)
    : handlers_(std::make_unique<Handlers>(subs, feeds)) {}
SubscriptionRoutes::~SubscriptionRoutes() = default;

void SubscriptionRoutes::install(HttpServer& server) {
  server.add_route({http::verb::post, "/v1/subscriptions", "subscriptions", 128, &handlers_->create_h});
  server.add_route({http::verb::get, "/v1/subscriptions", "subscriptions_ws", 128, &handlers_->create_ws_h});
  server.add_route({http::verb::get, "/v1/subscriptions/", "subscription", 128, &handlers_->get_h});
  server.add_route({http::verb::post, "/v1/updates/", "updates", 128, &handlers_->updates_h});
}

}  // namespace patina::api
