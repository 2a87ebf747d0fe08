#pragma once
// The writer thread: owner of the only read-write SQLite connection.
//
// Jobs (local API transactions, remote changesets, schema changes, admin
// work) arrive from coroutines through a bounded queue and are applied with
// group commit:
//
//     idle --(job queued)--> BEGIN IMMEDIATE
//       +--> SAVEPOINT job; run job; RELEASE (ok) | ROLLBACK TO + RELEASE (error)
//       |      repeat while jobs are queued, up to batch_jobs_max jobs and
//       |      batch_ms_max of work (run_batch)
//       +--> COMMIT, then each job's result resumes its awaiting coroutine
//            on that coroutine's own executor (complete_batch)
//
// Guarantees:
//  (1) A job's result is delivered only after the COMMIT that made it
//      durable (or with the error that rolled it back).
//  (2) A failing job rolls back alone: its savepoint is undone, the other
//      jobs of the batch commit.
//  (3) A full queue makes submitters wait (back-pressure). An accepted job
//      is never dropped: stop() runs every queued job before closing.
//  (4) A job's timeout is enforced by the progress handler of the one
//      connection, so it interrupts that job and nothing else.
//  (5) Jobs marked standalone (VACUUM INTO, checkpoints) run alone, outside
//      any transaction.
//  (6) Jobs marked needs_free_space (API writes, merges of peers' changes)
//      are refused with Errc::storage_full while the database's filesystem
//      has less than min_free_bytes available, before they touch anything.
//      Refusing growth ahead of SQLITE_FULL keeps a node with a filling disk
//      up, serving reads and its other duties.
//  (7) A full disk (SQLITE_FULL) fails the job, or the whole batch when it
//      strikes at COMMIT, with Errc::storage_full and is not fatal. When a
//      whole transaction is rolled back, the rollback handler runs on the
//      writer thread before the next job, so in-memory mirrors of the
//      database (bookkeeping) can be re-read: jobs of that batch may have
//      updated them and none of it was kept.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "core/metrics.hpp"
#include "core/result.hpp"
#include "core/sqlite.hpp"
#include "core/watchdog.hpp"

namespace patina::core {

struct WriterOptions {
  std::string path;
  std::int64_t cache_size_kib = -1048576;
  std::size_t queue_len = 1024;
  std::size_t batch_jobs_max = 256;
  std::chrono::milliseconds batch_time_max{50};
  // 0 when a Checkpointer (core/checkpointer.hpp) runs beside the writer, so
  // no COMMIT pays for a checkpoint; SQLite's 1,000 otherwise.
  int wal_autocheckpoint_pages = 1000;
  // Called on the writer's thread after each COMMIT that wrote to the WAL
  // (SQLite's WAL hook; set only with wal_autocheckpoint_pages = 0, whose
  // hook it replaces): how a Checkpointer learns there is work.
  std::function<void()> on_wal_commit;
  // With the Checkpointer's PASSIVE checkpoints only, a writer that never
  // pauses keeps the WAL from ever being complete, so SQLite never starts it
  // over and it grows by every page written (363 MiB after a few minutes of
  // bench/http_bench) up to perf.wal_threshold_mb. Once a COMMIT leaves more
  // than this many frames in the WAL, the writer runs a RESTART checkpoint
  // between two batches: the Checkpointer has already copied nearly all of
  // them, and the writer holds the write lock anyway, so it costs the copy
  // of the last few frames and an fsync; readers still on the WAL are waited
  // for at most wal_restart_busy. After a wait in vain (the Checkpointer was
  // copying, or a long query holds its snapshot) the next try comes after a
  // backoff that doubles from wal_restart_backoff_min up to _max while
  // tries keep failing, so a long reader costs the writer one short wait a
  // second, not one a batch. Only with wal_autocheckpoint_pages = 0 (SQLite's
  // own checkpoint restarts the WAL otherwise). 0 = never.
  int wal_restart_frames = 0;
  std::chrono::milliseconds wal_restart_busy{10};
  std::chrono::milliseconds wal_restart_backoff_min{10};
  std::chrono::milliseconds wal_restart_backoff_max{1000};
  // Guarantee (6): 0 turns the floor off. Free space is looked up (statvfs
  // of the database's folder) at most once per free_space_interval (every
  // job once less than 4 floors are left), and every 10 intervals while
  // the writer is idle, for the metric.
  std::uint64_t min_free_bytes = 0;
  std::chrono::milliseconds free_space_interval{1000};
};

// Help text of patina_wal_checkpoints_total, whose series the Writer
// (mode="restart") and the Checkpointer (the other modes) both register.
inline constexpr const char* wal_checkpoints_metric_help =
    "WAL checkpoints by mode (restart: by the writer between batches; the others: by the checkpointer thread)";

struct JobOptions {
  std::optional<std::chrono::milliseconds> timeout;
  bool standalone = false;  // run outside any transaction, alone
  bool needs_free_space = false;  // refused below WriterOptions::min_free_bytes
};

class Writer {
 public:
  // Called on the writer thread when SQLite reports a fatal storage error.
  using FatalHandler = std::function<void(const Error&)>;
  // Called on the writer thread, outside any transaction, after SQLite or a
  // failed COMMIT rolled back a whole batch.
  using RollbackHandler = std::function<void(Db&)>;

