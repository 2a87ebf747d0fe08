// patina: the agent and its command line.
#include "tools/cli.hpp"

int main(int argc, char** argv) { return patina::tools::run_cli(argc, argv); }
