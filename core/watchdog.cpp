#include "core/watchdog.hpp"

#include <pthread.h>
#include <unistd.h>

#include <algorithm>

#include "core/log.hpp"

namespace patina::core {

Watchdog::Watchdog(int stall_ms, Action action, Metrics& metrics)
    : stall_ms_(stall_ms),
      action_(action),
      stalls_(metrics.counter("patina_watchdog_stalls_total", "Loops found silent for longer than stall_ms")) {}

Watchdog::~Watchdog() { stop(); }

std::shared_ptr<Heartbeat> Watchdog::add(std::string loop) {
  auto hb = std::make_shared<Heartbeat>(std::move(loop));
  std::lock_guard lock(mu_);
  beats_.push_back(hb);
  reported_.push_back(false);
  return hb;
}

void Watchdog::remove(const std::shared_ptr<Heartbeat>& hb) {
  std::lock_guard lock(mu_);
  for (std::size_t i = 0; i < beats_.size(); ++i) {
    if (beats_[i] == hb) {
      beats_.erase(beats_.begin() + static_cast<std::ptrdiff_t>(i));
      reported_.erase(reported_.begin() + static_cast<std::ptrdiff_t>(i));
      return;
    }
  }
}

void Watchdog::start() { thread_ = std::thread([this] { run(); }); }

void Watchdog::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Watchdog::run() {
  ::pthread_setname_np(::pthread_self(), "watchdog");
  auto log = log::get("watchdog");
  // Twice per stall period: a stall is caught within 1.5x of the limit, and
  // an idle agent wakes this thread only twice per stall period.
  auto period = std::chrono::milliseconds(std::max(5, stall_ms_ / 2));
  std::unique_lock lock(mu_);
  while (!cv_.wait_for(lock, period, [this] { return stopping_; })) {
    for (std::size_t i = 0; i < beats_.size(); ++i) {
      const auto& hb = *beats_[i];
      auto silent = hb.idle() ? 0 : hb.silent_ms();
      if (silent <= stall_ms_ + hb.grace_ms()) {
        if (reported_[i]) log->warn("loop '{}' is responsive again", hb.loop());
        reported_[i] = false;
        continue;
      }
      if (reported_[i]) continue;
      reported_[i] = true;
      stalls_.inc();
      std::string job = hb.job();
      log->error("loop '{}' stalled: silent for {} ms (limit {} ms), running job '{}'", hb.loop(), silent, stall_ms_,
                 job.empty() ? "none" : job);
      if (action_ == Action::exit) {
        log->error("exiting with code {} so that the supervisor restarts the node", watchdog_exit_code);
        log::flush_all();
        ::_exit(watchdog_exit_code);
      }
    }
  }
}

}  // namespace patina::core