  Writer(WriterOptions options, Metrics& metrics, Watchdog& watchdog);
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  // Opens (creating if needed) the database with the writer's pragmas and
  // starts the thread. |init| runs once on the writer thread before any job.
  Result<void> start(std::function<Result<void>(Db&)> init = {});
  void on_fatal(FatalHandler h) { on_fatal_ = std::move(h); }
  void on_transaction_rolled_back(RollbackHandler h) { on_rolled_back_ = std::move(h); }

  // Runs |fn(Db&) -> Result<T>| on the writer thread inside its own
  // savepoint of a group-committed transaction; resumes the caller on its
  // executor once committed.
  template <class T, class Fn>
  boost::asio::awaitable<Result<T>> submit(std::string name, Fn fn, JobOptions options = {});

  // Stops accepting jobs, runs every accepted job, checkpoints the WAL
  // (TRUNCATE) and closes the connection. Blocks; call from outside the
  // reactor or at the very end of shutdown.
  void stop();

  // Changes the free-space floor (config reload); takes effect at the next job.
  void set_min_free_bytes(std::uint64_t bytes) { min_free_bytes_.store(bytes); }

  // True while writes fail for lack of disk space: below the floor, or
  // since SQLITE_FULL until a COMMIT succeeds or 1 MiB more is free. Any thread.
  bool short_of_space() const { return short_of_space_.load(std::memory_order_relaxed); }

  std::size_t queue_depth() const;
  bool accepting() const;
  const std::string& path() const { return options_.path; }

 private:
  struct Job {
    std::string name;
    JobOptions options;
    std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
    virtual ~Job() = default;
    virtual bool run(Db& db) = 0;         // true when the job succeeded
    virtual void fail(Error error) = 0;   // replaces the result with |error|
    virtual const Error* error() const = 0;  // the job's error, if it failed
    // The executor the waiter resumes on, and the call that resumes it
    // (only on that executor). Completions of one batch are posted together:
    // one cross-thread wake-up per batch, not per job.
    virtual boost::asio::any_io_executor executor() const = 0;
    virtual void deliver() = 0;
  };

