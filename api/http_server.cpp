#include "api/http_server.hpp"

#include <boost/asio/this_coro.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/chunk_encode.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json/serialize.hpp>
#include <fmt/format.h>

#include "core/log.hpp"

namespace patina::api {

namespace net = boost::asio;
namespace beast = boost::beast;
using core::use_nothrow;
using tcp = net::ip::tcp;

Result<tcp::endpoint> parse_endpoint(const std::string& addr) {
  std::string host;
  std::string port;
  if (!addr.empty() && addr.front() == '[') {
    auto close = addr.find(']');
    if (close == std::string::npos || close + 1 >= addr.size() || addr[close + 1] != ':') {
      return make_error(Errc::invalid_argument, fmt::format("bad address '{}'", addr));
    }
    host = addr.substr(1, close - 1);
    port = addr.substr(close + 2);
  } else {
    auto colon = addr.rfind(':');
    if (colon == std::string::npos) return make_error(Errc::invalid_argument, fmt::format("bad address '{}'", addr));
    host = addr.substr(0, colon);
    port = addr.substr(colon + 1);
  }
  boost::system::error_code ec;
  auto ip = net::ip::make_address(host, ec);
  if (ec) return make_error(Errc::invalid_argument, fmt::format("bad address '{}': {}", addr, ec.message()));
  try {
    int p = std::stoi(port);
    if (p < 0 || p > 65535) throw std::out_of_range("port");
    return tcp::endpoint(ip, static_cast<unsigned short>(p));
  } catch (const std::exception&) {
    return make_error(Errc::invalid_argument, fmt::format("bad port in '{}'", addr));
  }
}

// ---- Responder ----------------------------------------------------------

net::awaitable<void> Responder::write_whole(http::response<http::string_body> res) {
  responded_ = true;
  status_ = static_cast<unsigned>(res.result_int());
  res.version(version_);
  res.keep_alive(keep_alive_);
  res.prepare_payload();
  auto [ec, n] = co_await http::async_write(stream_, res, use_nothrow);
  if (ec) broken_ = true;
}

net::awaitable<void> Responder::json(http::status status, const boost::json::value& body,
                                     std::vector<std::pair<std::string, std::string>> headers) {
  http::response<http::string_body> res{status, version_};
  res.set(http::field::content_type, "application/json");
  for (auto& [k, v] : headers) res.set(k, v);
  res.body() = boost::json::serialize(body);
  co_await write_whole(std::move(res));
}

net::awaitable<void> Responder::text(http::status status, std::string body, const char* content_type) {
  http::response<http::string_body> res{status, version_};
  res.set(http::field::content_type, content_type);
  res.body() = std::move(body);
  co_await write_whole(std::move(res));
}

net::awaitable<bool> Responder::begin_stream(http::status status,
                                             std::vector<std::pair<std::string, std::string>> headers) {
  responded_ = true;
  status_ = static_cast<unsigned>(status);
  http::response<http::empty_body> res{status, version_};
  for (auto& [k, v] : headers) res.set(k, v);
  res.keep_alive(keep_alive_);
  res.chunked(true);
  http::response_serializer<http::empty_body> sr{res};
  auto [ec, n] = co_await http::async_write_header(stream_, sr, use_nothrow);
  if (ec) broken_ = true;
  co_return !broken_;
}

net::awaitable<bool> Responder::chunk(std::string_view data) {
  if (broken_) co_return false;
  if (data.empty()) co_return true;
  auto [ec, n] = co_await net::async_write(stream_, http::make_chunk(net::buffer(data.data(), data.size())), use_nothrow);
  if (ec) broken_ = true;
  co_return !broken_;
}

net::awaitable<void> Responder::end_stream() {
  if (broken_) co_return;
  auto [ec, n] = co_await net::async_write(stream_, http::make_chunk_last(), use_nothrow);
  if (ec) broken_ = true;
}

net::awaitable<void> Responder::whole_stream(http::status status, std::string body) {
  responded_ = true;
  status_ = static_cast<unsigned>(status);
  http::response<http::string_body> res{status, version_};
  res.keep_alive(keep_alive_);
  res.body() = std::move(body);
  res.chunked(true);  // no prepare_payload(): it would turn this into Content-Length
  auto [ec, n] = co_await http::async_write(stream_, res, use_nothrow);
  if (ec) broken_ = true;
}

// ---- HttpServer ----------------------------------------------------------

HttpServer::HttpServer(net::any_io_executor ex, HttpOptions options, core::Metrics& metrics)
    : ex_(std::move(ex)),
      options_(std::move(options)),
      metrics_(metrics),
      connections_(metrics.gauge("patina_http_connections", "Open HTTP connections",
                                 {{"server", options_.server_name}})),
      timeouts_(metrics.counter("patina_http_request_timeouts_total",
                                "Connections closed because a request's header or body came too slowly",
                                {{"server", options_.server_name}})) {}

void HttpServer::add_route(Route route) { routes_.push_back(std::make_unique<RouteState>(RouteState{std::move(route)})); }

Result<void> HttpServer::start(core::TaskGroup& tasks) {
  for (const auto& addr : options_.addrs) {
    auto ep = parse_endpoint(addr);
    if (!ep) return tl::unexpected(ep.error());
    auto acceptor = std::make_unique<tcp::acceptor>(ex_);
    boost::system::error_code ec;
    acceptor->open(ep->protocol(), ec);
    if (!ec) acceptor->set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) acceptor->bind(*ep, ec);
    if (!ec) acceptor->listen(net::socket_base::max_listen_connections, ec);
    if (ec) return make_error(Errc::io, fmt::format("{} listener on {}: {}", options_.server_name, addr, ec.message()));
    acceptors_.push_back(std::move(acceptor));
  }
  for (auto& a : acceptors_) tasks.spawn(options_.server_name + "-accept", accept_loop(a.get()));
  return {};
}

