// `patina consul sync` against a real agent and a stand-in for the local
// Consul agent's HTTP API (the two GETs the mirror makes; plain HTTP, or
// HTTPS that demands a client certificate): services and checks become rows,
// changes are written and nothing else, rows with a source are left alone,
// a Consul that goes away is waited for, and a missing table ends the
// command with one clear line.
#include <arpa/inet.h>
#include <gnutls/gnutls.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <csignal>
#include <mutex>
#include <optional>
#include <thread>

#include <fmt/format.h>

#include "api/http_client.hpp"
#include "tests/integration/api_agent.hpp"
#include "tests/integration/process.hpp"

namespace patina::testing {
namespace {

using namespace std::chrono_literals;

// Corrosion's documented tables (doc/cli/consul.md), generated columns included.
const char* consul_schema = R"J([
 "CREATE TABLE consul_services (node TEXT NOT NULL, id TEXT NOT NULL, name TEXT NOT NULL DEFAULT '', tags TEXT NOT NULL DEFAULT '[]', meta TEXT NOT NULL DEFAULT '{}', port INTEGER NOT NULL DEFAULT 0, address TEXT NOT NULL DEFAULT '', updated_at INTEGER NOT NULL DEFAULT 0, source TEXT, app_id INTEGER AS (CAST(JSON_EXTRACT(meta, '$.app_id') AS INTEGER)), PRIMARY KEY (node, id)) WITHOUT ROWID",
 "CREATE TABLE consul_checks (node TEXT NOT NULL, id TEXT NOT NULL, service_id TEXT NOT NULL DEFAULT '', service_name TEXT NOT NULL DEFAULT '', name TEXT NOT NULL DEFAULT '', status TEXT NOT NULL DEFAULT '', output TEXT NOT NULL DEFAULT '', updated_at INTEGER NOT NULL DEFAULT 0, source TEXT, PRIMARY KEY (node, id)) WITHOUT ROWID"
])J";

struct ServerTls {
  std::string cert_file;
  std::string key_file;
  std::string client_ca_file;  // client certificates must chain to it
};

// Answers GET /v1/agent/services and /v1/agent/checks with what set() gave,
// one request per connection, on 127.0.0.1 and an ephemeral port.
class FakeConsul {
 public:
  explicit FakeConsul(std::optional<ServerTls> tls = std::nullopt) : tls_(std::move(tls)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(fd_, 16);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    if (tls_) {
      gnutls_certificate_allocate_credentials(&creds_);
      gnutls_certificate_set_x509_key_file(creds_, tls_->cert_file.c_str(), tls_->key_file.c_str(),
                                           GNUTLS_X509_FMT_PEM);
      gnutls_certificate_set_x509_trust_file(creds_, tls_->client_ca_file.c_str(), GNUTLS_X509_FMT_PEM);
    }
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeConsul() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
    if (creds_ != nullptr) gnutls_certificate_free_credentials(creds_);
  }
  std::string address() const { return fmt::format("127.0.0.1:{}", port_); }
  void set(std::string services, std::string checks) {
    std::lock_guard lock(mu_);
    services_ = std::move(services);
    checks_ = std::move(checks);
  }
  int answered() const { return answered_; }
  // Answer without "Connection: close" and wait for the client to hang up,
  // as a server that keeps connections alive does.
  void keep_connections_open() { keep_open_ = true; }

