#include "core/reader_pool.hpp"

#include <pthread.h>

#include <fmt/format.h>

#include "core/log.hpp"

namespace patina::core {

namespace {
Labels pool_labels(const ReaderPoolOptions& o) {
  if (o.name == "reader") return {};
  return {{"pool", o.name}};
}
}  // namespace

ReaderPool::ReaderPool(ReaderPoolOptions options, Metrics& metrics, Watchdog& watchdog)
    : options_(std::move(options)),
      watchdog_(watchdog),
      depth_(metrics.gauge("patina_reader_queue_depth", "Query jobs waiting for a reader connection", pool_labels(options_))),
      busy_(metrics.gauge("patina_reader_busy", "Reader connections running a job", pool_labels(options_))),
      timeouts_(metrics.counter("patina_reader_timeouts_total", "Query jobs interrupted by their timeout",
                                pool_labels(options_))) {}

ReaderPool::~ReaderPool() { stop(); }

Result<void> ReaderPool::start() {
  for (std::size_t i = 0; i < options_.connections; ++i) {
    auto db = Db::open(options_.path, Db::Mode::read_only);
    if (!db) return tl::unexpected(db.error());
    if (auto r = db->exec("PRAGMA query_only = ON; PRAGMA busy_timeout = 5000"); !r) return tl::unexpected(r.error());
    auto w = std::make_unique<Worker>();
    w->pool = this;
    w->index = i;
    w->db = std::move(*db);
    w->heartbeat = watchdog_.add(fmt::format("{}-{}", options_.name, i));
    sqlite3_progress_handler(w->db.get(), 1000, &ReaderPool::progress_handler, w.get());
    workers_.push_back(std::move(w));
  }
  for (auto& w : workers_) {
    Worker* raw = w.get();
    raw->thread = std::thread([this, raw] { run_worker(*raw); });
  }
  return {};
}

int ReaderPool::progress_handler(void* p) {
  auto* w = static_cast<Worker*>(p);
  w->heartbeat->stamp();
  w->pool->nudge(*w, false);
  if (std::chrono::steady_clock::now() > w->deadline) {
    w->deadline_hit = true;
    return 1;
  }
  return 0;
}

void ReaderPool::enqueue(std::unique_ptr<Job> job) {
  {
    std::unique_lock lock(mu_);
    if (stopping_) {
      lock.unlock();
      job->fail(Error{Errc::shutting_down, "the reader pool is shutting down"});
      job->complete();
      return;
    }
    job->enqueued = std::chrono::steady_clock::now();
    if (queue_.size() < options_.queue_len) {
      queue_.push_back(std::move(job));
    } else {
      waiting_.push_back(std::move(job));
    }
    oldest_queued_.store(queue_.front()->enqueued, std::memory_order_relaxed);
    depth_.set(static_cast<double>(queue_.size() + waiting_.size()));
    // A running worker comes back for it; a sleeper is woken for it only
    // when nobody runs (guarantee 4).
    if (running_ > 0 || sleeping_.load(std::memory_order_relaxed) == 0) return;
  }
  cv_.notify_one();
}

void ReaderPool::nudge(Worker& w, bool blocked) {
  if (w.nudged || sleeping_.load(std::memory_order_relaxed) == 0) return;
  auto oldest = oldest_queued_.load(std::memory_order_relaxed);
  if (oldest == std::chrono::steady_clock::time_point::max()) return;
  if (!blocked && std::chrono::steady_clock::now() - oldest < wake_after_) return;
  w.nudged = true;
  cv_.notify_one();
}

thread_local ReaderPool::Worker* ReaderPool::current_worker_ = nullptr;

void ReaderPool::keep_alive() {
  if (current_worker_ == nullptr) return;
  current_worker_->heartbeat->stamp();
  current_worker_->pool->nudge(*current_worker_, true);
}

void ReaderPool::run_worker(Worker& w) {
  current_worker_ = &w;
  ::pthread_setname_np(::pthread_self(), fmt::format("{}-{}", options_.name, w.index).substr(0, 15).c_str());
  bool job_done = false;  // a job was in hand: running_ counts it until the lock is taken again
  for (;;) {
    std::unique_ptr<Job> job;
    bool wake_another = false;
    {
      std::unique_lock lock(mu_);
      if (job_done) --running_;
      while (queue_.empty() && !stopping_) {
        w.heartbeat->set_idle(true);
        sleeping_.fetch_add(1, std::memory_order_relaxed);
        cv_.wait(lock);
        sleeping_.fetch_sub(1, std::memory_order_relaxed);
      }
      w.heartbeat->set_idle(false);
      if (queue_.empty()) break;
      job = std::move(queue_.front());
      queue_.pop_front();
      if (!waiting_.empty()) {
        queue_.push_back(std::move(waiting_.front()));
        waiting_.pop_front();
      }
      ++running_;
      oldest_queued_.store(queue_.empty() ? std::chrono::steady_clock::time_point::max() : queue_.front()->enqueued,
                           std::memory_order_relaxed);
      depth_.set(static_cast<double>(queue_.size() + waiting_.size()));
      // A backlog that has waited too long gets another worker.
      wake_another = !queue_.empty() && sleeping_.load(std::memory_order_relaxed) > 0 &&
                     std::chrono::steady_clock::now() - queue_.front()->enqueued >= wake_after_;
    }
    if (wake_another) cv_.notify_one();
    job_done = true;
    w.nudged = false;
    busy_.add(1);
    w.heartbeat->begin_job(job->name);
    w.deadline_hit = false;
    w.deadline = job->timeout ? std::chrono::steady_clock::now() + *job->timeout
                              : std::chrono::steady_clock::time_point::max();
    job->run(w.db, w.deadline_hit);
    if (w.deadline_hit) timeouts_.inc();
    w.deadline = std::chrono::steady_clock::time_point::max();
    w.heartbeat->end_job();
    busy_.add(-1);
    job->complete();
  }
  watchdog_.remove(w.heartbeat);
}

void ReaderPool::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
    while (!waiting_.empty()) {
      queue_.push_back(std::move(waiting_.front()));
      waiting_.pop_front();
    }
  }
  cv_.notify_all();
  for (auto& w : workers_) {
    if (w->thread.joinable()) w->thread.join();
  }
  workers_.clear();
}

}  // namespace patina::core
