// The agent as a real process: lifecycle, config errors, admin socket,
// watchdog, signals, io_uring.
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <fstream>

#include <fmt/format.h>

#include "tests/integration/process.hpp"

namespace patina::testing {
namespace {

std::string config_text(const ScratchDir& dir, const std::string& extra = "") {
  return fmt::format(R"([db]
path = "{0}/data/state.db"

[api]
addr = "127.0.0.1:0"

[gossip]
addr = "127.0.0.1:0"
plaintext = true

[admin]
path = "{0}/admin.sock"
{1})",
                     dir.path().string(), extra);
}

std::unique_ptr<Process> start_agent(const ScratchDir& dir, const std::string& config = "config.toml",
                                     std::vector<std::string> prefix = {}) {
  std::vector<std::string> argv = std::move(prefix);
  argv.push_back(patina_binary());
  argv.insert(argv.end(), {"agent", "-c", dir.file(config)});
  return std::make_unique<Process>(argv, dir.path(), dir.file("agent.log"));
}

TEST(Agent, starts_answers_and_stops_cleanly_on_sigterm) {
  ScratchDir dir;
  dir.write("config.toml", config_text(dir));
  auto agent = start_agent(dir);
  ASSERT_TRUE(agent->wait_for_log("ready:")) << agent->log();
  EXPECT_NE(agent->log().find("starting: config file " + dir.file("config.toml")), std::string::npos);

  // The admin socket is private to the node's user.
  struct stat st{};
  ASSERT_EQ(::stat(dir.file("admin.sock").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto ping = run_patina({"ping", "--admin-path", dir.file("admin.sock")}, dir.path());
  EXPECT_EQ(ping.exit_code, 0) << ping.err;

  agent->signal(SIGTERM);
  EXPECT_EQ(agent->wait_exit(), 0) << agent->log();
  EXPECT_NE(agent->log().find("database checkpointed and closed"), std::string::npos);
  // The checkpoint left everything in the main file.
  std::error_code ec;
  auto wal = std::filesystem::file_size(dir.file("data/state.db-wal"), ec);
  EXPECT_TRUE(ec || wal == 0) << wal;
  EXPECT_FALSE(std::filesystem::exists(dir.file("admin.sock")));
}

TEST(Agent, config_errors_exit_2_with_file_line_and_key) {
  ScratchDir dir;
  dir.write("config.toml", config_text(dir, "\n[watchdog]\nstall_ms = \"fast\"\n"));
  auto r = run_patina({"agent", "-c", dir.file("config.toml")}, dir.path());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find(dir.file("config.toml") + ":15:12: watchdog.stall_ms: expected an integer, got a string"),
            std::string::npos)
      << r.err;

  auto missing = run_patina({"agent", "-c", dir.file("nope.toml")}, dir.path());
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.err.find("nope.toml: cannot read config file"), std::string::npos) << missing.err;
}

TEST(Agent, runs_on_the_embedded_default_config_without_a_config_file) {
  ScratchDir dir;
  // Keep the embedded config's fixed ports out of the way of other tests:
  // only the admin socket and database are used before "ready".
  Process agent({patina_binary(), "agent"}, dir.path(), dir.file("agent.log"));
  ASSERT_TRUE(agent.wait_for_log("ready:")) << agent.log();
  std::string log = agent.log();
  auto first_line = log.substr(0, log.find('\n'));
  EXPECT_NE(first_line.find("embedded default config and example schema"), std::string::npos) << first_line;
  EXPECT_TRUE(std::filesystem::exists(dir.file("patina-data/state.db")));
  auto ping = run_patina({"ping"}, dir.path());
  EXPECT_EQ(ping.exit_code, 0) << ping.err;
  agent.signal(SIGINT);
  EXPECT_EQ(agent.wait_exit(), 0);

  // The example schema was applied.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(dir.file("patina-data/state.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master WHERE name IN ('machines','services')", -1,
                               &stmt, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(stmt, 0), 2);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
}

