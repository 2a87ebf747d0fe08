#include "api/http_client.hpp"

#include <sstream>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json/parse.hpp>

namespace patina::api {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

std::optional<boost::json::value> HttpResponse::json() const {
  boost::system::error_code ec;
  auto v = boost::json::parse(body, ec);
  if (ec) return std::nullopt;
  return v;
}

std::vector<boost::json::value> HttpResponse::ndjson() const {
  std::vector<boost::json::value> out;
  std::stringstream ss(body);
  for (std::string line; std::getline(ss, line);) {
    if (line.empty()) continue;
    boost::system::error_code ec;
    auto v = boost::json::parse(line, ec);
    if (!ec) out.push_back(v);
  }
  return out;
}

std::string HttpResponse::header(const std::string& name) const {
  for (const auto& [k, v] : headers) {
    if (beast::iequals(k, name)) return v;
  }
  return {};
}

struct HttpConnection::Impl {
  net::io_context ioc;
  beast::tcp_stream stream{ioc};
  beast::flat_buffer buffer;
  std::string host;
  bool connected = false;
};

HttpConnection::HttpConnection(const std::string& addr) : impl_(std::make_unique<Impl>()) {
  auto colon = addr.rfind(':');
  impl_->host = addr;
  net::ip::tcp::endpoint ep(net::ip::make_address(addr.substr(0, colon)),
                            static_cast<unsigned short>(std::stoi(addr.substr(colon + 1))));
  boost::system::error_code ec;
  impl_->stream.connect(ep, ec);
  impl_->connected = !ec;
}

HttpConnection::~HttpConnection() {
  boost::system::error_code ec;
  impl_->stream.socket().shutdown(net::ip::tcp::socket::shutdown_both, ec);
}

HttpResponse HttpConnection::request(const std::string& method, const std::string& target, const std::string& body,
                                     std::vector<std::pair<std::string, std::string>> headers) {
  HttpResponse out;
  if (!impl_->connected) return out;
  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, impl_->host);
  for (auto& [k, v] : headers) req.set(k, v);
  req.body() = body;
  req.prepare_payload();
  impl_->stream.expires_after(std::chrono::seconds(60));
  boost::system::error_code ec;
  http::write(impl_->stream, req, ec);
  // A server may answer (413) and close before the whole body was sent:
  // read its answer anyway.
  ec = {};
  http::response_parser<http::string_body> parser;
  parser.body_limit(256 * 1024 * 1024);
  http::read(impl_->stream, impl_->buffer, parser, ec);
  if (ec) return out;
  auto res = parser.release();
  out.status = static_cast<int>(res.result_int());
  out.body = res.body();
  for (const auto& f : res) out.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
  return out;
}

HttpResponse http_request(const std::string& addr, const std::string& method, const std::string& target,
                          const std::string& body, std::vector<std::pair<std::string, std::string>> headers) {
  HttpConnection c(addr);
  return c.request(method, target, body, std::move(headers));
}

}  // namespace patina::api