std::vector<std::string> HttpServer::local_addresses() const {
  std::vector<std::string> out;
  for (const auto& a : acceptors_) {
    boost::system::error_code ec;
    auto ep = a->local_endpoint(ec);
    if (ec) continue;
    out.push_back(ep.address().is_v6() ? fmt::format("[{}]:{}", ep.address().to_string(), ep.port())
                                       : fmt::format("{}:{}", ep.address().to_string(), ep.port()));
  }
  return out;
}

void HttpServer::stop() {
  for (auto& a : acceptors_) {
    boost::system::error_code ec;
    a->close(ec);
  }
}

net::awaitable<void> HttpServer::accept_loop(tcp::acceptor* acceptor) {
  auto log = core::log::get(options_.server_name);
  for (;;) {
    auto [ec, socket] = co_await acceptor->async_accept(use_nothrow);
    if (ec == net::error::operation_aborted || !acceptor->is_open()) co_return;
    if (ec) {
      log->warn("accept failed: {}", ec.message());
      continue;
    }
    socket.set_option(tcp::no_delay(true), ec);
    core::spawn(ex_, options_.server_name + "-session", session(std::move(socket)));
  }
}

HttpServer::RouteState* HttpServer::find_route(const Request& request, bool& path_known) {
  std::string_view target = request.target();
  auto q = target.find('?');
  std::string_view path = target.substr(0, q);
  path_known = false;
  for (auto& r : routes_) {
    const std::string& p = r->route.path;
    bool match = p.back() == '/' ? (path.size() > p.size() && path.substr(0, p.size()) == p) : path == p;
    if (!match) continue;
    path_known = true;
    if (r->route.method == request.method()) return r.get();
  }
  return nullptr;
}

void HttpServer::observe(const std::string& route, unsigned status, std::chrono::steady_clock::time_point started) {
  auto& by_route = observed_[status];
  auto it = by_route.find(route);
  if (it == by_route.end()) {
    core::Labels labels{{"route", route}, {"status", std::to_string(status)}};
    auto* count = &metrics_.counter("patina_http_requests_total", "HTTP requests by route and status", labels);
    auto* latency =
        &metrics_.histogram("patina_http_request_seconds", "HTTP request latency by route and status", labels);
    it = by_route.emplace(route, std::pair{count, latency}).first;
  }
  it->second.first->inc();
  it->second.second->observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
}

namespace {

// Constant-time comparison so the token cannot be guessed byte by byte from
// response times.
bool token_equals(std::string_view a, std::string_view b) {
  // Every byte of the longer input is read whatever matches, so the time
  // depends only on the lengths.
  std::size_t n = std::max(a.size(), b.size());
  unsigned diff = a.size() == b.size() ? 0u : 1u;
  for (std::size_t i = 0; i < n; ++i) {
    unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned>(x ^ y);
  }
  return diff == 0;
}

}  // namespace

