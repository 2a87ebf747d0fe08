#include <gtest/gtest.h>

#include <filesystem>
#include <future>
#include <thread>

#include <sqlite3.h>

#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>

#include "core/writer.hpp"
#include "tests/core/coro_test_util.hpp"

namespace patina::core {
namespace {

namespace net = boost::asio;

// The default VFS with one difference: while `full` is set, writes to a
// -wal file fail with SQLITE_FULL. In WAL mode pages reach the disk at
// COMMIT, so this is a disk that fills up at the worst moment: the whole
// batch is lost. Registered as the default VFS for the test's lifetime.
class FullWalVfs {
 public:
  static inline std::atomic<bool> full{false};

  FullWalVfs() {
    base_ = sqlite3_vfs_find(nullptr);
    vfs_ = *base_;
    vfs_.zName = "patina-full-wal";
    vfs_.szOsFile = static_cast<int>(sizeof(File)) + base_->szOsFile;
    vfs_.pAppData = this;
    vfs_.xOpen = &open;
    sqlite3_vfs_register(&vfs_, 1);
  }
  ~FullWalVfs() {
    sqlite3_vfs_unregister(&vfs_);
    sqlite3_vfs_register(base_, 1);
    full = false;
  }

 private:
  struct File {
    sqlite3_file header;  // pMethods: methods_ (or null when the open failed)
    bool wal;
    sqlite3_file* real() { return reinterpret_cast<sqlite3_file*>(this + 1); }
  };
  static File* of(sqlite3_file* f) { return reinterpret_cast<File*>(f); }

  static int open(sqlite3_vfs* vfs, sqlite3_filename name, sqlite3_file* opened, int flags, int* out_flags) {
    auto* self = static_cast<FullWalVfs*>(vfs->pAppData);
    auto* file = of(opened);
    file->header.pMethods = nullptr;
    file->wal = (flags & SQLITE_OPEN_WAL) != 0;
    int rc = self->base_->xOpen(self->base_, name, file->real(), flags, out_flags);
    if (rc != SQLITE_OK || file->real()->pMethods == nullptr) return rc;
    if (real_methods_ == nullptr) {
      real_methods_ = file->real()->pMethods;
      methods_ = *real_methods_;
      methods_.xClose = [](sqlite3_file* f) {
        int closed = of(f)->real()->pMethods->xClose(of(f)->real());
        f->pMethods = nullptr;
        return closed;
      };
      methods_.xRead = [](sqlite3_file* f, void* b, int n, sqlite3_int64 at) {
        return of(f)->real()->pMethods->xRead(of(f)->real(), b, n, at);
      };
      methods_.xWrite = [](sqlite3_file* f, const void* b, int n, sqlite3_int64 at) {
        if (of(f)->wal && full) return SQLITE_FULL;
        return of(f)->real()->pMethods->xWrite(of(f)->real(), b, n, at);
      };
      methods_.xTruncate = [](sqlite3_file* f, sqlite3_int64 n) { return of(f)->real()->pMethods->xTruncate(of(f)->real(), n); };
      methods_.xSync = [](sqlite3_file* f, int fl) { return of(f)->real()->pMethods->xSync(of(f)->real(), fl); };
      methods_.xFileSize = [](sqlite3_file* f, sqlite3_int64* n) { return of(f)->real()->pMethods->xFileSize(of(f)->real(), n); };
      methods_.xLock = [](sqlite3_file* f, int l) { return of(f)->real()->pMethods->xLock(of(f)->real(), l); };
      methods_.xUnlock = [](sqlite3_file* f, int l) { return of(f)->real()->pMethods->xUnlock(of(f)->real(), l); };
      methods_.xCheckReservedLock = [](sqlite3_file* f, int* o) {
        return of(f)->real()->pMethods->xCheckReservedLock(of(f)->real(), o);
      };
      methods_.xFileControl = [](sqlite3_file* f, int op, void* a) {
        return of(f)->real()->pMethods->xFileControl(of(f)->real(), op, a);
      };
      methods_.xSectorSize = [](sqlite3_file* f) { return of(f)->real()->pMethods->xSectorSize(of(f)->real()); };
      methods_.xDeviceCharacteristics = [](sqlite3_file* f) {
        return of(f)->real()->pMethods->xDeviceCharacteristics(of(f)->real());
      };
      methods_.xShmMap = [](sqlite3_file* f, int pg, int sz, int ext, void volatile** p) {
        return of(f)->real()->pMethods->xShmMap(of(f)->real(), pg, sz, ext, p);
      };
      methods_.xShmLock = [](sqlite3_file* f, int off, int n, int fl) {
        return of(f)->real()->pMethods->xShmLock(of(f)->real(), off, n, fl);
      };
      methods_.xShmBarrier = [](sqlite3_file* f) { of(f)->real()->pMethods->xShmBarrier(of(f)->real()); };
      methods_.xShmUnmap = [](sqlite3_file* f, int del) { return of(f)->real()->pMethods->xShmUnmap(of(f)->real(), del); };
      // No memory-mapped I/O through the shim: reads go through xRead.
      methods_.iVersion = 2;
      methods_.xFetch = nullptr;
      methods_.xUnfetch = nullptr;
    }
    file->header.pMethods = &methods_;
    return rc;
  }

