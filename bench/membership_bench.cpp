// Membership at N agents on loopback, Patina beside HashiCorp Serf
// (issue 5 benchmark).
//
//   build/bench/membership_bench [--nodes N] [--idle SECONDS] [--settle SECONDS] [--kills K] [--no-serf]
//
// For each system, with N members (default 16) joining through the first:
//   - formation: start of the first process to every member seeing N-1 alive
//   - detection: kill -9 of one member to every other seeing it gone; with
//     --kills K, K members one after another (each once the previous one is
//     gone everywhere), reported as the median and every figure: one kill's
//     time varies by a probe round or two (which member probes the victim
//     first, and when), so one figure alone cannot rank two systems
//   - idle cost per member over an idle window (default 20 s, starting 15 s
//     after formation so that the joins have settled): CPU
//     seconds/s, RSS, PSS and anonymous memory, and bytes sent/s: Patina's
//     from its UDP counters (QUIC packets: SWIM datagrams and their
//     acknowledgements), Serf's from its own statsd metrics
//     (memberlist.udp.sent plus memberlist.tcp.sent, which every member
//     sends to a listener of this bench). Both count UDP/TCP payload bytes.
//     A longer --settle measures the steady state: Patina's members open QUIC
//     connections (1,200-byte handshake packets) until each has probed every
//     other once, about N x 5 s after start.
// Both run the WAN timing profile (5 s probes, 3 s probe timeout, suspicion
// 6 x log10(n) x probe period): Serf with -profile=wan, Patina's SWIM with
// its defaults, which are foca's new_wan — "equal probe settings".
// Serf comes from the Debian package `serf`; without it, --no-serf.

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "api/http_client.hpp"
#include "tests/integration/api_agent.hpp"
#include "tests/integration/process.hpp"

using namespace patina;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

// Seconds from formation to the idle window (--settle).
double settle_s = 15;
// Members killed one after another (--kills).
int kills = 1;

struct Figures {
  double formation_s = -1;
  double detection_s = -1;            // median over the kills
  std::vector<double> detections_s;    // each kill's
  double cpu_per_s = 0;  // per member
  double rss_mib = 0;    // mean per member
  double pss_mib = 0;    // RSS with pages shared between members divided among them
  double anon_mib = 0;   // the member's own heap and stacks
  double bytes_per_s = -1;
};

// Receives the statsd lines Serf members send ("statsd_addr" in their config
// file) and sums the bytes memberlist reports sent over UDP and TCP.
class SerfBytesSent {
 public:
  SerfBytesSent() {
    fd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    timeval tv{0, 200'000};
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0 ||
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0) {
      return;
    }
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { receive(); });
  }
  ~SerfBytesSent() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    if (fd_ >= 0) ::close(fd_);
  }
  int port() const { return port_; }  // 0: not listening
  double total() {
    std::lock_guard lock(mu_);
    return bytes_;
  }

 private:
  void receive() {
    std::string buf(65536, '\0');
    // Bounded: one hour of 200 ms receive timeouts at most.
    for (int i = 0; i < 10'000'000 && !stop_; ++i) {
      ssize_t got = ::recv(fd_, buf.data(), buf.size(), 0);
      if (got <= 0) continue;
      std::istringstream lines(buf.substr(0, static_cast<std::size_t>(got)));
      double sum = 0;
      for (std::string line; std::getline(lines, line);) {
        // serf-agent.memberlist.udp.sent:148.000000|c
        auto colon = line.find(':');
        if (colon == std::string::npos || line.find("|c", colon) == std::string::npos) continue;
        auto name = line.substr(0, colon);
        if (!name.ends_with("memberlist.udp.sent") && !name.ends_with("memberlist.tcp.sent")) continue;
        sum += std::strtod(line.c_str() + colon + 1, nullptr);
      }
      std::lock_guard lock(mu_);
      bytes_ += sum;
    }
  }

  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  double bytes_ = 0;
  std::thread thread_;
};

// CPU seconds of every thread of |pid|, in nanoseconds from schedstat: the
// clock-tick counters of /proc/PID/stat are too coarse for an idle window
// (one tick is 10 ms, about what an idle member spends in 10 s).
struct Usage {
  double cpu = 0;  // seconds
  double rss = 0, pss = 0, anon = 0;  // MiB
};

