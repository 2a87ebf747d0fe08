#include "core/watchdog.hpp"

#include <pthread.h>
#include <unistd.h>

#include <algorithm>

#include "core/log.hpp"

namespace patina::core {

Watchdog::Watchdog(int stall_ms, Action action, Metrics& metrics)
    : stall_ms_(stall_ms),
      action_(action),
      stalls_(metrics.counter("patina_watchdog_stalls_total", "Loops found silent for longer than stall_ms")),
      pauses_(metrics.counter("patina_watchdog_process_pauses_total",
                              "Times the whole process did not run for longer than stall_ms (stopped, paused VM, "
                              "starved host); not counted as stalls")) {}

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

void Watchdog::start() {
  {
    // A pause before the first tick is a late first tick.
    std::lock_guard lock(mu_);
    last_check_ns_ = Heartbeat::now_ns();
  }
  thread_ = std::thread([this] { run(); });
}

void Watchdog::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

// Twice per stall period: a stall is caught within 1.5x of the limit, and
// an idle agent wakes this thread only twice per stall period.
std::chrono::milliseconds Watchdog::period() const { return std::chrono::milliseconds(std::max(5, stall_ms_ / 2)); }

void Watchdog::run() {
  ::pthread_setname_np(::pthread_self(), "watchdog");
  for (;;) {
    {
      std::unique_lock lock(mu_);
      if (cv_.wait_for(lock, period(), [this] { return stopping_; })) return;
    }
    check(Heartbeat::now_ns());
  }
}

void Watchdog::check(std::int64_t now_ns) {
  auto log = log::get("watchdog");
  std::lock_guard lock(mu_);
  constexpr std::int64_t ns_per_ms = 1'000'000;
  const std::int64_t late_ms =
      last_check_ns_ == 0 ? 0 : (now_ns - last_check_ns_) / ns_per_ms - static_cast<std::int64_t>(period().count());
  last_check_ns_ = now_ns;
  if (late_ms > stall_ms_) {
    // This thread missed its own tick by more than a stall: the process did
    // not run, so neither did its loops, and their silence is not theirs.
    pauses_.inc();
    counted_from_ns_ = now_ns;
    log->warn("the process did not run for about {} ms (stopped, paused VM or starved host); loop silences are "
              "counted from now",
              late_ms);
  }
  for (std::size_t i = 0; i < beats_.size(); ++i) {
    const auto& hb = *beats_[i];
    const std::int64_t silent = hb.idle() ? 0 : (now_ns - std::max(hb.last_ns(), counted_from_ns_)) / ns_per_ms;
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

}  // namespace patina::core
