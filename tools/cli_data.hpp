#pragma once
// CLI commands that work on the data: exec and query through the HTTP API,
// backup, restore and db lock on the database file.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tools/agent.hpp"

namespace patina::tools {

struct SqlCommand {
  std::string sql;
  std::vector<std::string> params;  // bound as TEXT, as Corrosion's CLI does
  bool timer = false;
  bool columns = false;             // query only: print the column names first
  std::optional<double> timeout;    // seconds
};

int cmd_exec(const GlobalOptions& g, const SqlCommand& c);
int cmd_query(const GlobalOptions& g, const SqlCommand& c);
int cmd_backup(const GlobalOptions& g, const std::string& path);

struct RestoreOptions {
  std::string path;
  bool self_actor_id = false;
  std::optional<std::string> actor_id;
  bool force = false;  // restore even though an agent answers on the admin socket
};
int cmd_restore(const GlobalOptions& g, const RestoreOptions& r);
int cmd_db_lock(const GlobalOptions& g, const std::vector<std::string>& command);
// The |limit| most recent versions (by db_version, any actor), each as one
// file in |out_dir| holding the changeset frame broadcast would compress:
// samples for `zstd --train` (gossip.compression.dict_dir). Read-only, safe
// while the agent runs.
int cmd_db_sample_changes(const GlobalOptions& g, const std::string& out_dir, std::int64_t limit);

// Where the agent's HTTP API answers (api.bind_addr, a wildcard reached on
// loopback) and the headers every request carries (JSON, bearer token).
struct ApiTarget {
  std::string addr;
  std::vector<std::pair<std::string, std::string>> headers;
};
Result<ApiTarget> api_target(const GlobalOptions& g);

// Every CLI failure: one clear line on stderr, exit code 1.
int cli_fail(const std::string& message);

// One line on stderr with the UTC time, for long-running commands
// ("2026-01-02T03:04:05Z patina template: rendered ..."). Thread-safe.
void print_event(const std::string& command, const std::string& message);

}  // namespace patina::tools
