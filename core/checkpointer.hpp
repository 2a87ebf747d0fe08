#pragma once
// The WAL checkpointer: its own thread and read-write connection, so the
// writer's COMMITs never pay for a checkpoint.
//
// SQLite's automatic checkpoint runs inside the COMMIT that crosses 1,000 WAL
// pages: that commit copies the WAL into the database and fsyncs it, which
// put 10-20 ms into one replicated write in a hundred (bench/cluster_bench
// p99). The writer therefore runs with wal_autocheckpoint = 0, and this
// thread runs PASSIVE checkpoints (they never wait for or block the writer or
// readers) |interval| after a commit (note_commit(), from the writer's WAL
// hook) and again every |interval| while one left frames behind; an idle
// node's thread sleeps until the next commit. SQLite restarts the WAL
// from its beginning at the next write after a complete checkpoint. When the
// WAL file is still larger than |truncate_bytes| (readers kept it from
// restarting: perf.wal_threshold_mb), a TRUNCATE checkpoint waits up to
// |busy_timeout| for them and shrinks the file, with a log line.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "core/metrics.hpp"
#include "core/result.hpp"
#include "core/sqlite.hpp"

namespace patina::core {

struct CheckpointerOptions {
  std::string path;  // the database file
  std::chrono::milliseconds interval{200};
  std::uint64_t truncate_bytes = 5120ull * 1024 * 1024;
  std::chrono::milliseconds busy_timeout{30000};
};

class Checkpointer {
 public:
  Checkpointer(CheckpointerOptions options, Metrics& metrics);
  ~Checkpointer();
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

  // Opens the connection (the database must exist, in WAL mode) and starts
  // the thread.
  Result<void> start();
  void stop();

  // A transaction was committed to the WAL: checkpoint within |interval|.
  // Cheap and thread-safe (called on the writer's thread after each COMMIT).
  void note_commit();

 private:
  void run();

  CheckpointerOptions options_;
  Counter& passive_;
  Counter& truncated_;
  Counter& failures_;
  int failing_ = 0;  // consecutive failed checkpoints (checkpointer thread)
  Histogram& seconds_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool dirty_ = true;  // commits since the last complete checkpoint (a WAL may be left at start)
  std::thread thread_;
  Db db_;
};

}  // namespace patina::core
