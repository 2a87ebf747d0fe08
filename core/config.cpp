#include "core/config.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <toml++/toml.h>

extern char** environ;

namespace patina::core {
namespace {

constexpr std::string_view known_sections[] = {"db",  "api",    "gossip", "admin",  "telemetry",
                                               "log", "perf",   "reaper", "consul", "watchdog"};

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

// True when |s| is "ip:port" or "[ipv6]:port" with a literal address.
bool is_socket_addr(std::string_view s) {
  std::string host;
  std::string_view port;
  if (!s.empty() && s.front() == '[') {
    auto close = s.find(']');
    if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':') return false;
    host = std::string(s.substr(1, close - 1));
    port = s.substr(close + 2);
    in6_addr a6{};
    if (inet_pton(AF_INET6, host.c_str(), &a6) != 1) return false;
  } else {
    auto colon = s.rfind(':');
    if (colon == std::string_view::npos) return false;
    host = std::string(s.substr(0, colon));
    port = s.substr(colon + 1);
    in_addr a4{};
    if (inet_pton(AF_INET, host.c_str(), &a4) != 1) return false;
  }
  unsigned value = 0;
  auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  return ec == std::errc() && p == port.data() + port.size() && value <= 65535 && !port.empty();
}

// Walks the TOML tree, remembering which keys were read so that the rest can
// be reported as unknown, and stopping at the first error.
class Reader {
 public:
  Reader(std::string source, toml::table& root, std::map<std::string, std::string> env_origin)
      : source_(std::move(source)), root_(root), env_origin_(std::move(env_origin)) {}

  struct Section {
    const toml::table* table = nullptr;  // null when absent
    std::string path;                    // dotted, e.g. "gossip.tls"
    toml::source_position pos{1, 1};
  };

  Section root() { return Section{&root_, "", {1, 1}}; }

  // The sub-table under any of |names|; a missing required one is an error.
  Section section(const Section& parent, std::initializer_list<std::string_view> names, bool required) {
    std::string key;
    const toml::node* n = find(parent, names, key);
    Section s{nullptr, join(parent.path, names.begin()[0]), parent.pos};
    if (n == nullptr) {
      if (required) fail_at(parent.pos, s.path, "required section is missing");
      return s;
    }
    s.path = key;
    if (!n->is_table()) {
      fail(n, key, fmt::format("expected a table, got {}", type_name(*n)));
      return s;
    }
    s.table = n->as_table();
    s.pos = n->source().begin;
    return s;
  }

  template <class T>
  void get(const Section& s, std::initializer_list<std::string_view> names, T& out, bool required = false) {
    std::string key;
    const toml::node* n = find(s, names, key);
    if (n == nullptr) {
      if (required) fail_at(s.pos, join(s.path, names.begin()[0]), "required key is missing");
      return;
    }
    convert(*n, key, out);
  }

  template <class T>
  void get(const Section& s, std::initializer_list<std::string_view> names, std::optional<T>& out) {
    std::string key;
    const toml::node* n = find(s, names, key);
    if (n == nullptr) return;
    T value{};
    if (convert(*n, key, value)) out = std::move(value);
  }

  // Marks every key below |s| as known (tables accepted but not interpreted).
  void accept_all(const Section& s) {
    if (s.table == nullptr) return;
    s.table->for_each([&](const toml::key& k, const toml::node& n) {
      std::string path = join(s.path, k.str());
      consumed_.insert(path);
      if (n.is_table()) accept_all(Section{n.as_table(), path, n.source().begin});
    });
  }

  bool is_table(const Section& s, std::string_view name) {
    if (s.table == nullptr) return false;
    const toml::node* n = s.table->get(name);
    return n != nullptr && n->is_table();
  }

  void fail(const toml::node* n, const std::string& key, const std::string& what) {
    if (error_) return;
    error_ = fmt::format("{}: {}: {}", where(n, key), key, what);
  }
  void fail_at(toml::source_position pos, const std::string& key, const std::string& what) {
    if (error_) return;
    error_ = fmt::format("{}:{}:{}: {}: {}", source_, pos.line, pos.column, key, what);
  }
  void warn(const std::string& w) { warnings_.push_back(w); }

