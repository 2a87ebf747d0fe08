#pragma once
// A real agent on loopback with ephemeral ports, for API tests.

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "tests/integration/process.hpp"

namespace patina::testing {

inline constexpr const char* test_schema = R"(
CREATE TABLE tests (id INTEGER NOT NULL PRIMARY KEY, text TEXT NOT NULL DEFAULT '');
CREATE TABLE kinds (id INTEGER NOT NULL PRIMARY KEY, i INTEGER, r REAL, t TEXT, b BLOB, n TEXT);
)";

class ApiAgent {
 public:
  // |extra| is appended to the generated config (extra sections/keys).
  // With |wait| false the process is only launched: call wait_ready()
  // before using its addresses (lets a cluster start its agents at once).
  explicit ApiAgent(const std::string& extra = "", const std::string& api_extra = "",
                    const std::string& gossip_extra = "", bool wait = true);
  ~ApiAgent();
  bool ready() const { return ready_; }
  const std::string& api() const { return api_; }
  const std::string& metrics() const { return metrics_; }
  const std::string& gossip() const { return gossip_; }
  const ScratchDir& dir() const { return dir_; }
  Process& process() { return *process_; }
  std::string db_path() const { return dir_.file("data/state.db"); }
  // SIGTERM and wait; the exit code.
  int stop();
  // SIGKILL and wait: a crash, nothing flushed or saved by the agent.
  int kill();
  std::string admin_path() const { return dir_.file("admin.sock"); }
  // Starts the agent again on the same config and data; true when ready.
  bool start();
  // Launches the process without waiting; wait_ready() then waits.
  void launch();
  bool wait_ready();
  std::string config_path() const { return dir_.file("config.toml"); }

 private:
  ScratchDir dir_;
  std::unique_ptr<Process> process_;
  bool ready_ = false;
  std::size_t readies_before_ = 0;  // "ready:" lines of earlier runs in the log
  std::string api_;
  std::string metrics_;
  std::string gossip_;
};

// The field |key|=value of the latest "ready:" line in an agent's log.
std::string ready_field(const std::string& log, const std::string& key);

// Cluster helpers over the real CLI and API.
// Active members the agent's SWIM reports (`patina cluster members`).
std::size_t count_members(const ApiAgent& a);
// `SELECT id, text FROM tests ORDER BY id` as NDJSON without the eoq line;
// empty when the query failed.
std::string rows(const ApiAgent& a);
// The overall digest of `patina sync digest`; empty on failure.
std::string digest(const ApiAgent& a);
// The sum of every series of metric |name| on the Prometheus listener at
// |metrics_addr| (0 when absent).
double metric_sum(const std::string& metrics_addr, const std::string& name);
// Polls |done| every 100 ms until it holds or |timeout| passed.
bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout);

}  // namespace patina::testing
