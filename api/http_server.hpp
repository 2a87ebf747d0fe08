#pragma once
// The HTTP/1.1 server (Boost.Beast over the io_uring reactor): one listener
// per address, keep-alive sessions, a request body limit (413), an idle
// timeout, the cross-cutting checks of Corrosion's middleware (endpoint name
// 421, bearer token 401) and per-route concurrency limits that shed with 503.
//
// Handlers run on the reactor and must not block: they await the writer or
// the reader pool. A handler answers through a Responder, either with one
// whole response or as a chunked NDJSON stream.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/json/value.hpp>

#include "core/metrics.hpp"
#include "core/result.hpp"
#include "core/runtime.hpp"

namespace patina::api {

namespace http = boost::beast::http;
using Request = http::request<http::string_body>;

class Responder {
 public:
  Responder(boost::beast::tcp_stream& stream, unsigned version, bool keep_alive)
      : stream_(stream), version_(version), keep_alive_(keep_alive) {}

  // One whole response with a JSON body.
  boost::asio::awaitable<void> json(http::status status, const boost::json::value& body,
                                    std::vector<std::pair<std::string, std::string>> headers = {});
  boost::asio::awaitable<void> text(http::status status, std::string body, const char* content_type = "text/plain");
  // A chunked stream: begin(), then chunk()s, then end(). chunk() returns
  // false once the client is gone (the handler should stop producing).
  boost::asio::awaitable<bool> begin_stream(http::status status,
                                            std::vector<std::pair<std::string, std::string>> headers = {});
  boost::asio::awaitable<bool> chunk(std::string_view data);
  boost::asio::awaitable<void> end_stream();
  // The same chunked stream when all of it is at hand: one write.
  boost::asio::awaitable<void> whole_stream(http::status status, std::string body);

  // A streaming handler stops counting against its route's concurrency
  // limit once its stream has begun (a subscription lives for hours).
  void leave_limit() {
    if (in_flight_ != nullptr) --*in_flight_;
    in_flight_ = nullptr;
  }
  void count_against(int* in_flight) { in_flight_ = in_flight; }
  // For a WebSocket upgrade: the connection, and marking it taken over.
  boost::beast::tcp_stream& stream() { return stream_; }
  void upgraded() {
    responded_ = true;
    keep_alive_ = false;
    status_ = 101;
  }

  bool responded() const { return responded_; }
  bool keep_alive() const { return keep_alive_ && !broken_; }
  unsigned status() const { return status_; }

 private:
  boost::asio::awaitable<void> write_whole(http::response<http::string_body> res);

  boost::beast::tcp_stream& stream_;  // owned by the session awaiting the handler
  unsigned version_;
  bool keep_alive_;
  bool responded_ = false;
  bool broken_ = false;
  unsigned status_ = 0;
  int* in_flight_ = nullptr;
};

// Implemented by the routes. Runs on the reactor.
class HttpHandler {
 public:
  virtual ~HttpHandler() = default;
  virtual boost::asio::awaitable<void> handle(Request& request, Responder& responder) = 0;
};

struct Route {
  http::verb method;
  std::string path;        // exact, or a prefix when it ends with '/'
  std::string name;        // metric label
  int concurrency_max;     // in-flight requests; beyond it, 503
  HttpHandler* handler;
};

struct HttpOptions {
  std::vector<std::string> addrs;
  std::uint64_t body_limit = 16 * 1024 * 1024;
  std::optional<std::string> bearer_token;
  std::optional<std::string> endpoint_name;
  std::chrono::seconds idle_timeout{60};    // between requests on a keep-alive connection
  std::chrono::seconds header_timeout{10};  // first byte to end of headers (slowloris)
  std::chrono::seconds body_timeout{60};    // end of headers to end of body
  std::string server_name = "api";  // for logs and metric names
};

class HttpServer {
 public:
  HttpServer(boost::asio::any_io_executor ex, HttpOptions options, core::Metrics& metrics);
  void add_route(Route route);
  // Binds every address and starts accepting in |tasks|.
  Result<void> start(core::TaskGroup& tasks);
  // The bound addresses ("127.0.0.1:41234"), port 0 resolved.
  std::vector<std::string> local_addresses() const;
  void stop();

 private:
  struct RouteState {
    Route route;
    int in_flight = 0;
  };
  boost::asio::awaitable<void> accept_loop(boost::asio::ip::tcp::acceptor* acceptor);
  boost::asio::awaitable<void> session(boost::asio::ip::tcp::socket socket);
  boost::asio::awaitable<void> dispatch(Request& request, Responder& responder);
  RouteState* find_route(const Request& request, bool& path_known);
  void observe(const std::string& route, unsigned status, std::chrono::steady_clock::time_point started);
  // The series of each (route, status) seen, so a request costs no label
  // strings and no registry lookup under its lock (6% of the reactor's time
  // at 20k requests/s before). Only the reactor touches it.
  std::map<unsigned, std::map<std::string, std::pair<core::Counter*, core::Histogram*>, std::less<>>> observed_;

  boost::asio::any_io_executor ex_;
  HttpOptions options_;
  core::Metrics& metrics_;
  std::vector<std::unique_ptr<RouteState>> routes_;
  std::vector<std::unique_ptr<boost::asio::ip::tcp::acceptor>> acceptors_;
  core::Gauge& connections_;
  core::Counter& timeouts_;
};

// Parses "ip:port" / "[ip]:port".
Result<boost::asio::ip::tcp::endpoint> parse_endpoint(const std::string& addr);

}  // namespace patina::api
