// Replication across N real agents on loopback (issue 6 benchmark).
//
//   build/bench/cluster_bench [--nodes N] [--rate R] [--seconds S] [--out DIR]
//                             [--observe subscribe|poll] [--settle T]
//                             [--text-bytes B]
//
// Starts N agents (default 16) that join through the first one, waits T
// seconds after full membership (--settle, default 8), writes R
// single-row transactions/s (default 100) spread round-robin over the nodes
// for S seconds (default 10), and measures for every write the time from
// sending it to the moment it is visible on every node: an observer per node
// holds a subscription (`SELECT id FROM tests`) and takes the arrival of the
// row's insert event (the way an edge proxy follows the state), or, with
// --observe poll, polls for new rows over a keep-alive connection (the poll
// interval is then the resolution; 32 pollers cost the shared cores more than
// the cluster does). Then: changes/s applied per node, UDP bytes
// sent per change per node (SWIM included) against the size of the change's
// payload, CPU seconds and RSS per node, and whether every node's
// `patina sync digest` agrees. Each write carries an 8-byte id and B bytes
// of text (default 40, random letters so that compression cannot flatter
// the ratio): the per-change overhead is fixed, so the ratio to the payload
// depends on B. Writes DIR/cluster_bench.json and
// DIR/cluster_bench.md (DIR defaults to the current directory).
//
// Targets (issue 6), at 100 writes/s: p99 <= 5 ms at N = 3, <= 50 ms at
// N = 32; bytes per change per node <= 2x the payload; digests agree.

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "api/http_client.hpp"
#include "tests/integration/api_agent.hpp"
#include "api/stream_client.hpp"

using namespace patina;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

struct Options {
  int nodes = 16;
  int rate = 100;
  double seconds = 10;
  std::string out = ".";
  bool subscribe = true;
  double settle_s = 8;
  int text_bytes = 40;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--nodes") o.nodes = std::max(2, std::stoi(v));
    else if (k == "--rate") o.rate = std::max(1, std::stoi(v));
    else if (k == "--seconds") o.seconds = std::max(1.0, std::stod(v));
    else if (k == "--out") o.out = v;
    else if (k == "--observe") o.subscribe = v != "poll";
    else if (k == "--settle") o.settle_s = std::max(0.0, std::stod(v));
    else if (k == "--text-bytes") o.text_bytes = std::clamp(std::stoi(v), 0, 100000);
  }
  return o;
}

