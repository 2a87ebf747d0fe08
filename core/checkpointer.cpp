#include "core/checkpointer.hpp"

#include <pthread.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <fmt/format.h>

#include "core/log.hpp"
#include "core/writer.hpp"

namespace patina::core {
namespace {

std::uint64_t file_size(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
}

}  // namespace

Checkpointer::Checkpointer(CheckpointerOptions options, Metrics& metrics)
    : options_(std::move(options)),
      passive_(metrics.counter("patina_wal_checkpoints_total", wal_checkpoints_metric_help,
                               {{"mode", "passive"}})),
      truncated_(metrics.counter("patina_wal_checkpoints_total", wal_checkpoints_metric_help,
                                 {{"mode", "truncate"}})),
      failures_(metrics.counter("patina_wal_checkpoint_failures_total", "WAL checkpoints that failed")),
      seconds_(metrics.histogram("patina_wal_checkpoint_seconds", "Time per WAL checkpoint that copied pages")) {}

Checkpointer::~Checkpointer() { stop(); }

Result<void> Checkpointer::start() {
  auto db = Db::open(options_.path, Db::Mode::read_write);
  if (!db) return tl::unexpected(db.error());
  db_ = std::move(*db);
  // Never fsync more than a checkpoint needs; the writer sets the same.
  if (auto r = db_.exec("PRAGMA synchronous = NORMAL"); !r) return r;
  sqlite3_busy_timeout(db_.get(), static_cast<int>(options_.busy_timeout.count()));
  thread_ = std::thread([this] { run(); });
  return {};
}

void Checkpointer::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  db_ = Db();
}

void Checkpointer::note_commit() {
  {
    std::lock_guard lock(mu_);
    if (dirty_) return;
    dirty_ = true;
  }
  cv_.notify_one();
}

void Checkpointer::run() {
  ::pthread_setname_np(::pthread_self(), "checkpointer");
  auto log = log::get("db");
  const std::string wal = options_.path + "-wal";
  int last_frames = 0;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      // Idle until a commit; then one interval, so that a burst of commits
      // costs one checkpoint.
      cv_.wait(lock, [this] { return stopping_ || dirty_; });
      if (cv_.wait_for(lock, options_.interval, [this] { return stopping_; })) return;
      dirty_ = false;
    }
    const auto size = file_size(wal);
    if (size == 0) continue;
    const bool truncate = size > options_.truncate_bytes;
    if (truncate) {
      log->info("WAL is {} MiB (over perf.wal_threshold_mb): truncating checkpoint, waiting up to {} s for readers",
                size >> 20, options_.busy_timeout.count() / 1000);
    }
    auto t0 = std::chrono::steady_clock::now();
    int frames = 0, copied = 0;
    int rc = sqlite3_wal_checkpoint_v2(db_.get(), nullptr,
                                       truncate ? SQLITE_CHECKPOINT_TRUNCATE : SQLITE_CHECKPOINT_PASSIVE, &frames,
                                       &copied);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
      failures_.inc();
      // Retried every interval: a lasting cause (a full disk) is logged
      // once, with the count when it ends, not five times a second.
      if (failing_++ == 0) log->warn("WAL checkpoint failed: {} (retrying every interval)", sqlite3_errmsg(db_.get()));
      note_commit();  // try again
      continue;
    }
    if (failing_ > 0) {
      log->info("WAL checkpoints work again after {} failed attempts", failing_);
      failing_ = 0;
    }
    if (truncate) {
      truncated_.inc();
      seconds_.observe(seconds);
      log->info("truncating checkpoint {} after {:.1f} s; WAL now {} MiB", rc == SQLITE_OK ? "done" : "busy",
                seconds, file_size(wal) >> 20);
      if (rc == SQLITE_BUSY) note_commit();
      continue;
    }
    // Frames copied this time: only those are worth a figure.
    if (frames != last_frames || copied > 0) {
      passive_.inc();
      if (copied > 0) seconds_.observe(seconds);
    }
    last_frames = frames;
    // Readers kept frames from being copied: come back for them.
    if (rc == SQLITE_BUSY || copied < frames) note_commit();
  }
}

}  // namespace patina::core
