// Subscriptions at scale on one real agent (issue 7 benchmark).
//
//   build/bench/subscription_bench [--subscribers 10000] [--queries 300]
//       [--ws-percent 20] [--writes 50] [--rows 1000000] [--out DIR]
//
// Part 1, fan-out: N concurrent subscribers (NDJSON over HTTP and, for
// --ws-percent of them, WebSocket) spread over Q distinct queries, every one
// of which matches every written row. Then W single-row writes, one at a
// time: for each, the time from sending the write until each subscriber
// has its change event (write-to-delivery; it includes the commit) and from
// the write's acknowledgement (commit-to-delivery, clamped at 0 when the
// event beats the HTTP reply). p50/p99 over all deliveries, and of the last
// subscriber per write.
//
// Part 2, matcher cost: a fresh agent with R rows; two subscriptions (one
// selective, one over the whole table); single-row updates one at a time.
// The matcher's mean time per re-evaluation (from the agent's
// patina_subscription_match_seconds histogram) against a full run of the
// same query (timed in-process on a read-only connection to the same
// database file). Target: the matcher at least 100x cheaper.
//
// Writes DIR/subscription_bench.json and DIR/subscription_bench.md.

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>
#include <vector>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <fmt/format.h>

#include "api/http_client.hpp"
#include "core/sqlite.hpp"
#include "tests/integration/api_agent.hpp"
#include "api/stream_client.hpp"

using namespace patina;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
namespace net = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;

namespace {

struct Options {
  int subscribers = 10000;
  int queries = 300;
  int ws_percent = 20;
  int writes = 50;
  int rows = 1000000;
  std::string out = ".";
  std::string parts = "12";  // which parts to run
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--subscribers") o.subscribers = std::max(1, std::stoi(v));
    else if (k == "--queries") o.queries = std::max(1, std::stoi(v));
    else if (k == "--ws-percent") o.ws_percent = std::clamp(std::stoi(v), 0, 100);
    else if (k == "--writes") o.writes = std::max(1, std::stoi(v));
    else if (k == "--rows") o.rows = std::max(1000, std::stoi(v));
    else if (k == "--out") o.out = v;
    else if (k == "--parts") o.parts = v;
  }
  return o;
}

double pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  auto i = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1));
  return v[i];
}

// ---- part 1: many subscribers ------------------------------------------------

struct Shared {
  explicit Shared(int writes) : sent(writes), acked(writes), delivered(writes) {
    for (auto& d : delivered) d = 0;
  }
  std::vector<Clock::time_point> sent;
  std::vector<Clock::time_point> acked;
  std::vector<std::atomic<int>> delivered;
  std::atomic<int> ready{0};
  std::atomic<int> failed{0};
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::vector<double> write_ms;   // per delivery
  std::vector<double> commit_ms;  // per delivery
  std::vector<std::vector<double>> per_write;  // write -> delivery times (ms after sending)
};

// A change line carries "w<seq>"; returns seq or -1.
int seq_of(std::string_view line) {
  auto at = line.find("\"w");
  if (at == std::string_view::npos || line.find("\"change\"") == std::string_view::npos) return -1;
  int v = 0;
  bool any = false;
  for (std::size_t i = at + 2; i < line.size() && std::isdigit(static_cast<unsigned char>(line[i])); ++i) {
    v = v * 10 + (line[i] - '0');
    any = true;
  }
  return any ? v : -1;
}

void on_line(Shared& s, std::string_view line, bool& ready) {
  if (!ready && line.find("\"eoq\"") != std::string_view::npos) {
    ready = true;
    s.ready.fetch_add(1);
    return;
  }
  int seq = seq_of(line);
  if (seq < 0 || seq >= static_cast<int>(s.sent.size())) return;
  auto now = Clock::now();
  double w = std::chrono::duration<double, std::milli>(now - s.sent[seq]).count();
  double c = std::max(0.0, std::chrono::duration<double, std::milli>(now - s.acked[seq]).count());
  {
    std::lock_guard<std::mutex> l(s.mu);
    s.write_ms.push_back(w);
    s.commit_ms.push_back(c);
    s.per_write[seq].push_back(w);
  }
  s.delivered[seq].fetch_add(1);
}