net::awaitable<void> HttpServer::dispatch(Request& request, Responder& responder) {
  if (options_.endpoint_name) {
    auto it = request.find("x-corrosion-requested-endpoint-name");
    if (it != request.end() && it->value() != *options_.endpoint_name) {
      co_await responder.text(http::status::misdirected_request, "");
      co_return;
    }
  }
  if (options_.bearer_token) {
    auto it = request.find(http::field::authorization);
    std::string expected = "Bearer " + *options_.bearer_token;
    if (it == request.end() || !token_equals(it->value(), expected)) {
      co_await responder.text(http::status::unauthorized, "");
      co_return;
    }
  }
  bool path_known = false;
  RouteState* route = find_route(request, path_known);
  if (route == nullptr) {
    boost::json::value body = {{"error", path_known ? "method not allowed" : "not found"}};
    co_await responder.json(path_known ? http::status::method_not_allowed : http::status::not_found, body);
    co_return;
  }
  if (route->in_flight >= route->route.concurrency_max) {
    co_await responder.text(http::status::service_unavailable, "max concurrency limit reached");
    co_return;
  }
  ++route->in_flight;
  responder.count_against(&route->in_flight);
  struct Release {
    Responder& r;
    ~Release() { r.leave_limit(); }
  } release{responder};
  co_await route->route.handler->handle(request, responder);
}

net::awaitable<void> HttpServer::session(tcp::socket socket) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  connections_.add(1);
  struct Count {
    core::Gauge& g;
    ~Count() { g.add(-1); }
  } count{connections_};
  auto log = core::log::get(options_.server_name);
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(options_.body_limit);
    parser.header_limit(64 * 1024);
    // Idle until the next request's first byte; then the header and the
    // body each have their own deadline, so a client that trickles bytes
    // cannot hold a connection (and its memory) for the idle timeout.
    if (buffer.size() == 0) {
      stream.expires_after(options_.idle_timeout);
      auto [ec_first, got] = co_await stream.async_read_some(buffer.prepare(8192), use_nothrow);
      if (ec_first) break;
      buffer.commit(got);
    }
    stream.expires_after(options_.header_timeout);
    auto [ec_head, n_head] = co_await http::async_read_header(stream, buffer, parser, use_nothrow);
    boost::system::error_code ec = ec_head;
    if (!ec && !parser.is_done()) {
      stream.expires_after(options_.body_timeout);
      auto [ec_body, n_body] = co_await http::async_read(stream, buffer, parser, use_nothrow);
      ec = ec_body;
    }
    auto started = std::chrono::steady_clock::now();
    if (ec == beast::error::timeout) {
      log->debug("{}: closing a connection whose request did not arrive in time", options_.server_name);
      timeouts_.inc();
      break;
    }
    if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == net::error::eof ||
        ec == net::error::connection_reset || ec == net::error::operation_aborted) {
      break;
    }
    if (ec) {
      // Malformed request or a body over the limit: answer, then close,
      // since the rest of the stream cannot be trusted.
      Responder responder(stream, 11, false);
      stream.expires_after(std::chrono::seconds(5));
      if (ec == http::error::body_limit) {
        boost::json::value body = {
            {"error", fmt::format("request body exceeds the limit of {} bytes", options_.body_limit)}};
        co_await responder.json(http::status::payload_too_large, body);
        observe("-", 413, started);
      } else {
        boost::json::value body = {{"error", fmt::format("bad request: {}", ec.message())}};
        co_await responder.json(http::status::bad_request, body);
        observe("-", 400, started);
      }
      break;
    }
    Request request = parser.release();
    stream.expires_never();
    Responder responder(stream, request.version(), request.keep_alive());
    bool path_known = false;
    RouteState* route = find_route(request, path_known);
    std::string route_name = route ? route->route.name : "-";
    std::string failure;
    try {
      co_await dispatch(request, responder);
    } catch (const std::exception& e) {
      failure = e.what();
      log->error("{} {}: handler failed: {}", request.method_string(), request.target(), failure);
    }
    if (!responder.responded()) {
      boost::json::value body = {{"error", failure.empty() ? std::string("no response")
                                                           : fmt::format("internal error: {}", failure)}};
      co_await responder.json(http::status::internal_server_error, body);
    }
    observe(route_name, responder.status(), started);
    if (!responder.keep_alive()) break;
  }
  boost::system::error_code ec;
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
}

}  // namespace patina::api
