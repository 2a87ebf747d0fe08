#include "core/writer.hpp"

#include <pthread.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "core/log.hpp"

namespace patina::core {
namespace {
constexpr int busy_timeout_ms = 5000;
}  // namespace

Writer::Writer(WriterOptions options, Metrics& metrics, Watchdog& watchdog)
    : options_(std::move(options)),
      watchdog_(watchdog),
      depth_(metrics.gauge("patina_writer_queue_depth", "Jobs accepted by the writer and not yet run")),
      waiting_gauge_(metrics.gauge("patina_writer_waiting_submitters", "Submitters held back by a full writer queue")),
      batch_jobs_(metrics.histogram("patina_writer_batch_jobs", "Jobs per group-committed transaction", {},
                                    {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024})),
      commit_seconds_(metrics.histogram("patina_writer_commit_seconds", "Duration of writer COMMITs")),
      jobs_ok_(metrics.counter("patina_writer_jobs_total", "Writer jobs run", {{"result", "ok"}})),
      jobs_failed_(metrics.counter("patina_writer_jobs_total", "Writer jobs run", {{"result", "error"}})),
      wal_restarts_(metrics.counter("patina_wal_checkpoints_total", wal_checkpoints_metric_help,
                                    {{"mode", "restart"}})),
      wal_restarts_busy_(metrics.counter(
          "patina_wal_restarts_busy_total",
          "WAL restart checkpoints that found readers or the checkpointer in the way (tried again after a backoff)")),
      min_free_bytes_(options_.min_free_bytes),
      free_space_dir_(std::filesystem::path(options_.path).parent_path()),
      free_gauge_(metrics.gauge("patina_db_disk_free_bytes",
                                "Bytes available on the database's filesystem (statvfs; -1 when unknown)")),
      refused_full_(metrics.counter("patina_writer_jobs_refused_total",
                                    "Writer jobs refused before running, by reason", {{"reason", "disk_space"}})),
      disk_full_count_(metrics.counter("patina_writer_disk_full_total",
                                 "Writer jobs or batches rolled back because the disk was full (SQLITE_FULL)")) {
  if (free_space_dir_.empty()) free_space_dir_ = ".";
  free_gauge_.set(-1);
}

Writer::~Writer() { stop(); }

Result<void> Writer::start(std::function<Result<void>(Db&)> init) {
  auto parent = std::filesystem::path(options_.path).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    if (ec) return make_error(Errc::io, fmt::format("cannot create {}: {}", parent.string(), ec.message()));
  }
  auto db = Db::open(options_.path, Db::Mode::read_write);
  if (!db) return tl::unexpected(db.error());
  db_ = std::move(*db);
  // auto_vacuum must precede the first table; it is a no-op afterwards.
  for (std::string pragma : {std::string("PRAGMA auto_vacuum = INCREMENTAL"), std::string("PRAGMA journal_mode = WAL"),
                             std::string("PRAGMA synchronous = NORMAL"),
                             std::string("PRAGMA journal_size_limit = 1073741824"),
                             std::string("PRAGMA recursive_triggers = OFF"), std::string("PRAGMA temp_store = MEMORY"),
                             fmt::format("PRAGMA cache_size = {}", options_.cache_size_kib),
                             fmt::format("PRAGMA busy_timeout = {}", busy_timeout_ms),
                             fmt::format("PRAGMA wal_autocheckpoint = {}", options_.wal_autocheckpoint_pages)}) {
    if (auto r = db_.exec(pragma); !r) return tl::unexpected(r.error());
  }
  // A WAL hook replaces SQLite's automatic checkpoint: the restart needs
  // wal_autocheckpoint_pages = 0 (with it on, the WAL starts over anyway).
  if (options_.on_wal_commit || (options_.wal_restart_frames > 0 && options_.wal_autocheckpoint_pages == 0)) {
    sqlite3_wal_hook(
        db_.get(),
        [](void* self, sqlite3*, const char*, int frames) {
          auto* w = static_cast<Writer*>(self);
          w->wal_frames_ = frames;
          if (w->options_.on_wal_commit) w->options_.on_wal_commit();
          return SQLITE_OK;
        },
        this);
  }
  auto mode = db_.query_value("PRAGMA journal_mode");
  if (!mode || !*mode || std::get_if<std::string>(&**mode) == nullptr || std::get<std::string>(**mode) != "wal") {
    return make_error(Errc::storage_fatal, fmt::format("{}: could not switch the database to WAL mode", options_.path));
  }
  if (init) {
    if (auto r = init(db_); !r) return r;
  }
  // Prepared once: group commit runs these for every job.
  for (auto [stmt, sql] : {std::pair{&begin_, "BEGIN IMMEDIATE"}, std::pair{&commit_, "COMMIT"},
                           std::pair{&rollback_, "ROLLBACK"}, std::pair{&savepoint_, "SAVEPOINT patina_job"},
                           std::pair{&release_, "RELEASE patina_job"},
                           std::pair{&rollback_to_, "ROLLBACK TO patina_job"}}) {
    auto prepared = db_.prepare(sql);
    if (!prepared) return tl::unexpected(prepared.error());
    *stmt = std::move(*prepared);
  }
  sqlite3_progress_handler(db_.get(), 1000, &Writer::progress_handler, this);
  heartbeat_ = watchdog_.add("writer");
  thread_ = std::thread([this] { run_loop(); });
  return {};
}