  std::string where(const toml::node* n, const std::string& key) const {
    if (auto it = env_origin_.find(key); it != env_origin_.end()) {
      return fmt::format("environment variable {}", it->second);
    }
    auto pos = n != nullptr ? n->source().begin : toml::source_position{1, 1};
    if (pos.line == 0) pos = {1, 1};
    return fmt::format("{}:{}:{}", source_, pos.line, pos.column);
  }

  void collect_unknown(const toml::table& t, const std::string& path) {
    t.for_each([&](const toml::key& k, const toml::node& n) {
      std::string p = join(path, k.str());
      if (!consumed_.count(p)) {
        warnings_.push_back(fmt::format("{}: unknown config key '{}' ignored", where(&n, p), p));
        return;
      }
      if (n.is_table()) collect_unknown(*n.as_table(), p);
    });
  }

  const std::optional<std::string>& error() const { return error_; }
  std::vector<std::string>& warnings() { return warnings_; }

 private:
  static std::string join(const std::string& a, std::string_view b) {
    return a.empty() ? std::string(b) : a + "." + std::string(b);
  }

  static std::string type_name(const toml::node& n) {
    switch (n.type()) {
      case toml::node_type::string: return "a string";
      case toml::node_type::integer: return "an integer";
      case toml::node_type::floating_point: return "a float";
      case toml::node_type::boolean: return "a boolean";
      case toml::node_type::array: return "an array";
      case toml::node_type::table: return "a table";
      default: return "a date/time";
    }
  }

  const toml::node* find(const Section& s, std::initializer_list<std::string_view> names, std::string& key) {
    if (s.table == nullptr) return nullptr;
    const toml::node* found = nullptr;
    for (std::string_view name : names) {
      std::string path = join(s.path, name);
      if (const toml::node* n = s.table->get(name)) {
        consumed_.insert(path);
        if (found == nullptr) {
          found = n;
          key = path;
        }
      }
    }
    return found;
  }

  bool from_env(const std::string& key) const { return env_origin_.count(key) != 0; }

  bool convert(const toml::node& n, const std::string& key, std::string& out) {
    if (auto v = n.value<std::string>(); v && n.is_string()) {
      out = *v;
      return true;
    }
    fail(&n, key, fmt::format("expected a string, got {}", type_name(n)));
    return false;
  }

  bool convert(const toml::node& n, const std::string& key, bool& out) {
    if (n.is_boolean()) {
      out = n.as_boolean()->get();
      return true;
    }
    if (n.is_string() && from_env(key)) {
      std::string v = lower(n.as_string()->get());
      if (v == "true" || v == "1") return out = true, true;
      if (v == "false" || v == "0") return out = false, true;
    }
    fail(&n, key, fmt::format("expected a boolean, got {}", type_name(n)));
    return false;
  }

  bool convert(const toml::node& n, const std::string& key, std::int64_t& out) {
    if (n.is_integer()) {
      out = n.as_integer()->get();
      return true;
    }
    if (n.is_string() && from_env(key)) {
      const std::string& v = n.as_string()->get();
      auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
      if (ec == std::errc() && p == v.data() + v.size()) return true;
    }
    fail(&n, key, fmt::format("expected an integer, got {}", type_name(n)));
    return false;
  }

  bool convert(const toml::node& n, const std::string& key, int& out) {
    std::int64_t v = 0;
    if (!convert(n, key, v)) return false;
    if (v < INT32_MIN || v > INT32_MAX) {
      fail(&n, key, fmt::format("integer {} is out of range", v));
      return false;
    }
    out = static_cast<int>(v);
    return true;
  }

  bool convert(const toml::node& n, const std::string& key, std::uint64_t& out) {
    std::int64_t v = 0;
    if (!convert(n, key, v)) return false;
    if (v < 0) {
      fail(&n, key, fmt::format("expected a non-negative integer, got {}", v));
      return false;
    }
    out = static_cast<std::uint64_t>(v);
    return true;
  }