// RSS counts the shared libraries' text in full for every member, which is
// most of an idle Patina's RSS; PSS divides pages shared by the members on one
// host among them, and Anonymous is what each member alone costs.
Usage usage_of(pid_t pid) {
  Usage u;
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator(fmt::format("/proc/{}/task", pid), ec)) {
    std::ifstream schedstat(task.path() / "schedstat");
    double on_cpu_ns = 0;
    if (schedstat >> on_cpu_ns) u.cpu += on_cpu_ns / 1e9;
  }
  std::ifstream status(fmt::format("/proc/{}/status", pid));
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) u.rss = std::stod(line.substr(6)) / 1024.0;
  }
  std::ifstream rollup(fmt::format("/proc/{}/smaps_rollup", pid));
  for (std::string line; std::getline(rollup, line);) {
    if (line.rfind("Pss:", 0) == 0) u.pss = std::stod(line.substr(4)) / 1024.0;
    if (line.rfind("Anonymous:", 0) == 0) u.anon = std::stod(line.substr(10)) / 1024.0;
  }
  return u;
}

double median(std::vector<double> v) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// Kills the last live member (kill(i)) until |kills| are gone, each once
// every remaining member sees the one before it gone (all_see(live, want)).
template <class Kill, class AllSee>
void measure_detection(Figures& f, int n, const char* system, Kill kill, AllSee all_see) {
  for (int k = 0; k < kills && n - k > 2; ++k) {
    const int victim = n - 1 - k;
    auto t1 = Clock::now();
    kill(victim);
    // The live members are 0..victim-1; each should count victim-1 others.
    double s = seconds_until([&] { return all_see(victim, static_cast<std::size_t>(victim - 1)); }, t1, 300s);
    fmt::print("{}: every member saw kill -9 #{} after {:.1f} s\n", system, k + 1, s);
    if (s < 0) {
      f.detections_s.clear();  // one that never finished voids the median
      break;
    }
    f.detections_s.push_back(s);
  }
  f.detection_s = median(f.detections_s);
}

template <class Pred>
double seconds_until(Pred done, Clock::time_point since, std::chrono::seconds limit) {
  for (int i = 0; i < 100000; ++i) {
    if (done()) return std::chrono::duration<double>(Clock::now() - since).count();
    if (Clock::now() - since > limit) return -1;
    std::this_thread::sleep_for(200ms);
  }
  return -1;
}

