#include <gtest/gtest.h>

#include <thread>

#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>

#include "core/runtime.hpp"
#include "tests/core/coro_test_util.hpp"

namespace patina::core {
namespace {

TEST(Runtime, io_uring_is_usable_here_or_the_reason_is_named) {
  auto r = check_io_uring();
  if (!r) {
    EXPECT_NE(r.error().message.find("io_uring is not usable"), std::string::npos);
    GTEST_SKIP() << r.error().message;
  }
}

// Parameters by value (CP.53): the counters outlive every task.
net::awaitable<void> sleep_an_hour(int* finished, int* cancelled) {
  net::steady_timer t(co_await net::this_coro::executor);
  t.expires_after(std::chrono::hours(1));
  auto [ec] = co_await t.async_wait(use_nothrow);
  if (ec == net::error::operation_aborted) ++*cancelled;
  ++*finished;
}

TEST(Runtime, task_group_stop_cancels_running_tasks) {
  int finished = 0;
  int cancelled = 0;
  testing::run_coro([&](net::io_context& ioc) -> net::awaitable<void> {
    TaskGroup group(ioc.get_executor());
    for (int i = 0; i < 3; ++i) {
      group.spawn("sleeper", sleep_an_hour(&finished, &cancelled));
    }
    EXPECT_EQ(group.size(), 3u);
    group.stop();
    bool empty = co_await group.wait_empty(10000);
    EXPECT_TRUE(empty);
  });
  EXPECT_EQ(finished, 3);
  EXPECT_EQ(cancelled, 3);
}

TEST(Runtime, cross_thread_channel_delivers_to_the_reactor) {
  std::vector<int> got;
  testing::run_coro([&](net::io_context& ioc) -> net::awaitable<void> {
    CrossThreadChannel<int> ch(ioc, 8);
    std::thread producer([&] {
      for (int i = 0; i < 5; ++i) {
        while (!ch.try_send(boost::system::error_code{}, i)) std::this_thread::yield();
      }
    });
    for (int i = 0; i < 5; ++i) got.push_back(co_await ch.async_receive(net::use_awaitable));
    producer.join();
  });
  EXPECT_EQ(got, (std::vector<int>{0, 1, 2, 3, 4}));
}

}  // namespace
}  // namespace patina::core
