// patina: the agent and its command line.
#include "core/sqlite.hpp"
#include "tools/cli.hpp"

int main(int argc, char** argv) {
  patina::core::configure_sqlite_process();
  return patina::tools::run_cli(argc, argv);
}
