#pragma once
// A blocking HTTP/1.1 client for streamed responses (NDJSON over chunked
// transfer encoding), reading line by line with a deadline: subscriptions
// for `patina template`, tests and benches. Small receive buffers on
// request, so a test can play a client that stops reading. Never used on
// the reactor.

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace patina::api {

class StreamClient {
 public:
  // Connects to |addr| ("host:port", "[v6]:port") and sends the request
  // with |headers| (besides Host, Content-Type json, Content-Length); the
  // response head is read by the constructor (bounded by |head_timeout|).
  // status() is 0 when connecting, sending or reading the head failed.
  StreamClient(const std::string& addr, const std::string& method, const std::string& target,
               const std::string& body = "", int rcvbuf = 0,
               std::chrono::seconds head_timeout = std::chrono::seconds(10),
               const std::vector<std::pair<std::string, std::string>>& headers = {});
  ~StreamClient();
  StreamClient(const StreamClient&) = delete;
  StreamClient& operator=(const StreamClient&) = delete;

  int status() const { return status_; }
  std::string header(const std::string& name) const;
  // The next body line (without '\n'); nullopt on timeout or end of stream.
  std::optional<std::string> next_line(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // The rest of the body until the server closes or |timeout| passes.
  std::string rest(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // True once the server ended the stream.
  bool ended() const { return ended_; }
  // The socket, to poll several streams at once (-1 when not connected).
  int fd() const { return fd_; }

 private:
  bool fill(std::chrono::steady_clock::time_point deadline);  // reads more raw bytes
  void decode();                                               // raw -> body

  int fd_ = -1;
  int status_ = 0;
  std::map<std::string, std::string> headers_;
  std::string raw_;
  std::string body_;
  bool chunked_ = false;
  bool eof_ = false;
  bool ended_ = false;
};

}  // namespace patina::api
