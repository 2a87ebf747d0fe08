#pragma once
// The coroutine runtime every loop stands on: Boost.Asio on io_uring (see
// BOOST_ASIO_HAS_IO_URING / BOOST_ASIO_DISABLE_EPOLL in CMake), named task
// spawning that never loses an exception, a task group for shutdown, and a
// bounded cross-thread channel for posting results back to the reactor.

#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
#include <string>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "core/result.hpp"

namespace patina::core {

namespace net = boost::asio;

// Expected errors as values: auto [ec, n] = co_await op(..., use_nothrow).
inline constexpr auto use_nothrow = net::as_tuple(net::use_awaitable);

// The first multiple of |period| (counted from the steady clock's epoch)
// after |now|. Periodic loops that wait for such aligned deadlines expire in
// the same reactor wakeup when their periods divide each other, which is
// what keeps an idle agent's wakeups per second low.
inline std::chrono::steady_clock::time_point next_aligned(std::chrono::steady_clock::time_point now,
                                                          std::chrono::steady_clock::duration period) {
  const auto since_epoch = now.time_since_epoch();
  return std::chrono::steady_clock::time_point((since_epoch / period + 1) * period);
}

// Checks that the kernel lets this process create an io_uring. Fails with a
// message naming the cause (sysctl kernel.io_uring_disabled, seccomp, an old
// kernel, memlock limits).
Result<void> check_io_uring();

// Starts |task| on |ex|. An exception escaping the task is logged with |name|
// (logger "runtime"); cancellation at shutdown is logged at debug level.
void spawn(net::any_io_executor ex, std::string name, net::awaitable<void> task);

// Tasks that must all stop at shutdown. Each spawned task gets its own
// cancellation slot; stop() emits a terminal cancellation to every task
// still running, and wait_empty() resumes when the last one finished.
//
// Lives on one executor (the reactor); not thread-safe.
class TaskGroup {
 public:
  explicit TaskGroup(net::any_io_executor ex) : ex_(std::move(ex)) {}
  TaskGroup(const TaskGroup&) = delete;
  TaskGroup& operator=(const TaskGroup&) = delete;

  void spawn(std::string name, net::awaitable<void> task);
  void stop();
  std::size_t size() const { return tasks_.size(); }
  // Waits until every task ended or |timeout_ms| passed; true if all ended.
  net::awaitable<bool> wait_empty(int timeout_ms);

 private:
  net::any_io_executor ex_;
  std::uint64_t next_id_ = 0;
  std::map<std::uint64_t, std::unique_ptr<net::cancellation_signal>> tasks_;
  std::shared_ptr<net::steady_timer> empty_timer_;
};

// A bounded multi-producer channel whose receiver awaits on the reactor.
// Producers on other threads use try_send (never blocks) or async_send.
template <class T>
using CrossThreadChannel = net::experimental::concurrent_channel<void(boost::system::error_code, T)>;

}  // namespace patina::core