  bool convert(const toml::node& n, const std::string& key, double& out) {
    if (n.is_floating_point()) return out = n.as_floating_point()->get(), true;
    if (n.is_integer()) return out = static_cast<double>(n.as_integer()->get()), true;
    if (n.is_string() && from_env(key)) {
      try {
        std::size_t used = 0;
        const std::string& v = n.as_string()->get();
        out = std::stod(v, &used);
        if (used == v.size()) return true;
      } catch (const std::exception&) {
      }
    }
    fail(&n, key, fmt::format("expected a number, got {}", type_name(n)));
    return false;
  }

  // A string or an array of strings; from the environment, a comma list.
  bool convert(const toml::node& n, const std::string& key, std::vector<std::string>& out) {
    out.clear();
    if (n.is_string()) {
      const std::string& v = n.as_string()->get();
      if (from_env(key)) {
        std::stringstream ss(v);
        for (std::string item; std::getline(ss, item, ',');) {
          if (!item.empty()) out.push_back(item);
        }
      } else {
        out.push_back(v);
      }
      return true;
    }
    if (const toml::array* a = n.as_array()) {
      for (const toml::node& item : *a) {
        if (!item.is_string()) {
          fail(&item, key, fmt::format("expected an array of strings, found {}", type_name(item)));
          return false;
        }
        out.push_back(item.as_string()->get());
      }
      return true;
    }
    fail(&n, key, fmt::format("expected a string or an array of strings, got {}", type_name(n)));
    return false;
  }

  bool convert(const toml::node& n, const std::string& key, std::vector<int>& out) {
    out.clear();
    const toml::array* a = n.as_array();
    if (a == nullptr) {
      fail(&n, key, fmt::format("expected an array of integers, got {}", type_name(n)));
      return false;
    }
    for (const toml::node& item : *a) {
      int v = 0;
      if (!convert(item, key, v)) return false;
      out.push_back(v);
    }
    return true;
  }

  std::string source_;
  toml::table& root_;
  std::map<std::string, std::string> env_origin_;
  std::set<std::string> consumed_;
  std::optional<std::string> error_;
  std::vector<std::string> warnings_;
};

// Overlays "SECTION__KEY[__SUB]=value" variables onto |root| as strings; the
// reader converts them to the expected type. Returns key path -> variable.
std::map<std::string, std::string> overlay_env(toml::table& root, const Environment& env) {
  std::map<std::string, std::string> origin;
  for (const auto& [name, value] : env) {
    if (name.find("__") == std::string::npos) continue;
    std::vector<std::string> parts;
    std::size_t pos = 0;
    while (pos <= name.size()) {
      auto next = name.find("__", pos);
      if (next == std::string::npos) next = name.size();
      parts.push_back(lower(std::string_view(name).substr(pos, next - pos)));
      pos = next + 2;
    }
    if (parts.size() < 2) continue;
    if (std::find(std::begin(known_sections), std::end(known_sections), parts[0]) == std::end(known_sections)) continue;
    if (std::any_of(parts.begin(), parts.end(), [](const std::string& p) { return p.empty(); })) continue;
    toml::table* t = &root;
    bool ok = true;
    for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
      toml::node* n = t->get(parts[i]);
      if (n == nullptr) {
        t->insert(parts[i], toml::table{});
        n = t->get(parts[i]);
      }
      if (!n->is_table()) {
        ok = false;
        break;
      }
      t = n->as_table();
    }
    if (!ok) continue;
    t->insert_or_assign(parts.back(), value);
    std::string path;
    for (const auto& p : parts) path += (path.empty() ? "" : ".") + p;
    origin[path] = name;
  }
  return origin;
}

