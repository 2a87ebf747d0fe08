#pragma once
// The watchdog: every loop (reactor, writer, each reader) stamps a
// Heartbeat; a separate thread checks them. A loop silent for longer than
// stall_ms is reported with its name, the silence and the job it was running,
// and with action = exit the process ends with code 70 (EX_SOFTWARE), so a
// supervisor restarts it: a deadlocked node must never look healthy.
//
// A thread loop that waits for work on its queue marks itself idle for the
// wait (set_idle) instead of waking up to stamp: an idle node costs no
// wakeups, and the silence of a loop that is not idle still always means
// "stuck", never "nothing to do". The reactor stamps from a timer.
//
// When the process as a whole did not run (SIGSTOP, a paused or migrated VM,
// a frozen cgroup, a host so starved that this thread missed its own ticks)
// every loop looks silent for that long, yet none of them is stuck: the
// watchdog notices that its own tick came late by more than stall_ms, says
// so, and counts silences from then on. A loop that really hangs is still
// caught one stall period after the pause.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/metrics.hpp"

namespace patina::core {

inline constexpr int watchdog_exit_code = 70;

class Heartbeat {
 public:
  explicit Heartbeat(std::string loop) : loop_(std::move(loop)) { stamp(); }
  void stamp() { last_ns_.store(now_ns(), std::memory_order_relaxed); }
  // Entering a wait for work / leaving it (which stamps first, so the
  // watchdog never sees a busy loop with the stamp of before its wait).
  void set_idle(bool idle) {
    if (!idle) stamp();
    idle_.store(idle, std::memory_order_release);
  }
  bool idle() const { return idle_.load(std::memory_order_acquire); }
  void begin_job(std::string_view job) {
    {
      std::lock_guard lock(mu_);
      job_.assign(job);
    }
    stamp();
  }
  void end_job() {
    {
      std::lock_guard lock(mu_);
      job_.clear();
    }
    stamp();
  }
  // Disk I/O that SQLite gives no progress callback for (a COMMIT writing a
  // huge transaction, its WAL checkpoint) may be silent longer than a stall:
  // during it the limit grows by |grace_ms|. A disk stuck beyond that is
  // still a stall.
  void set_grace(std::int64_t grace_ms) {
    grace_ms_.store(grace_ms, std::memory_order_relaxed);
    stamp();
  }
  std::int64_t grace_ms() const { return grace_ms_.load(std::memory_order_relaxed); }
  const std::string& loop() const { return loop_; }
  std::string job() const {
    std::lock_guard lock(mu_);
    return job_;
  }
  std::int64_t silent_ms() const { return (now_ns() - last_ns()) / 1'000'000; }
  std::int64_t last_ns() const { return last_ns_.load(std::memory_order_relaxed); }

  static std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }

 private:
  std::string loop_;
  std::atomic<std::int64_t> last_ns_{0};
  std::atomic<std::int64_t> grace_ms_{0};
  std::atomic<bool> idle_{false};
  mutable std::mutex mu_;
  std::string job_;
};

class Watchdog {
 public:
  enum class Action { exit, log };
  Watchdog(int stall_ms, Action action, Metrics& metrics);
  ~Watchdog();

  // Registers a loop; the watchdog keeps the heartbeat alive.
  std::shared_ptr<Heartbeat> add(std::string loop);
  void remove(const std::shared_ptr<Heartbeat>& hb);
  void start();
  void stop();
  int stall_ms() const { return stall_ms_; }
  // How often the watchdog's thread looks at the heartbeats.
  std::chrono::milliseconds period() const;

  // One look at every heartbeat at steady-clock time |now_ns| (the thread
  // calls it every period(); tests call it with their own times).
  void check(std::int64_t now_ns);

 private:
  void run();

  int stall_ms_;
  Action action_;
  Counter& stalls_;
  Counter& pauses_;
  std::int64_t last_check_ns_ = 0;
  // Silences count from here: the end of the last process-wide pause.
  std::int64_t counted_from_ns_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::vector<std::shared_ptr<Heartbeat>> beats_;
  std::vector<bool> reported_;
  std::thread thread_;
};

}  // namespace patina::core