int Writer::progress_handler(void* self) {
  auto* w = static_cast<Writer*>(self);
  w->heartbeat_->stamp();
  if (std::chrono::steady_clock::now() > w->job_deadline_) {
    w->deadline_hit_ = true;
    return 1;  // SQLite aborts the statement with SQLITE_INTERRUPT
  }
  return 0;
}

Result<void> Writer::exec_cached(Stmt& stmt) {
  stmt.reset();
  return stmt.run();
}

void Writer::complete(std::vector<std::unique_ptr<Job>> jobs) {
  // Consecutive jobs awaited on the same executor resume from one post.
  std::size_t i = 0;
  while (i < jobs.size()) {
    auto ex = jobs[i]->executor();
    std::vector<std::unique_ptr<Job>> group;
    while (i < jobs.size() && jobs[i]->executor() == ex) group.push_back(std::move(jobs[i++]));
    boost::asio::post(ex, [group = std::move(group)]() mutable {
      for (auto& j : group) j->deliver();
    });
  }
}

void Writer::enqueue(std::unique_ptr<Job> job) {
  {
    std::unique_lock lock(mu_);
    if (stopping_) {
      lock.unlock();
      job->fail(Error{Errc::shutting_down, "the writer is shutting down"});
      std::vector<std::unique_ptr<Job>> one;
      one.push_back(std::move(job));
      complete(std::move(one));
      return;
    }
    if (queue_.size() < options_.queue_len) {
      queue_.push_back(std::move(job));
      depth_.set(static_cast<double>(queue_.size()));
    } else {
      waiting_.push_back(std::move(job));
      waiting_gauge_.set(static_cast<double>(waiting_.size()));
    }
  }
  cv_.notify_one();
}

std::size_t Writer::queue_depth() const {
  std::lock_guard lock(mu_);
  return queue_.size();
}

bool Writer::accepting() const {
  std::lock_guard lock(mu_);
  return !stopping_;
}

std::unique_ptr<Writer::Job> Writer::pop_next(bool standalone_ok) {
  std::lock_guard lock(mu_);
  if (queue_.empty()) return nullptr;
  const JobOptions& o = queue_.front()->options;
  if (!standalone_ok && o.standalone) return nullptr;
  auto job = std::move(queue_.front());
  queue_.pop_front();
  // Space freed: admit the longest-waiting submitter.
  if (!waiting_.empty()) {
    queue_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
    waiting_gauge_.set(static_cast<double>(waiting_.size()));
  }
  depth_.set(static_cast<double>(queue_.size()));
  return job;
}