 private:
  void serve() {
    for (int i = 0; i < 100000 && !stop_; ++i) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) != 1) continue;
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      timeval tv{2, 0};
      ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      ::setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
      if (tls_) {
        serve_tls(c);
      } else {
        std::string req = read_request([&](char* b, std::size_t n) { return ::recv(c, b, n, 0); });
        std::string res = answer(req);
        (void)!::send(c, res.data(), res.size(), MSG_NOSIGNAL);
        if (keep_open_) {
          // Until the client closes: longer than its 5 s read timeout.
          timeval wait{8, 0};
          ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
          char byte;
          (void)!::recv(c, &byte, 1, 0);
        }
      }
      ::close(c);
    }
  }

  void serve_tls(int c) {
    gnutls_session_t s = nullptr;
    gnutls_init(&s, GNUTLS_SERVER);
    gnutls_set_default_priority(s);
    gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, creds_);
    gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUIRE);
    gnutls_session_set_verify_cert(s, nullptr, 0);
    gnutls_transport_set_int(s, c);
    gnutls_handshake_set_timeout(s, 2000);
    int rc;
    do {
      rc = gnutls_handshake(s);
    } while (rc < 0 && gnutls_error_is_fatal(rc) == 0);
    if (rc == 0) {
      std::string req = read_request([&](char* b, std::size_t n) { return gnutls_record_recv(s, b, n); });
      std::string res = answer(req);
      gnutls_record_send(s, res.data(), res.size());
      gnutls_bye(s, GNUTLS_SHUT_WR);
    }
    gnutls_deinit(s);
  }

  template <class Recv>
  static std::string read_request(Recv recv) {
    std::string req;
    char buf[4096];
    for (int i = 0; i < 64 && req.find("\r\n\r\n") == std::string::npos; ++i) {
      auto n = recv(buf, sizeof buf);
      if (n <= 0) break;
      req.append(buf, static_cast<std::size_t>(n));
    }
    return req;
  }

  std::string answer(const std::string& req) {
    std::string body;
    {
      std::lock_guard lock(mu_);
      if (req.rfind("GET /v1/agent/services ", 0) == 0) body = services_;
      if (req.rfind("GET /v1/agent/checks ", 0) == 0) body = checks_;
    }
    const char* connection = keep_open_ ? "" : "Connection: close\r\n";
    if (body.empty()) return fmt::format("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n{}\r\n", connection);
    ++answered_;
    return fmt::format("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n{}",
                       body.size(), connection, body);
  }

  std::optional<ServerTls> tls_;
  gnutls_certificate_credentials_t creds_ = nullptr;
  int fd_ = -1;
  unsigned short port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<bool> keep_open_{false};
  std::atomic<int> answered_{0};
  std::mutex mu_;
  std::string services_ = "{}";
  std::string checks_ = "{}";
  std::thread thread_;
};

std::string query(const ApiAgent& a, const std::string& sql) {
  auto r = run_patina({"query", "-c", a.config_path(), "--api-addr", a.api(), sql}, a.dir().path());
  return r.exit_code == 0 ? r.out : "error: " + r.err;
}

std::string services_json(const std::string& web_tags, const std::string& extra = "") {
  return fmt::format(R"({{"web1": {{"ID": "web1", "Service": "web", "Tags": {}, "Meta": {{"app_id": "7"}},
    "Port": 8080, "Address": "10.0.0.1"}}{}}})",
                     web_tags, extra);
}

std::string checks_json(const std::string& status, const std::string& output) {
  return fmt::format(R"({{"c1": {{"CheckID": "c1", "Name": "http", "Status": "{}", "Notes": "", "Output": "{}",
    "ServiceID": "web1", "ServiceName": "web"}}}})",
                     status, output);
}

