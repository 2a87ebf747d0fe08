#pragma once
// `patina consul sync [--node NAME]` (SPEC.md §7.5): mirrors the local Consul
// agent ([consul] client.address, HTTPS with a client certificate when
// client.tls is set) into consul_services / consul_checks through the
// node's HTTP API (tools/consul_mirror.hpp says what is written). Polls
// every second, writes everything again every 15 minutes, and runs until
// SIGINT/SIGTERM. Consul unreachable, slow (5 s timeout) or answering
// garbage is logged and retried on the next poll; a write the agent refuses
// (the tables missing, SQL errors) ends the command with code 1, as
// Corrosion's does. NAME defaults to the host name.

#include <optional>
#include <string>

#include "tools/agent.hpp"

namespace patina::tools {

int cmd_consul_sync(const GlobalOptions& g, const std::optional<std::string>& node);

}  // namespace patina::tools
