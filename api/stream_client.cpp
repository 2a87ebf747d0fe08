#include "api/stream_client.hpp"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>

#include <fmt/format.h>

namespace patina::api {

using Clock = std::chrono::steady_clock;

StreamClient::StreamClient(const std::string& addr, const std::string& method, const std::string& target,
                           const std::string& body, int rcvbuf, std::chrono::seconds head_timeout,
                           const std::vector<std::pair<std::string, std::string>>& headers) {
  ended_ = true;  // until the head is read
  auto colon = addr.rfind(':');
  if (colon == std::string::npos) return;
  std::string host = addr.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (::getaddrinfo(host.c_str(), addr.c_str() + colon + 1, &hints, &found) != 0 || found == nullptr) return;
  for (auto* ai = found; ai != nullptr && fd_ < 0; ai = ai->ai_next) {
    fd_ = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd_ < 0) continue;
    if (rcvbuf > 0) ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    if (::connect(fd_, ai->ai_addr, ai->ai_addrlen) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ::freeaddrinfo(found);
  if (fd_ < 0) return;
  std::string extra;
  for (const auto& [k, v] : headers) {
    if (k != "content-type") extra += fmt::format("{}: {}\r\n", k, v);
  }
  std::string req = fmt::format("{} {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n{}"
                                "Content-Length: {}\r\nConnection: close\r\n\r\n{}",
                                method, target, addr, extra, body.size(), body);
  std::size_t sent = 0;
  while (sent < req.size()) {
    auto n = ::send(fd_, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return;
    sent += static_cast<std::size_t>(n);
  }
  auto deadline = Clock::now() + head_timeout;
  std::size_t end = std::string::npos;
  while ((end = raw_.find("\r\n\r\n")) == std::string::npos) {
    if (!fill(deadline)) return;
  }
  std::string head = raw_.substr(0, end);
  raw_.erase(0, end + 4);
  auto sp = head.find(' ');
  int status = 0;
  if (sp == std::string::npos || head.size() < sp + 4 ||
      std::from_chars(head.data() + sp + 1, head.data() + sp + 4, status).ec != std::errc{}) {
    return;
  }
  status_ = status;
  ended_ = false;
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
  if (eof_ || fd_ < 0) return false;
  // Rounded up, and a deadline already passed still looks once without
  // waiting: next_line(0ms) reads what has arrived.
  auto left = std::max<long long>(0, std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count());
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
    std::size_t size = 0;
    auto [end, ec] = std::from_chars(raw_.data(), raw_.data() + crlf, size, 16);
    if (ec != std::errc{} || (end != raw_.data() + crlf && *end != ';')) {
      // Not chunked encoding: the stream is broken, not a crash.
      ended_ = true;
      eof_ = true;
      raw_.clear();
      break;
    }
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

}  // namespace patina::api