// utime + stime of |pid| in seconds, and its RSS in MiB.
std::pair<double, double> cpu_and_rss(pid_t pid) {
  std::ifstream stat(fmt::format("/proc/{}/stat", pid));
  std::string s((std::istreambuf_iterator<char>(stat)), {});
  double cpu = 0;
  if (auto close = s.rfind(')'); close != std::string::npos) {
    std::istringstream rest(s.substr(close + 2));
    std::string field;
    std::vector<std::string> f;
    while (rest >> field) f.push_back(field);
    if (f.size() > 13) cpu = (std::stod(f[11]) + std::stod(f[12])) / static_cast<double>(sysconf(_SC_CLK_TCK));
  }
  std::ifstream status(fmt::format("/proc/{}/status", pid));
  std::string line;
  double rss = 0;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) rss = std::stod(line.substr(6)) / 1024.0;
  }
  return {cpu, rss};
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  const auto poll = o.nodes <= 4 ? 1ms : (o.nodes <= 16 ? 5ms : 10ms);
  if (o.subscribe) {
    fmt::print("cluster_bench: {} nodes, {} writes/s for {} s, observers subscribe\n", o.nodes, o.rate, o.seconds);
  } else {
    fmt::print("cluster_bench: {} nodes, {} writes/s for {} s, observers poll every {} ms\n", o.nodes, o.rate,
               o.seconds, poll.count());
  }

  // Start the cluster.
  auto start = Clock::now();
  std::vector<std::unique_ptr<testing::ApiAgent>> agents;
  agents.push_back(std::make_unique<testing::ApiAgent>());
  if (!agents[0]->ready()) {
    fmt::print(stderr, "first agent did not start:\n{}\n", agents[0]->process().log());
    return 1;
  }
  std::string bootstrap = fmt::format("bootstrap = [\"{}\"]", agents[0]->gossip());
  for (int i = 1; i < o.nodes; ++i) {
    agents.push_back(std::make_unique<testing::ApiAgent>("", "", bootstrap));
    if (!agents.back()->ready()) {
      fmt::print(stderr, "agent {} did not start\n", i);
      return 1;
    }
  }
  bool formed = testing::wait_until(
      [&] {
        for (const auto& a : agents) {
          if (testing::count_members(*a) != agents.size() - 1) return false;
        }
        return true;
      },
      120s);
  double formation_s = std::chrono::duration<double>(Clock::now() - start).count();
  fmt::print("full membership: {} after {:.1f} s\n", formed ? "yes" : "NO", formation_s);
  // The joins' own traffic (membership gossip, and each member's announces
  // 1, 3 and 7 s after it joined) is over before the load starts, so that
  // bytes per change measure replication, not cluster start-up.
  std::this_thread::sleep_for(std::chrono::duration<double>(o.settle_s));

  // Observers: first-seen time of every id on every node.
  const int total = static_cast<int>(o.rate * o.seconds);
  std::vector<Clock::time_point> sent(static_cast<std::size_t>(total + 1)), acked(static_cast<std::size_t>(total + 1));
  std::vector<std::vector<Clock::time_point>> seen(agents.size(),
                                                   std::vector<Clock::time_point>(static_cast<std::size_t>(total + 1)));
  std::vector<std::atomic<int>> seen_count(agents.size());
  std::atomic<bool> stop{false};
  std::vector<std::thread> observers;
  std::vector<double> cpu_before(agents.size()), udp_before(agents.size()), frames_before(agents.size()),
      frame_bytes_before(agents.size()), datagrams_before(agents.size()), swim_before(agents.size());
  for (std::size_t n = 0; n < agents.size(); ++n) {
    cpu_before[n] = cpu_and_rss(agents[n]->process().pid()).first;
    udp_before[n] = testing::metric_sum(agents[n]->metrics(), "patina_udp_tx_bytes_total");
    frames_before[n] = testing::metric_sum(agents[n]->metrics(), "patina_broadcast_frames_sent_total");
    frame_bytes_before[n] = testing::metric_sum(agents[n]->metrics(), "patina_broadcast_bytes_sent_total");
    datagrams_before[n] = testing::metric_sum(agents[n]->metrics(), "patina_udp_tx_datagrams_total");
    swim_before[n] = testing::metric_sum(agents[n]->metrics(), "patina_quic_datagrams_sent_total");
  }
  std::regex row_id(R"R(\{"row":\[\d+,\[(\d+)\]\]\})R");
  std::regex insert_id(R"R("change":\["insert",\d+,\[(\d+)\])R");
  auto record = [&](std::size_t n, int id, Clock::time_point now) {
    if (id < 1 || id > total) return;
    if (seen[n][static_cast<std::size_t>(id)] == Clock::time_point{}) {
      seen[n][static_cast<std::size_t>(id)] = now;
      ++seen_count[n];
    }
  };
  std::atomic<int> subscribed{0};
  for (std::size_t n = 0; n < agents.size(); ++n) {
    if (o.subscribe) {
      observers.emplace_back([&, n] {
        api::StreamClient sub(agents[n]->api(), "POST", "/v1/subscriptions", R"J("SELECT id FROM tests")J");
        if (sub.status() != 200) {
          fmt::print(stderr, "node {}: subscription refused ({})\n", n, sub.status());
          return;
        }
        ++subscribed;
        for (int iter = 0; iter < 10'000'000 && !stop; ++iter) {
          auto line = sub.next_line(200ms);
          if (!line) {
            if (sub.ended()) return;
            continue;
          }
          std::smatch m;
          if (std::regex_search(*line, m, insert_id)) record(n, std::stoi(m[1]), Clock::now());
        }
      });
      continue;
    }
    observers.emplace_back([&, n] {
      api::HttpConnection conn(agents[n]->api());
      std::set<int> missing;
      int high = 0;
      for (int iter = 0; iter < 10'000'000 && !stop; ++iter) {
        // New rows above the high-water mark, plus any hole below it.
        auto r = conn.post_json("/v1/queries", fmt::format(R"J("SELECT id FROM tests WHERE id > {} ORDER BY id")J",
                                                            missing.empty() ? high : *missing.begin() - 1));
        auto now = Clock::now();
        for (std::sregex_iterator it(r.body.begin(), r.body.end(), row_id), end; it != end; ++it) {
          int id = std::stoi((*it)[1]);
          record(n, id, now);
          if (id < 1 || id > total) continue;
          missing.erase(id);
          for (int h = high + 1; h < id; ++h) missing.insert(h);
          high = std::max(high, id);
        }
        std::this_thread::sleep_for(poll);
      }
    });
  }
  if (o.subscribe) {
    testing::wait_until([&] { return subscribed.load() == static_cast<int>(agents.size()); }, 30s);
  }

  // The write load, paced.
  std::vector<std::unique_ptr<api::HttpConnection>> writers;
  for (const auto& a : agents) writers.push_back(std::make_unique<api::HttpConnection>(a->api()));
  std::mt19937 letters_rng(7);
  auto random_text = [&] {
    std::string t(static_cast<std::size_t>(o.text_bytes), 'a');
    for (auto& ch : t) ch = static_cast<char>('a' + letters_rng() % 26);
    return t;
  };
  int acknowledged = 0;
  auto load_start = Clock::now();
  for (int id = 1; id <= total; ++id) {
    auto due = load_start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(
                                (id - 1) / static_cast<double>(o.rate)));
    std::this_thread::sleep_until(due);
    sent[static_cast<std::size_t>(id)] = Clock::now();
    auto& w = *writers[static_cast<std::size_t>(id) % writers.size()];
    auto r = w.post_json("/v1/transactions",
                         fmt::format(R"J([["INSERT INTO tests (id, text) VALUES (?, ?)", [{}, "{}"]]])J", id, random_text()));
    if (r.status == 200) ++acknowledged;
    acked[static_cast<std::size_t>(id)] = Clock::now();
  }
  double load_s = std::chrono::duration<double>(Clock::now() - load_start).count();
  bool all_seen = testing::wait_until(
      [&] {
        for (auto& c : seen_count) {
          if (c.load() < acknowledged) return false;
        }
        return true;
      },
      60s);
  stop = true;
  for (auto& t : observers) t.join();

  // Figures.
  std::vector<double> latencies, local_latencies, write_latencies;
  int incomplete = 0;
  for (int id = 1; id <= total; ++id) {
    Clock::time_point last{};
    bool everywhere = true;
    for (std::size_t n = 0; n < agents.size(); ++n) {
      auto t = seen[n][static_cast<std::size_t>(id)];
      if (t == Clock::time_point{}) everywhere = false;
      last = std::max(last, t);
    }
    if (!everywhere) {
      ++incomplete;
      continue;
    }
    write_latencies.push_back(
        std::chrono::duration<double, std::milli>(acked[static_cast<std::size_t>(id)] - sent[static_cast<std::size_t>(id)]).count());
    // The node written to (round-robin, as the load loop picks it).
    const auto origin = static_cast<std::size_t>(id) % agents.size();
    local_latencies.push_back(
        std::chrono::duration<double, std::milli>(seen[origin][static_cast<std::size_t>(id)] - sent[static_cast<std::size_t>(id)])
            .count());
    latencies.push_back(std::chrono::duration<double, std::milli>(last - sent[static_cast<std::size_t>(id)]).count());
  }
  double cpu_total = 0, rss_max = 0, udp_total = 0, frames_total = 0, frame_bytes = 0, datagrams = 0, swim = 0;
  for (std::size_t n = 0; n < agents.size(); ++n) {
    auto [cpu, rss] = cpu_and_rss(agents[n]->process().pid());
    cpu_total += cpu - cpu_before[n];
    rss_max = std::max(rss_max, rss);
    udp_total += testing::metric_sum(agents[n]->metrics(), "patina_udp_tx_bytes_total") - udp_before[n];
    frames_total += testing::metric_sum(agents[n]->metrics(), "patina_broadcast_frames_sent_total") - frames_before[n];
    frame_bytes += testing::metric_sum(agents[n]->metrics(), "patina_broadcast_bytes_sent_total") - frame_bytes_before[n];
    datagrams += testing::metric_sum(agents[n]->metrics(), "patina_udp_tx_datagrams_total") - datagrams_before[n];
    swim += testing::metric_sum(agents[n]->metrics(), "patina_quic_datagrams_sent_total") - swim_before[n];
  }
  std::set<std::string> digests;
  for (const auto& a : agents) digests.insert(testing::digest(*a));
  bool digests_agree = digests.size() == 1 && !digests.begin()->empty();
  // The payload of one change: what the row carries (8-byte id + text),
  // the unit the bytes-per-change ratio is measured against.
  const double payload = 8.0 + static_cast<double>(o.text_bytes);
  const double per_change_per_node = acknowledged > 0 ? udp_total / acknowledged / static_cast<double>(o.nodes) : 0;
  const double elapsed = std::max(load_s, 1e-9);

  double p50 = percentile(latencies, 0.50), p99 = percentile(latencies, 0.99),
         pmax = latencies.empty() ? 0 : *std::max_element(latencies.begin(), latencies.end());
  std::string json = fmt::format(
      R"J({{"nodes":{},"rate":{},"seconds":{},"observe":"{}","poll_ms":{},"formation_s":{:.2f},"writes":{},"acknowledged":{},)J"
      R"J("visible_everywhere":{},"incomplete":{},"latency_ms":{{"p50":{:.2f},"p99":{:.2f},"max":{:.2f}}},)J"
      R"J("local_latency_ms":{{"p50":{:.2f},"p99":{:.2f}}},"write_ms":{{"p50":{:.2f},"p99":{:.2f}}},)J"
      R"J("changes_per_s_per_node":{:.1f},"udp_bytes_per_change_per_node":{:.1f},"payload_bytes":{:.0f},)J"
      R"J("ratio_to_payload":{:.2f},"frame_sends_per_change":{:.2f},"frame_bytes_per_send":{:.1f},)J"
      R"J("udp_datagrams_per_change":{:.2f},"swim_datagrams_per_change":{:.2f},"cpu_s_per_node":{:.3f},"rss_mib_max":{:.1f},"digests_agree":{}}})J",
      o.nodes, o.rate, o.seconds, o.subscribe ? "subscribe" : "poll", poll.count(), formation_s, total, acknowledged, all_seen ? "true" : "false",
      incomplete, p50, p99, pmax, percentile(local_latencies, 0.5), percentile(local_latencies, 0.99),
      percentile(write_latencies, 0.5), percentile(write_latencies, 0.99), acknowledged / elapsed, per_change_per_node, payload, per_change_per_node / payload,
      acknowledged > 0 ? frames_total / acknowledged : 0.0, frames_total > 0 ? frame_bytes / frames_total : 0.0,
      acknowledged > 0 ? datagrams / acknowledged : 0.0, acknowledged > 0 ? swim / acknowledged : 0.0, cpu_total / o.nodes, rss_max,
      digests_agree ? "true" : "false");
  std::string md = fmt::format(
      "| nodes | writes/s | p50 ms | p99 ms | max ms | bytes/change/node | x payload | CPU s/node | RSS MiB | digests |\n"
      "|---|---|---|---|---|---|---|---|---|---|\n"
      "| {} | {} | {:.2f} | {:.2f} | {:.2f} | {:.0f} | {:.1f} | {:.2f} | {:.0f} | {} |\n",
      o.nodes, o.rate, p50, p99, pmax, per_change_per_node, per_change_per_node / payload, cpu_total / o.nodes,
      rss_max, digests_agree ? "agree" : "DIFFER");
  std::ofstream(o.out + "/cluster_bench.json") << json << "\n";
  std::ofstream(o.out + "/cluster_bench.md") << md;
  fmt::print("{}\n\n{}", json, md);
  if (o.subscribe) {
    fmt::print("(latency = send of the write to its insert event on every node's subscription; bytes include SWIM)\n");
  } else {
    fmt::print("(latency = send of the write to visible on every node; resolution {} ms; bytes include SWIM)\n",
               poll.count());
  }
  for (auto& a : agents) a->stop();
  return all_seen && digests_agree ? 0 : 1;
}