void Writer::run_loop() {
  auto log = log::get("db");
  ::pthread_setname_np(::pthread_self(), "writer");
  for (;;) {
    {
      std::unique_lock lock(mu_);
      while (queue_.empty() && !stopping_) {
        heartbeat_->set_idle(true);
        if (cv_.wait_for(lock, options_.free_space_interval * 10) == std::cv_status::timeout) {
          lock.unlock();
          refresh_free_space();  // keeps the gauge (and the log) current on a quiet node
          lock.lock();
        }
      }
      heartbeat_->set_idle(false);
      if (queue_.empty() && stopping_) break;
    }
    heartbeat_->stamp();
    auto job = pop_next(true);
    if (!job) continue;
    if (job->options.standalone) {
      run_standalone(std::move(job));
    } else {
      run_batch(std::move(job));
    }
    restart_wal_if_long();
  }
  // Every accepted job has run. Checkpoint so the database file alone holds
  // everything and the WAL is empty for the next start or a plain copy.
  heartbeat_->set_grace(60000);  // the final checkpoint is I/O, not a stall
  auto r = db_.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  if (!r) log->warn("final checkpoint failed: {}", r.error());
  watchdog_.remove(heartbeat_);
  for (Stmt* s : {&begin_, &commit_, &rollback_, &savepoint_, &release_, &rollback_to_}) *s = Stmt();
  db_ = Db();
  log->info("writer stopped; database checkpointed and closed");
}

void Writer::restart_wal_if_long() {
  if (options_.wal_restart_frames <= 0 || wal_frames_ <= options_.wal_restart_frames) return;
  const auto now = std::chrono::steady_clock::now();
  if (now < wal_restart_not_before_) return;
  heartbeat_->begin_job("wal restart");
  heartbeat_->set_grace(60000);  // I/O, not a stall
  sqlite3_busy_timeout(db_.get(), static_cast<int>(options_.wal_restart_busy.count()));
  int frames = 0, copied = 0;
  int rc = sqlite3_wal_checkpoint_v2(db_.get(), nullptr, SQLITE_CHECKPOINT_RESTART, &frames, &copied);
  sqlite3_busy_timeout(db_.get(), busy_timeout_ms);
  heartbeat_->set_grace(0);
  heartbeat_->end_job();
  if (rc == SQLITE_OK) {
    wal_restarts_.inc();
    wal_frames_ = 0;
    wal_restart_backoff_ = std::chrono::milliseconds(0);
  } else if (rc == SQLITE_BUSY) {
    wal_restarts_busy_.inc();
    wal_restart_backoff_ = std::clamp(wal_restart_backoff_ * 2, options_.wal_restart_backoff_min,
                                      options_.wal_restart_backoff_max);
    wal_restart_not_before_ = now + wal_restart_backoff_;
  } else {
    log::get("db")->warn("WAL restart checkpoint failed: {}", sqlite3_errmsg(db_.get()));
    wal_frames_ = 0;  // not before the next COMMIT says the WAL is still long
  }
}

void Writer::look_up_free_space() {
  struct statvfs s {};
  if (::statvfs(free_space_dir_.c_str(), &s) != 0) {
    if (!statvfs_failed_) {
      log::get("db")->warn("cannot tell the free space of {} ({}): db.min_free_space_mb is not enforced",
                           free_space_dir_.string(), std::strerror(errno));
    }
    statvfs_failed_ = true;
    free_bytes_.reset();
    free_gauge_.set(-1);
  } else {
    statvfs_failed_ = false;
    free_bytes_ = static_cast<std::uint64_t>(s.f_bavail) * static_cast<std::uint64_t>(s.f_frsize);
    free_gauge_.set(static_cast<double>(*free_bytes_));
  }
}

