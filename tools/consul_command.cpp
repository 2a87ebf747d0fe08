#include "tools/consul_command.hpp"

#include <gnutls/gnutls.h>
#include <netdb.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <set>
#include <thread>

#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <fmt/format.h>

#include "api/http_client.hpp"
#include "core/unique_fd.hpp"
#include "tools/cli_data.hpp"
#include "tools/consul_mirror.hpp"

namespace patina::tools {
namespace {

namespace json = boost::json;
namespace http = boost::beast::http;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr auto pull_interval = 1s;     // Corrosion's CONSUL_PULL_INTERVAL
constexpr auto full_interval = 15min;  // Corrosion's CONSUL_SYNC_INTERVAL
constexpr int consul_timeout_ms = 5000;
constexpr std::size_t consul_body_max = 64 * 1024 * 1024;

void say(const std::string& message) { print_event("consul sync", message); }

std::string errno_text(int e) { return std::strerror(e); }

using Fd = core::UniqueFd;

// host:port or [v6]:port.
Result<std::pair<std::string, std::string>> split_address(const std::string& addr) {
  auto colon = addr.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == addr.size()) {
    return make_error(Errc::invalid_argument, fmt::format("consul.client.address '{}' is not host:port", addr));
  }
  std::string host = addr.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return std::make_pair(host, addr.substr(colon + 1));
}

// A TCP connection with a connect timeout; reads and writes then time out
// after the same delay (SO_RCVTIMEO/SO_SNDTIMEO), so a Consul that accepts
// and says nothing cannot hang the mirror.
Result<int> connect_to(const std::string& host, const std::string& port) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    return make_error(Errc::io, fmt::format("cannot resolve {}: {}", host, ::gai_strerror(rc)));
  }
  std::string last = "no address";
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    int rc = ::connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      rc = ::poll(&p, 1, consul_timeout_ms);
      int err = 0;
      socklen_t len = sizeof err;
      if (rc == 1 && ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) {
        rc = 0;
      } else {
        last = rc == 0 ? "connect timed out" : errno_text(err != 0 ? err : errno);
        rc = -1;
      }
    } else if (rc != 0) {
      last = errno_text(errno);
    }
    if (rc == 0) {
      int flags = 0;  // back to blocking, with timeouts
      ::ioctl(fd, FIONBIO, &flags);
      timeval tv{consul_timeout_ms / 1000, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
      ::freeaddrinfo(res);
      return fd;
    }
    ::close(fd);
  }
  ::freeaddrinfo(res);
  return make_error(Errc::io, fmt::format("cannot connect to {}:{}: {}", host, port, last));
}

// GET |path| from the local Consul agent; the body of a 200 answer.
class ConsulClient {
 public:
  static Result<std::unique_ptr<ConsulClient>> make(const core::ConsulConfig& c) {
    auto hp = split_address(c.address);
    if (!hp) return tl::unexpected(hp.error());
    std::unique_ptr<ConsulClient> out(new ConsulClient(c.address, hp->first, hp->second));
    if (c.tls) {
      if (int rc = gnutls_certificate_allocate_credentials(&out->creds_); rc < 0) {
        return make_error(Errc::internal, fmt::format("gnutls: {}", gnutls_strerror(rc)));
      }
      if (int rc = gnutls_certificate_set_x509_trust_file(out->creds_, c.tls->ca_file.c_str(), GNUTLS_X509_FMT_PEM);
          rc <= 0) {
        return make_error(Errc::invalid_argument, fmt::format("consul.client.tls.ca_file {}: {}", c.tls->ca_file,
                                                              rc == 0 ? "no certificate in it" : gnutls_strerror(rc)));
      }
      if (int rc = gnutls_certificate_set_x509_key_file(out->creds_, c.tls->cert_file.c_str(), c.tls->key_file.c_str(),
                                                        GNUTLS_X509_FMT_PEM);
          rc < 0) {
        return make_error(Errc::invalid_argument, fmt::format("consul.client.tls cert_file {} / key_file {}: {}",
                                                              c.tls->cert_file, c.tls->key_file, gnutls_strerror(rc)));
      }
    }
    return out;
  }
  ~ConsulClient() {
    if (creds_ != nullptr) gnutls_certificate_free_credentials(creds_);
  }

