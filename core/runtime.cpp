#include "core/runtime.hpp"

#include <liburing.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include <fmt/format.h>

#include "core/log.hpp"

namespace patina::core {

Result<void> check_io_uring() {
  io_uring ring{};
  int rc = io_uring_queue_init(4, &ring, 0);
  if (rc == 0) {
    io_uring_queue_exit(&ring);
    return {};
  }
  int err = -rc;
  std::string cause;
  std::ifstream sysctl("/proc/sys/kernel/io_uring_disabled");
  int disabled = 0;
  if (sysctl >> disabled && disabled != 0 && (err == EPERM || err == EACCES)) {
    cause = fmt::format("the kernel forbids it: sysctl kernel.io_uring_disabled = {} (set it to 0)", disabled);
  } else if (err == ENOSYS) {
    cause = "the kernel has no io_uring support (needs Linux 5.19 or later built with CONFIG_IO_URING)";
  } else if (err == EPERM || err == EACCES) {
    cause = "io_uring_setup is denied (a seccomp profile or container policy blocks it)";
  } else if (err == ENOMEM) {
    cause = "not enough locked memory for the ring (raise RLIMIT_MEMLOCK, ulimit -l)";
  } else {
    cause = std::strerror(err);
  }
  return make_error(Errc::io, fmt::format("io_uring is not usable: {} (io_uring_setup: {})", cause, std::strerror(err)));
}

void spawn(net::any_io_executor ex, std::string name, net::awaitable<void> task) {
  net::co_spawn(ex, std::move(task), [name = std::move(name)](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const boost::system::system_error& se) {
      if (se.code() == net::error::operation_aborted) {
        log::get("runtime")->debug("task '{}' cancelled", name);
        return;
      }
      log::get("runtime")->error("task '{}' failed: {}", name, se.what());
    } catch (const std::exception& ex2) {
      log::get("runtime")->error("task '{}' failed: {}", name, ex2.what());
    } catch (...) {
      log::get("runtime")->error("task '{}' failed with a non-standard exception", name);
    }
  });
}

void TaskGroup::spawn(std::string name, net::awaitable<void> task) {
  std::uint64_t id = next_id_++;
  auto& signal = tasks_[id];
  signal = std::make_unique<net::cancellation_signal>();
  auto slot = signal->slot();
  net::co_spawn(ex_, std::move(task),
                net::bind_cancellation_slot(slot, [this, id, name = std::move(name)](std::exception_ptr e) {
                  if (e) {
                    try {
                      std::rethrow_exception(e);
                    } catch (const boost::system::system_error& se) {
                      if (se.code() != net::error::operation_aborted) {
                        log::get("runtime")->error("task '{}' failed: {}", name, se.what());
                      }
                    } catch (const std::exception& ex2) {
                      log::get("runtime")->error("task '{}' failed: {}", name, ex2.what());
                    } catch (...) {
                      log::get("runtime")->error("task '{}' failed with a non-standard exception", name);
                    }
                  }
                  tasks_.erase(id);
                  if (tasks_.empty() && empty_timer_) empty_timer_->cancel();
                }));
}

void TaskGroup::stop() {
  // Copy the signals first: emitting may complete a task synchronously,
  // which erases it from the map.
  std::vector<net::cancellation_signal*> signals;
  for (auto& [id, s] : tasks_) signals.push_back(s.get());
  for (auto* s : signals) s->emit(net::cancellation_type::terminal);
}

net::awaitable<bool> TaskGroup::wait_empty(int timeout_ms) {
  if (tasks_.empty()) co_return true;
  empty_timer_ = std::make_shared<net::steady_timer>(ex_);
  auto timer = empty_timer_;
  timer->expires_after(std::chrono::milliseconds(timeout_ms));
  co_await timer->async_wait(use_nothrow);
  empty_timer_.reset();
  co_return tasks_.empty();
}

}  // namespace patina::core