void Writer::refresh_free_space() {
  auto now = std::chrono::steady_clock::now();
  // The floor may have changed (reload) since the last look-up: judged anew.
  std::uint64_t floor = min_free_bytes_.load();
  // Within a few floors of it, a second of writes could go through the
  // floor to SQLITE_FULL: then every job looks (a statvfs is microseconds).
  bool close = floor > 0 && free_bytes_ && *free_bytes_ / 4 < floor;
  if (close || free_checked_ == std::chrono::steady_clock::time_point{} ||
      now - free_checked_ >= options_.free_space_interval) {
    free_checked_ = now;
    look_up_free_space();
  }
  // Space freed since SQLITE_FULL (checked on a quiet node too): the next
  // writes will tell whether it is enough.
  if (disk_full_ && free_bytes_ && *free_bytes_ >= free_at_full_ + (std::uint64_t{1} << 20)) {
    set_disk_full(false);
    log::get("db")->info("{:.1f} MiB free again after the disk was full",
                         static_cast<double>(*free_bytes_) / (1024.0 * 1024.0));
  }
  bool low = floor > 0 && free_bytes_ && *free_bytes_ < floor;
  if (low != space_low_) {
    space_low_ = low;
    publish_short_of_space();
    constexpr double mib = 1024.0 * 1024.0;
    if (low) {
      log::get("db")->warn("disk space low: {:.1f} MiB free on {}, below db.min_free_space_mb ({:.0f} MiB): "
                           "refusing writes and holding peers' changes until space is freed",
                           static_cast<double>(*free_bytes_) / mib, free_space_dir_.string(),
                           static_cast<double>(floor) / mib);
    } else {
      log::get("db")->info("disk space back above the floor{}: accepting writes again",
                           free_bytes_ ? fmt::format(" ({:.1f} MiB free)", static_cast<double>(*free_bytes_) / mib)
                                       : std::string());
    }
  }
}

std::optional<Error> Writer::free_space_refusal() {
  refresh_free_space();
  if (!space_low_) return std::nullopt;
  refused_full_.inc();
  constexpr double mib = 1024.0 * 1024.0;
  return Error{Errc::storage_full,
               fmt::format("disk space low: {:.1f} MiB free for the database, below db.min_free_space_mb ({:.0f} MiB); "
                           "writes are refused until space is freed",
                           static_cast<double>(free_bytes_.value_or(0)) / mib,
                           static_cast<double>(min_free_bytes_.load()) / mib)};
}

bool Writer::run_one(Job& job) {
  if (job.options.needs_free_space) {
    if (auto refusal = free_space_refusal()) {
      job.fail(std::move(*refusal));
      return false;
    }
  }
  heartbeat_->begin_job(job.name);
  job_deadline_ = job.options.timeout ? std::chrono::steady_clock::now() + *job.options.timeout
                                      : std::chrono::steady_clock::time_point::max();
  deadline_hit_ = false;
  bool ok = job.run(db_);
  // (A standalone job's SQLITE_FULL may concern another filesystem: VACUUM INTO a backup file.)
  if (const Error* e = ok || job.options.standalone ? nullptr : job.error(); e && e->code == Errc::storage_full) {
    note_disk_full(*e);
  }
  if (!ok && deadline_hit_) {
    job.fail(Error{Errc::timeout, fmt::format("job '{}' exceeded its timeout of {} ms and was rolled back", job.name,
                                              job.options.timeout->count())});
  }
  job_deadline_ = std::chrono::steady_clock::time_point::max();
  heartbeat_->end_job();
  return ok;
}

void Writer::run_standalone(std::unique_ptr<Job> job) {
  bool ok = run_one(*job);
  (ok ? jobs_ok_ : jobs_failed_).inc();
  std::vector<std::unique_ptr<Job>> one;
  one.push_back(std::move(job));
  complete(std::move(one));
}