  Result<std::string> get(const std::string& path) {
    auto fd = connect_to(host_, port_);
    if (!fd) return tl::unexpected(fd.error());
    Fd sock(*fd);
    const std::string request =
        fmt::format("GET {} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nConnection: close\r\n\r\n", path, addr_);
    ResponseReader reader;
    auto r = creds_ != nullptr ? exchange_tls(sock.get(), request, reader) : exchange_plain(sock.get(), request, reader);
    if (!r) return make_error(r.error().code, fmt::format("consul {}: {}", path, r.error().message));
    if (reader.received == 0) return make_error(Errc::io, fmt::format("consul {}: connection closed without an answer", path));
    if (!reader.parser.is_done()) reader.parser.put_eof(reader.ec);
    if (reader.ec || !reader.parser.is_done()) {
      return make_error(Errc::io, fmt::format("consul {}: unreadable HTTP answer{}", path,
                                              reader.ec ? ": " + reader.ec.message() : std::string()));
    }
    auto res = reader.parser.release();
    if (res.result_int() != 200) {
      return make_error(Errc::io, fmt::format("consul {}: HTTP {}", path, res.result_int()));
    }
    return std::move(res.body());
  }

 private:
  ConsulClient(std::string addr, std::string host, std::string port)
      : addr_(std::move(addr)), host_(std::move(host)), port_(std::move(port)) {}

  // Parses the answer as it arrives: reading stops once it is complete, so
  // a server that keeps the connection open is no 5 s wait.
  struct ResponseReader {
    ResponseReader() {
      parser.body_limit(consul_body_max);
      parser.eager(true);
    }
    // True when the answer is complete or unreadable (|ec| then says why).
    bool feed(const char* data, std::size_t n) {
      received += n;
      pending.append(data, n);
      while (!pending.empty() && !parser.is_done()) {
        std::size_t used = parser.put(boost::asio::buffer(pending), ec);
        if (ec == http::error::need_more) {
          ec = {};
          break;
        }
        if (ec) return true;
        pending.erase(0, used);
        if (used == 0) break;
      }
      return parser.is_done();
    }
    http::response_parser<http::string_body> parser;
    boost::system::error_code ec;
    std::string pending;
    std::size_t received = 0;
  };

  static Result<void> exchange_plain(int fd, const std::string& request, ResponseReader& reader) {
    for (std::size_t sent = 0; sent < request.size();) {
      ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return make_error(Errc::io, "send: " + errno_text(errno));
      sent += static_cast<std::size_t>(n);
    }
    char buf[16384];
    for (;;) {
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        return make_error(Errc::io, errno == EAGAIN ? std::string("no answer within 5 s") : "recv: " + errno_text(errno));
      }
      if (n == 0 || reader.feed(buf, static_cast<std::size_t>(n))) return {};
    }
  }

  Result<void> exchange_tls(int fd, const std::string& request, ResponseReader& reader) {
    gnutls_session_t s = nullptr;
    if (int rc = gnutls_init(&s, GNUTLS_CLIENT); rc < 0) {
      return make_error(Errc::internal, fmt::format("gnutls: {}", gnutls_strerror(rc)));
    }
    struct Deinit {
      gnutls_session_t s;
      ~Deinit() { gnutls_deinit(s); }
    } deinit{s};
    gnutls_set_default_priority(s);
    gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, creds_);
    // The server is verified against ca_file and must be |host_| (a name or
    // an IP address in its certificate).
    bool is_ip = host_.find_first_not_of("0123456789.") == std::string::npos || host_.find(':') != std::string::npos;
    if (!is_ip) gnutls_server_name_set(s, GNUTLS_NAME_DNS, host_.data(), host_.size());
    gnutls_session_set_verify_cert(s, host_.c_str(), 0);
    gnutls_transport_set_int(s, fd);
    gnutls_handshake_set_timeout(s, consul_timeout_ms);
    int rc;
    do {
      rc = gnutls_handshake(s);
    } while (rc < 0 && gnutls_error_is_fatal(rc) == 0);
    if (rc < 0) {
      std::string why = gnutls_strerror(rc);
      if (rc == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
        gnutls_datum_t text{};
        if (gnutls_certificate_verification_status_print(gnutls_session_get_verify_cert_status(s),
                                                          gnutls_certificate_type_get(s), &text, 0) == 0) {
          why = reinterpret_cast<const char*>(text.data);
          gnutls_free(text.data);
        }
      }
      return make_error(Errc::io, fmt::format("TLS handshake with {}: {}", addr_, why));
    }
    for (std::size_t sent = 0; sent < request.size();) {
      ssize_t n = gnutls_record_send(s, request.data() + sent, request.size() - sent);
      if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) continue;
      if (n < 0) return make_error(Errc::io, fmt::format("TLS send: {}", gnutls_strerror(static_cast<int>(n))));
      sent += static_cast<std::size_t>(n);
    }
    char buf[16384];
    for (;;) {
      ssize_t n = gnutls_record_recv(s, buf, sizeof buf);
      if (n == GNUTLS_E_INTERRUPTED) continue;
      if (n == 0 || n == GNUTLS_E_PREMATURE_TERMINATION) return {};  // many servers close without close_notify
      if (n == GNUTLS_E_AGAIN) return make_error(Errc::io, "no answer within 5 s");
      if (n < 0) return make_error(Errc::io, fmt::format("TLS recv: {}", gnutls_strerror(static_cast<int>(n))));
      if (reader.feed(buf, static_cast<std::size_t>(n))) return {};
    }
  }

  std::string addr_;
  std::string host_;
  std::string port_;
  gnutls_certificate_credentials_t creds_ = nullptr;
};