Figures run_patina_cluster(int n, double idle_s) {
  Figures f;
  auto t0 = Clock::now();
  std::vector<std::unique_ptr<testing::ApiAgent>> agents;
  agents.push_back(std::make_unique<testing::ApiAgent>());
  std::string bootstrap = fmt::format("bootstrap = [\"{}\"]", agents[0]->gossip());
  // The others start at once, as Serf's do below.
  for (int i = 1; i < n; ++i) agents.push_back(std::make_unique<testing::ApiAgent>("", "", bootstrap, false));
  for (auto& a : agents) a->wait_ready();
  auto all_see = [&](std::size_t want, std::size_t skip) {
    for (std::size_t i = 0; i < agents.size(); ++i) {
      if (i != skip && testing::count_members(*agents[i]) != want) return false;
    }
    return true;
  };
  f.formation_s = seconds_until([&] { return all_see(agents.size() - 1, agents.size()); }, t0, 120s);
  fmt::print("patina: full membership after {:.1f} s\n", f.formation_s);

  // Idle window, after the joins' announces and feeds have settled (the
  // first periodic announce comes two probe periods after start).
  std::this_thread::sleep_for(std::chrono::duration<double>(settle_s));
  std::vector<double> cpu0, bytes0, pk0, dg0, hs0;
  for (auto& a : agents) {
    hs0.push_back(testing::metric_sum(a->metrics(), "patina_quic_handshakes_client_total"));
    cpu0.push_back(usage_of(a->process().pid()).cpu);
    bytes0.push_back(testing::metric_sum(a->metrics(), "patina_udp_tx_bytes_total"));
    pk0.push_back(testing::metric_sum(a->metrics(), "patina_udp_tx_datagrams_total"));
    dg0.push_back(testing::metric_sum(a->metrics(), "patina_quic_datagrams_sent_total"));
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(idle_s));
  double cpu = 0, bytes = 0, pk = 0, dg = 0, conns = 0, handshakes = 0;
  for (std::size_t i = 0; i < agents.size(); ++i) {
    auto u = usage_of(agents[i]->process().pid());
    cpu += u.cpu - cpu0[i];
    f.rss_mib += u.rss / n;
    f.pss_mib += u.pss / n;
    f.anon_mib += u.anon / n;
    bytes += testing::metric_sum(agents[i]->metrics(), "patina_udp_tx_bytes_total") - bytes0[i];
    pk += testing::metric_sum(agents[i]->metrics(), "patina_udp_tx_datagrams_total") - pk0[i];
    dg += testing::metric_sum(agents[i]->metrics(), "patina_quic_datagrams_sent_total") - dg0[i];
    conns += testing::metric_sum(agents[i]->metrics(), "patina_quic_connections");
    handshakes += testing::metric_sum(agents[i]->metrics(), "patina_quic_handshakes_client_total") - hs0[i];
  }
  // Handshakes in the window (1,200-byte padded Initials and certificates)
  // mean it did not start in the steady state: a longer --settle.
  fmt::print("patina: per member {:.2f} UDP packets/s ({:.2f} SWIM datagrams/s), {:.1f} QUIC connections, "
             "{:.0f} handshakes in the window (all members)\n",
             pk / n / idle_s, dg / n / idle_s, conns / n, handshakes);
  f.cpu_per_s = cpu / n / idle_s;
  f.bytes_per_s = bytes / n / idle_s;

  measure_detection(
      f, n, "patina", [&](int victim) { agents[static_cast<std::size_t>(victim)]->kill(); },
      [&](int live, std::size_t want) {
        for (int i = 0; i < live; ++i) {
          if (testing::count_members(*agents[static_cast<std::size_t>(i)]) != want) return false;
        }
        return true;
      });
  for (auto& a : agents) {
    if (a->process().running()) a->stop();
  }
  return f;
}

