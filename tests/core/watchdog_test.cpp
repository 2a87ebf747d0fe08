// The watchdog reports a loop that is silent while busy, never one that is
// idle (waiting for work), and the writer and reader pool, idle, are
// neither reported nor woken up to stamp.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include <fmt/format.h>

#include "core/reader_pool.hpp"
#include "core/watchdog.hpp"
#include "core/writer.hpp"

namespace patina::core {
namespace {

// The value of counter |name| in the Prometheus text (-1 when absent).
double counter(Metrics& m, const std::string& name) {
  std::smatch match;
  const std::string text = m.render();
  const std::regex re(name + R"( ([0-9.e+]+))");
  return std::regex_search(text, match, re) ? std::stod(match[1]) : -1;
}
double stalls(Metrics& m) { return counter(m, "patina_watchdog_stalls_total"); }
double pauses(Metrics& m) { return counter(m, "patina_watchdog_process_pauses_total"); }

// Voluntary context switches of this thread so far.
long switches_of(pid_t tid) {
  std::ifstream in(fmt::format("/proc/self/task/{}/status", tid));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("voluntary_ctxt_switches:", 0) == 0) return std::stol(line.substr(24));
  }
  return -1;
}

TEST(WatchdogTest, a_silent_busy_loop_is_reported_an_idle_one_never) {
  Metrics metrics;
  Watchdog dog(20, Watchdog::Action::log, metrics);
  auto idle = dog.add("idle-loop");
  auto busy = dog.add("busy-loop");
  idle->set_idle(true);
  busy->begin_job("a job that hangs");
  dog.start();
  // 10x the stall limit: the busy loop is found out, the idle one is not.
  for (int i = 0; i < 200 && stalls(metrics) < 1; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(stalls(metrics), 1);
  // Leaving idle stamps: the idle loop's long silence does not count.
  idle->set_idle(false);
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_FALSE(idle->idle());
  EXPECT_LT(idle->silent_ms(), 20);
  dog.stop();
}

// A watchdog with a 100 ms limit over one loop busy with a job, ticked by
// hand: the test is the clock.
struct HandTicked {
  Metrics metrics;
  Watchdog dog{100, Watchdog::Action::log, metrics};
  std::shared_ptr<Heartbeat> busy = dog.add("busy-loop");
  std::int64_t t0 = 0;
  static constexpr std::int64_t ms = 1'000'000;
  HandTicked() {
    busy->begin_job("a job");
    t0 = busy->last_ns();
  }
};

// A SIGSTOP, a paused VM or a starved host stops every thread, the
// watchdog's too: its own late tick shows that nobody ran, so the loops'
// silence over the pause is not held against them (the node used to exit
// with code 70 after every pause longer than stall_ms). A loop that hangs
// after the pause is still found out.
TEST(WatchdogTest, a_pause_of_the_whole_process_is_not_a_stall_but_a_hang_after_it_is) {
  HandTicked h;
  auto& [metrics, dog, busy, t0] = h;
  constexpr auto ms = HandTicked::ms;
  const std::int64_t tick = dog.period().count() * ms;
  dog.check(t0);
  dog.check(t0 + tick);
  // Five seconds pass with nobody running, then the watchdog ticks.
  dog.check(t0 + tick + 5000 * ms);
  EXPECT_EQ(stalls(metrics), 0);
  EXPECT_EQ(pauses(metrics), 1);
  // The loop does not stamp again: one stall period after the pause it is
  // reported.
  dog.check(t0 + 2 * tick + 5000 * ms);
  EXPECT_EQ(stalls(metrics), 0);
  dog.check(t0 + 3 * tick + 5000 * ms + 10 * ms);
  EXPECT_EQ(stalls(metrics), 1);
  EXPECT_EQ(pauses(metrics), 1);
}

// Regular ticks: a silence longer than stall_ms is a stall, not a pause.
TEST(WatchdogTest, with_regular_ticks_a_silent_loop_is_a_stall) {
  HandTicked h;
  auto& [metrics, dog, busy, t0] = h;
  constexpr auto ms = HandTicked::ms;
  // period() is half of stall_ms: silent 100 ms is within the limit, 150 ms
  // is not.
  for (int i = 0; i <= 2; ++i) dog.check(t0 + i * dog.period().count() * ms);
  EXPECT_EQ(stalls(metrics), 0);
  dog.check(t0 + 3 * dog.period().count() * ms);
  EXPECT_EQ(stalls(metrics), 1);
  EXPECT_EQ(pauses(metrics), 0);
}

TEST(WatchdogTest, an_idle_writer_and_reader_pool_are_not_reported_and_sleep) {
  const auto dir = std::filesystem::temp_directory_path() / ("patina-wd-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  Metrics metrics;
  Watchdog dog(20, Watchdog::Action::log, metrics);
  WriterOptions wo;
  wo.path = (dir / "state.db").string();
  wo.cache_size_kib = -2048;
  Writer writer(wo, metrics, dog);
  ASSERT_TRUE(writer.start([](Db&) -> Result<void> { return {}; }));
  ReaderPoolOptions ro;
  ro.path = wo.path;
  ro.connections = 2;
  ReaderPool pool(ro, metrics, dog);
  ASSERT_TRUE(pool.start());
  dog.start();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  // Their threads are named after what they are; count their wake-ups.
  std::vector<pid_t> tids;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(e.path() / "comm");
    std::string name;
    std::getline(comm, name);
    if (name == "writer" || name.rfind(ro.name + "-", 0) == 0) tids.push_back(std::stoi(e.path().filename()));
  }
  ASSERT_EQ(tids.size(), 3u);
  std::vector<long> before;
  for (auto t : tids) before.push_back(switches_of(t));
  // 15x the stall limit, idle.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  for (std::size_t i = 0; i < tids.size(); ++i) EXPECT_EQ(switches_of(tids[i]), before[i]) << "thread " << tids[i];
  EXPECT_EQ(stalls(metrics), 0);
  pool.stop();
  writer.stop();
  dog.stop();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace patina::core
