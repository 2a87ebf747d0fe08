#pragma once
// Runs a coroutine to completion on a fresh io_context on the calling thread;
// a work guard keeps run() alive while results come back from other threads.

#include <chrono>
#include <exception>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

namespace patina::testing {

template <class Fn>
void run_coro(Fn&& make_task) {
  boost::asio::io_context ioc;
  auto guard = boost::asio::make_work_guard(ioc);
  std::exception_ptr failure;
  boost::asio::co_spawn(ioc, make_task(ioc), [&](std::exception_ptr e) {
    failure = e;
    guard.reset();
  });
  // Bounded: a hung test fails instead of blocking CTest forever.
  ioc.run_for(std::chrono::seconds(60));
  if (failure) std::rethrow_exception(failure);
}

}  // namespace patina::testing
