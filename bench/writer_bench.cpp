// Writer throughput through the job queue against raw SQLite inserts with
// the same batching (rows per transaction), measured in the same run.
//
//   build/bench/writer_bench [total_rows]
//
// Scenarios: 8 submitters with 100 rows per job, and 64 concurrent
// single-row jobs. The raw baseline uses one prepared INSERT and the
// average number of rows per COMMIT that the writer achieved.

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <fmt/format.h>

#include "core/log.hpp"
#include "core/writer.hpp"

namespace net = boost::asio;
using namespace patina;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* schema = "CREATE TABLE t (id INTEGER PRIMARY KEY, app TEXT, region TEXT, n INTEGER)";
constexpr const char* insert_sql = "INSERT INTO t (id, app, region, n) VALUES (?, 'app', 'ams', ?)";

Result<void> insert_rows(core::Db& db, core::Stmt& stmt, std::int64_t first, int count) {
  for (int i = 0; i < count; ++i) {
    stmt.reset();
    if (auto r = stmt.bind(1, first + i); !r) return r;
    if (auto r = stmt.bind(2, std::int64_t{i}); !r) return r;
    if (auto r = stmt.run(); !r) return r;
  }
  (void)db;
  return {};
}

struct Outcome {
  double seconds = 0;
  std::int64_t rows = 0;
  double rows_per_commit = 0;
};

std::string fresh_path(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / "patina-bench";
  std::filesystem::create_directories(dir);
  auto p = dir / name;
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(p.string() + suffix);
  return p.string();
}

Outcome run_writer(std::int64_t total_rows, int submitters, int rows_per_job, std::size_t batch_jobs_max) {
  core::Metrics metrics;
  core::Watchdog watchdog(60000, core::Watchdog::Action::log, metrics);
  core::WriterOptions o;
  o.path = fresh_path(fmt::format("writer-{}-{}.db", submitters, rows_per_job));
  o.cache_size_kib = -65536;
  o.batch_jobs_max = batch_jobs_max;
  core::Writer writer(o, metrics, watchdog);
  if (auto r = writer.start([](core::Db& db) { return db.exec(schema); }); !r) {
    fmt::print(stderr, "writer start failed: {}\n", r.error().message);
    std::exit(1);
  }
  std::int64_t jobs_total = total_rows / rows_per_job;
  std::int64_t next_job = 0;
  std::int64_t failed = 0;
  net::io_context ioc;
  auto guard = net::make_work_guard(ioc);
  int running = submitters;
  auto started = Clock::now();
  for (int s = 0; s < submitters; ++s) {
    net::co_spawn(ioc, [&]() -> net::awaitable<void> {
      while (next_job < jobs_total) {
        std::int64_t first = (next_job++) * rows_per_job;
        int count = rows_per_job;
        auto r = co_await writer.submit<int>("insert", [first, count](core::Db& db) -> Result<int> {
          // The connection's statement cache, as the raw loop's one statement.
          auto stmt = db.cached(insert_sql);
          if (!stmt) return tl::unexpected(stmt.error());
          if (auto ins = insert_rows(db, **stmt, first, count); !ins) return tl::unexpected(ins.error());
          return count;
        });
        if (!r) ++failed;
      }
      if (--running == 0) guard.reset();
    }, net::detached);
  }
  ioc.run();
  Outcome out;
  out.seconds = std::chrono::duration<double>(Clock::now() - started).count();
  out.rows = jobs_total * rows_per_job;
  auto& batches = metrics.histogram("patina_writer_batch_jobs", "", {}, {});
  out.rows_per_commit = batches.count() ? batches.sum() * rows_per_job / static_cast<double>(batches.count()) : 0;
  writer.stop();
  if (failed) fmt::print(stderr, "{} jobs failed\n", failed);
  return out;
}

Outcome run_raw(std::int64_t total_rows, int rows_per_commit, const std::string& name) {
  auto db = core::Db::open(fresh_path(name), core::Db::Mode::read_write);
  if (!db) std::exit(1);
  (void)db->exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -65536");
  (void)db->exec(schema);
  auto stmt = db->prepare(insert_sql);
  if (!stmt) std::exit(1);
  auto started = Clock::now();
  for (std::int64_t first = 0; first < total_rows; first += rows_per_commit) {
    int n = static_cast<int>(std::min<std::int64_t>(rows_per_commit, total_rows - first));
    (void)db->exec("BEGIN IMMEDIATE");
    if (auto r = insert_rows(*db, *stmt, first, n); !r) std::exit(1);
    (void)db->exec("COMMIT");
  }
  Outcome out;
  out.seconds = std::chrono::duration<double>(Clock::now() - started).count();
  out.rows = total_rows;
  out.rows_per_commit = rows_per_commit;
  return out;
}

void scenario(const std::string& name, std::int64_t total_rows, int submitters, int rows_per_job,
              std::size_t batch_jobs_max) {
  Outcome w = run_writer(total_rows, submitters, rows_per_job, batch_jobs_max);
  int per_commit = std::max(1, static_cast<int>(w.rows_per_commit + 0.5));
  Outcome raw = run_raw(w.rows, per_commit, fmt::format("raw-{}-{}.db", submitters, rows_per_job));
  double w_rate = static_cast<double>(w.rows) / w.seconds;
  double r_rate = static_cast<double>(raw.rows) / raw.seconds;
  fmt::print("{:<42} writer {:>10.0f} rows/s   raw {:>10.0f} rows/s   {:>6.1f} rows/commit   ratio {:.2f}\n", name,
             w_rate, r_rate, w.rows_per_commit, w_rate / r_rate);
}

}  // namespace

int main(int argc, char** argv) {
  std::int64_t total = argc > 1 ? std::stoll(argv[1]) : 200000;
  core::log::set_default_filter("warn");
  fmt::print("writer throughput vs raw SQLite, {} rows per scenario (target ratio >= 0.80)\n", total);
  std::size_t batch = argc > 2 ? std::stoul(argv[2]) : 256;
  scenario(fmt::format("8 submitters x 100 rows/job, batch<={}", batch), total, 8, 100, batch);
  scenario(fmt::format("64 single-row jobs, batch<={}", batch), total / 4, 64, 1, batch);
  return 0;
}
