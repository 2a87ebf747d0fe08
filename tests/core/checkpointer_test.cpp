// The WAL checkpointer: with the writer's automatic checkpoint off, it copies
// the WAL into the database off the writer, and truncates a WAL over the
// threshold; the data stays whole.
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>
#include <thread>

#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>

#include "core/checkpointer.hpp"
#include "core/writer.hpp"
#include "tests/core/coro_test_util.hpp"

namespace patina::core {
namespace {

namespace net = boost::asio;

class CheckpointerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("patina-ckpt-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    path_ = (dir_ / "state.db").string();
    writer_ = std::make_unique<Writer>(writer_options(), metrics_, watchdog_);
    auto r = writer_->start([](Db& db) { return db.exec("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)"); });
    ASSERT_TRUE(r) << r.error().message;
  }
  // The writer the agent runs beside a Checkpointer: no automatic checkpoint.
  WriterOptions writer_options() {
    WriterOptions o;
    o.path = path_;
    o.cache_size_kib = -2048;
    o.wal_autocheckpoint_pages = 0;
    return o;
  }
  void reopen_writer(WriterOptions o) {
    writer_.reset();
    writer_ = std::make_unique<Writer>(std::move(o), metrics_, watchdog_);
    ASSERT_TRUE(writer_->start());
  }
  void TearDown() override {
    writer_.reset();
    std::filesystem::remove_all(dir_);
  }

  void write_rows(int from, int n) {
    testing::run_coro([&](net::io_context&) -> net::awaitable<void> {
      for (int i = from; i < from + n; ++i) {
        auto r = co_await writer_->submit<int>("insert", [i](Db& db) -> Result<int> {
          if (auto e = db.exec(fmt::format("INSERT INTO t (id, v) VALUES ({}, printf('%.1000c', 'x'))", i)); !e)
            return tl::unexpected(e.error());
          return i;
        });
        EXPECT_TRUE(r);
      }
    });
  }

