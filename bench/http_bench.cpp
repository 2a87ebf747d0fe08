// HTTP API throughput and latency against a real agent on loopback, beside
// raw SQLite figures from the same run.
//
//   build/bench/http_bench [seconds_per_scenario]
//
// Starts build/patina on a scratch directory with ephemeral ports, then:
//   - single-row transactions at 1, 16 and 64 keep-alive connections
//   - point-read queries at 16 connections
//   - the write and read scenarios again with wrk (`apt install wrk`), whose
//     two epoll threads leave more of the machine to the agent
//   - raw SQLite: one row per transaction, and 64 rows per transaction
// Prints transactions/s and p50/p99 latency. Targets (issue 4): >= 40,000
// single-row transactions/s at 64 connections with p99 <= 10 ms.

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <optional>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "api/http_client.hpp"
#include "core/sqlite.hpp"
#include "tests/integration/process.hpp"

using namespace patina;
using Clock = std::chrono::steady_clock;

namespace {

struct Figures {
  double per_second = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  std::size_t errors = 0;
};

Figures load(const std::string& addr, int connections, double seconds, bool write, std::atomic<std::int64_t>& next_id) {
  std::vector<std::vector<double>> latencies(connections);
  std::vector<std::size_t> errors(connections);
  auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
  std::vector<std::thread> threads;
  for (int c = 0; c < connections; ++c) {
    threads.emplace_back([&, c] {
      api::HttpConnection conn(addr);
      // Bounded by time and by count.
      for (int i = 0; i < 10'000'000 && Clock::now() < deadline; ++i) {
        std::int64_t id = write ? next_id++ : (i * 7919 + c) % 1000 + 1;
        std::string body = write ? fmt::format(R"J([["INSERT INTO bench (id, v) VALUES (?, 'x')", [{}]]])J", id)
                                 : fmt::format(R"J(["SELECT id, v FROM bench WHERE id = ?", [{}]])J", id);
        auto t0 = Clock::now();
        auto r = conn.post_json(write ? "/v1/transactions" : "/v1/queries", body);
        latencies[c].push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
        if (r.status != 200) ++errors[c];
      }
    });
  }
  auto started = Clock::now();
  for (auto& t : threads) t.join();
  double elapsed = std::chrono::duration<double>(Clock::now() - started).count();
  std::vector<double> all;
  Figures f;
  for (int c = 0; c < connections; ++c) {
    all.insert(all.end(), latencies[c].begin(), latencies[c].end());
    f.errors += errors[c];
  }
  std::sort(all.begin(), all.end());
  if (!all.empty()) {
    f.per_second = static_cast<double>(all.size()) / elapsed;
    f.p50_ms = all[all.size() / 2];
    f.p99_ms = all[std::min(all.size() - 1, all.size() * 99 / 100)];
  }
  return f;
}

void print_row(const std::string& scenario, const Figures& f) {
  fmt::print("{:<40} {:>12.0f} {:>9.2f} {:>9.2f} {:>7}\n", scenario, f.per_second, f.p50_ms, f.p99_ms, f.errors);
}

// The same scenarios driven by wrk (Debian package `wrk`, if installed): an
// epoll client in two threads, so less of the machine goes to the load
// generator than with one blocking thread per connection above.
constexpr const char* wrk_write_script = R"LUA(
local n = 0
function setup(thread)
  thread:set("base", BASE + thread_count * 100000000)
  thread_count = thread_count + 1
end
thread_count = 0
request = function()
  n = n + 1
  local body = string.format('[["INSERT INTO bench (id, v) VALUES (?, \'x\')", [%d]]]', base + n)
  return wrk.format("POST", "/v1/transactions", {["Content-Type"] = "application/json"}, body)
end
)LUA";

constexpr const char* wrk_read_script = R"LUA(
local n = 0
request = function()
  n = n + 1
  local body = string.format('["SELECT id, v FROM bench WHERE id = ?", [%d]]', n % 1000 + 1)
  return wrk.format("POST", "/v1/queries", {["Content-Type"] = "application/json"}, body)
end
)LUA";

// Milliseconds from wrk's "50%    1.23ms" (or us / s) line.
double wrk_ms(const std::string& out, const std::string& label) {
  auto at = out.find(label);
  if (at == std::string::npos) return -1;
  std::size_t end = 0;
  double v = std::stod(out.substr(at + label.size()), &end);
  std::string unit = out.substr(at + label.size() + end, 2);
  return unit == "us" ? v / 1000 : unit == "ms" ? v : v * 1000;
}

