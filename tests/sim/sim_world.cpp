#include "tests/sim/sim_world.hpp"

#include <stdlib.h>
#include <unistd.h>

#include <charconv>
#include <cstdlib>
#include <filesystem>

#include <fmt/format.h>

namespace patina::sim {

namespace {

swim::Config sim_swim_config() {
  // Short timers (as tests/swim's fast_config) so a run of a minute of
  // simulated time sees many probe rounds, suspicions and rejoins.
  swim::Config c;
  c.probe_period = 1s;
  c.probe_rtt = 300ms;
  c.num_indirect_probes = 3;
  c.suspect_to_down_base = 5s;
  c.remove_down_after = 600s;
  c.periodic_gossip = {200ms, 3};
  c.periodic_announce = {10s, 2};
  c.periodic_announce_to_down = {5s, 2};
  return c;
}

std::uint64_t ms_of(Duration d) { return static_cast<std::uint64_t>(d.count() / 1'000'000); }

}  // namespace

std::optional<Faults> Faults::parse(std::string_view spec) {
  if (spec == "all") return all();
  Faults f;
  if (spec == "none" || spec.empty()) return f;
  while (!spec.empty()) {
    const auto comma = spec.find(',');
    const auto word = spec.substr(0, comma);
    if (word == "loss") f.loss = true;
    else if (word == "dup") f.dup = true;
    else if (word == "reorder") f.reorder = true;
    else if (word == "partition") f.partition = true;
    else if (word == "crash") f.crash = true;
    else if (word == "drift") f.drift = true;
    else return std::nullopt;
    spec = comma == std::string_view::npos ? std::string_view{} : spec.substr(comma + 1);
  }
  return f;
}

std::string Faults::to_string() const {
  std::string s;
  auto add = [&](bool on, const char* w) {
    if (!on) return;
    if (!s.empty()) s += ',';
    s += w;
  };
  add(loss, "loss");
  add(dup, "dup");
  add(reorder, "reorder");
  add(partition, "partition");
  add(crash, "crash");
  add(drift, "drift");
  return s.empty() ? "none" : s;
}

std::string SimOptions::replay_command() const {
  std::string cmd = fmt::format("patina-sim --seeds {}..{} --nodes {} --faults {} --safety-ms {} --liveness-ms {}",
                                seed, seed, nodes, faults.to_string(), ms_of(safety), ms_of(liveness_max));
  if (broadcast != BroadcastMode::tree) cmd += fmt::format(" --broadcast {}", to_string(broadcast));
  if (in_memory) cmd += " --in-memory";
  if (!drop_own_changesets) cmd += " --forward-own";
  return cmd;
}

std::optional<std::pair<std::uint64_t, std::uint64_t>> parse_seed_range(std::string_view s) {
  auto num = [](std::string_view t, std::uint64_t& v) {
    auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
    return ec == std::errc() && p == t.data() + t.size();
  };
  std::uint64_t a = 0, b = 0;
  const auto dots = s.find("..");
  if (dots == std::string_view::npos) {
    if (!num(s, a)) return std::nullopt;
    return std::make_pair(a, a);
  }
  if (!num(s.substr(0, dots), a) || !num(s.substr(dots + 2), b) || b < a) return std::nullopt;
  return std::make_pair(a, b);
}

const char* SimWorld::schema_sql() {
  return "CREATE TABLE kv (k INTEGER NOT NULL PRIMARY KEY, v BLOB, n INTEGER NOT NULL DEFAULT 0);\n"
         "CREATE TABLE tags (owner TEXT NOT NULL, tag INTEGER NOT NULL, note TEXT, PRIMARY KEY (owner, tag));\n"
         "CREATE INDEX tags_note ON tags (note);\n";
}

SimWorld::SimWorld(SimOptions options)
    : o_(std::move(options)),
      prng_(o_.seed),
      client_prng_(prng_.next_u64()),
      fault_prng_(prng_.next_u64()),
      network_(o_.nodes, LinkModel{}, prng_.next_u64()),
      checkers_(o_.nodes) {
  // Files: one SQLite database per node in a fresh directory.
  if (!o_.in_memory) {
    std::string base = o_.tmp_dir;
    if (base.empty()) {
      const char* t = std::getenv("TMPDIR");
      base = t && *t ? t : "/tmp";
    }
    std::string templ = base + "/patina-sim-XXXXXX";
    if (::mkdtemp(templ.data()) == nullptr) {
      set_failure("cannot create a temporary directory under " + base);
    }
    dir_ = templ;
  }
  for (std::uint32_t i = 0; i < o_.nodes; ++i) {
    std::string a = fmt::format("10.{}.{}.{}:8787", (i >> 16) & 0xFF, (i >> 8) & 0xFF, i & 0xFF);
    book_.index.emplace(a, i);
    book_.addr.push_back(std::move(a));
  }
  node_config_.swim = sim_swim_config();
  node_config_.broadcast = o_.broadcast;
  node_config_.in_memory = o_.in_memory;
  node_config_.drop_own_changesets = o_.drop_own_changesets;
  node_config_.schema_sql = schema_sql();
  for (std::uint32_t i = 0; i < std::min<std::size_t>(3, o_.nodes); ++i) node_config_.bootstrap.push_back(i);

  // The seed's fault mix.
  LinkModel m;
  m.base_min = 1ms;
  m.base_max = 10ms;
  m.jitter = 5ms;
  const Faults& f = o_.faults;
  if (f.loss) m.loss_per_mille = static_cast<std::uint32_t>(fault_prng_.between(1, 80));
  if (f.dup) m.dup_per_mille = static_cast<std::uint32_t>(fault_prng_.between(1, 50));
  if (f.reorder) {
    m.reorder_per_mille = static_cast<std::uint32_t>(fault_prng_.between(10, 200));
    m.jitter = Duration(static_cast<Duration::rep>(fault_prng_.between(5, 60)) * 1'000'000);
  }
  faulty_model_ = m;
  network_.set_model(m);
  fault_interval_ms_ = static_cast<std::uint32_t>(fault_prng_.between(2000, 8000));
  crash_per_cent_ = f.crash ? static_cast<std::uint32_t>(fault_prng_.between(20, 60)) : 0;

  for (std::uint32_t i = 0; i < o_.nodes; ++i) {
    SimClock clock;
    if (f.drift) {
      clock.drift_ppm = static_cast<std::int64_t>(fault_prng_.between(0, 4000)) - 2000;
      clock.offset_ns = (static_cast<std::int64_t>(fault_prng_.between(0, 400)) - 200) * 1'000'000;
    }
    const std::string path = o_.in_memory ? std::string() : fmt::format("{}/node{}.db", dir_, i);
    nodes_.push_back(std::make_unique<SimNode>(i, node_config_, book_, clock, prng_.next_u64(), path));
  }
}

SimWorld::~SimWorld() {
  nodes_.clear();  // close every database before removing the files
  if (!dir_.empty() && !o_.keep_files) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

void SimWorld::set_failure(std::string why) {
  if (failure_.empty()) failure_ = std::move(why);
}

void SimWorld::push_world(Duration after, WorldEvent ev) {
  events_.push(Event{now_ + after, seq_++, kWorld, kAnyEpoch, ev});
}

void SimWorld::start_all() {
  for (auto& n : nodes_) {
    outbox_.clear();
    n->start(now_, outbox_);
    dispatch_outbox(n->index());
  }
}

void SimWorld::preload_members() {
  std::vector<swim::MemberUpdate> all;
  for (auto& n : nodes_)
    if (n->up()) all.push_back(swim::MemberUpdate{n->membership().identity(), 0, swim::MemberState::alive});
  for (auto& n : nodes_) {
    if (!n->up()) continue;
    std::vector<swim::MemberUpdate> others;
    others.reserve(all.size());
    for (const auto& u : all)
      if (u.id.addr != n->addr()) others.push_back(u);
    outbox_.clear();
    n->preload_members(now_, others, outbox_);
    dispatch_outbox(n->index());
  }
}

void SimWorld::dispatch_outbox(std::uint32_t from) {
  const std::uint64_t epoch = nodes_[from]->epoch();
  for (auto& s : outbox_.sends) {
    const auto delays = network_.plan(from, s.to, s.channel != Channel::swim);
    hash_.mix(delays.size());
    for (std::size_t k = 0; k < delays.size(); ++k) {
      Message msg{from, s.channel, s.tag, k + 1 < delays.size() ? s.bytes : std::move(s.bytes)};
      events_.push(Event{now_ + delays[k], seq_++, s.to, kAnyEpoch, NodeEvent{std::move(msg)}});
    }
  }
  for (auto& l : outbox_.laters) {
    NodeEvent ev = std::visit([](auto& x) { return NodeEvent{std::move(x)}; }, l.what);
    events_.push(Event{now_ + l.after, seq_++, from, epoch, std::move(ev)});
  }
  if (on_applied) {
    for (const auto& [actor, v] : outbox_.applied) on_applied(from, actor, v);
  }
  if (auto why = checkers_.after_event(*nodes_[from], outbox_); !why.empty()) set_failure(why);
}

bool SimWorld::run_until(Instant deadline) {
  while (failure_.empty() && !events_.empty() && events_.top().at <= deadline) {
    if (++events_processed_ > o_.events_max) {
      set_failure("event budget exhausted");
      break;
    }
    Event ev = events_.top();
    events_.pop();
    now_ = ev.at;
    hash_.mix(static_cast<std::uint64_t>(now_.time_since_epoch().count()));
    hash_.mix(ev.node);
    if (ev.node == kWorld) {
      const auto& w = std::get<WorldEvent>(ev.what);
      hash_.mix(100 + static_cast<std::uint64_t>(w.kind));
      on_world(w);
      continue;
    }
    SimNode& n = *nodes_[ev.node];
    if (!n.up()) continue;
    if (ev.epoch != kAnyEpoch && ev.epoch != n.epoch()) continue;  // a timer of an older life
    auto& nev = std::get<NodeEvent>(ev.what);
    hash_.mix(nev.index());
    if (const auto* m = std::get_if<Message>(&nev)) {
      hash_.mix(static_cast<std::uint64_t>(m->channel));
      hash_.mix(m->bytes);
    } else if (const auto* t = std::get_if<NodeTick>(&nev)) {
      hash_.mix(static_cast<std::uint64_t>(t->kind));
    }
    outbox_.clear();
    n.handle(now_, nev, outbox_);
    dispatch_outbox(ev.node);
  }
  if (failure_.empty()) now_ = std::max(now_, deadline);
  return failure_.empty();
}

std::optional<std::int64_t> SimWorld::write(std::uint32_t i, const std::vector<std::string>& statements) {
  SimNode& n = *nodes_[i];
  if (!n.up()) return std::nullopt;
  outbox_.clear();
  auto res = n.client_write(now_, statements, outbox_);
  hash_.mix(res.version.value_or(-1));
  if (!res.error.empty()) set_failure(fmt::format("node {}: client write refused: {}", i, res.error));
  if (res.version) {
    AckedWrite w{i, *res.version, now_, {}};
    for (const auto& cs : res.changesets) w.changes.insert(w.changes.end(), cs.changes.begin(), cs.changes.end());
    acked_.push_back(std::move(w));
  }
  dispatch_outbox(i);
  return res.version;
}

// ---- workload ---------------------------------------------------------------

std::vector<std::string> SimWorld::random_transaction() {
  Prng& p = client_prng_;
  auto key = [&] { return p.below(o_.keys); };
  auto value = [&]() -> std::string {
    const std::uint64_t id = write_counter_;
    switch (p.below(5)) {
      case 0: return "NULL";
      case 1: return std::to_string(static_cast<std::int64_t>(p.below(100)) - 50);
      case 2: return fmt::format("{}.5", p.below(100));
      case 3: return fmt::format("x'{:02x}{:02x}'", p.below(256), p.below(256));
      default: return fmt::format("'w{}'", id);
    }
  };
  auto one = [&]() -> std::string {
    const auto k = key();
    switch (p.below(7)) {
      case 0:
      case 1:
        return fmt::format(
            "INSERT INTO kv (k, v, n) VALUES ({}, {}, {}) ON CONFLICT (k) DO UPDATE SET v = excluded.v, n = excluded.n",
            k, value(), p.below(10));
      case 2: return fmt::format("UPDATE kv SET n = n + 1 WHERE k = {}", k);
      case 3: return fmt::format("DELETE FROM kv WHERE k = {}", k);
      case 4:
        return fmt::format("INSERT OR REPLACE INTO tags (owner, tag, note) VALUES ('o{}', {}, 'n{}')", k % 3, k,
                           write_counter_);
      case 5: return fmt::format("DELETE FROM tags WHERE owner = 'o{}' AND tag = {}", k % 3, k);
      default: return fmt::format("INSERT OR IGNORE INTO kv (k, v) VALUES ({}, {})", k, value());
    }
  };
  std::vector<std::string> tx;
  const auto shape = p.below(20);
  if (shape == 0) {
    // A transaction bigger than one 8 KiB changeset: chunked, so receivers
    // see partial versions.
    const auto rows = 20 + p.below(20);
    for (std::uint64_t r = 0; r < rows; ++r) {
      tx.push_back(fmt::format("INSERT OR REPLACE INTO tags (owner, tag, note) VALUES ('big', {}, '{}{}')", r,
                               std::string(300, static_cast<char>('a' + p.below(26))), write_counter_));
    }
  } else if (shape < 5) {
    const auto n = 2 + p.below(3);
    for (std::uint64_t s = 0; s < n; ++s) tx.push_back(one());
  } else {
    tx.push_back(one());
  }
  return tx;
}

void SimWorld::random_write() {
  std::vector<std::uint32_t> live;
  for (auto& n : nodes_)
    if (n->up()) live.push_back(n->index());
  if (live.empty()) return;
  const auto i = live[static_cast<std::size_t>(client_prng_.below(live.size()))];
  ++write_counter_;
  write(i, random_transaction());
}

// ---- faults -----------------------------------------------------------------

void SimWorld::random_fault() {
  const Faults& f = o_.faults;
  Prng& p = fault_prng_;
  const auto n = static_cast<std::uint32_t>(nodes_.size());
  const bool do_crash = f.crash && p.below(100) < crash_per_cent_;
  if (do_crash) {
    // Crash a live node, keeping at least one up; back after 1..10 s.
    std::vector<std::uint32_t> live;
    for (auto& node : nodes_)
      if (node->up()) live.push_back(node->index());
    if (live.size() > 1) {
      const auto i = live[static_cast<std::size_t>(p.below(live.size()))];
      nodes_[i]->crash();
      ++crashes_;
      hash_.mix(5000 + i);
      push_world(Duration(static_cast<Duration::rep>(p.between(1000, 10000)) * 1'000'000),
                 WorldEvent{WorldKind::restart, i});
    }
    return;
  }
  if (!f.partition || network_.partitioned() || n < 2) return;
  ++partitions_;
  switch (p.below(3)) {
    case 0: network_.isolate(static_cast<std::uint32_t>(p.below(n))); break;
    case 1: {
      std::vector<int> group(n);
      for (auto& g : group) g = static_cast<int>(p.below(2));
      network_.split(group);
      break;
    }
    default: {
      // Asymmetric: one side's messages to the other are lost, not the reverse.
      const auto a = static_cast<std::uint32_t>(p.below(n));
      for (std::uint32_t b = 0; b < n; ++b)
        if (b != a && p.below(2) == 0) network_.block_one_way(a, b);
      break;
    }
  }
  push_world(Duration(static_cast<Duration::rep>(p.between(1000, 8000)) * 1'000'000), WorldEvent{WorldKind::heal, 0});
}

void SimWorld::restart(std::uint32_t i) {
  if (nodes_[i]->up()) return;
  checkers_.restarted(i);
  outbox_.clear();
  nodes_[i]->start(now_, outbox_);
  dispatch_outbox(i);
}

void SimWorld::on_world(const WorldEvent& ev) {
  switch (ev.kind) {
    case WorldKind::write:
      if (!safety_) return;
      random_write();
      push_world(Duration(static_cast<Duration::rep>(client_prng_.between(1, ms_of(o_.write_interval_max))) *
                          1'000'000),
                 WorldEvent{WorldKind::write, 0});
      return;
    case WorldKind::fault:
      if (!safety_) return;
      random_fault();
      push_world(Duration(static_cast<Duration::rep>(fault_prng_.between(fault_interval_ms_ / 2, fault_interval_ms_)) *
                          1'000'000),
                 WorldEvent{WorldKind::fault, 0});
      return;
    case WorldKind::heal:
      network_.heal();
      return;
    case WorldKind::restart: restart(ev.arg); return;
    case WorldKind::probe: return;
  }
}

RunResult SimWorld::run() {
  RunResult res;
  const Faults& f = o_.faults;
  const LinkModel& m = faulty_model_;
  res.fault_mix = fmt::format(
      "faults={} loss={}‰ dup={}‰ reorder={}‰ jitter={}ms fault_every≤{}ms crash={}%", f.to_string(),
      m.loss_per_mille, m.dup_per_mille, m.reorder_per_mille, ms_of(m.jitter), fault_interval_ms_, crash_per_cent_);
  if (failure_.empty()) {
    start_all();
    push_world(100ms, WorldEvent{WorldKind::write, 0});
    if (f.partition || f.crash) push_world(Duration(fault_interval_ms_ * 1'000'000LL), WorldEvent{WorldKind::fault, 0});
    // Safety phase.
    run_until(now_ + o_.safety);
  }
  // Liveness phase: heal everything, restart everyone, stop writing.
  if (failure_.empty()) {
    safety_ = false;
    network_.heal();
    LinkModel clean = faulty_model_;
    clean.loss_per_mille = 0;
    clean.dup_per_mille = 0;
    clean.reorder_per_mille = 0;
    network_.set_model(clean);
    for (auto& n : nodes_) restart(n->index());
    const Instant start = now_;
    std::string why = "not checked";
    while (failure_.empty() && now_ - start < o_.liveness_max) {
      run_until(now_ + 500ms);
      if (!failure_.empty()) break;
      why = Checkers::pending(nodes_);
      if (why.empty()) break;
    }
    res.converged_after = now_ - start;
    if (failure_.empty() && !why.empty()) {
      set_failure(fmt::format("no convergence within {} ms of liveness: {}", ms_of(o_.liveness_max), why));
    }
    if (failure_.empty()) {
      if (auto e = Checkers::final_checks(nodes_, acked_); !e.empty()) set_failure(e);
    }
  }
  res.ok = failure_.empty();
  res.trace_hash = hash_.h;
  res.events = events_processed_;
  res.writes_acked = acked_.size();
  res.versions_applied = checkers_.versions_applied();
  res.crashes = crashes_;
  res.partitions = partitions_;
  if (!res.ok) {
    res.failure = fmt::format("seed {} failed at t={} ms: {}\n  {}\n  replay: {}", o_.seed,
                              ms_of(now_.time_since_epoch()), failure_, res.fault_mix, o_.replay_command());
  }
  return res;
}

}  // namespace patina::sim
