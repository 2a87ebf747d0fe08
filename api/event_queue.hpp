#pragma once
// One client's bounded queue of stream events (NDJSON lines without the
// newline), filled on the reactor by a subscription or an update feed and
// drained by the client's writer coroutine.
//
// A client that falls more than |limit| events behind is not waited for:
// its backlog is dropped and its stream ends with one error event, so a
// slow client never holds back the matcher, the writer or other clients.

#include <chrono>
#include <cstddef>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include "core/runtime.hpp"

namespace patina::api {

class EventQueue {
 public:
  EventQueue(boost::asio::any_io_executor ex, std::size_t limit) : limit_(limit), timer_(std::move(ex)) {}

  // Producer side. False once the stream has ended (lagged, failed, closed).
  bool push(std::string line, std::int64_t change_id = 0) {
    if (ended_) return false;
    if (q_.size() >= limit_) {
      lagged_ = true;
      q_.clear();
      fail(lag_message_ ? lag_message_(last_taken_id_) : std::string(R"({"error":"client fell behind"})"));
      return false;
    }
    q_.emplace_back(std::move(line), change_id);
    timer_.cancel();
    return true;
  }
  // Ends the stream after the queued events with |error_line| as its last.
  void fail(std::string error_line) {
    if (ended_) return;
    final_ = std::move(error_line);
    ended_ = true;
    timer_.cancel();
  }
  // The client went away: drop everything.
  void close() {
    ended_ = true;
    closed_ = true;
    q_.clear();
    timer_.cancel();
  }
  // How the lag error reads, given the last change id handed to the client.
  void on_lag(std::function<std::string(std::int64_t)> f) { lag_message_ = std::move(f); }

  // Consumer side: the next lines (about |max_bytes| at most); empty once
  // the stream is over (the error line, if any, comes first).
  boost::asio::awaitable<std::vector<std::string>> next(std::size_t max_bytes) {
    for (;;) {
      if (closed_) co_return std::vector<std::string>{};
      if (!q_.empty()) {
        std::vector<std::string> out;
        std::size_t bytes = 0;
        while (!q_.empty() && (out.empty() || bytes + q_.front().first.size() <= max_bytes)) {
          bytes += q_.front().first.size();
          if (q_.front().second > 0) last_taken_id_ = q_.front().second;
          out.push_back(std::move(q_.front().first));
          q_.pop_front();
        }
        co_return out;
      }
      if (final_) {
        std::vector<std::string> out{std::move(*final_)};
        final_.reset();
        closed_ = true;
        co_return out;
      }
      if (ended_) co_return std::vector<std::string>{};
      timer_.expires_at(std::chrono::steady_clock::time_point::max());
      co_await timer_.async_wait(core::use_nothrow);
    }
  }

  bool ended() const { return ended_; }
  bool lagged() const { return lagged_; }
  std::size_t size() const { return q_.size(); }

 private:
  std::size_t limit_;
  boost::asio::steady_timer timer_;
  std::deque<std::pair<std::string, std::int64_t>> q_;
  std::optional<std::string> final_;
  std::function<std::string(std::int64_t)> lag_message_;
  std::int64_t last_taken_id_ = 0;
  bool ended_ = false;
  bool closed_ = false;
  bool lagged_ = false;
};

}  // namespace patina::api
