#include "tests/integration/stream_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

namespace patina::testing {

using Clock = std::chrono::steady_clock;

StreamClient::StreamClient(const std::string& addr, const std::string& method, const std::string& target,
                           const std::string& body, int rcvbuf, std::chrono::seconds head_timeout) {
  auto colon = addr.rfind(':');
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<std::uint16_t>(std::stoi(addr.substr(colon + 1))));
  ::inet_pton(AF_INET, addr.substr(0, colon).c_str(), &sa.sin_addr);
  fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  if (rcvbuf > 0) ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    ended_ = true;
    return;
  }
  std::string req = fmt::format("{} {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n"
                                "Content-Length: {}\r\nConnection: close\r\n\r\n{}",
                                method, target, addr, body.size(), body);
  std::size_t sent = 0;
  while (sent < req.size()) {
    auto n = ::send(fd_, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) {
      ended_ = true;
      return;
    }
    sent += static_cast<std::size_t>(n);
  }
  auto deadline = Clock::now() + head_timeout;
  std::size_t end = std::string::npos;
  while ((end = raw_.find("\r\n\r\n")) == std::string::npos) {
    if (!fill(deadline)) {
      ended_ = true;
      return;
    }
  }
  std::string head = raw_.substr(0, end);
  raw_.erase(0, end + 4);
  auto sp = head.find(' ');
  status_ = std::stoi(head.substr(sp + 1, 3));
  std::size_t pos = head.find("\r\n");
  while (pos != std::string::npos) {
    auto next = head.find("\r\n", pos + 2);
    std::string line = head.substr(pos + 2, next == std::string::npos ? std::string::npos : next - pos - 2);
    auto c = line.find(':');
    if (c != std::string::npos) {
      std::string k = line.substr(0, c);
      std::transform(k.begin(), k.end(), k.begin(), [](unsigned char ch) { return std::tolower(ch); });
      std::string v = line.substr(c + 1);
      while (!v.empty() && v.front() == ' ') v.erase(0, 1);
      headers_[k] = v;
    }
    pos = next;
  }
  auto te = headers_.find("transfer-encoding");
  chunked_ = te != headers_.end() && te->second.find("chunked") != std::string::npos;
  decode();
}

StreamClient::~StreamClient() {
  if (fd_ >= 0) ::close(fd_);
}

std::string StreamClient::header(const std::string& name) const {
  auto it = headers_.find(name);
  return it == headers_.end() ? std::string() : it->second;
}

bool StreamClient::fill(Clock::time_point deadline) {
  if (eof_) return false;
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  if (left <= 0) return false;
  pollfd p{fd_, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(left)) <= 0) return false;
  char buf[16384];
  auto n = ::recv(fd_, buf, sizeof buf, 0);
  if (n <= 0) {
    eof_ = true;
    return false;
  }
  raw_.append(buf, static_cast<std::size_t>(n));
  return true;
}

void StreamClient::decode() {
  if (!chunked_) {
    body_ += raw_;
    raw_.clear();
    if (eof_) ended_ = true;
    return;
  }
  for (;;) {
    auto crlf = raw_.find("\r\n");
    if (crlf == std::string::npos) break;
    std::size_t size = std::stoul(raw_.substr(0, crlf), nullptr, 16);
    if (raw_.size() < crlf + 2 + size + 2) break;
    if (size == 0) {
      ended_ = true;
      raw_.clear();
      break;
    }
    body_ += raw_.substr(crlf + 2, size);
    raw_.erase(0, crlf + 2 + size + 2);
  }
  if (eof_) ended_ = true;
}

std::optional<std::string> StreamClient::next_line(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    auto nl = body_.find('\n');
    if (nl != std::string::npos) {
      std::string line = body_.substr(0, nl);
      body_.erase(0, nl + 1);
      return line;
    }
    if (ended_ || !fill(deadline)) {
      decode();
      nl = body_.find('\n');
      if (nl != std::string::npos) continue;
      return std::nullopt;
    }
    decode();
  }
}

std::string StreamClient::rest(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (!ended_ && fill(deadline)) decode();
  decode();
  std::string out = std::move(body_);
  body_.clear();
  return out;
}

}  // namespace patina::testing