  double metric(const std::string& series) {
    std::smatch m;
    const std::string text = metrics_.render();
    std::regex re(std::regex_replace(series, std::regex(R"([{}"])"), R"(\$&)") + R"( ([0-9.e+]+))");
    return std::regex_search(text, m, re) ? std::stod(m[1]) : 0;
  }

  std::uint64_t wal_size() {
    std::error_code ec;
    auto n = std::filesystem::file_size(path_ + "-wal", ec);
    return ec ? 0 : n;
  }

  template <class Pred>
  bool eventually(Pred p) {
    for (int i = 0; i < 1000; ++i) {
      if (p()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

  std::int64_t count_rows() {
    auto db = Db::open(path_, Db::Mode::read_only);
    auto v = db->query_value("SELECT count(*) FROM t");
    return v && *v ? std::get<std::int64_t>(**v) : -1;
  }

  std::filesystem::path dir_;
  std::string path_;
  Metrics metrics_;
  Watchdog watchdog_{60000, Watchdog::Action::log, metrics_};
  std::unique_ptr<Writer> writer_;
};

TEST_F(CheckpointerTest, without_it_the_writer_never_checkpoints_with_it_the_wal_is_copied_off_the_writer) {
  // Without it, every commit appends to the WAL (one 4 KiB page or more each).
  write_rows(0, 300);
  const auto grown = wal_size();
  EXPECT_GT(grown, 300u * 4096);
  write_rows(300, 20);
  EXPECT_GT(wal_size(), grown);

  Checkpointer ckpt(CheckpointerOptions{.path = path_, .interval = std::chrono::milliseconds(10)}, metrics_);
  ASSERT_TRUE(ckpt.start());
  EXPECT_TRUE(eventually([&] { return metric(R"(patina_wal_checkpoints_total{mode="passive"})") >= 1; }));
  // Once every frame is in the database, the next writes start the WAL over
  // from its beginning instead of growing it (SQLite restarts only a WAL
  // that was checkpointed completely).
  const auto size = wal_size();
  write_rows(320, 30);
  EXPECT_LE(wal_size(), size);
  ckpt.stop();
  EXPECT_EQ(count_rows(), 350);
}

TEST_F(CheckpointerTest, a_wal_over_the_threshold_is_truncated) {
  write_rows(0, 200);
  ASSERT_GT(wal_size(), 100000u);
  Checkpointer ckpt(CheckpointerOptions{.path = path_, .interval = std::chrono::milliseconds(10), .truncate_bytes = 1},
                    metrics_);
  ASSERT_TRUE(ckpt.start());
  EXPECT_TRUE(eventually([&] { return metric(R"(patina_wal_checkpoints_total{mode="truncate"})") >= 1; }));
  EXPECT_TRUE(eventually([&] { return wal_size() == 0; }));
  ckpt.stop();
  EXPECT_EQ(count_rows(), 200);
}

TEST_F(CheckpointerTest, it_sleeps_until_the_writer_commits_and_then_checkpoints) {
  write_rows(0, 50);
  Checkpointer ckpt(CheckpointerOptions{.path = path_, .interval = std::chrono::milliseconds(10)}, metrics_);
  // The writer's WAL hook tells it about commits (the agent's wiring).
  WriterOptions o = writer_options();
  o.on_wal_commit = [&ckpt] { ckpt.note_commit(); };
  reopen_writer(std::move(o));
  ASSERT_TRUE(ckpt.start());
  // The WAL left from before start is checkpointed once...
  ASSERT_TRUE(eventually([&] { return metric(R"(patina_wal_checkpoints_total{mode="passive"})") >= 1; }));
  const double after_start = metric(R"(patina_wal_checkpoints_total{mode="passive"})");
  // ...and then, with no commits, nothing runs (20 intervals).
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(metric(R"(patina_wal_checkpoints_total{mode="passive"})"), after_start);
  // A commit wakes it.
  write_rows(50, 5);
  EXPECT_TRUE(eventually([&] { return metric(R"(patina_wal_checkpoints_total{mode="passive"})") > after_start; }));
  ckpt.stop();
  EXPECT_EQ(count_rows(), 55);
}

TEST_F(CheckpointerTest, under_writes_without_pause_the_writer_starts_the_wal_over_instead_of_growing_it) {
  // Eight submitters keep the writer's queue full: it never pauses, so no
  // PASSIVE checkpoint could ever complete the WAL (SQLite restarts only a
  // complete one). The writer's own RESTART checkpoints keep it short; the
  // Checkpointer is left out so that nothing contends for the checkpoint
  // lock and the bound below holds on any machine.
  WriterOptions o = writer_options();
  o.wal_restart_frames = 128;  // 512 KiB
  reopen_writer(std::move(o));
  constexpr int submitters = 8, rows_each = 400;
  testing::run_coro([&](net::io_context& io) -> net::awaitable<void> {
    int done = 0;
    for (int s = 0; s < submitters; ++s) {
      net::co_spawn(
          io,
          [&, s]() -> net::awaitable<void> {
            for (int i = 0; i < rows_each; ++i) {
              int id = s * rows_each + i;
              auto r = co_await writer_->submit<int>("insert", [id](Db& db) -> Result<int> {
                if (auto e = db.exec(fmt::format("INSERT INTO t (id, v) VALUES ({}, printf('%.3000c', 'x'))", id)); !e)
                  return tl::unexpected(e.error());
                return id;
              });
              EXPECT_TRUE(r);
            }
            ++done;
          },
          net::detached);
    }
    net::steady_timer t(io);
    for (int i = 0; i < 6000 && done < submitters; ++i) {
      t.expires_after(std::chrono::milliseconds(10));
      co_await t.async_wait(net::use_awaitable);
    }
    EXPECT_EQ(done, submitters);
  });
  // 3,200 rows of 3 KB wrote about 40 MiB of frames (each batch rewrites its
  // leaf pages); the WAL file never held much more than 128 frames and a
  // batch (at most 8 jobs here).
  EXPECT_GE(metric(R"(patina_wal_checkpoints_total{mode="restart"})"), 10);
  EXPECT_LT(wal_size(), 2u * 1024 * 1024);
  EXPECT_EQ(count_rows(), submitters * rows_each);
}

TEST_F(CheckpointerTest, a_reader_holding_the_wal_costs_the_writer_one_restart_attempt_per_backoff_not_one_per_batch) {
  WriterOptions o = writer_options();
  o.wal_restart_frames = 16;
  o.wal_restart_busy = std::chrono::milliseconds(1);
  o.wal_restart_backoff_min = std::chrono::hours(1);
  o.wal_restart_backoff_max = std::chrono::hours(1);
  reopen_writer(std::move(o));
  // A reader in the middle of a long query: its snapshot pins the WAL.
  auto reader = Db::open(path_, Db::Mode::read_only);
  ASSERT_TRUE(reader);
  ASSERT_TRUE(reader->exec("BEGIN"));
  ASSERT_TRUE(reader->query_value("SELECT count(*) FROM t"));
  write_rows(0, 60);  // 60 batches, each leaving more than 16 frames
  EXPECT_EQ(metric("patina_wal_restarts_busy_total"), 1);
  EXPECT_EQ(metric(R"(patina_wal_checkpoints_total{mode="restart"})"), 0);
  ASSERT_TRUE(reader->exec("COMMIT"));
  EXPECT_EQ(count_rows(), 60);
}

TEST_F(CheckpointerTest, stop_is_idempotent_and_a_missing_database_is_an_error_at_start) {
  Checkpointer missing(CheckpointerOptions{.path = (dir_ / "nope" / "x.db").string()}, metrics_);
  EXPECT_FALSE(missing.start());
  missing.stop();
  Checkpointer ok(CheckpointerOptions{.path = path_}, metrics_);
  ASSERT_TRUE(ok.start());
  ok.stop();
  ok.stop();
}

}  // namespace
}  // namespace patina::core
