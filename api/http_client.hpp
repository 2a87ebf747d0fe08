#pragma once
// A blocking HTTP/1.1 client (Beast's synchronous API) for the CLI, tools
// and tests, with keep-alive: one HttpConnection is one TCP connection.
// Never used on the reactor.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/json/value.hpp>

namespace patina::api {

struct HttpResponse {
  int status = 0;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  std::optional<boost::json::value> json() const;
  // NDJSON bodies, one value per line.
  std::vector<boost::json::value> ndjson() const;
  std::string header(const std::string& name) const;
};

class HttpConnection {
 public:
  explicit HttpConnection(const std::string& addr);  // "127.0.0.1:port"
  ~HttpConnection();
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;

  // Empty status (0) when the connection failed.
  HttpResponse request(const std::string& method, const std::string& target, const std::string& body = "",
                       std::vector<std::pair<std::string, std::string>> headers = {{"content-type",
                                                                                      "application/json"}});
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
                                                                                         "application/json"}});

}  // namespace patina::api
