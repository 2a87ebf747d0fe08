#include <gtest/gtest.h>

#include <filesystem>
#include <set>
#include <thread>

#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>

#include "core/reader_pool.hpp"
#include "core/writer.hpp"
#include "tests/core/coro_test_util.hpp"

namespace patina::core {
namespace {

namespace net = boost::asio;

class ReaderPoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("patina-readers-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    path_ = (dir_ / "state.db").string();
    WriterOptions o;
    o.path = path_;
    writer_ = std::make_unique<Writer>(o, metrics_, watchdog_);
    ASSERT_TRUE(writer_->start([](Db& db) {
      return db.exec(
          "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);"
          "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100) "
          "INSERT INTO t SELECT x, 'v' || x FROM c;");
    }));
  }
  void TearDown() override {
    writer_->stop();
    std::filesystem::remove_all(dir_);
  }

  // A query that runs until its timeout interrupts it.
  static Result<std::int64_t> count_to_two_billion(Db& db) {
    auto v = db.query_value(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000000) SELECT count(*) FROM c");
    if (!v) return tl::unexpected(v.error());
    return std::get<std::int64_t>(**v);
  }
  static Result<std::int64_t> count_rows(Db& db) {
    auto v = db.query_value("SELECT count(*) FROM t");
    if (!v) return tl::unexpected(v.error());
    return std::get<std::int64_t>(**v);
  }

