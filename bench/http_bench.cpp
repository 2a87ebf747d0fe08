// HTTP API throughput and latency against a real agent on loopback, beside
// raw SQLite figures from the same run.
//
//   build/bench/http_bench [seconds_per_scenario]
//
// Starts build/patina on a scratch directory with ephemeral ports, then:
//   - single-row transactions at 1, 16 and 64 keep-alive connections
//   - point-read queries at 16 connections
//   - raw SQLite: one row per transaction, and 64 rows per transaction
// Prints transactions/s and p50/p99 latency. Targets (issue 4): >= 40,000
// single-row transactions/s at 64 connections with p99 <= 10 ms.

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
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
    fmt::print("{:<40} {:>12.0f} {:>9.2f} {:>9.2f} {:>7}\n", fmt::format("single-row transactions, {} conns", conns),
               f.per_second, f.p50_ms, f.p99_ms, f.errors);
  }
  auto reads = load(addr, 16, seconds, false, next_id);
  fmt::print("{:<40} {:>12.0f} {:>9.2f} {:>9.2f} {:>7}\n", "point-read queries, 16 conns", reads.per_second,
             reads.p50_ms, reads.p99_ms, reads.errors);
  agent.signal(SIGTERM);
  agent.wait_exit();

  fmt::print("{:<40} {:>12.0f}\n", "raw SQLite, 1 row per transaction", raw_sqlite(dir.file("raw.db"), 1, seconds));
  fmt::print("{:<40} {:>12.0f}\n", "raw SQLite, 64 rows per transaction", raw_sqlite(dir.file("raw.db"), 64, seconds) / 1);
  return 0;
}
