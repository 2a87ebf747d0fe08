#pragma once
// The admin socket server: accepts connections on a Unix socket (mode 0600,
// so only the node's own user can control it), reads framed commands and
// hands each to an AdminService, writing back every response frame.

#include <memory>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/json/value.hpp>

#include "core/result.hpp"
#include "core/runtime.hpp"

namespace patina::api {

// Implemented by the composition root. Runs on the reactor.
class AdminService {
 public:
  virtual ~AdminService() = default;
  // Returns the responses for one command, the last being final
  // ("Success" or an Error).
  virtual boost::asio::awaitable<std::vector<boost::json::value>> handle(boost::json::value command) = 0;
};

class AdminServer {
 public:
  AdminServer(boost::asio::any_io_executor ex, std::string path, AdminService& service);
  // Binds the socket (replacing a stale socket file, refusing if another
  // live process answers on it) and starts accepting in |tasks|.
  Result<void> start(core::TaskGroup& tasks);
  // Closes the listener; sessions in progress finish their command.
  void stop();
  const std::string& path() const { return path_; }

 private:
  boost::asio::awaitable<void> accept_loop();
  static boost::asio::awaitable<void> session(boost::asio::local::stream_protocol::socket socket, AdminService* service);

  boost::asio::any_io_executor ex_;
  std::string path_;
  AdminService& service_;
  std::unique_ptr<boost::asio::local::stream_protocol::acceptor> acceptor_;
};

}  // namespace patina::api