  sqlite3_vfs* base_ = nullptr;
  sqlite3_vfs vfs_{};
  static inline const sqlite3_io_methods* real_methods_ = nullptr;
  static inline sqlite3_io_methods methods_{};
};

class WriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("patina-writer-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    path_ = (dir_ / "state.db").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<Writer> make_writer(std::size_t queue_len = 1024,
                                      std::chrono::milliseconds batch_time_max = std::chrono::milliseconds(50),
                                      std::uint64_t min_free_bytes = 0) {
    WriterOptions o;
    o.path = path_;
    o.min_free_bytes = min_free_bytes;
    o.queue_len = queue_len;
    o.batch_time_max = batch_time_max;
    o.cache_size_kib = -2048;
    auto w = std::make_unique<Writer>(o, metrics_, watchdog_);
    auto r = w->start([](Db& db) { return db.exec("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)"); });
    EXPECT_TRUE(r) << (r ? "" : r.error().message);
    return w;
  }

  std::int64_t count_rows(const std::string& where = "1") {
    auto db = Db::open(path_, Db::Mode::read_only);
    EXPECT_TRUE(db);
    auto v = db->query_value("SELECT count(*) FROM t WHERE " + where);
    EXPECT_TRUE(v && *v);
    return std::get<std::int64_t>(**v);
  }

  static auto insert(std::int64_t id) {
    return [id](Db& db) -> Result<std::int64_t> {
      auto s = db.prepare("INSERT INTO t (id, v) VALUES (?, 'x')");
      if (!s) return tl::unexpected(s.error());
      if (auto b = s->bind(1, id); !b) return tl::unexpected(b.error());
      if (auto r = s->run(); !r) return tl::unexpected(r.error());
      return id;
    };
  }

  // A standalone job that holds the writer until |gate| is released, so
  // that the jobs submitted meanwhile all wait in the queue.
  auto hold(std::shared_future<void> gate) {
    return [gate, this](Db&) -> Result<int> {
      holding_ = true;
      gate.wait();
      return 0;
    };
  }

  // Waits until the hold job runs on the writer thread, so that the jobs
  // submitted next all wait in the queue.
  net::awaitable<void> until_holding() {
    net::steady_timer t(co_await net::this_coro::executor);
    for (int i = 0; i < 2000 && !holding_; ++i) {
      t.expires_after(std::chrono::milliseconds(2));
      co_await t.async_wait(net::use_awaitable);
    }
    EXPECT_TRUE(holding_.load());
  }

  std::atomic<bool> holding_{false};