// A 503 (the route's concurrency limit) or a refused connection before the
// stream started is retried, as a real client would.
constexpr int attempts_max = 50;

net::awaitable<void> pause(int ms) {
  net::steady_timer t(co_await net::this_coro::executor);
  t.expires_after(std::chrono::milliseconds(ms));
  co_await t.async_wait(net::use_awaitable);
}

net::awaitable<void> ndjson_client(Shared& s, tcp::endpoint ep, std::string sql) {
  bool ready = false;
  for (int attempt = 0; attempt < attempts_max && !ready && !s.stop; ++attempt) {
  if (attempt > 0) co_await pause(100 + attempt * 50);
  tcp::socket sock(co_await net::this_coro::executor);
  try {
    co_await sock.async_connect(ep, net::use_awaitable);
    std::string body = "\"" + sql + "\"";
    std::string req = fmt::format("POST /v1/subscriptions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                  "Content-Length: {}\r\n\r\n{}",
                                  body.size(), body);
    co_await net::async_write(sock, net::buffer(req), net::use_awaitable);
    std::string raw, text;
    bool head = false;
    char buf[16384];
    while (!s.stop) {
      std::size_t n = co_await sock.async_read_some(net::buffer(buf), net::use_awaitable);
      raw.append(buf, n);
      if (!head) {
        auto end = raw.find("\r\n\r\n");
        if (end == std::string::npos) continue;
        if (raw.compare(9, 3, "200") != 0) throw std::runtime_error("status " + raw.substr(9, 3));
        raw.erase(0, end + 4);
        head = true;
      }
      for (;;) {  // chunked decoding
        auto crlf = raw.find("\r\n");
        if (crlf == std::string::npos) break;
        std::size_t size = std::stoul(raw.substr(0, crlf), nullptr, 16);
        if (raw.size() < crlf + 2 + size + 2) break;
        text.append(raw, crlf + 2, size);
        raw.erase(0, crlf + 2 + size + 2);
      }
      std::size_t start = 0;
      for (auto nl = text.find('\n'); nl != std::string::npos; nl = text.find('\n', start)) {
        on_line(s, std::string_view(text).substr(start, nl - start), ready);
        start = nl + 1;
      }
      text.erase(0, start);
    }
  } catch (const std::exception&) {
    if (ready && !s.stop) s.failed.fetch_add(1);
  }
  }
  if (!ready && !s.stop) s.failed.fetch_add(1);
}

net::awaitable<void> ws_client(Shared& s, tcp::endpoint ep, std::string sql) {
  bool ready = false;
  for (int attempt = 0; attempt < attempts_max && !ready && !s.stop; ++attempt) {
  if (attempt > 0) co_await pause(100 + attempt * 50);
  websocket::stream<tcp::socket> ws(co_await net::this_coro::executor);
  try {
    co_await ws.next_layer().async_connect(ep, net::use_awaitable);
    std::string q;
    for (unsigned char c : sql) {
      if (std::isalnum(c)) q += static_cast<char>(c);
      else q += fmt::format("%{:02X}", c);
    }
    co_await ws.async_handshake("x", "/v1/subscriptions?q=" + q, net::use_awaitable);
    beast::flat_buffer buf;
    while (!s.stop) {
      co_await ws.async_read(buf, net::use_awaitable);
      auto data = buf.data();
      on_line(s, std::string_view(static_cast<const char*>(data.data()), data.size()), ready);
      buf.consume(buf.size());
    }
  } catch (const std::exception&) {
    if (ready && !s.stop) s.failed.fetch_add(1);
  }
  }
  if (!ready && !s.stop) s.failed.fetch_add(1);
}

// Reads lines until one contains |needle|.
bool wait_for(api::StreamClient& c, const std::string& needle, std::chrono::seconds limit) {
  auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    auto line = c.next_line(left);
    if (!line) return false;
    if (line->find(needle) != std::string::npos) return true;
  }
  return false;
}

