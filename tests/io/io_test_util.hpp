#pragma once
// Shared helpers for the loopback io tests: a bounded coroutine runner and a
// skip guard for kernels without io_uring.

#include <chrono>
#include <exception>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <gtest/gtest.h>

#include "core/runtime.hpp"

namespace patina::io::testing {

namespace net = boost::asio;

#define PATINA_SKIP_WITHOUT_IO_URING()                                   \
  do {                                                                   \
    if (auto ok = ::patina::core::check_io_uring(); !ok) {               \
      GTEST_SKIP() << "io_uring unavailable: " << ok.error().message;    \
    }                                                                    \
  } while (0)

// Runs |make_task(ioc)| to completion; a hung test fails after |limit|.
template <class Fn>
void run_coro(Fn&& make_task, std::chrono::seconds limit = std::chrono::seconds(60)) {
  net::io_context ioc;
  std::exception_ptr failure;
  bool done = false;
  net::co_spawn(ioc, make_task(ioc), [&](std::exception_ptr e) {
    failure = e;
    done = true;
    ioc.stop();
  });
  ioc.run_for(limit);
  if (failure) std::rethrow_exception(failure);
  ASSERT_TRUE(done) << "test coroutine did not finish in time";
}

inline net::awaitable<void> sleep_ms(int ms) {
  net::steady_timer t(co_await net::this_coro::executor, std::chrono::milliseconds(ms));
  co_await t.async_wait(core::use_nothrow);
}

}  // namespace patina::io::testing