  std::filesystem::path dir_;
  std::string path_;
  Metrics metrics_;
  Watchdog watchdog_{60000, Watchdog::Action::log, metrics_};
};

TEST_F(WriterTest, group_commit_shares_transactions_under_load) {
  // The batch's time bound is out of the way: under a sanitizer on a busy
  // machine 200 inserts can outlast 50 ms, and this test is about the count.
  auto writer = make_writer(1024, std::chrono::seconds(60));
  std::promise<void> release;
  std::shared_future<void> gate = release.get_future().share();
  int done = 0;
  testing::run_coro([&](net::io_context& ioc) -> net::awaitable<void> {
    JobOptions standalone;
    standalone.standalone = true;
    net::co_spawn(ioc, [&]() -> net::awaitable<void> {
      co_await writer->submit<int>("hold", hold(gate), standalone);
    }, net::detached);
    co_await until_holding();
    for (int i = 0; i < 200; ++i) {
      net::co_spawn(ioc, [&, i]() -> net::awaitable<void> {
        auto r = co_await writer->submit<std::int64_t>("insert", insert(i));
        EXPECT_TRUE(r) << r.error().message;
        ++done;
      }, net::detached);
    }
    net::steady_timer t(ioc);
    for (int i = 0; i < 1000 && writer->queue_depth() < 200; ++i) {
      t.expires_after(std::chrono::milliseconds(5));
      co_await t.async_wait(net::use_awaitable);
    }
    EXPECT_EQ(writer->queue_depth(), 200u);
    release.set_value();
    for (int i = 0; i < 2000 && done < 200; ++i) {
      t.expires_after(std::chrono::milliseconds(5));
      co_await t.async_wait(net::use_awaitable);
    }
  });
  EXPECT_EQ(done, 200);
  EXPECT_EQ(count_rows(), 200);
  auto& batches = metrics_.histogram("patina_writer_batch_jobs", "", {}, {});
  // 200 queued jobs with batch_jobs_max 256 commit as one transaction.
  EXPECT_EQ(batches.count(), 1u);
  EXPECT_EQ(batches.sum(), 200.0);
}

TEST_F(WriterTest, failing_job_rolls_back_alone) {
  auto writer = make_writer();
  std::promise<void> release;
  std::shared_future<void> gate = release.get_future().share();
  std::vector<bool> results(3);
  int done = 0;
  testing::run_coro([&](net::io_context& ioc) -> net::awaitable<void> {
    JobOptions standalone;
    standalone.standalone = true;
    net::co_spawn(ioc, [&]() -> net::awaitable<void> { co_await writer->submit<int>("hold", hold(gate), standalone); },
                  net::detached);
    co_await until_holding();
    net::co_spawn(ioc, [&]() -> net::awaitable<void> {
      results[0] = (co_await writer->submit<std::int64_t>("a", insert(1))).has_value();
      ++done;
    }, net::detached);
    net::co_spawn(ioc, [&]() -> net::awaitable<void> {
      // Inserts row 2, then fails: its savepoint must undo the insert.
      auto r = co_await writer->submit<int>("b", [](Db& db) -> Result<int> {
        if (auto e = db.exec("INSERT INTO t (id, v) VALUES (2, 'doomed')"); !e) return tl::unexpected(e.error());
        auto dup = db.exec("INSERT INTO t (id, v) VALUES (1, 'duplicate')");
        if (!dup) return tl::unexpected(dup.error());
        return 0;
      });
      results[1] = r.has_value();
      EXPECT_FALSE(r);
      if (!r) { EXPECT_NE(r.error().message.find("UNIQUE"), std::string::npos) << r.error().message; }
      ++done;
    }, net::detached);
    net::co_spawn(ioc, [&]() -> net::awaitable<void> {
      results[2] = (co_await writer->submit<std::int64_t>("c", insert(3))).has_value();
      ++done;
    }, net::detached);
    net::steady_timer t(ioc);
    for (int i = 0; i < 1000 && writer->queue_depth() < 3; ++i) {
      t.expires_after(std::chrono::milliseconds(5));
      co_await t.async_wait(net::use_awaitable);
    }
    release.set_value();
    for (int i = 0; i < 2000 && done < 3; ++i) {
      t.expires_after(std::chrono::milliseconds(5));
      co_await t.async_wait(net::use_awaitable);
    }
  });
  EXPECT_TRUE(results[0]);
  EXPECT_FALSE(results[1]);
  EXPECT_TRUE(results[2]);
  EXPECT_EQ(count_rows(), 2);
  EXPECT_EQ(count_rows("id = 2"), 0);
  auto& batches = metrics_.histogram("patina_writer_batch_jobs", "", {}, {});
  EXPECT_EQ(batches.count(), 1u);  // all three shared one transaction
}

TEST_F(WriterTest, full_queue_holds_submitters_back_and_drops_nothing) {
  auto writer = make_writer(/*queue_len=*/4);
  std::promise<void> release;
  std::shared_future<void> gate = release.get_future().share();
  int ok = 0;
  testing::run_coro([&](net::io_context& ioc) -> net::awaitable<void> {
    JobOptions standalone;
    standalone.standalone = true;
    net::co_spawn(ioc, [&]() -> net::awaitable<void> { co_await writer->submit<int>("hold", hold(gate), standalone); },
                  net::detached);
    co_await until_holding();
    for (int i = 0; i < 40; ++i) {
      net::co_spawn(ioc, [&, i]() -> net::awaitable<void> {
        auto r = co_await writer->submit<std::int64_t>("insert", insert(i));
        if (r) ++ok;
      }, net::detached);
    }
    net::steady_timer t(ioc);
    auto& waiting = metrics_.gauge("patina_writer_waiting_submitters", "");
    for (int i = 0; i < 1000 && waiting.value() < 36; ++i) {
      t.expires_after(std::chrono::milliseconds(5));
      co_await t.async_wait(net::use_awaitable);
    }
    EXPECT_EQ(writer->queue_depth(), 4u);
    EXPECT_EQ(waiting.value(), 36);
    release.set_value();
    for (int i = 0; i < 2000 && ok < 40; ++i) {
      t.expires_after(std::chrono::milliseconds(5));
      co_await t.async_wait(net::use_awaitable);
    }
  });
  EXPECT_EQ(ok, 40);
  EXPECT_EQ(count_rows(), 40);
}

TEST_F(WriterTest, timeout_interrupts_only_that_job) {
  auto writer = make_writer();
  testing::run_coro([&](net::io_context&) -> net::awaitable<void> {
    JobOptions o;
    o.timeout = std::chrono::milliseconds(50);
    auto slow = co_await writer->submit<int>("slow", [](Db& db) -> Result<int> {
      if (auto e = db.exec("INSERT INTO t (id, v) VALUES (100, 'x')"); !e) return tl::unexpected(e.error());
      auto r = db.query_value(
          "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) SELECT count(*) FROM c");
      if (!r) return tl::unexpected(r.error());
      return 0;
    }, o);
    EXPECT_FALSE(slow);
    if (!slow) { EXPECT_EQ(slow.error().code, Errc::timeout); }
    auto fast = co_await writer->submit<std::int64_t>("fast", insert(1), o);
    EXPECT_TRUE(fast);
  });
  EXPECT_EQ(count_rows("id = 100"), 0);
  EXPECT_EQ(count_rows("id = 1"), 1);
}

TEST_F(WriterTest, below_the_free_space_floor_only_jobs_that_need_space_are_refused) {
  // A floor no disk can meet (1 EiB): the writer stays up, refuses growth.
  auto writer = make_writer(1024, std::chrono::milliseconds(50), std::uint64_t{1} << 60);
  testing::run_coro([&](net::io_context&) -> net::awaitable<void> {
    JobOptions grows;
    grows.needs_free_space = true;
    auto refused = co_await writer->submit<std::int64_t>("api write", insert(1), grows);
    EXPECT_FALSE(refused);
    if (!refused) {
      EXPECT_EQ(refused.error().code, Errc::storage_full);
      EXPECT_NE(refused.error().message.find("below db.min_free_space_mb (1099511627776 MiB)"), std::string::npos)
          << refused.error().message;
    }
    // Bookkeeping that does not ask for room still runs.
    EXPECT_TRUE(co_await writer->submit<std::int64_t>("save members", insert(2)));
    // A lower floor (reload) takes effect at the next job.
    writer->set_min_free_bytes(0);
    EXPECT_TRUE(co_await writer->submit<std::int64_t>("api write", insert(3), grows));
    writer->set_min_free_bytes(std::uint64_t{1} << 60);
    EXPECT_FALSE(co_await writer->submit<std::int64_t>("api write", insert(4), grows));
  });
  EXPECT_EQ(count_rows("id IN (1, 4)"), 0);
  EXPECT_EQ(count_rows("id IN (2, 3)"), 2);
  auto text = metrics_.render();
  EXPECT_NE(text.find("patina_writer_jobs_refused_total{reason=\"disk_space\"} 2"), std::string::npos) << text;
  EXPECT_EQ(text.find("patina_db_disk_free_bytes -1"), std::string::npos) << "statvfs of a real folder works";
}

TEST_F(WriterTest, a_disk_full_at_commit_fails_the_batch_with_storage_full_and_the_writer_carries_on) {
  FullWalVfs vfs;
  auto writer = make_writer();
  std::atomic<int> fatal{0};
  std::atomic<int> rollbacks{0};
  std::atomic<bool> outside_tx{false};
  writer->on_fatal([&](const Error&) { ++fatal; });
  writer->on_transaction_rolled_back([&](Db& db) {
    ++rollbacks;
    outside_tx = sqlite3_get_autocommit(db.get()) != 0;
  });
  testing::run_coro([&](net::io_context&) -> net::awaitable<void> {
    EXPECT_TRUE(co_await writer->submit<std::int64_t>("before", insert(1)));
    FullWalVfs::full = true;
    auto lost = co_await writer->submit<std::int64_t>("api write", insert(2));
    EXPECT_FALSE(lost);
    if (!lost) {
      EXPECT_EQ(lost.error().code, Errc::storage_full) << lost.error().message;
      EXPECT_NE(lost.error().message.find("database or disk is full"), std::string::npos) << lost.error().message;
    }
    FullWalVfs::full = false;
    // Space is back: the writer never stopped, and the next job commits.
    EXPECT_TRUE(co_await writer->submit<std::int64_t>("after", insert(3)));
  });
  EXPECT_EQ(fatal.load(), 0);
  EXPECT_EQ(rollbacks.load(), 1);
  EXPECT_TRUE(outside_tx.load());
  EXPECT_EQ(count_rows("id IN (1, 3)"), 2);
  EXPECT_EQ(count_rows("id = 2"), 0);
  auto text = metrics_.render();
  EXPECT_NE(text.find("patina_writer_disk_full_total 1"), std::string::npos) << text;
}

TEST_F(WriterTest, exception_in_job_becomes_an_error) {
  auto writer = make_writer();
  testing::run_coro([&](net::io_context&) -> net::awaitable<void> {
    auto r = co_await writer->submit<int>("throws", [](Db&) -> Result<int> { throw std::runtime_error("boom"); });
    EXPECT_FALSE(r);
    if (!r) {
      EXPECT_EQ(r.error().code, Errc::internal);
      EXPECT_NE(r.error().message.find("boom"), std::string::npos);
    }
    EXPECT_TRUE(co_await writer->submit<std::int64_t>("after", insert(5)));
  });
  EXPECT_EQ(count_rows(), 1);
}

TEST_F(WriterTest, stop_runs_every_accepted_job_and_refuses_new_ones) {
  auto writer = make_writer(/*queue_len=*/8);
  std::promise<void> release;
  std::shared_future<void> gate = release.get_future().share();
  std::atomic<int> acknowledged{0};
  std::atomic<int> refused{0};
  std::thread stopper;
  testing::run_coro([&](net::io_context& ioc) -> net::awaitable<void> {
    JobOptions standalone;
    standalone.standalone = true;
    net::co_spawn(ioc, [&]() -> net::awaitable<void> { co_await writer->submit<int>("hold", hold(gate), standalone); },
                  net::detached);
    co_await until_holding();
    for (int i = 0; i < 50; ++i) {
      net::co_spawn(ioc, [&, i]() -> net::awaitable<void> {
        auto r = co_await writer->submit<std::int64_t>("insert", insert(i));
        if (r) ++acknowledged;
      }, net::detached);
    }
    net::steady_timer t(ioc);
    for (int i = 0; i < 1000 && writer->queue_depth() < 8; ++i) {
      t.expires_after(std::chrono::milliseconds(5));
      co_await t.async_wait(net::use_awaitable);
    }
    // Stop while 50 jobs are queued or waiting, then release the writer.
    stopper = std::thread([&] { writer->stop(); });
    for (int i = 0; i < 1000 && writer->accepting(); ++i) {
      t.expires_after(std::chrono::milliseconds(5));
      co_await t.async_wait(net::use_awaitable);
    }
    for (int i = 0; i < 200; ++i) {
      auto late = co_await writer->submit<std::int64_t>("late", insert(1000));
      if (!late && late.error().code == Errc::shutting_down) {
        ++refused;
        break;
      }
      t.expires_after(std::chrono::milliseconds(5));
      co_await t.async_wait(net::use_awaitable);
    }
    release.set_value();
    for (int i = 0; i < 2000 && acknowledged < 50; ++i) {
      t.expires_after(std::chrono::milliseconds(5));
      co_await t.async_wait(net::use_awaitable);
    }
  });
  stopper.join();
  EXPECT_EQ(acknowledged.load(), 50);
  EXPECT_EQ(refused.load(), 1);
  EXPECT_EQ(count_rows(), 50);
  // The final checkpoint emptied the WAL.
  std::error_code ec;
  auto wal = std::filesystem::file_size(path_ + "-wal", ec);
  EXPECT_TRUE(ec || wal == 0);
}

}  // namespace
}  // namespace patina::core
