#pragma once
// Agent configuration: Corrosion's TOML keys and aliases (SPEC.md §2) plus
// Patina's own [watchdog] and api.max_body_bytes.
//
// Sources, later ones winning: the TOML file, then environment variables
// with "__" as the nesting separator and no prefix (DB__PATH, API__ADDR,
// GOSSIP__TLS__INSECURE), then command-line flags (applied by the caller).
//
// Every problem is reported as "<file>:<line>:<column>: <key>: <what>" so an
// operator can go straight to it; unknown keys are warnings, not errors.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/log.hpp"
#include "core/result.hpp"

namespace patina::core {

struct DbConfig {
  std::string path;
  std::vector<std::string> schema_paths;
  std::string subscriptions_path;  // default: <dirname(path)>/subscriptions
  std::int64_t cache_size_kib = -1048576;
  // Patina's own: below this much free space on the database's filesystem
  // the node refuses writes (HTTP 507) and holds peers' changes, instead of
  // running into SQLITE_FULL, which stops it. 0 turns the floor off.
  std::uint64_t min_free_space_mb = 64;
};

struct ApiConfig {
  std::vector<std::string> bind_addr;
  std::optional<std::string> endpoint_name;
  std::optional<std::string> bearer_token;
  std::uint64_t max_body_bytes = 16 * 1024 * 1024;
  // Patina's own: a keep-alive connection may sit idle this long between
  // requests; once a request starts, its header must arrive within
  // header_timeout_secs and its body within body_timeout_secs.
  int idle_timeout_secs = 60;
  int header_timeout_secs = 10;
  int body_timeout_secs = 60;
  // Patina's own: distinct subscriptions on this node, and clients attached
  // to subscriptions at once; beyond them, 429.
  int subscriptions_max = 1024;
  int subscription_streams_max = 20000;
  // Events queued for one subscription client before it is dropped.
  int subscription_client_buffer = 10240;
  bool pg_configured = false;  // accepted for compatibility; not served
};

struct TlsClientConfig {
  std::string cert_file;
  std::string key_file;
};

struct TlsConfig {
  std::string cert_file;
  std::string key_file;
  std::optional<std::string> ca_file;
  bool insecure = false;
  std::optional<TlsClientConfig> client;
};

struct CompressionConfig {
  bool enabled = false;
  int level = 3;
  std::optional<std::string> dict_dir;
  std::optional<std::string> dict_file;
};

struct PlumtreeConfig {
  int prune_threshold = 5;
  int prune_throttle_secs = 1;
  std::vector<int> eager_ratios{50, 30, 20};
  std::optional<int> optimization_threshold;
  bool batch_gossip = false;
};

struct GossipConfig {
  std::string bind_addr;
  std::optional<std::string> external_addr;
  std::vector<std::string> client_addr{"[::]:0"};
  std::vector<std::string> bootstrap;
  bool plaintext = false;
  std::optional<TlsConfig> tls;
  std::optional<int> max_mtu;
  int idle_timeout_secs = 30;
  bool disable_gso = false;
  std::optional<int> member_id;
  CompressionConfig compression;
  std::optional<PlumtreeConfig> plumtree;  // set when broadcast is plumtree
  // gossip.broadcast: "tree" (Patina's default: every member receives a
  // change once, see swim/broadcast_tree.hpp) or "gossip" (Corrosion's
  // epidemic rounds; a [gossip.broadcast.plumtree] table also selects it).
  enum class Broadcast { tree, gossip };
  Broadcast broadcast = Broadcast::tree;
};

struct AdminConfig {
  std::string uds_path = "/var/run/patina/admin.sock";
};

struct TelemetryConfig {
  std::optional<std::string> prometheus_addr;
  std::optional<std::string> open_telemetry;  // accepted; not exported yet
};

struct LogConfig {
  log::Format format = log::Format::plaintext;
  bool colors = true;
  // Patina's own: the startup filter ("info", "info,swim=debug"); RUST_LOG
  // in the environment wins, as in Corrosion. Re-read on reload.
  std::optional<std::string> filter;
};

struct PerfConfig {
  int apply_channel_len = 2048;
  int changes_channel_len = 1024;
  int to_send_channel_len = 512;
  int notifications_channel_len = 512;
  int schedule_channel_len = 512;
  int clearbuf_channel_len = 512;
  int bcast_channel_len = 512;
  int foca_channel_len = 256;
  int wal_threshold_mb = 5120;
  int sql_tx_timeout = 60;  // seconds
  int min_sync_backoff = 1;  // seconds
  int max_sync_backoff = 15;  // seconds
  int partial_retry_backoff = 0;
  int processing_queue_len = 20000;
  int apply_queue_timeout = 10;  // milliseconds
  int apply_queue_min_batch_size = 100;
  int apply_queue_step_base = 500;
  int apply_queue_max_batch_size = 16000;
  double apply_queue_batch_threshold_ratio = 0.9;
  // Patina's own: writer thread and reader pool.
  int writer_queue_len = 1024;
  int writer_batch_jobs_max = 256;
  int writer_batch_ms_max = 50;
  int reader_connections = 4;
  int reader_queue_len = 1024;
  // Outbound broadcast bandwidth cap (Corrosion: a fixed 10 MiB/s).
  int broadcast_bytes_per_sec = 10 * 1024 * 1024;
};

struct ReaperTable {
  std::string retention;
  std::optional<std::string> match_filter;
};

struct ReaperConfig {
  std::map<std::string, ReaperTable> tables;
  int check_interval = 3600;
  bool check_orphaned_pks = false;
  int row_limit = 500;
};

struct WatchdogConfig {
  enum class Action { exit, log };
  int stall_ms = 1000;
  Action action = Action::exit;
  bool debug_commands = false;
};

// [consul] (SPEC.md §2.9), read by `patina consul sync`: where the local
// Consul agent's HTTP API answers; with tls, HTTPS with a client certificate.
struct ConsulTlsConfig {
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
};
struct ConsulConfig {
  std::string address = "127.0.0.1:8501";
  std::optional<ConsulTlsConfig> tls;
};

struct Config {
  DbConfig db;
  ApiConfig api;
  GossipConfig gossip;
  AdminConfig admin;
  TelemetryConfig telemetry;
  LogConfig log;
  PerfConfig perf;
  std::optional<ReaperConfig> reaper;
  std::optional<ConsulConfig> consul;
  WatchdogConfig watchdog;
};

using Environment = std::map<std::string, std::string>;

struct LoadedConfig {
  Config config;
  std::vector<std::string> warnings;  // unknown keys, accepted-but-unused features
};

// Parses |text| (named |source_name| in messages), overlays |env|, validates.
Result<LoadedConfig> parse_config(std::string_view text, const std::string& source_name, const Environment& env);
// Reads the file at |path| and parses it.
Result<LoadedConfig> load_config_file(const std::string& path, const Environment& env);
// The process environment, as a map.
Environment process_environment();

}  // namespace patina::core
