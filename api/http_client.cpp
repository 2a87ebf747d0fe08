#include "api/http_client.hpp"

#include <charconv>
#include <limits>
#include <sstream>
#include <string_view>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json/parse.hpp>
#include <fmt/format.h>

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

namespace {

std::string describe(const boost::system::error_code& ec, std::chrono::milliseconds idle) {
  if (ec == beast::error::timeout) {
    return fmt::format("no progress within {:g} s", std::chrono::duration<double>(idle).count());
  }
  return ec.message();
}

}  // namespace

struct HttpConnection::Impl {
  net::io_context ioc;
  beast::tcp_stream stream{ioc};
  beast::flat_buffer buffer;
  std::string host;
  std::chrono::milliseconds idle{};
  std::string error;  // why the connection is unusable; empty while it is usable

  // Runs the asynchronous operation |start| begins to completion, under a
  // fresh |idle| deadline (the stream closes the socket when it passes).
  template <class Start>
  boost::system::error_code run(Start&& start) {
    boost::system::error_code result = net::error::would_block;
    stream.expires_after(idle);
    start([&result](boost::system::error_code ec, auto&&...) { result = ec; });
    ioc.restart();
    ioc.run();
    return result;
  }
};

HttpConnection::HttpConnection(const std::string& addr, std::chrono::milliseconds idle_timeout)
    : impl_(std::make_unique<Impl>()) {
  impl_->host = addr;
  impl_->idle = idle_timeout;
  auto colon = addr.rfind(':');
  std::string host = colon == std::string::npos ? addr : addr.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  boost::system::error_code ec;
  auto ip = net::ip::make_address(host, ec);
  unsigned port = 0;
  std::string_view port_text = colon == std::string::npos ? std::string_view{} : std::string_view(addr).substr(colon + 1);
  auto [end, perr] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec || perr != std::errc{} || end != port_text.data() + port_text.size() || port == 0 || port > 65535) {
    impl_->error = fmt::format("'{}' is not an IP:port address", addr);
    return;
  }
  net::ip::tcp::endpoint ep(ip, static_cast<unsigned short>(port));
  ec = impl_->run([&](auto handler) { impl_->stream.async_connect(ep, std::move(handler)); });
  if (ec) impl_->error = describe(ec, impl_->idle);
}

HttpConnection::~HttpConnection() {
  boost::system::error_code ec;
  impl_->stream.socket().shutdown(net::ip::tcp::socket::shutdown_both, ec);
}

HttpResponse HttpConnection::request(const std::string& method, const std::string& target, const std::string& body,
                                     std::vector<std::pair<std::string, std::string>> headers,
                                     const BodySink& on_body) {
  HttpResponse out;
  if (!impl_->error.empty()) {
    out.error = impl_->error;
    return out;
  }
  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, impl_->host);
  for (auto& [k, v] : headers) req.set(k, v);
  req.body() = body;
  req.prepare_payload();
  auto ec = impl_->run([&](auto handler) { http::async_write(impl_->stream, req, std::move(handler)); });
  // A server may answer (413) and close before the whole body was sent:
  // read its answer anyway, unless it stopped reading altogether.
  if (ec != beast::error::timeout) {
    http::response_parser<http::string_body> parser;
    // A streamed body is not held, so it needs no limit.
    parser.body_limit(on_body ? std::numeric_limits<std::uint64_t>::max() : 256 * 1024 * 1024);
    // Read by pieces, each under its own deadline: a long answer that keeps
    // coming is not cut off, a stalled one is.
    do {
      ec = impl_->run([&](auto handler) {
        http::async_read_some(impl_->stream, impl_->buffer, parser, std::move(handler));
      });
      // The string body only ever appends, so what it holds can be handed
      // on and cleared between reads.
      if (on_body && parser.is_header_done() && parser.get().result_int() / 100 == 2) {
        auto& piece = parser.get().body();
        if (!piece.empty()) {
          on_body(piece);
          piece.clear();
        }
      }
    } while (!ec && !parser.is_done());
    if (!ec) {
      auto res = parser.release();
      out.status = static_cast<int>(res.result_int());
      out.body = res.body();
      for (const auto& f : res) out.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
      return out;
    }
  }
  impl_->error = describe(ec, impl_->idle);
  out.error = impl_->error;
  return out;
}

HttpResponse http_request(const std::string& addr, const std::string& method, const std::string& target,
                          const std::string& body, std::vector<std::pair<std::string, std::string>> headers,
                          std::chrono::milliseconds idle_timeout) {
  HttpConnection c(addr, idle_timeout);
  return c.request(method, target, body, std::move(headers));
}

}  // namespace patina::api