TEST(Agent, second_agent_on_the_same_admin_socket_refuses_to_start) {
  ScratchDir dir;
  dir.write("config.toml", config_text(dir));
  auto first = start_agent(dir);
  ASSERT_TRUE(first->wait_for_log("ready:")) << first->log();
  auto second = run_patina({"agent", "-c", dir.file("config.toml")}, dir.path());
  EXPECT_NE(second.exit_code, 0);
  EXPECT_NE(second.err.find("in use by another running agent"), std::string::npos) << second.err;
  // The first one is unharmed.
  EXPECT_EQ(run_patina({"ping", "--admin-path", dir.file("admin.sock")}, dir.path()).exit_code, 0);
  first->signal(SIGTERM);
  EXPECT_EQ(first->wait_exit(), 0);
}

TEST(Agent, log_filter_changes_at_runtime_and_sighup_rereads_the_config) {
  ScratchDir dir;
  dir.write("config.toml", config_text(dir));
  auto agent = start_agent(dir);
  ASSERT_TRUE(agent->wait_for_log("ready:")) << agent->log();
  std::string admin = dir.file("admin.sock");

  auto set = run_patina({"log", "set", "debug", "--admin-path", admin}, dir.path());
  EXPECT_EQ(set.exit_code, 0) << set.err;
  EXPECT_TRUE(agent->wait_for_log("log filter set to 'debug'"));
  auto bad = run_patina({"log", "set", "loudest", "--admin-path", admin}, dir.path());
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("unknown log level 'loudest'"), std::string::npos) << bad.err;
  auto reset = run_patina({"log", "reset", "--admin-path", admin}, dir.path());
  EXPECT_EQ(reset.exit_code, 0);
  EXPECT_TRUE(agent->wait_for_log("log filter reset to 'info'"));

  dir.write("config.toml", config_text(dir, "\n[log]\nfilter = \"warn,agent=debug\"\n"));
  agent->signal(SIGHUP);
  EXPECT_TRUE(agent->wait_for_log("log filter 'warn,agent=debug'")) << agent->log();

  // A broken file on reload keeps the running config.
  dir.write("config.toml", "[db\n");
  agent->signal(SIGHUP);
  EXPECT_TRUE(agent->wait_for_log("reload failed, keeping the running config")) << agent->log();
  EXPECT_EQ(run_patina({"ping", "--admin-path", admin}, dir.path()).exit_code, 0);
  agent->signal(SIGTERM);
  EXPECT_EQ(agent->wait_exit(), 0);
}

TEST(Agent, cli_failures_print_one_line_and_exit_nonzero) {
  ScratchDir dir;
  auto r = run_patina({"ping", "--admin-path", dir.file("nobody.sock")}, dir.path());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("patina: error: cannot connect to the agent's admin socket"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1);
  auto unknown = run_patina({"frobnicate"}, dir.path());
  EXPECT_NE(unknown.exit_code, 0);
  EXPECT_EQ(unknown.err, "patina: error: unknown command 'frobnicate' (see patina --help)\n");
  auto unknown_sub = run_patina({"db", "frobnicate"}, dir.path());
  EXPECT_EQ(unknown_sub.err, "patina: error: unknown command 'frobnicate' (see patina db --help)\n");
  auto bare = run_patina({"tls", "ca"}, dir.path());
  EXPECT_EQ(bare.err, "patina: error: patina tls ca needs a command: one of generate (see patina tls ca --help)\n");
  auto help = run_patina({"--help"}, dir.path());
  EXPECT_EQ(help.exit_code, 0);
  for (const char* cmd :
       {"agent", "exec", "query", "backup", "restore", "db", "cluster", "log", "reload", "debug", "template", "consul"}) {
    EXPECT_NE(help.out.find(cmd), std::string::npos) << cmd;
  }
}

class Watchdog : public ::testing::TestWithParam<const char*> {};