void Writer::run_batch(std::unique_ptr<Job> first) {
  std::vector<std::unique_ptr<Job>> batch;
  std::vector<bool> ok;
  auto fail_all = [&](const Error& e) {
    for (auto& j : batch) j->fail(e);
    std::fill(ok.begin(), ok.end(), false);
  };
  if (auto r = exec_cached(begin_); !r) {
    first->fail(r.error());
    check_fatal(r.error());
    jobs_failed_.inc();
    batch.push_back(std::move(first));
    complete(std::move(batch));
    return;
  }
  auto started = std::chrono::steady_clock::now();
  std::unique_ptr<Job> job = std::move(first);
  while (job) {
    bool job_ok = false;
    if (auto sp = exec_cached(savepoint_); !sp) {
      job->fail(sp.error());
    } else {
      job_ok = run_one(*job);
      if (sqlite3_get_autocommit(db_.get()) != 0) {
        // SQLite rolled the whole transaction back (disk full, I/O error):
        // every job of this batch is lost, so every one gets the error.
        bool full = sqlite_error(sqlite3_extended_errcode(db_.get()), db_.get()).code == Errc::storage_full;
        // run_one counted it already if the job's own statement hit it.
        const Error* own = job->error();
        bool counted = own != nullptr && own->code == Errc::storage_full;
        Error e{full ? Errc::storage_full : Errc::storage_fatal,
                fmt::format("transaction rolled back by SQLite during job '{}': {}", job->name,
                            sqlite3_errmsg(db_.get()))};
        batch.push_back(std::move(job));
        ok.push_back(false);
        fail_all(e);
        if (full && !counted) note_disk_full(e);
        check_fatal(e);
        rolled_back();
        break;
      }
      if (job_ok) {
        auto rel = exec_cached(release_);
        if (!rel) {
          job->fail(rel.error());
          job_ok = false;
        }
      }
      if (!job_ok) {
        (void)exec_cached(rollback_to_);
        (void)exec_cached(release_);
      }
    }
    batch.push_back(std::move(job));
    ok.push_back(job_ok);
    if (batch.size() >= options_.batch_jobs_max) break;
    if (std::chrono::steady_clock::now() - started >= options_.batch_time_max) break;
    job = pop_next(false);
  }
  // A COMMIT writes the whole transaction (and may checkpoint the WAL)
  // without progress callbacks: a minute of disk I/O is not a deadlock.
  static constexpr std::int64_t commit_grace_ms = 60000;
  if (sqlite3_get_autocommit(db_.get()) == 0) {
    auto t0 = std::chrono::steady_clock::now();
    heartbeat_->begin_job("commit");
    heartbeat_->set_grace(commit_grace_ms);
    auto commit = exec_cached(commit_);
    heartbeat_->set_grace(0);
    heartbeat_->end_job();
    commit_seconds_.observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    if (!commit) {
      (void)exec_cached(rollback_);
      Error e = commit.error();
      e.message = "commit failed: " + e.message;
      fail_all(e);
      if (e.code == Errc::storage_full) note_disk_full(e);
      check_fatal(e);
      rolled_back();
    } else if (disk_full_) {
      set_disk_full(false);
      log::get("db")->info("writes commit again after the disk was full");
    }
  }
  batch_jobs_.observe(static_cast<double>(batch.size()));
  for (std::size_t i = 0; i < batch.size(); ++i) (ok[i] ? jobs_ok_ : jobs_failed_).inc();
  complete(std::move(batch));
}

void Writer::rolled_back() {
  if (on_rolled_back_ && sqlite3_get_autocommit(db_.get()) != 0) on_rolled_back_(db_);
}

void Writer::set_disk_full(bool full) {
  disk_full_ = full;
  publish_short_of_space();
}

void Writer::publish_short_of_space() {
  short_of_space_.store(disk_full_ || space_low_, std::memory_order_relaxed);
}

void Writer::note_disk_full(const Error& e) {
  disk_full_count_.inc();
  look_up_free_space();
  free_checked_ = std::chrono::steady_clock::now();
  free_at_full_ = free_bytes_.value_or(0);
  if (disk_full_) return;
  set_disk_full(true);
  log::get("db")->warn("the disk is full ({}): writes fail with 507 and peers' changes are held until space is "
                       "freed; db.min_free_space_mb refuses writes before this point",
                       e.message);
}

void Writer::check_fatal(const Error& e) {
  if (e.code != Errc::storage_fatal) return;
  log::get("db")->critical("fatal storage error: {}", e.message);
  if (on_fatal_) on_fatal_(e);
}

void Writer::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopped_) return;
    stopped_ = true;
    stopping_ = true;
    // Submitters waiting for space were accepted too: they run before close.
    while (!waiting_.empty()) {
      queue_.push_back(std::move(waiting_.front()));
      waiting_.pop_front();
    }
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

}  // namespace patina::core
