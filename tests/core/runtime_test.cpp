#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
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

// Asio's own ring would map 1.5 MiB of kernel memory into every process;
// the link-time wrap in core/asio_impl.cpp caps it.
TEST(Runtime, the_io_context_ring_is_small) {
  if (!check_io_uring()) GTEST_SKIP() << "no io_uring here";
  net::io_context ioc;
  net::steady_timer t(ioc, std::chrono::milliseconds(1));
  bool fired = false;
  t.async_wait([&](boost::system::error_code) { fired = true; });
  ioc.run_for(std::chrono::seconds(5));
  ASSERT_TRUE(fired);
  std::ifstream smaps("/proc/self/smaps");
  std::size_t ring_kib = 0, rings = 0;
  bool in_ring = false;
  for (std::string line; std::getline(smaps, line);) {
    if (line.find("anon_inode:[io_uring]") != std::string::npos) {
      in_ring = true;
      ++rings;
    } else if (line.rfind("Size:", 0) == 0) {
      if (in_ring) ring_kib += std::stoul(line.substr(5));
      in_ring = false;
    }
  }
  EXPECT_GE(rings, 1u);
  EXPECT_LE(ring_kib, 256u) << "io_uring mappings of this process, KiB";
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
