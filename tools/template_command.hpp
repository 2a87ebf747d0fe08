#pragma once
// `patina template SRC:DST[:CMD]... [--once]` (SPEC.md §7.5): renders each
// template (tools/template_script.hpp) against the agent's data and writes
// DST atomically (a temporary file beside it, renamed over it), then runs
// CMD (through /bin/sh -c) if given. Without --once it keeps watching:
// every sql(...) of a render is a subscription (POST /v1/subscriptions),
// and a change event on any of them re-renders 100 ms later (changes in
// between are taken in the same render); an edited template file (checked
// every second, compared by content) is compiled and rendered again. A
// render that fails (agent down, SQL error) is logged and retried after
// 1 s, 2 s, 4 s, then every 5 s, or on the next change; DST keeps its last good content.

#include <string>
#include <vector>

#include "tools/agent.hpp"

namespace patina::tools {

int cmd_template(const GlobalOptions& g, const std::vector<std::string>& specs, bool once);

}  // namespace patina::tools