TEST_P(Watchdog, a_stalled_loop_ends_the_process_with_code_70) {
  ScratchDir dir;
  dir.write("config.toml", config_text(dir, "\n[watchdog]\nstall_ms = 200\ndebug_commands = true\n"));
  auto agent = start_agent(dir);
  ASSERT_TRUE(agent->wait_for_log("ready:")) << agent->log();
  // 5x stall_ms: the watchdog must end the process before the stall does.
  auto r = run_patina({"debug", "stall", "--loop", GetParam(), "--ms", "1000", "--admin-path", dir.file("admin.sock")},
                      dir.path());
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(agent->wait_exit(), 70) << agent->log();
  std::string log = agent->log();
  EXPECT_NE(log.find(fmt::format("loop '{}' stalled", GetParam())), std::string::npos) << log;
  if (std::string(GetParam()) == "writer") {
    EXPECT_NE(log.find("running job 'debug stall'"), std::string::npos) << log;
  }
}

INSTANTIATE_TEST_SUITE_P(Loops, Watchdog, ::testing::Values("reactor", "writer"));

// SIGSTOP stands for a paused VM or a starved host: every thread stops, the
// watchdog's too. The node used to exit 70 on SIGCONT; now it says the
// process did not run and carries on.
TEST(Agent, a_node_stopped_for_several_stall_periods_carries_on_after_sigcont) {
  ScratchDir dir;
  dir.write("config.toml", config_text(dir, "\n[watchdog]\nstall_ms = 200\n"));
  auto agent = start_agent(dir);
  ASSERT_TRUE(agent->wait_for_log("ready:")) << agent->log();
  agent->signal(SIGSTOP);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  agent->signal(SIGCONT);
  ASSERT_TRUE(agent->wait_for_log("the process did not run for about")) << agent->log();
  // Three more stall periods: still running, still answering.
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  EXPECT_TRUE(agent->running()) << agent->log();
  auto ping = run_patina({"ping", "--admin-path", dir.file("admin.sock")}, dir.path());
  EXPECT_EQ(ping.exit_code, 0) << ping.err;
  EXPECT_EQ(agent->log().find("stalled"), std::string::npos) << agent->log();
  agent->signal(SIGTERM);
  EXPECT_EQ(agent->wait_exit(), 0) << agent->log();
}

TEST(Agent, debug_commands_are_refused_unless_enabled) {
  ScratchDir dir;
  dir.write("config.toml", config_text(dir));
  auto agent = start_agent(dir);
  ASSERT_TRUE(agent->wait_for_log("ready:")) << agent->log();
  auto r = run_patina({"debug", "stall", "--loop", "reactor", "--ms", "5000", "--admin-path", dir.file("admin.sock")},
                      dir.path());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("debug commands are disabled"), std::string::npos) << r.err;
  EXPECT_TRUE(agent->running());
  agent->signal(SIGTERM);
  EXPECT_EQ(agent->wait_exit(), 0);
}

TEST(Agent, sockets_and_timers_go_through_io_uring_not_epoll) {
  if (std::system("command -v strace >/dev/null 2>&1") != 0) GTEST_SKIP() << "strace is not installed";
  ScratchDir dir;
  dir.write("config.toml", config_text(dir));
  std::string trace = dir.file("trace.txt");
  auto agent = start_agent(dir, "config.toml",
                           {"/usr/bin/strace", "-f", "-qq", "-e", "trace=io_uring_setup,epoll_create,epoll_create1",
                            "-o", trace});
  ASSERT_TRUE(agent->wait_for_log("ready:", std::chrono::seconds(40))) << agent->log();
  // Signal the agent itself (strace would only detach on SIGTERM).
  std::string log = agent->log();
  auto at = log.find(" pid=");
  ASSERT_NE(at, std::string::npos) << log;
  pid_t pid = std::stoi(log.substr(at + 5));
  ASSERT_GT(pid, 1);
  ::kill(pid, SIGTERM);
  EXPECT_EQ(agent->wait_exit(), 0) << agent->log();
  std::ifstream in(trace);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string t = ss.str();
  EXPECT_NE(t.find("io_uring_setup("), std::string::npos) << t;
  EXPECT_EQ(t.find("epoll_create"), std::string::npos) << t;
}

}  // namespace
}  // namespace patina::testing
