#pragma once
// A blocking HTTP/1.1 client for the CLI, tools and tests, with keep-alive:
// one HttpConnection is one TCP connection. Never used on the reactor.
// Each call runs Beast's asynchronous operations on a private io_context,
// because only those honour a timeout: connecting, sending, and every read
// of the answer must make progress within |idle_timeout|, so an agent that
// stalls (or an address that drops packets) ends the call with an error
// instead of hanging the CLI; a long answer that keeps arriving is fine.

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/value.hpp>

namespace patina::api {

struct HttpResponse {
  int status = 0;     // 0: no answer; |error| says why
  std::string error;  // "connection refused", "no answer within 60 s", ...
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  std::optional<boost::json::value> json() const;
  // NDJSON bodies, one value per line.
  std::vector<boost::json::value> ndjson() const;
  std::string header(const std::string& name) const;
};

class HttpConnection {
 public:
  static constexpr std::chrono::seconds default_idle_timeout{60};

  // "127.0.0.1:port" or "[::1]:port".
  explicit HttpConnection(const std::string& addr, std::chrono::milliseconds idle_timeout = default_idle_timeout);
  ~HttpConnection();
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;

  // Status 0 and an |error| when the connection failed or timed out (the
  // connection is unusable afterwards). With |on_body|, a 2xx answer's body
  // is handed over piece by piece as it arrives (and not kept in the
  // response): how a client prints a long NDJSON stream as it comes, in
  // bounded memory.
  using BodySink = std::function<void(std::string_view)>;
  HttpResponse request(const std::string& method, const std::string& target, const std::string& body = "",
                       std::vector<std::pair<std::string, std::string>> headers = {{"content-type",
                                                                                      "application/json"}},
                       const BodySink& on_body = {});
  HttpResponse post_json(const std::string& target, const std::string& body) {
    return request("POST", target, body);
  }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// One request on a fresh connection.
HttpResponse http_request(const std::string& addr, const std::string& method, const std::string& target,
                          const std::string& body = "",
                          std::vector<std::pair<std::string, std::string>> headers = {{"content-type",
                                                                                         "application/json"}},
                          std::chrono::milliseconds idle_timeout = HttpConnection::default_idle_timeout);

}  // namespace patina::api
