#pragma once
// `patina agent`: the composition root. Wires core (writer, readers,
// watchdog), io and api together and runs the reactor on the calling thread.

#include <optional>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "core/result.hpp"

namespace patina::tools {

// Flags every subcommand shares (SPEC.md §3.1).
struct GlobalOptions {
  std::optional<std::string> config_path;
  std::optional<std::string> api_addr;
  std::optional<std::string> db_path;
  std::optional<std::string> admin_path;
};

inline constexpr const char* system_config_path = "/etc/patina/config.toml";

struct ResolvedConfig {
  core::Config config;
  std::string file;          // the file read, empty for the embedded config
  std::string description;   // for the first log line
  bool embedded = false;     // running on the embedded config + example schema
  std::vector<std::string> warnings;
};

// -c FILE, else /etc/patina/config.toml, else the embedded default; then the
// environment and the command-line overrides.
Result<ResolvedConfig> resolve_config(const GlobalOptions& options);

// Runs the agent until SIGTERM/SIGINT; returns the process exit code.
int run_agent(const GlobalOptions& options);

}  // namespace patina::tools
