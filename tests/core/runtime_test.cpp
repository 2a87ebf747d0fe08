#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <thread>

#include <boost/asio/detached.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
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

// Asio prepares cancels and timeout removals without user_data, so before
// core/asio_impl.cpp cleared it they completed whatever operation had last
// used their ring slot. Here a wait on a pipe that never becomes readable is
// started and cancelled thousands of times among timed runs and eventfd
// waits (a few ring cycles): it must only ever end as cancelled, and every
// eventfd wait must end once, as ready.
TEST(Runtime, cancels_in_a_reused_ring_complete_only_their_own_operation) {
  if (!check_io_uring()) GTEST_SKIP() << "no io_uring here";
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  const int event_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  ASSERT_GE(event_fd, 0);
  net::io_context ioc;
  net::posix::stream_descriptor never(ioc, pipe_fds[0]);
  net::posix::stream_descriptor ready(ioc, event_fd);
  constexpr int rounds = 3000;
  int aborted = 0, spurious = 0, readied = 0, ready_errors = 0;
  // run_one_for waits with a ring timeout: another source of removals.
  auto run_until = [&](const bool& done) {
    for (int k = 0; k < 200 && !done; ++k) {
      if (ioc.stopped()) ioc.restart();
      ioc.run_one_for(std::chrono::milliseconds(10));
    }
  };
  for (int i = 0; i < rounds; ++i) {
    bool never_done = false, ready_done = false;
    never.async_wait(net::posix::stream_descriptor::wait_read, [&](boost::system::error_code ec) {
      ++(ec == net::error::operation_aborted ? aborted : spurious);
      never_done = true;
    });
    ready.async_wait(net::posix::stream_descriptor::wait_read, [&](boost::system::error_code ec) {
      ++(ec ? ready_errors : readied);
      std::uint64_t v = 0;
      (void)::read(event_fd, &v, sizeof v);
      ready_done = true;
    });
    const std::uint64_t one = 1;
    ASSERT_EQ(::write(event_fd, &one, sizeof one), static_cast<ssize_t>(sizeof one));
    run_until(ready_done);
    never.cancel();
    run_until(never_done);
    ASSERT_TRUE(never_done && ready_done) << "round " << i << ": an operation never completed";
  }
  EXPECT_EQ(spurious, 0);
  EXPECT_EQ(aborted, rounds);
  EXPECT_EQ(readied, rounds);
  EXPECT_EQ(ready_errors, 0);
  ::close(pipe_fds[1]);
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