  std::filesystem::path dir_;
  std::string path_;
  Metrics metrics_;
  Watchdog watchdog_{60000, Watchdog::Action::log, metrics_};
  std::unique_ptr<Writer> writer_;
};

TEST_F(ReaderPoolTest, runs_queries_concurrently_on_distinct_threads) {
  ReaderPoolOptions o;
  o.path = path_;
  o.connections = 4;
  ReaderPool pool(o, metrics_, watchdog_);
  ASSERT_TRUE(pool.start());
  std::mutex mu;
  std::set<std::thread::id> threads;
  std::atomic<int> in_flight{0};
  std::atomic<int> max_in_flight{0};
  int done = 0;
  testing::run_coro([&](net::io_context& ioc) -> net::awaitable<void> {
    for (int i = 0; i < 16; ++i) {
      net::co_spawn(ioc, [&]() -> net::awaitable<void> {
        auto r = co_await pool.run<std::int64_t>("count", [&](Db& db) -> Result<std::int64_t> {
          int now = ++in_flight;
          int prev = max_in_flight.load();
          while (now > prev && !max_in_flight.compare_exchange_weak(prev, now)) {
          }
          {
            std::lock_guard lock(mu);
            threads.insert(std::this_thread::get_id());
          }
          // Hold the connection long enough for the others to start.
          std::this_thread::sleep_for(std::chrono::milliseconds(30));
          --in_flight;
          auto v = db.query_value("SELECT count(*) FROM t");
          if (!v) return tl::unexpected(v.error());
          return std::get<std::int64_t>(**v);
        });
        EXPECT_TRUE(r);
        if (r) { EXPECT_EQ(*r, 100); }
        ++done;
      }, net::detached);
    }
    net::steady_timer t(ioc);
    for (int i = 0; i < 2000 && done < 16; ++i) {
      t.expires_after(std::chrono::milliseconds(5));
      co_await t.async_wait(net::use_awaitable);
    }
  });
  EXPECT_EQ(done, 16);
  EXPECT_EQ(threads.size(), 4u);
  EXPECT_GT(max_in_flight.load(), 1);
  EXPECT_LE(max_in_flight.load(), 4);
  pool.stop();
}

TEST_F(ReaderPoolTest, timeout_interrupts_a_long_query_and_the_connection_stays_usable) {
  ReaderPoolOptions o;
  o.path = path_;
  o.connections = 1;
  ReaderPool pool(o, metrics_, watchdog_);
  ASSERT_TRUE(pool.start());
  testing::run_coro([&](net::io_context&) -> net::awaitable<void> {
    auto slow = co_await pool.run<std::int64_t>(
        "slow",
        count_to_two_billion,
        std::chrono::milliseconds(50));
    EXPECT_FALSE(slow);
    if (!slow) { EXPECT_EQ(slow.error().code, Errc::timeout); }
    auto fast = co_await pool.run<std::int64_t>("fast", count_rows, std::chrono::milliseconds(5000));
    EXPECT_TRUE(fast);
  });
  EXPECT_EQ(metrics_.counter("patina_reader_timeouts_total", "").value(), 1u);
  pool.stop();
}

TEST_F(ReaderPoolTest, a_long_job_does_not_hold_up_the_jobs_queued_behind_it) {
  // A running worker takes the next job itself when it is done, so the
  // pool does not wake a sleeper at once; a job that keeps running (in
  // SQLite, or waiting in keep_alive()) must still get one woken for the
  // queue behind it.
  ReaderPoolOptions o;
  o.path = path_;
  o.connections = 2;
  ReaderPool pool(o, metrics_, watchdog_);
  ASSERT_TRUE(pool.start());
  std::atomic<bool> fast_done{false};
  std::vector<std::string> finished;
  testing::run_coro([&](net::io_context& ioc) -> net::awaitable<void> {
    // A job waiting outside SQLite, until the job queued behind it has run.
    net::co_spawn(ioc, [&]() -> net::awaitable<void> {
      auto r = co_await pool.run<bool>("waits", [&](Db&) -> Result<bool> {
        for (int i = 0; i < 5000 && !fast_done; ++i) {
          ReaderPool::keep_alive();
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        return fast_done.load();
      });
      EXPECT_TRUE(r && *r) << "the job behind the waiting one never ran while it waited";
      finished.push_back("waits");
    }, net::detached);
    net::steady_timer t(ioc);
    t.expires_after(std::chrono::milliseconds(20));
    co_await t.async_wait(net::use_awaitable);
    auto fast = co_await pool.run<std::int64_t>("fast", count_rows);
    EXPECT_TRUE(fast);
    fast_done = true;
    finished.push_back("fast");

    // A long query (interrupted by its timeout) and a short one behind it.
    net::co_spawn(ioc, [&]() -> net::awaitable<void> {
      auto slow = co_await pool.run<std::int64_t>(
          "slow",
          count_to_two_billion,
          std::chrono::milliseconds(2000));
      EXPECT_FALSE(slow);
      finished.push_back("slow");
    }, net::detached);
    t.expires_after(std::chrono::milliseconds(20));
    co_await t.async_wait(net::use_awaitable);
    EXPECT_TRUE(co_await pool.run<std::int64_t>("short", count_rows));
    finished.push_back("short");
    for (int i = 0; i < 1000 && finished.size() < 4; ++i) {
      t.expires_after(std::chrono::milliseconds(5));
      co_await t.async_wait(net::use_awaitable);
    }
  });
  EXPECT_EQ(finished, (std::vector<std::string>{"fast", "waits", "short", "slow"}));
  pool.stop();
}

TEST_F(ReaderPoolTest, connections_are_read_only) {
  ReaderPoolOptions o;
  o.path = path_;
  o.connections = 1;
  ReaderPool pool(o, metrics_, watchdog_);
  ASSERT_TRUE(pool.start());
  testing::run_coro([&](net::io_context&) -> net::awaitable<void> {
    auto r = co_await pool.run<int>("write", [](Db& db) -> Result<int> {
      auto e = db.exec("DELETE FROM t");
      if (!e) return tl::unexpected(e.error());
      return 0;
    });
    EXPECT_FALSE(r);
  });
  pool.stop();
  auto db = Db::open(path_, Db::Mode::read_only);
  ASSERT_TRUE(db);
  EXPECT_EQ(std::get<std::int64_t>(**db->query_value("SELECT count(*) FROM t")), 100);
}

}  // namespace
}  // namespace patina::core