std::optional<Figures> wrk_load(const testing::ScratchDir& dir, const std::string& addr, int connections,
                                double seconds, const std::string& script) {
  auto r = testing::run_command({"wrk", "-t2", fmt::format("-c{}", connections), fmt::format("-d{}s", seconds),
                                 "--latency", "-s", script, "http://" + addr},
                                dir.path(), std::chrono::seconds(static_cast<int>(seconds) + 30));
  if (r.exit_code != 0) return std::nullopt;
  Figures f;
  auto rps = r.out.find("Requests/sec:");
  if (rps == std::string::npos) return std::nullopt;
  f.per_second = std::stod(r.out.substr(rps + 13));
  f.p50_ms = wrk_ms(r.out, " 50%");
  f.p99_ms = wrk_ms(r.out, " 99%");
  if (auto bad = r.out.find("Non-2xx or 3xx responses:"); bad != std::string::npos)
    f.errors = std::stoul(r.out.substr(bad + 26));
  return f;
}

double raw_sqlite(const std::string& path, int rows_per_tx, double seconds) {
  std::filesystem::remove(path);
  auto db = core::Db::open(path, core::Db::Mode::read_write);
  (void)db->exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
                 "CREATE TABLE bench (id INTEGER PRIMARY KEY, v TEXT)");
  auto stmt = db->prepare("INSERT INTO bench (id, v) VALUES (?, 'x')");
  std::int64_t id = 0;
  auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
  auto started = Clock::now();
  while (Clock::now() < deadline && id < 100'000'000) {
    (void)db->exec("BEGIN");
    for (int i = 0; i < rows_per_tx; ++i) {
      stmt->reset();
      (void)stmt->bind(1, ++id);
      (void)stmt->run();
    }
    (void)db->exec("COMMIT");
  }
  return static_cast<double>(id) / std::chrono::duration<double>(Clock::now() - started).count();
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = argc > 1 ? std::stod(argv[1]) : 5.0;
  testing::ScratchDir dir;
  dir.write("schema.sql", "CREATE TABLE bench (id INTEGER NOT NULL PRIMARY KEY, v TEXT NOT NULL DEFAULT '');\n");
  dir.write("config.toml", fmt::format(R"([db]
path = "{0}/state.db"
schema_paths = ["{0}/schema.sql"]
[api]
addr = "127.0.0.1:0"
[gossip]
addr = "127.0.0.1:0"
plaintext = true
[admin]
path = "{0}/admin.sock"
[log]
filter = "warn,agent=info"
)",
                                       dir.path().string()));
  testing::Process agent({testing::patina_binary(), "agent", "-c", dir.file("config.toml")}, dir.path(),
                         dir.file("agent.log"));
  if (!agent.wait_for_log("ready:")) {
    fmt::print(stderr, "agent did not start:\n{}\n", agent.log());
    return 1;
  }
  std::string log = agent.log();
  auto at = log.find(" api=") + 5;
  std::string addr = log.substr(at, log.find(' ', at) - at);

  fmt::print("HTTP API on {} ({} s per scenario)\n", addr, seconds);
  fmt::print("{:<40} {:>12} {:>9} {:>9} {:>7}\n", "scenario", "per second", "p50 ms", "p99 ms", "errors");
  std::atomic<std::int64_t> next_id{1};
  for (int conns : {1, 16, 64}) {
    auto f = load(addr, conns, seconds, true, next_id);
    print_row(fmt::format("single-row transactions, {} conns", conns), f);
  }
  auto reads = load(addr, 16, seconds, false, next_id);
  print_row("point-read queries, 16 conns", reads);
  if (testing::run_command({"wrk", "--version"}, dir.path()).out.find("wrk ") != std::string::npos) {
    dir.write("reads.lua", wrk_read_script);
    for (int conns : {2, 16, 64}) {
      // Ids above every id written so far: a range per run and per wrk thread.
      std::string writes = wrk_write_script;
      writes.replace(writes.find("BASE"), 4, std::to_string(next_id.load() + std::int64_t{conns} * 1'000'000'000));
      dir.write("writes.lua", writes);
      if (auto f = wrk_load(dir, addr, conns, seconds, dir.file("writes.lua"))) {
        print_row(fmt::format("wrk: single-row transactions, {} conns", conns), *f);
      }
    }
    if (auto f = wrk_load(dir, addr, 16, seconds, dir.file("reads.lua"))) {
      print_row("wrk: point-read queries, 16 conns", *f);
    }
  } else {
    fmt::print("(wrk not installed: apt install wrk for the same scenarios with an epoll load generator)\n");
  }
  agent.signal(SIGTERM);
  agent.wait_exit();

  fmt::print("{:<40} {:>12.0f}\n", "raw SQLite, 1 row per transaction", raw_sqlite(dir.file("raw.db"), 1, seconds));
  fmt::print("{:<40} {:>12.0f}\n", "raw SQLite, 64 rows per transaction", raw_sqlite(dir.file("raw.db"), 64, seconds) / 1);
  return 0;
}