json::value statement_json(const consul::Statement& s) { return json::array{json::value(s.sql), s.params}; }

// Rows of one query through POST /v1/queries; an error carries the agent's.
Result<std::vector<json::array>> query_rows(const ApiTarget& api, const consul::Statement& s) {
  auto res = api::http_request(api.addr, "POST", "/v1/queries", json::serialize(statement_json(s)), api.headers);
  if (res.status == 0) return make_error(Errc::io, fmt::format("no answer from the agent at {}: {}", api.addr, res.error));
  if (res.status != 200) {
    auto body = res.json();
    const json::value* e = body && body->is_object() ? body->as_object().if_contains("error") : nullptr;
    std::string why = e == nullptr ? res.body : e->is_string() ? std::string(e->as_string()) : json::serialize(*e);
    return make_error(Errc::invalid_argument, fmt::format("HTTP {}: {}", res.status, why));
  }
  std::vector<json::array> rows;
  for (const auto& line : res.ndjson()) {
    if (!line.is_object()) continue;
    const auto& o = line.as_object();
    if (const auto* e = o.if_contains("error")) return make_error(Errc::invalid_argument, json::serialize(*e));
    if (const auto* row = o.if_contains("row"); row && row->is_array() && row->as_array().size() == 2 &&
                                                row->as_array()[1].is_array()) {
      rows.push_back(row->as_array()[1].as_array());
    }
  }
  return rows;
}

// One transaction through POST /v1/transactions. |fatal| tells an answer of
// the agent (SQL refused: no point retrying) from the agent being away.
struct WriteError {
  std::string message;
  bool fatal = false;
};
std::optional<WriteError> write_statements(const ApiTarget& api, const std::vector<consul::Statement>& statements) {
  json::array body;
  for (const auto& s : statements) body.push_back(statement_json(s));
  auto res = api::http_request(api.addr, "POST", "/v1/transactions", json::serialize(body), api.headers);
  if (res.status == 0) return WriteError{fmt::format("no answer from the agent at {}: {}", api.addr, res.error), false};
  if (res.status >= 500) return WriteError{fmt::format("agent: HTTP {}: {}", res.status, res.body), false};
  if (res.status != 200) return WriteError{fmt::format("agent refused the write: HTTP {}: {}", res.status, res.body), true};
  if (auto parsed = res.json(); parsed && parsed->is_object()) {
    if (const auto* results = parsed->as_object().if_contains("results"); results && results->is_array()) {
      for (const auto& r : results->as_array()) {
        if (r.is_object() && r.as_object().contains("error")) {
          return WriteError{"agent refused the write: " + json::serialize(r.at("error")), true};
        }
      }
    }
  }
  return std::nullopt;
}

