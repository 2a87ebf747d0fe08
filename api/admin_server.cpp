#include "api/admin_server.hpp"

#include <sys/stat.h>

#include <filesystem>

#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/this_coro.hpp>
#include <fmt/format.h>

#include "api/admin_client.hpp"
#include "api/admin_protocol.hpp"
#include "core/log.hpp"

namespace patina::api {

namespace net = boost::asio;
using core::use_nothrow;
using local = net::local::stream_protocol;

AdminServer::AdminServer(net::any_io_executor ex, std::string path, AdminService& service)
    : ex_(std::move(ex)), path_(std::move(path)), service_(service) {}

Result<void> AdminServer::start(core::TaskGroup& tasks) {
  namespace fs = std::filesystem;
  std::error_code fec;
  auto parent = fs::path(path_).parent_path();
  if (!parent.empty()) fs::create_directories(parent, fec);
  if (fs::exists(path_, fec)) {
    // A live agent answering on this socket owns it; a dead one left a file.
    if (AdminClient::is_answering(path_)) {
      return make_error(Errc::busy, fmt::format("admin socket {} is in use by another running agent", path_));
    }
    fs::remove(path_, fec);
  }
  acceptor_ = std::make_unique<local::acceptor>(ex_);
  boost::system::error_code ec;
  acceptor_->open(local(), ec);
  // The socket file is created by bind with the umask applied; a restrictive
  // umask around bind means it is never observable with a looser mode.
  mode_t old = ::umask(0177);
  if (!ec) acceptor_->bind(local::endpoint(path_), ec);
  ::umask(old);
  if (!ec) acceptor_->listen(net::socket_base::max_listen_connections, ec);
  if (ec) return make_error(Errc::io, fmt::format("admin socket {}: {}", path_, ec.message()));
  ::chmod(path_.c_str(), 0600);
  tasks.spawn("admin-accept", accept_loop());
  return {};
}

void AdminServer::stop() {
  if (!acceptor_) return;
  boost::system::error_code ec;
  acceptor_->close(ec);
  std::filesystem::remove(path_, ec);
}

net::awaitable<void> AdminServer::accept_loop() {
  auto log = core::log::get("admin");
  for (;;) {
    auto [ec, socket] = co_await acceptor_->async_accept(use_nothrow);
    if (ec == net::error::operation_aborted || !acceptor_->is_open()) co_return;
    if (ec) {
      log->warn("accept on {} failed: {}", path_, ec.message());
      continue;
    }
    core::spawn(ex_, "admin-session", session(std::move(socket), &service_));
  }
}

net::awaitable<void> AdminServer::session(local::socket socket, AdminService* service) {
  auto log = core::log::get("admin");
  for (;;) {
    unsigned char header[4];
    auto [ec, n] = co_await net::async_read(socket, net::buffer(header, 4), use_nothrow);
    if (ec) co_return;  // closed by the client: the normal end
    auto len = admin::decode_length(header);
    if (!len) {
      log->warn("admin client: {}", len.error().message);
      auto frame = admin::encode_frame(admin::error(len.error().message));
      co_await net::async_write(socket, net::buffer(frame), use_nothrow);
      co_return;
    }
    std::string body(*len, '\0');
    auto [ec2, n2] = co_await net::async_read(socket, net::buffer(body), use_nothrow);
    if (ec2) co_return;
    auto command = admin::parse_payload(body);
    std::vector<boost::json::value> responses;
    if (!command) {
      log->warn("admin client: {}", command.error().message);
      responses.push_back(admin::error(command.error().message));
    } else {
      responses = co_await service->handle(std::move(*command));
    }
    for (const auto& r : responses) {
      auto frame = admin::encode_frame(r);
      auto [ec3, n3] = co_await net::async_write(socket, net::buffer(frame), use_nothrow);
      if (ec3) co_return;
    }
  }
}

}  // namespace patina::api