  template <class T, class Fn, class Handler>
  struct JobImpl final : Job {
    JobImpl(Fn f, Handler h) : fn(std::move(f)), handler(std::move(h)) {}
    bool run(Db& db) override {
      try {
        result.emplace(fn(db));
      } catch (const std::exception& e) {
        result.emplace(make_error(Errc::internal, std::string("job threw: ") + e.what()));
      }
      return result->has_value();
    }
    void fail(Error error) override { result.emplace(tl::unexpected(std::move(error))); }
    const Error* error() const override { return result && !result->has_value() ? &result->error() : nullptr; }
    boost::asio::any_io_executor executor() const override { return boost::asio::get_associated_executor(handler); }
    void deliver() override { std::move(handler)(std::move(*result)); }
    Fn fn;
    Handler handler;
    std::optional<Result<T>> result;
  };

  void enqueue(std::unique_ptr<Job> job);
  static void complete(std::vector<std::unique_ptr<Job>> jobs);
  void run_loop();
  void run_batch(std::unique_ptr<Job> first);
  void run_standalone(std::unique_ptr<Job> job);
  void restart_wal_if_long();
  std::unique_ptr<Job> pop_next(bool standalone_ok);
  bool run_one(Job& job);
  void check_fatal(const Error& e);
  void rolled_back();
  void note_disk_full(const Error& e);
  void refresh_free_space();
  void look_up_free_space();
  std::optional<Error> free_space_refusal();
  static int progress_handler(void* self);
  Result<void> exec_cached(Stmt& stmt);

  WriterOptions options_;
  Db db_;
  Stmt begin_, commit_, rollback_, savepoint_, release_, rollback_to_;
  std::shared_ptr<Heartbeat> heartbeat_;
  Watchdog& watchdog_;
  FatalHandler on_fatal_;
  RollbackHandler on_rolled_back_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Job>> queue_;    // accepted, bounded by queue_len
  std::deque<std::unique_ptr<Job>> waiting_;  // submitters held back by a full queue
  bool stopping_ = false;
  bool stopped_ = false;
  std::thread thread_;
  std::chrono::steady_clock::time_point job_deadline_ = std::chrono::steady_clock::time_point::max();
  bool deadline_hit_ = false;

  Gauge& depth_;
  Gauge& waiting_gauge_;
  Histogram& batch_jobs_;
  Histogram& commit_seconds_;
  Counter& jobs_ok_;
  Counter& jobs_failed_;
  Counter& wal_restarts_;
  Counter& wal_restarts_busy_;
  std::atomic<std::uint64_t> min_free_bytes_;
  std::filesystem::path free_space_dir_;  // the database's folder
  std::optional<std::uint64_t> free_bytes_;  // writer thread; unknown when statvfs fails
  std::chrono::steady_clock::time_point free_checked_{};
  bool space_low_ = false;
  bool statvfs_failed_ = false;
  Gauge& free_gauge_;
  Counter& refused_full_;
  Counter& disk_full_count_;
  bool disk_full_ = false;  // SQLITE_FULL seen, and no COMMIT or freed space since
  std::uint64_t free_at_full_ = 0;  // statvfs figure when it was seen
  std::atomic<bool> short_of_space_{false};  // disk_full_ || space_low_, for other threads
  void set_disk_full(bool full);
  void publish_short_of_space();
  int wal_frames_ = 0;  // frames in the WAL after the last COMMIT (WAL hook)
  std::chrono::steady_clock::time_point wal_restart_not_before_{};
  std::chrono::milliseconds wal_restart_backoff_{0};
};

template <class T, class Fn>
boost::asio::awaitable<Result<T>> Writer::submit(std::string name, Fn fn, JobOptions options) {
  auto initiation = [this](auto handler, std::string job_name, Fn job_fn, JobOptions opts) {
    using Handler = decltype(handler);
    auto job = std::make_unique<JobImpl<T, Fn, Handler>>(std::move(job_fn), std::move(handler));
    job->name = std::move(job_name);
    job->options = opts;
    enqueue(std::move(job));
  };
  co_return co_await boost::asio::async_initiate<const boost::asio::use_awaitable_t<>&, void(Result<T>)>(
      initiation, boost::asio::use_awaitable, std::move(name), std::move(fn), options);
}

}  // namespace patina::core