void read_config(Reader& r, Config& c) {
  auto root = r.root();

  auto db = r.section(root, {"db"}, true);
  r.get(db, {"path"}, c.db.path, true);
  r.get(db, {"schema_paths"}, c.db.schema_paths);
  r.get(db, {"subscriptions_path"}, c.db.subscriptions_path);
  r.get(db, {"cache_size_kib"}, c.db.cache_size_kib);
  r.get(db, {"min_free_space_mb"}, c.db.min_free_space_mb);

  auto api = r.section(root, {"api"}, true);
  r.get(api, {"bind_addr", "addr"}, c.api.bind_addr, true);
  r.get(api, {"endpoint_name"}, c.api.endpoint_name);
  r.get(api, {"max_body_bytes"}, c.api.max_body_bytes);
  r.get(api, {"idle_timeout_secs"}, c.api.idle_timeout_secs);
  r.get(api, {"header_timeout_secs"}, c.api.header_timeout_secs);
  r.get(api, {"body_timeout_secs"}, c.api.body_timeout_secs);
  r.get(api, {"subscriptions_max"}, c.api.subscriptions_max);
  r.get(api, {"subscription_streams_max"}, c.api.subscription_streams_max);
  r.get(api, {"subscription_client_buffer"}, c.api.subscription_client_buffer);
  auto authz = r.section(api, {"authorization", "authz"}, false);
  r.get(authz, {"bearer-token", "bearer"}, c.api.bearer_token);
  if (r.is_table(api, "pg") || (api.table != nullptr && api.table->get("pg") != nullptr)) {
    auto pg = r.section(api, {"pg"}, false);
    r.accept_all(pg);
    c.api.pg_configured = true;
  }

  auto gossip = r.section(root, {"gossip"}, true);
  r.get(gossip, {"bind_addr", "addr"}, c.gossip.bind_addr, true);
  r.get(gossip, {"external_addr"}, c.gossip.external_addr);
  r.get(gossip, {"client_addr"}, c.gossip.client_addr);
  r.get(gossip, {"bootstrap"}, c.gossip.bootstrap);
  r.get(gossip, {"plaintext"}, c.gossip.plaintext);
  r.get(gossip, {"max_mtu"}, c.gossip.max_mtu);
  r.get(gossip, {"idle_timeout_secs"}, c.gossip.idle_timeout_secs);
  r.get(gossip, {"disable_gso"}, c.gossip.disable_gso);
  r.get(gossip, {"member_id"}, c.gossip.member_id);
  auto tls = r.section(gossip, {"tls"}, false);
  if (tls.table != nullptr) {
    TlsConfig t;
    r.get(tls, {"cert_file"}, t.cert_file, true);
    r.get(tls, {"key_file"}, t.key_file, true);
    r.get(tls, {"ca_file"}, t.ca_file);
    r.get(tls, {"insecure"}, t.insecure);
    auto client = r.section(tls, {"client"}, false);
    if (client.table != nullptr) {
      TlsClientConfig cc;
      r.get(client, {"cert_file"}, cc.cert_file, true);
      r.get(client, {"key_file"}, cc.key_file, true);
      t.client = cc;
    }
    c.gossip.tls = t;
  }
  auto comp = r.section(gossip, {"compression"}, false);
  r.get(comp, {"enabled"}, c.gossip.compression.enabled);
  r.get(comp, {"level"}, c.gossip.compression.level);
  r.get(comp, {"dict_dir"}, c.gossip.compression.dict_dir);
  r.get(comp, {"dict_file"}, c.gossip.compression.dict_file);
  if (r.is_table(gossip, "broadcast")) {
    auto bc = r.section(gossip, {"broadcast"}, false);
    auto pt = r.section(bc, {"plumtree"}, true);
    PlumtreeConfig p;
    r.get(pt, {"prune_threshold"}, p.prune_threshold);
    r.get(pt, {"prune_throttle_secs"}, p.prune_throttle_secs);
    r.get(pt, {"eager_ratios"}, p.eager_ratios);
    r.get(pt, {"optimization_threshold"}, p.optimization_threshold);
    r.get(pt, {"batch_gossip"}, p.batch_gossip);
    c.gossip.plumtree = p;
    c.gossip.broadcast = GossipConfig::Broadcast::gossip;
  } else {
    std::string method = "tree";
    r.get(gossip, {"broadcast"}, method);
    if (method == "gossip") {
      c.gossip.broadcast = GossipConfig::Broadcast::gossip;
    } else if (method != "tree" && !r.error()) {
      r.fail(gossip.table->get("broadcast"), "gossip.broadcast",
             fmt::format("expected \"tree\", \"gossip\" or a [gossip.broadcast.plumtree] table, got \"{}\"",
                         method));
    }
  }

  auto admin = r.section(root, {"admin"}, false);
  r.get(admin, {"uds_path", "path"}, c.admin.uds_path);

  auto tel = r.section(root, {"telemetry"}, false);
  auto prom = r.section(tel, {"prometheus"}, false);
  r.get(prom, {"bind_addr", "addr"}, c.telemetry.prometheus_addr);
  if (tel.table != nullptr && tel.table->get("open-telemetry") != nullptr) {
    if (r.is_table(tel, "open-telemetry")) {
      r.accept_all(r.section(tel, {"open-telemetry"}, false));
      c.telemetry.open_telemetry = "exporter";
    } else {
      std::string v;
      r.get(tel, {"open-telemetry"}, v);
      c.telemetry.open_telemetry = v;
    }
  }

  auto log = r.section(root, {"log"}, false);
  std::string format = "plaintext";
  r.get(log, {"format"}, format);
  if (format == "json") {
    c.log.format = log::Format::json;
  } else if (format != "plaintext" && !r.error()) {
    r.fail(log.table->get("format"), "log.format", fmt::format("expected \"plaintext\" or \"json\", got \"{}\"", format));
  }
  r.get(log, {"colors"}, c.log.colors);
  r.get(log, {"filter"}, c.log.filter);

  auto perf = r.section(root, {"perf"}, false);
  auto& p = c.perf;
  r.get(perf, {"apply_channel_len"}, p.apply_channel_len);
  r.get(perf, {"changes_channel_len"}, p.changes_channel_len);
  int unused = 0;
  r.get(perf, {"empties_channel_len"}, unused);
  r.get(perf, {"to_send_channel_len"}, p.to_send_channel_len);
  r.get(perf, {"notifications_channel_len"}, p.notifications_channel_len);
  r.get(perf, {"schedule_channel_len"}, p.schedule_channel_len);
  r.get(perf, {"clearbuf_channel_len"}, p.clearbuf_channel_len);
  r.get(perf, {"bcast_channel_len"}, p.bcast_channel_len);
  r.get(perf, {"foca_channel_len"}, p.foca_channel_len);
  r.get(perf, {"wal_threshold_mb"}, p.wal_threshold_mb);
  r.get(perf, {"sql_tx_timeout"}, p.sql_tx_timeout);
  r.get(perf, {"min_sync_backoff"}, p.min_sync_backoff);
  r.get(perf, {"max_sync_backoff"}, p.max_sync_backoff);
  r.get(perf, {"partial_retry_backoff"}, p.partial_retry_backoff);
  r.get(perf, {"processing_queue_len"}, p.processing_queue_len);
  r.get(perf, {"apply_queue_timeout"}, p.apply_queue_timeout);
  r.get(perf, {"apply_queue_min_batch_size"}, p.apply_queue_min_batch_size);
  r.get(perf, {"apply_queue_step_base"}, p.apply_queue_step_base);
  r.get(perf, {"apply_queue_max_batch_size"}, p.apply_queue_max_batch_size);
  r.get(perf, {"apply_queue_batch_threshold_ratio"}, p.apply_queue_batch_threshold_ratio);
  r.get(perf, {"writer_queue_len"}, p.writer_queue_len);
  r.get(perf, {"writer_batch_jobs_max"}, p.writer_batch_jobs_max);
  r.get(perf, {"writer_batch_ms_max"}, p.writer_batch_ms_max);
  r.get(perf, {"reader_connections"}, p.reader_connections);
  r.get(perf, {"reader_queue_len"}, p.reader_queue_len);
  r.get(perf, {"broadcast_bytes_per_sec"}, p.broadcast_bytes_per_sec);

  auto reaper = r.section(root, {"reaper"}, false);
  if (reaper.table != nullptr) {
    ReaperConfig rc;
    r.get(reaper, {"check_interval"}, rc.check_interval);
    r.get(reaper, {"check_orphaned_pks"}, rc.check_orphaned_pks);
    r.get(reaper, {"row_limit"}, rc.row_limit);
    auto tables = r.section(reaper, {"tables"}, false);
    if (tables.table != nullptr) {
      for (const auto& [k, v] : *tables.table) {
        auto t = r.section(tables, {k.str()}, true);
        ReaperTable rt;
        r.get(t, {"retention"}, rt.retention, true);
        r.get(t, {"match_filter"}, rt.match_filter);
        rc.tables[std::string(k.str())] = rt;
      }
    }
    c.reaper = rc;
  }

  auto consul = r.section(root, {"consul"}, false);
  if (consul.table != nullptr) {
    ConsulConfig cc;
    auto client = r.section(consul, {"client"}, false);
    // Corrosion's struct field is `address`; its docs say `addr`.
    r.get(client, {"address", "addr"}, cc.address);
    auto consul_tls = r.section(client, {"tls"}, false);
    if (consul_tls.table != nullptr) {
      ConsulTlsConfig t;
      r.get(consul_tls, {"ca_file"}, t.ca_file, true);
      r.get(consul_tls, {"cert_file"}, t.cert_file, true);
      r.get(consul_tls, {"key_file"}, t.key_file, true);
      cc.tls = t;
    }
    c.consul = cc;
  }

  auto wd = r.section(root, {"watchdog"}, false);
  r.get(wd, {"stall_ms"}, c.watchdog.stall_ms);
  std::string action = "exit";
  r.get(wd, {"action"}, action);
  if (action == "log") {
    c.watchdog.action = WatchdogConfig::Action::log;
  } else if (action != "exit" && !r.error()) {
    r.fail(wd.table->get("action"), "watchdog.action", fmt::format("expected \"exit\" or \"log\", got \"{}\"", action));
  }
  r.get(wd, {"debug_commands"}, c.watchdog.debug_commands);
}

