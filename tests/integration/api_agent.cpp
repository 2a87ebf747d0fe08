#include "tests/integration/api_agent.hpp"

#include <signal.h>

#include <fmt/format.h>

#include "api/http_client.hpp"

#include <chrono>
#include <sstream>
#include <thread>

namespace patina::testing {

std::string ready_field(const std::string& log, const std::string& key) {
  auto at = log.rfind(" " + key + "=");  // the latest start
  if (at == std::string::npos) return {};
  at += key.size() + 2;
  auto end = log.find_first_of(" ,\n", at);
  return log.substr(at, end - at);
}

ApiAgent::ApiAgent(const std::string& extra, const std::string& api_extra, const std::string& gossip_extra,
                   bool wait) {
  dir_.write("schema.sql", test_schema);
  dir_.write("config.toml", fmt::format(R"([db]
path = "{0}/data/state.db"
schema_paths = ["{0}/schema.sql"]

[api]
addr = "127.0.0.1:0"
{2}

[gossip]
addr = "127.0.0.1:0"
{3}

[admin]
path = "{0}/admin.sock"

[telemetry]
prometheus.addr = "127.0.0.1:0"
{1}
)",
                                        dir_.path().string(), extra, api_extra,
                                        gossip_extra.find("[gossip.tls]") == std::string::npos
                                            ? "plaintext = true\n" + gossip_extra
                                            : gossip_extra));
  if (wait) {
    start();
  } else {
    launch();
  }
}

bool ApiAgent::start() {
  launch();
  return wait_ready();
}

void ApiAgent::launch() {
  readies_before_ = 0;
  if (process_) {
    std::string old = process_->log();
    for (auto at = old.find("ready:"); at != std::string::npos; at = old.find("ready:", at + 1)) ++readies_before_;
  }
  process_ = std::make_unique<Process>(
      std::vector<std::string>{patina_binary(), "agent", "-c", dir_.file("config.toml")}, dir_.path(),
      dir_.file("agent.log"));
  ready_ = false;
}

bool ApiAgent::wait_ready() {
  for (int i = 0; i < 1000 && !ready_ && process_->running(); ++i) {
    std::string log = process_->log();
    std::size_t n = 0;
    for (auto at = log.find("ready:"); at != std::string::npos; at = log.find("ready:", at + 1)) ++n;
    ready_ = n > readies_before_;
    if (!ready_) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (ready_) {
    std::string log = process_->log();
    api_ = ready_field(log, "api");
    metrics_ = ready_field(log, "metrics");
    gossip_ = ready_field(log, "gossip");
  }
  return ready_;
}

ApiAgent::~ApiAgent() {
  if (process_->running()) stop();
}

int ApiAgent::kill() {
  process_->signal(SIGKILL);
  return process_->wait_exit().value_or(-1);
}

std::size_t count_members(const ApiAgent& a) {
  auto r = run_patina({"cluster", "members", "--admin-path", a.admin_path()}, a.dir().path());
  if (r.exit_code != 0) return 0;
  std::size_t n = 0;
  for (auto at = r.out.find("\"addr\""); at != std::string::npos; at = r.out.find("\"addr\"", at + 1)) ++n;
  return n;
}

std::string rows(const ApiAgent& a) {
  auto r = api::http_request(a.api(), "POST", "/v1/queries", R"J("SELECT id, text FROM tests ORDER BY id")J");
  auto eoq = r.body.find("{\"eoq\"");
  return r.status == 200 ? r.body.substr(0, eoq) : std::string();
}

std::string digest(const ApiAgent& a) {
  auto r = run_patina({"sync", "digest", "--admin-path", a.admin_path()}, a.dir().path());
  if (r.exit_code != 0) return {};
  auto at = r.out.find("\"digest\":\"");
  if (at == std::string::npos) return {};
  at += 10;
  return r.out.substr(at, r.out.find('"', at) - at);
}

double metric_sum(const std::string& metrics_addr, const std::string& name) {
  auto r = api::http_request(metrics_addr, "GET", "/metrics", "", {});
  std::istringstream in(r.body);
  std::string line;
  double sum = 0;
  while (std::getline(in, line)) {
    if (line.rfind(name, 0) == 0 && (line[name.size()] == ' ' || line[name.size()] == '{')) {
      sum += std::stod(line.substr(line.rfind(' ') + 1));
    }
  }
  return sum;
}

bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (int i = 0; i < 100000; ++i) {  // bounded by the deadline, and by count
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

int ApiAgent::stop() {
  process_->signal(SIGTERM);
  return process_->wait_exit().value_or(-1);
}

}  // namespace patina::testing
