#include "api/admin_client.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include <fmt/format.h>

#include "api/admin_protocol.hpp"
#include "core/unique_fd.hpp"

namespace patina::api {
namespace {

using Fd = core::UniqueFd;

Result<int> connect_unix(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof(addr.sun_path)) {
    return make_error(Errc::invalid_argument, fmt::format("admin socket path too long: {}", path));
  }
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return make_error(Errc::io, fmt::format("socket: {}", std::strerror(errno)));
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    int err = errno;
    ::close(fd);
    return make_error(Errc::io, fmt::format("cannot connect to the agent's admin socket {}: {}", path, std::strerror(err)));
  }
  return fd;
}

Result<void> io_all(int fd, char* data, std::size_t n, bool write, std::chrono::steady_clock::time_point deadline) {
  std::size_t done = 0;
  while (done < n) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return make_error(Errc::timeout, "the agent did not answer in time");
    pollfd p{fd, static_cast<short>(write ? POLLOUT : POLLIN), 0};
    int pr = ::poll(&p, 1, static_cast<int>(left.count()));
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) return make_error(Errc::timeout, "the agent did not answer in time");
    ssize_t r = write ? ::send(fd, data + done, n - done, MSG_NOSIGNAL) : ::recv(fd, data + done, n - done, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return make_error(Errc::io, fmt::format("admin socket: {}", std::strerror(errno)));
    if (r == 0) return make_error(Errc::io, "the agent closed the admin connection before answering");
    done += static_cast<std::size_t>(r);
  }
  return {};
}

}  // namespace

Result<std::vector<boost::json::value>> AdminClient::call(const std::string& path, const boost::json::value& command,
                                                          int timeout_ms) {
  auto fd = connect_unix(path);
  if (!fd) return tl::unexpected(fd.error());
  Fd owner(*fd);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  std::string frame = admin::encode_frame(command);
  if (auto r = io_all(owner.get(), frame.data(), frame.size(), true, deadline); !r) return tl::unexpected(r.error());
  std::vector<boost::json::value> out;
  for (;;) {
    unsigned char header[4];
    if (auto r = io_all(owner.get(), reinterpret_cast<char*>(header), 4, false, deadline); !r) {
      return tl::unexpected(r.error());
    }
    auto len = admin::decode_length(header);
    if (!len) return tl::unexpected(len.error());
    std::string body(*len, '\0');
    if (auto r = io_all(owner.get(), body.data(), body.size(), false, deadline); !r) return tl::unexpected(r.error());
    auto v = admin::parse_payload(body);
    if (!v) return tl::unexpected(v.error());
    bool final = admin::is_final(*v);
    out.push_back(std::move(*v));
    if (final) return out;
  }
}

bool AdminClient::is_answering(const std::string& path) {
  auto fd = connect_unix(path);
  if (!fd) return false;
  ::close(*fd);
  return true;
}

}  // namespace patina::api