// Checks that need several keys at once. |r| gives positions for messages.
void validate(Reader& r, toml::table& root, Config& c) {
  auto node = [&](std::string_view path) -> const toml::node* {
    return root.at_path(path).node();
  };
  auto check = [&](bool ok, std::string_view path, const std::string& what) {
    if (!ok) r.fail(node(path), std::string(path), what);
  };
  for (const auto& a : c.api.bind_addr) {
    check(is_socket_addr(a), root.at_path("api.bind_addr") ? "api.bind_addr" : "api.addr",
          fmt::format("'{}' is not an ip:port socket address", a));
  }
  check(!c.api.bind_addr.empty(), root.at_path("api.bind_addr") ? "api.bind_addr" : "api.addr",
        "at least one address is required");
  check(is_socket_addr(c.gossip.bind_addr), root.at_path("gossip.bind_addr") ? "gossip.bind_addr" : "gossip.addr",
        fmt::format("'{}' is not an ip:port socket address", c.gossip.bind_addr));
  if (c.gossip.external_addr) {
    check(is_socket_addr(*c.gossip.external_addr), "gossip.external_addr",
          fmt::format("'{}' is not an ip:port socket address", *c.gossip.external_addr));
  }
  if (c.telemetry.prometheus_addr) {
    std::string_view key = root.at_path("telemetry.prometheus.bind_addr") ? "telemetry.prometheus.bind_addr"
                                                                            : "telemetry.prometheus.addr";
    check(is_socket_addr(*c.telemetry.prometheus_addr), key,
          fmt::format("'{}' is not an ip:port socket address", *c.telemetry.prometheus_addr));
  }
  check(c.gossip.plaintext || c.gossip.tls.has_value(), "gossip",
        "either plaintext = true or a [gossip.tls] section is required");
  if (c.gossip.tls && !c.gossip.tls->ca_file) {
    check(c.gossip.tls->insecure, "gossip.tls", "without ca_file, insecure = true is required");
  }
  if (c.gossip.max_mtu) check(*c.gossip.max_mtu >= 1200, "gossip.max_mtu", "must be at least 1200");
  check(c.gossip.idle_timeout_secs > 0, "gossip.idle_timeout_secs", "must be positive");
  if (c.gossip.member_id) {
    check(*c.gossip.member_id >= 0 && *c.gossip.member_id <= 65535, "gossip.member_id", "must fit in 16 bits");
  }
  check(c.gossip.compression.level >= 1 && c.gossip.compression.level <= 22, "gossip.compression.level",
        "must be between 1 and 22");
  if (c.gossip.compression.dict_file) {
    check(c.gossip.compression.dict_dir.has_value(), "gossip.compression.dict_file", "requires dict_dir");
  }
  if (c.gossip.plumtree) {
    const auto& ratios = c.gossip.plumtree->eager_ratios;
    int sum = 0;
    for (int v : ratios) sum += v;
    check(ratios.size() == 3 && sum == 100, "gossip.broadcast.plumtree.eager_ratios",
          "must be three percentages that sum to 100");
  }
  check(!c.db.path.empty(), "db.path", "must not be empty");
  check(c.db.min_free_space_mb <= (std::uint64_t{1} << 40), "db.min_free_space_mb", "must be at most 2^40 (1 EiB)");
  check(!c.admin.uds_path.empty(), root.at_path("admin.uds_path") ? "admin.uds_path" : "admin.path",
        "must not be empty");
  check(c.api.max_body_bytes >= 1024, "api.max_body_bytes", "must be at least 1024");
  check(c.api.idle_timeout_secs > 0, "api.idle_timeout_secs", "must be positive");
  check(c.api.header_timeout_secs > 0, "api.header_timeout_secs", "must be positive");
  check(c.api.body_timeout_secs > 0, "api.body_timeout_secs", "must be positive");
  check(c.api.subscriptions_max > 0, "api.subscriptions_max", "must be positive");
  check(c.api.subscription_streams_max > 0, "api.subscription_streams_max", "must be positive");
  check(c.api.subscription_client_buffer >= 16, "api.subscription_client_buffer", "must be at least 16");
  check(c.watchdog.stall_ms >= 10, "watchdog.stall_ms", "must be at least 10");
  auto positive = [&](int v, std::string_view key) { check(v > 0, key, "must be positive"); };
  positive(c.perf.writer_queue_len, "perf.writer_queue_len");
  positive(c.perf.writer_batch_jobs_max, "perf.writer_batch_jobs_max");
  positive(c.perf.writer_batch_ms_max, "perf.writer_batch_ms_max");
  positive(c.perf.reader_connections, "perf.reader_connections");
  positive(c.perf.reader_queue_len, "perf.reader_queue_len");
  positive(c.perf.broadcast_bytes_per_sec, "perf.broadcast_bytes_per_sec");
  positive(c.perf.processing_queue_len, "perf.processing_queue_len");
  positive(c.perf.sql_tx_timeout, "perf.sql_tx_timeout");
  check(c.perf.min_sync_backoff > 0 && c.perf.min_sync_backoff <= c.perf.max_sync_backoff, "perf.min_sync_backoff",
        "must be positive and at most max_sync_backoff");
  check(c.perf.apply_queue_min_batch_size > 0 &&
            c.perf.apply_queue_min_batch_size <= c.perf.apply_queue_max_batch_size,
        "perf.apply_queue_min_batch_size", "must be positive and at most apply_queue_max_batch_size");
  if (c.db.subscriptions_path.empty()) {
    auto parent = std::filesystem::path(c.db.path).parent_path();
    c.db.subscriptions_path = (parent / "subscriptions").string();
  }
  if (c.api.pg_configured) r.warn("api.pg: the PostgreSQL listener is not available in this build; ignored");
  if (c.telemetry.open_telemetry) r.warn("telemetry.open-telemetry: OTLP export is not available yet; ignored");
}

}  // namespace

Result<LoadedConfig> parse_config(std::string_view text, const std::string& source_name, const Environment& env) {
  toml::table root;
  try {
    root = toml::parse(text, source_name);
  } catch (const toml::parse_error& e) {
    const auto& pos = e.source().begin;
    return make_error(Errc::invalid_argument,
                      fmt::format("{}:{}:{}: invalid TOML: {}", source_name, pos.line, pos.column, e.description()));
  }
  auto origin = overlay_env(root, env);
  Reader reader(source_name, root, std::move(origin));
  LoadedConfig out;
  read_config(reader, out.config);
  if (!reader.error()) validate(reader, root, out.config);
  if (reader.error()) return make_error(Errc::invalid_argument, *reader.error());
  reader.collect_unknown(root, "");
  out.warnings = std::move(reader.warnings());
  return out;
}

Result<LoadedConfig> load_config_file(const std::string& path, const Environment& env) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(Errc::not_found, fmt::format("{}: cannot read config file", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_config(ss.str(), path, env);
}

Environment process_environment() {
  Environment env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view kv(*e);
    auto eq = kv.find('=');
    if (eq == std::string_view::npos) continue;
    env.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
  }
  return env;
}

}  // namespace patina::core