Figures run_serf_cluster(int n, double idle_s) {
  Figures f;
  testing::ScratchDir dir;
  SerfBytesSent sent;
  const std::string config = dir.file("statsd.json");
  std::ofstream(config) << fmt::format(R"({{"statsd_addr": "127.0.0.1:{}"}})", sent.port());
  const int base = 20000 + static_cast<int>(::getpid() % 1000) * 20;
  std::vector<std::unique_ptr<testing::Process>> procs;
  auto t0 = Clock::now();
  for (int i = 0; i < n; ++i) {
    std::vector<std::string> argv = {"serf", "agent", "-profile=wan", fmt::format("-node=n{}", i),
                                     fmt::format("-bind=127.0.0.1:{}", base + 2 * i),
                                     fmt::format("-rpc-addr=127.0.0.1:{}", base + 2 * i + 1)};
    if (sent.port() != 0) argv.push_back("-config-file=" + config);
    if (i > 0) argv.push_back(fmt::format("-join=127.0.0.1:{}", base));
    procs.push_back(std::make_unique<testing::Process>(argv, dir.path(), dir.file(fmt::format("serf{}.log", i))));
    if (i == 0) std::this_thread::sleep_for(300ms);  // the first must listen before others join
  }
  auto alive = [&](int i) {
    auto r = testing::run_command({"serf", "members", "-status=alive", fmt::format("-rpc-addr=127.0.0.1:{}", base + 2 * i + 1)},
                                  dir.path());
    return static_cast<std::size_t>(std::count(r.out.begin(), r.out.end(), '\n'));
  };
  auto all_see = [&](std::size_t want, int skip) {
    for (int i = 0; i < n; ++i) {
      if (i != skip && alive(i) != want) return false;
    }
    return true;
  };
  // serf members lists the node itself too.
  f.formation_s = seconds_until([&] { return all_see(static_cast<std::size_t>(n), -1); }, t0, 120s);
  fmt::print("serf: full membership after {:.1f} s\n", f.formation_s);
  std::vector<double> cpu0;
  std::this_thread::sleep_for(std::chrono::duration<double>(settle_s));  // as for Patina
  for (auto& p : procs) cpu0.push_back(usage_of(p->pid()).cpu);
  const double bytes0 = sent.total();
  std::this_thread::sleep_for(std::chrono::duration<double>(idle_s));
  // Serf's statsd sink flushes every 100 ms: both ends of the window lag alike.
  if (sent.port() != 0) f.bytes_per_s = (sent.total() - bytes0) / n / idle_s;
  double cpu = 0;
  for (std::size_t i = 0; i < procs.size(); ++i) {
    auto u = usage_of(procs[i]->pid());
    cpu += u.cpu - cpu0[i];
    f.rss_mib += u.rss / n;
    f.pss_mib += u.pss / n;
    f.anon_mib += u.anon / n;
  }
  f.cpu_per_s = cpu / n / idle_s;
  measure_detection(
      f, n, "serf",
      [&](int victim) {
        procs[static_cast<std::size_t>(victim)]->signal(SIGKILL);
        procs[static_cast<std::size_t>(victim)]->wait_exit();
      },
      // serf members lists the member itself too.
      [&](int live, std::size_t want) {
        for (int i = 0; i < live; ++i) {
          if (alive(i) != want + 1) return false;
        }
        return true;
      });
  for (auto& p : procs) {
    if (p->running()) {
      p->signal(SIGTERM);
      p->wait_exit();
    }
  }
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  int n = 16;
  double idle = 20;
  bool serf = true;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--nodes" && i + 1 < argc) n = std::max(3, std::stoi(argv[++i]));
    else if (a == "--idle" && i + 1 < argc) idle = std::max(1.0, std::stod(argv[++i]));
    else if (a == "--settle" && i + 1 < argc) settle_s = std::max(0.0, std::stod(argv[++i]));
    else if (a == "--kills" && i + 1 < argc) kills = std::max(1, std::stoi(argv[++i]));
    else if (a == "--no-serf") serf = false;
  }
  if (serf && testing::run_command({"serf", "version"}, "/tmp").exit_code != 0) {
    fmt::print("serf is not installed (apt-get install serf); running Patina only\n");
    serf = false;
  }
  fmt::print("membership_bench: {} members, idle window {} s\n", n, idle);
  Figures p = run_patina_cluster(n, idle);
  Figures s = serf ? run_serf_cluster(n, idle) : Figures{};
  auto cell = [](double v, const char* fmtspec) { return v < 0 ? std::string("-") : fmt::format(fmt::runtime(fmtspec), v); };
  auto each = [](const Figures& f) {
    std::string out;
    for (double d : f.detections_s) out += fmt::format("{}{:.1f}", out.empty() ? "" : ", ", d);
    return out;
  };
  if (kills > 1) {
    fmt::print("\nkill -9 detection, each of {} kills: patina [{}]{}\n", kills, each(p),
               serf ? fmt::format(", serf [{}]", each(s)) : std::string());
  }
  fmt::print("\n| system | N | formation s | kill -9 detected by all, s{} | idle CPU %/member | RSS MiB/member | PSS MiB/member | anon MiB/member | bytes/s/member |\n"
             "|---|---|---|---|---|---|---|---|---|\n", kills > 1 ? " (median)" : "");
  fmt::print("| patina | {} | {} | {} | {:.2f} | {:.1f} | {:.1f} | {:.1f} | {} |\n", n, cell(p.formation_s, "{:.1f}"),
             cell(p.detection_s, "{:.1f}"), p.cpu_per_s * 100, p.rss_mib, p.pss_mib, p.anon_mib,
             cell(p.bytes_per_s, "{:.0f}"));
  if (serf) {
    fmt::print("| serf | {} | {} | {} | {:.2f} | {:.1f} | {:.1f} | {:.1f} | {} |\n", n,
               cell(s.formation_s, "{:.1f}"), cell(s.detection_s, "{:.1f}"), s.cpu_per_s * 100, s.rss_mib, s.pss_mib,
               s.anon_mib, cell(s.bytes_per_s, "{:.0f}"));
  }
  return 0;
}