TEST(ConsulSync, mirrors_services_and_checks_writing_only_changes) {
  FakeConsul consul;
  consul.set(services_json(R"(["a"])", R"(, "db": {"ID": "db", "Service": "pg", "Port": 5432})"),
             checks_json("passing", "ok"));
  ApiAgent a(fmt::format("[consul.client]\naddress = \"{}\"\n", consul.address()));
  ASSERT_TRUE(a.ready()) << a.process().log();
  ASSERT_EQ(api::http_request(a.api(), "POST", "/v1/migrations", consul_schema).status, 200);
  // Someone else's row of the same node: never touched.
  ASSERT_EQ(run_patina({"exec", "-c", a.config_path(), "--api-addr", a.api(),
                        "INSERT INTO consul_services (node, id, name, source) VALUES ('n1', 'manual', 'm', 'ops')"},
                       a.dir().path())
                .exit_code,
            0);

  Process sync({patina_binary(), "consul", "sync", "-c", a.config_path(), "--api-addr", a.api(), "--node", "n1"}, a.dir().path(),
               a.dir().file("consul-sync.log"));
  const std::string services_q = "SELECT id, name, tags, meta, port, address, app_id, source FROM consul_services "
                                 "WHERE node = 'n1' ORDER BY id";
  ASSERT_TRUE(wait_until([&] { return query(a, services_q) ==
                                      "db|pg|[]|{}|5432|||\n"
                                      "manual|m|[]|{}|0|||ops\n"
                                      "web1|web|[\"a\"]|{\"app_id\":\"7\"}|8080|10.0.0.1|7|\n"; },
                         20s))
      << query(a, services_q) << sync.log();
  const std::string checks_q = "SELECT id, service_id, service_name, name, status, output FROM consul_checks";
  EXPECT_TRUE(wait_until([&] { return query(a, checks_q) == "c1|web1|web|http|passing|ok\n"; }, 10s))
      << query(a, checks_q);

  // A check's output alone is no change; the tag change after it is
  // written, and the check row still holds the old output.
  consul.set(services_json(R"(["a"])", R"(, "db": {"ID": "db", "Service": "pg", "Port": 5432})"),
             checks_json("passing", "ok, later"));
  const int seen = consul.answered();
  ASSERT_TRUE(wait_until([&] { return consul.answered() >= seen + 4; }, 10s));  // two passes saw it
  consul.set(services_json(R"(["a", "b"])", R"(, "db": {"ID": "db", "Service": "pg", "Port": 5432})"),
             checks_json("passing", "ok, later"));
  EXPECT_TRUE(wait_until([&] { return query(a, "SELECT tags FROM consul_services WHERE id = 'web1'") ==
                                      "[\"a\",\"b\"]\n"; },
                         10s))
      << sync.log();
  EXPECT_EQ(query(a, checks_q), "c1|web1|web|http|passing|ok\n");
  // A status change is written, with the output of the moment.
  consul.set(services_json(R"(["a", "b"])", R"(, "db": {"ID": "db", "Service": "pg", "Port": 5432})"),
             checks_json("critical", "down"));
  EXPECT_TRUE(wait_until([&] { return query(a, checks_q) == "c1|web1|web|http|critical|down\n"; }, 10s))
      << query(a, checks_q);

  // Consul lost a service: its row goes, the manual one stays.
  consul.set(services_json(R"(["a", "b"])"), checks_json("critical", "down"));
  EXPECT_TRUE(wait_until([&] { return query(a, "SELECT id FROM consul_services ORDER BY id") == "manual\nweb1\n"; }, 10s))
      << sync.log();

  // Consul away: logged once, waited for.
  consul.set("", "");  // 404 on both
  EXPECT_TRUE(sync.wait_for_log("consul /v1/agent/services: HTTP 404")) << sync.log();
  consul.set(services_json(R"(["c"])"), checks_json("passing", "up"));
  EXPECT_TRUE(sync.wait_for_log("consul and the agent answer again")) << sync.log();
  EXPECT_TRUE(wait_until([&] { return query(a, "SELECT tags FROM consul_services WHERE id = 'web1'") == "[\"c\"]\n"; }, 10s));
  EXPECT_TRUE(sync.running()) << sync.log();
  sync.signal(SIGTERM);
  EXPECT_TRUE(sync.wait_exit().has_value());

  // A restart reads the rows back: it starts from what is there. This time
  // Consul keeps its connections open: answers are read to their end, not
  // to the connection's.
  consul.keep_connections_open();
  Process again({patina_binary(), "consul", "sync", "-c", a.config_path(), "--api-addr", a.api(), "--node", "n1"}, a.dir().path(),
                a.dir().file("consul-sync-2.log"));
  EXPECT_TRUE(again.wait_for_log("(1 services, 1 checks already there)")) << again.log();
  consul.set(services_json(R"(["d"])"), checks_json("passing", "up"));
  EXPECT_TRUE(wait_until([&] { return query(a, "SELECT tags FROM consul_services WHERE id = 'web1'") == "[\"d\"]\n"; }, 10s))
      << again.log();
  EXPECT_EQ(again.log().find("no answer within"), std::string::npos) << again.log();
  again.signal(SIGTERM);
  EXPECT_TRUE(again.wait_exit().has_value());
}

