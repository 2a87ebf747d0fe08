#pragma once
// The `patina` command line: every subcommand, parsed with CLI11.

namespace patina::tools {

// Parses argv, runs the chosen subcommand, returns the process exit code.
int run_cli(int argc, char** argv);

}  // namespace patina::tools