long rss_kib(int pid) {
  std::ifstream in(fmt::format("/proc/{}/status", pid));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  struct rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
  std::ostringstream json_out, md;
  md << "# subscription_bench\n\n";
  json_out << "{";

  // ---- part 1 ----
  if (o.parts.find('1') != std::string::npos) {
    testing::ApiAgent agent("", fmt::format("subscription_streams_max = {}\nsubscriptions_max = {}",
                                            o.subscribers + 100, o.queries + 100));
    if (!agent.ready()) {
      fmt::print(stderr, "agent did not start\n{}\n", agent.process().log());
      return 1;
    }
    auto colon = agent.api().rfind(':');
    tcp::endpoint ep(net::ip::make_address(agent.api().substr(0, colon)),
                     static_cast<unsigned short>(std::stoi(agent.api().substr(colon + 1))));
    Shared s(o.writes);
    s.per_write.resize(static_cast<std::size_t>(o.writes));
    net::io_context ioc(1);
    auto guard = net::make_work_guard(ioc);
    std::thread io([&] { ioc.run(); });
    int ws_every = o.ws_percent == 0 ? 0 : std::max(1, 100 / o.ws_percent);
    int n_ws = 0;
    auto t0 = Clock::now();
    for (int i = 0; i < o.subscribers; ++i) {
      std::string sql = fmt::format("SELECT id, text, {} AS q FROM tests", i % o.queries);
      bool ws = ws_every > 0 && i % ws_every == 0;
      n_ws += ws ? 1 : 0;
      if (ws) net::co_spawn(ioc, ws_client(s, ep, sql), net::detached);
      else net::co_spawn(ioc, ndjson_client(s, ep, sql), net::detached);
      // Waves of 100: the route sheds beyond 128 requests in flight.
      if (i % 100 == 99) {
        for (int w = 0; w < 3000 && s.ready + s.failed < i + 1; ++w) std::this_thread::sleep_for(10ms);
      }
    }
    for (int w = 0; w < 12000 && s.ready + s.failed < o.subscribers; ++w) std::this_thread::sleep_for(10ms);
    double setup_s = std::chrono::duration<double>(Clock::now() - t0).count();
    fmt::print("part 1: {} subscribers ({} WebSocket) on {} queries ready in {:.1f} s ({} failed)\n",
               s.ready.load(), n_ws, o.queries, setup_s, s.failed.load());
    int expected = s.ready.load();
    int complete = 0;
    std::vector<double> last_ms;
    for (int seq = 0; seq < o.writes; ++seq) {
      s.sent[seq] = Clock::now();
      s.acked[seq] = Clock::now() + 1h;  // until the reply, nothing is "after the commit"
      auto r = api::http_request(agent.api(), "POST", "/v1/transactions",
                                 fmt::format(R"J([["INSERT OR REPLACE INTO tests VALUES (?, ?)", [{}, "w{}"]]])J", seq, seq));
      s.acked[seq] = Clock::now();
      if (r.status != 200) fmt::print(stderr, "write {} failed: {}\n", seq, r.body);
      for (int w = 0; w < 1000 && s.delivered[seq] < expected; ++w) std::this_thread::sleep_for(1ms);
      if (s.delivered[seq] >= expected) ++complete;
      std::lock_guard<std::mutex> l(s.mu);
      if (!s.per_write[seq].empty()) last_ms.push_back(*std::max_element(s.per_write[seq].begin(), s.per_write[seq].end()));
    }
    long rss = rss_kib(agent.process().pid());
    s.stop = true;
    std::vector<double> wm, cm;
    {
      std::lock_guard<std::mutex> l(s.mu);
      wm = s.write_ms;
      cm = s.commit_ms;
    }
    fmt::print("part 1: {} writes, {} delivered to every subscriber; {} deliveries\n", o.writes, complete, wm.size());
    fmt::print("  write-to-delivery  p50 {:.1f} ms  p99 {:.1f} ms\n", pct(wm, 0.5), pct(wm, 0.99));
    fmt::print("  commit-to-delivery p50 {:.1f} ms  p99 {:.1f} ms\n", pct(cm, 0.5), pct(cm, 0.99));
    fmt::print("  last subscriber per write p50 {:.1f} ms  p99 {:.1f} ms\n", pct(last_ms, 0.5), pct(last_ms, 0.99));
    fmt::print("  agent RSS {} MiB\n", rss / 1024);
    json_out << fmt::format(
        R"("fanout":{{"subscribers":{},"websocket":{},"queries":{},"ready":{},"failed":{},"writes":{},"complete_writes":{},)"
        R"("deliveries":{},"write_to_delivery_ms":{{"p50":{:.2f},"p99":{:.2f}}},"commit_to_delivery_ms":{{"p50":{:.2f},"p99":{:.2f}}},)"
        R"("last_subscriber_ms":{{"p50":{:.2f},"p99":{:.2f}}},"agent_rss_mib":{}}})",
        o.subscribers, n_ws, o.queries, expected, s.failed.load(), o.writes, complete, wm.size(), pct(wm, 0.5),
        pct(wm, 0.99), pct(cm, 0.5), pct(cm, 0.99), pct(last_ms, 0.5), pct(last_ms, 0.99), rss / 1024);
    md << fmt::format("## Fan-out\n\n{} subscribers ({} WebSocket) over {} distinct queries, {} single-row writes.\n\n"
                      "| | p50 | p99 |\n|---|---|---|\n| write-to-delivery (ms) | {:.1f} | {:.1f} |\n"
                      "| commit-to-delivery (ms) | {:.1f} | {:.1f} |\n| last subscriber per write (ms) | {:.1f} | {:.1f} |\n\n"
                      "Writes delivered to every subscriber: {}/{}. Agent RSS {} MiB.\n\n",
                      expected, n_ws, o.queries, o.writes, pct(wm, 0.5), pct(wm, 0.99), pct(cm, 0.5), pct(cm, 0.99),
                      pct(last_ms, 0.5), pct(last_ms, 0.99), complete, o.writes, rss / 1024);
    agent.stop();
    ioc.stop();
    io.join();
  }

  // ---- part 2 ----
  if (o.parts.find('2') != std::string::npos) {
    if (o.parts.find('1') != std::string::npos) json_out << ",";
    testing::ApiAgent agent;
    if (!agent.ready()) return 1;
    auto t0 = Clock::now();
    const int chunk = 100000;
    for (int start = 0; start < o.rows; start += chunk) {
      int end = std::min(o.rows, start + chunk) - 1;
      auto r = api::http_request(
          agent.api(), "POST", "/v1/transactions",
          fmt::format(R"J(["WITH RECURSIVE n(i) AS (SELECT {} UNION ALL SELECT i + 1 FROM n WHERE i < {}) INSERT INTO tests SELECT i, 'row ' || i FROM n"])J",
                      start, end));
      if (r.status != 200) {
        fmt::print(stderr, "load failed: {}\n", r.body);
        return 1;
      }
      fmt::print("part 2: loaded {} rows ({:.0f} s)\n", end + 1,
                 std::chrono::duration<double>(Clock::now() - t0).count());
    }
    const std::string selective = "SELECT id, text FROM tests WHERE text LIKE 'hot%'";
    const std::string whole = "SELECT id, text FROM tests";
    std::vector<std::unique_ptr<api::StreamClient>> subs;
    for (const auto& q : {selective, whole}) {
      auto c = std::make_unique<api::StreamClient>(agent.api(), "POST", "/v1/subscriptions", "\"" + q + "\"", 0,
                                                       std::chrono::seconds(300));
      if (!wait_for(*c, "\"eoq\"", 300s)) {
        fmt::print(stderr, "subscription did not start: {}\n", q);
        return 1;
      }
      subs.push_back(std::move(c));
    }
    // The load's own (late) change notifications are matched first: wait
    // until the matcher is quiet, so only the single-row updates count.
    {
      double last = -1;
      for (int i = 0; i < 120; ++i) {
        double now = testing::metric_sum(agent.metrics(), "patina_subscription_match_seconds_count");
        if (now == last) break;
        last = now;
        std::this_thread::sleep_for(2s);
      }
    }
    double sum0 = testing::metric_sum(agent.metrics(), "patina_subscription_match_seconds_sum");
    double cnt0 = testing::metric_sum(agent.metrics(), "patina_subscription_match_seconds_count");
    const int updates = 200;
    for (int i = 0; i < updates; ++i) {
      int id = (i * 7919) % o.rows;
      api::http_request(agent.api(), "POST", "/v1/transactions",
                        fmt::format(R"J([["UPDATE tests SET text = ? WHERE id = ?", ["hot{}", {}]]])J", i, id));
      for (auto& c : subs) wait_for(*c, fmt::format("\"hot{}\"", i), 10s);
    }
    double sum1 = testing::metric_sum(agent.metrics(), "patina_subscription_match_seconds_sum");
    double cnt1 = testing::metric_sum(agent.metrics(), "patina_subscription_match_seconds_count");
    double per_eval = cnt1 > cnt0 ? (sum1 - sum0) / (cnt1 - cnt0) : 0;
    // The same queries, run in full on the same file.
    auto db = core::Db::open(agent.db_path(), core::Db::Mode::read_only);
    std::vector<double> full_sel, full_all;
    for (int rep = 0; rep < 5 && db; ++rep) {
      for (int which = 0; which < 2; ++which) {
        auto st = db->prepare(which == 0 ? selective : whole);
        auto t = Clock::now();
        std::size_t n = 0;
        while (st) {
          auto row = st->step();
          if (!row || !*row) break;
          auto v = st->column(0);
          auto w = st->column(1);
          n += v.index() + w.index();
        }
        (which == 0 ? full_sel : full_all).push_back(std::chrono::duration<double>(Clock::now() - t).count());
      }
    }
    double sel = pct(full_sel, 0.5), all = pct(full_all, 0.5);
    fmt::print("part 2: {} rows; matcher {:.1f} us per re-evaluation (mean of {} over {} single-row updates)\n",
               o.rows, per_eval * 1e6, cnt1 - cnt0, updates);
    fmt::print("  full query, selective: {:.1f} ms -> ratio {:.0f}x\n", sel * 1e3, per_eval > 0 ? sel / per_eval : 0);
    fmt::print("  full query, whole table: {:.1f} ms -> ratio {:.0f}x\n", all * 1e3, per_eval > 0 ? all / per_eval : 0);
    json_out << fmt::format(
        R"("matcher":{{"rows":{},"updates":{},"evaluations":{},"matcher_us":{:.2f},"full_selective_ms":{:.2f},)"
        R"("full_whole_ms":{:.2f},"ratio_selective":{:.1f},"ratio_whole":{:.1f}}})",
        o.rows, updates, cnt1 - cnt0, per_eval * 1e6, sel * 1e3, all * 1e3, per_eval > 0 ? sel / per_eval : 0,
        per_eval > 0 ? all / per_eval : 0);
    md << fmt::format("## Matcher cost\n\n{} rows, {} single-row updates, two subscriptions.\n\n"
                      "| | time | ratio to the matcher |\n|---|---|---|\n| matcher, per re-evaluation | {:.1f} us | 1 |\n"
                      "| full query `{}` | {:.1f} ms | {:.0f}x |\n| full query `{}` | {:.1f} ms | {:.0f}x |\n",
                      o.rows, updates, per_eval * 1e6, selective, sel * 1e3, per_eval > 0 ? sel / per_eval : 0, whole,
                      all * 1e3, per_eval > 0 ? all / per_eval : 0);
    agent.stop();
  }
  json_out << "}\n";
  std::ofstream(o.out + "/subscription_bench.json") << json_out.str();
  std::ofstream(o.out + "/subscription_bench.md") << md.str();
  return 0;
}