TEST(ConsulSync, refuses_to_start_without_the_tables_or_with_a_bad_address) {
  FakeConsul consul;
  ApiAgent a(fmt::format("[consul.client]\naddress = \"{}\"\n", consul.address()));
  ASSERT_TRUE(a.ready()) << a.process().log();
  auto r = run_patina({"consul", "sync", "-c", a.config_path(), "--api-addr", a.api(), "--node", "n1"}, a.dir().path());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("table consul_services does not exist"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;

  r = run_patina({"consul", "sync", "-c", a.config_path(), "--api-addr", a.api()}, a.dir().path(), 30s,
                 {"CONSUL__CLIENT__ADDRESS=no-port"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("is not host:port"), std::string::npos) << r.err;
}

TEST(ConsulSync, speaks_https_with_a_client_certificate) {
  ScratchDir certs;
  auto gen = [&](std::vector<std::string> args) {
    auto r = run_patina(args, certs.path());
    ASSERT_EQ(r.exit_code, 0) << r.err;
  };
  gen({"tls", "ca", "generate"});
  gen({"tls", "server", "generate", "127.0.0.1", "--ca-key", "ca_key.pem", "--ca-cert", "ca_cert.pem"});
  gen({"tls", "client", "generate", "--ca-key", "ca_key.pem", "--ca-cert", "ca_cert.pem"});
  FakeConsul consul(ServerTls{certs.file("server_cert.pem"), certs.file("server_key.pem"), certs.file("ca_cert.pem")});
  consul.set(services_json(R"(["tls"])"), checks_json("passing", "ok"));
  ApiAgent a(fmt::format("[consul.client]\naddress = \"{}\"\n[consul.client.tls]\nca_file = \"{}\"\n"
                         "cert_file = \"{}\"\nkey_file = \"{}\"\n",
                         consul.address(), certs.file("ca_cert.pem"), certs.file("client_cert.pem"),
                         certs.file("client_key.pem")));
  ASSERT_TRUE(a.ready()) << a.process().log();
  ASSERT_EQ(api::http_request(a.api(), "POST", "/v1/migrations", consul_schema).status, 200);
  Process sync({patina_binary(), "consul", "sync", "-c", a.config_path(), "--api-addr", a.api(), "--node", "n1"}, a.dir().path(),
               a.dir().file("consul-sync.log"));
  EXPECT_TRUE(wait_until([&] { return query(a, "SELECT tags FROM consul_services") == "[\"tls\"]\n"; }, 20s))
      << sync.log();
  sync.signal(SIGTERM);
  EXPECT_TRUE(sync.wait_exit().has_value());

  // A server the CA does not vouch for is refused, and said so.
  ScratchDir other;
  auto r = run_patina({"tls", "ca", "generate"}, other.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Process refused({patina_binary(), "consul", "sync", "-c", a.config_path(), "--api-addr", a.api(), "--node", "n2"},
                  a.dir().path(), a.dir().file("consul-sync-other.log"),
                  {"CONSUL__CLIENT__TLS__CA_FILE=" + other.file("ca_cert.pem")});
  EXPECT_TRUE(refused.wait_for_log("TLS handshake with")) << refused.log();
  EXPECT_EQ(query(a, "SELECT count(*) FROM consul_services WHERE node = 'n2'"), "0\n");
  refused.signal(SIGTERM);
  EXPECT_TRUE(refused.wait_exit().has_value());
}

}  // namespace
}  // namespace patina::testing