// The tables must exist with Corrosion's columns (doc/cli/consul.md).
Result<void> check_tables(const ApiTarget& api) {
  struct Table {
    const char* name;
    std::vector<const char*> columns;
  };
  for (const Table& t :
       {Table{"consul_services", {"node", "id", "name", "tags", "meta", "port", "address", "updated_at", "source"}},
        Table{"consul_checks",
              {"node", "id", "service_id", "service_name", "name", "status", "output", "updated_at", "source"}}}) {
    consul::Statement q{fmt::format("SELECT name FROM pragma_table_xinfo('{}')", t.name), {}};
    auto rows = query_rows(api, q);
    if (!rows) return make_error(Errc::io, fmt::format("cannot read the columns of {}: {}", t.name, rows.error().message));
    std::set<std::string> have;
    for (const auto& r : *rows)
      if (!r.empty() && r[0].is_string()) have.insert(std::string(r[0].as_string()));
    if (have.empty()) {
      return make_error(Errc::invalid_argument,
                        fmt::format("table {} does not exist: add the consul tables to the schema", t.name));
    }
    for (const char* c : t.columns) {
      if (have.count(c) == 0) return make_error(Errc::invalid_argument, fmt::format("table {} has no column {}", t.name, c));
    }
  }
  return {};
}

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "localhost";
  return buf;
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

int cmd_consul_sync(const GlobalOptions& g, const std::optional<std::string>& node_option) {
  auto rc = resolve_config(g);
  if (!rc) return cli_fail(rc.error().message);
  auto api = api_target(g);
  if (!api) return cli_fail(api.error().message);
  const core::ConsulConfig consul_config = rc->config.consul.value_or(core::ConsulConfig{});
  auto consul = ConsulClient::make(consul_config);
  if (!consul) return cli_fail(consul.error().message);
  const std::string node = node_option.value_or(host_name());
  if (node.empty()) return cli_fail("--node must not be empty");

  if (auto ok = check_tables(*api); !ok) return cli_fail(ok.error().message);
  consul::Mirror mirror(node);
  {
    auto services = query_rows(*api, consul::services_query(node));
    if (!services) return cli_fail("cannot read consul_services: " + services.error().message);
    auto checks = query_rows(*api, consul::checks_query(node));
    if (!checks) return cli_fail("cannot read consul_checks: " + checks.error().message);
    std::vector<consul::Service> s;
    std::vector<consul::Check> c;
    for (const auto& r : *services)
      if (auto v = consul::service_from_row(r)) s.push_back(std::move(*v));
    for (const auto& r : *checks)
      if (auto v = consul::check_from_row(r)) c.push_back(std::move(*v));
    mirror.seed(s, c);
  }
  say(fmt::format("mirroring consul at {}{} into node '{}' ({} services, {} checks already there)",
                  consul_config.tls ? "https://" : "http://", consul_config.address, node, mirror.services_known(),
                  mirror.checks_known()));

  // The first pass is a full one (Corrosion's sync timer fires at once).
  auto next_full = Clock::now();
  std::string last_error;
  for (;;) {
    const auto started = Clock::now();
    const bool full = started >= next_full;
    std::string error;
    auto services_body = (*consul)->get("/v1/agent/services");
    auto checks_body = services_body ? (*consul)->get("/v1/agent/checks") : Result<std::string>{};
    if (!services_body) {
      error = services_body.error().message;
    } else if (!checks_body) {
      error = checks_body.error().message;
    } else {
      auto services = consul::parse_services(*services_body);
      auto checks = consul::parse_checks(*checks_body);
      if (!services || !checks) {
        error = "consul answered garbage: " + (!services ? services.error().message : checks.error().message);
      } else {
        auto plan = mirror.plan(*services, *checks, full, now_ms());
        if (plan.statements.empty()) {
          mirror.commit(std::move(plan));
        } else if (auto failed = write_statements(*api, plan.statements)) {
          if (failed->fatal) return cli_fail(failed->message);
          error = failed->message;
        } else {
          if (plan.services.upserted + plan.services.deleted + plan.checks.upserted + plan.checks.deleted > 0) {
            say(fmt::format("{}services: {} written, {} deleted; checks: {} written, {} deleted",
                            full ? "full pass: " : "", plan.services.upserted, plan.services.deleted,
                            plan.checks.upserted, plan.checks.deleted));
          }
          mirror.commit(std::move(plan));
        }
      }
      if (error.empty() && full) next_full = started + full_interval;
    }
    // One line per distinct failure, not one per second.
    if (!error.empty() && error != last_error) say(error + " (retrying every second)");
    if (error.empty() && !last_error.empty()) say("consul and the agent answer again");
    last_error = error;
    std::this_thread::sleep_until(started + pull_interval);
  }
}

}  // namespace patina::tools
