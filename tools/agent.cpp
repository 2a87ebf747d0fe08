#include "tools/agent.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <random>
#include <thread>

#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/json.hpp>
#include <fmt/format.h>

#include "api/admin_protocol.hpp"
#include "api/admin_server.hpp"
#include "api/http_server.hpp"
#include "api/routes.hpp"
#include "api/sql_functions.hpp"
#include "api/sub_routes.hpp"
#include "api/subscriptions.hpp"
#include "api/update_feeds.hpp"
#include "core/checkpointer.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"
#include "core/reader_pool.hpp"
#include "core/runtime.hpp"
#include "core/watchdog.hpp"
#include "core/writer.hpp"
#include "swim/dissemination.hpp"
#include "io/apply_pipeline.hpp"
#include "io/broadcaster.hpp"
#include "io/membership_driver.hpp"
#include "io/wire.hpp"
#include "io/quic_endpoint.hpp"
#include "io/sync_peers.hpp"
#include "io/zstd_dictionaries.hpp"
#include "tools/crdt_store.hpp"
#include "tools/embedded.hpp"
#include "tools/node_state.hpp"
#include "tools/sync_report.hpp"

namespace patina::tools {

namespace net = boost::asio;
namespace json = boost::json;
using core::use_nothrow;

Result<ResolvedConfig> resolve_config(const GlobalOptions& options) {
  ResolvedConfig out;
  auto env = core::process_environment();
  Result<core::LoadedConfig> loaded;
  if (options.config_path) {
    out.file = *options.config_path;
    loaded = core::load_config_file(out.file, env);
    out.description = fmt::format("config file {}", out.file);
  } else if (std::error_code ec; std::filesystem::exists(system_config_path, ec)) {
    out.file = system_config_path;
    loaded = core::load_config_file(out.file, env);
    out.description = fmt::format("config file {}", out.file);
  } else {
    out.embedded = true;
    loaded = core::parse_config(embedded::default_config, "<embedded default config>", env);
    out.description = fmt::format(
        "no config file given and {} does not exist: running on the embedded default config and example schema, "
        "data under ./patina-data",
        system_config_path);
  }
  if (!loaded) return tl::unexpected(loaded.error());
  out.config = std::move(loaded->config);
  out.warnings = std::move(loaded->warnings);
  if (options.api_addr) out.config.api.bind_addr = {*options.api_addr};
  if (options.db_path) {
    out.config.db.path = *options.db_path;
  }
  if (options.admin_path) out.config.admin.uds_path = *options.admin_path;
  return out;
}

namespace {

// The schema sources: db.schema_paths, or the embedded example schema when
// running on the embedded config without schema paths.
Result<std::vector<crdt::SchemaSource>> read_schema_sources(const ResolvedConfig& rc) {
  if (rc.embedded && rc.config.db.schema_paths.empty()) {
    return std::vector<crdt::SchemaSource>{{"<embedded example schema>", std::string(embedded::example_schema)}};
  }
  auto sources = crdt::SchemaManager::read_paths(rc.config.db.schema_paths);
  if (!sources) return tl::unexpected(to_error(sources.error()));
  return *sources;
}

class Agent final : public api::AdminService, public io::ApplySink {
 public:
  explicit Agent(ResolvedConfig rc)
      : rc_(std::move(rc)),
        log_(core::log::get("agent")),
        watchdog_(rc_.config.watchdog.stall_ms,
                  rc_.config.watchdog.action == core::WatchdogConfig::Action::exit ? core::Watchdog::Action::exit
                                                                                     : core::Watchdog::Action::log,
                  metrics_),
        writer_(writer_options(rc_.config), metrics_, watchdog_),
        checkpointer_(core::CheckpointerOptions{.path = rc_.config.db.path,
                                                .truncate_bytes = static_cast<std::uint64_t>(
                                                                      rc_.config.perf.wal_threshold_mb) *
                                                                  1024 * 1024},
                      metrics_),
        readers_(reader_options(rc_.config), metrics_, watchdog_),
        tasks_(ioc_.get_executor()),
        admin_(ioc_.get_executor(), rc_.config.admin.uds_path, *this),
        routes_(api::ApiContext{writer_, readers_, store_, metrics_, health_, rc_.config.db.path,
                                [this](std::int64_t, std::vector<crdt::Changeset> changesets) {
                                  broadcast_local(std::move(changesets));
                                },
                                [this](std::map<std::string, crdt::PkSet> rows) { rows_changed(std::move(rows)); }}),
        matchers_(matcher_options(rc_.config), metrics_, watchdog_),
        subs_(ioc_.get_executor(), matchers_, metrics_, subscription_options(rc_.config)),
        feeds_(ioc_.get_executor(), matchers_, metrics_,
               static_cast<std::size_t>(rc_.config.api.subscription_client_buffer), 100000),
        sub_routes_(subs_, feeds_),
        http_(ioc_.get_executor(), http_options(rc_.config), metrics_),
        prometheus_(ioc_.get_executor(), prometheus_options(rc_.config), metrics_) {}

  int run() {
    if (auto r = core::check_io_uring(); !r) {
      log_->critical("{}", r.error().message);
      return 1;
    }
    auto schema = read_schema_sources(rc_);
    if (!schema) {
      log_->critical("schema: {}", schema.error().message);
      return 2;
    }
    log_->info("opening database {}", rc_.config.db.path);
    auto sources = *schema;
    auto init = [this, &sources](core::Db& db) -> Result<void> {
      if (auto r = store_.open(db, sources); !r) return r;
      if (auto r = NodeState::create_tables(db); !r) return r;
      auto cluster = NodeState::cluster_id(db);
      if (!cluster) return tl::unexpected(cluster.error());
      cluster_id_ = *cluster;
      auto members = NodeState::load_members(db);
      if (!members) return tl::unexpected(members.error());
      saved_members_ = std::move(*members);
      return {};
    };
    if (auto r = writer_.start(init); !r) {
      log_->critical("cannot open database {}: {}", rc_.config.db.path, r.error().message);
      return r.error().code == Errc::invalid_argument ? 2 : 1;
    }
    log_->info("database open: actor_id={} db_version={} replicated tables: {}", store_.actor_id(),
               store_.tables().db_version(), fmt::join(store_.tables().crr_names(), ", "));
    writer_.on_fatal([this](const Error& e) {
      net::post(ioc_, [this, e] { begin_shutdown(fmt::format("fatal storage error: {}", e.message), 1); });
    });
    // A batch rolled back whole (a full disk at COMMIT) may have merged
    // peers' versions into the bookkeeping in memory: without re-reading it,
    // those versions would count as applied and sync would never bring them.
    writer_.on_transaction_rolled_back([this](core::Db&) {
      if (auto r = store_.reload_books(); !r) {
        log_->critical("cannot re-read the bookkeeping after a rollback: {}", r.error().message);
        net::post(ioc_, [this] { begin_shutdown("bookkeeping unreadable after a rollback", 1); });
      }
    });
    if (auto r = checkpointer_.start(); !r) {
      log_->critical("cannot open the WAL checkpointer's connection: {}", r.error().message);
      writer_.stop();
      return 1;
    }
    if (auto r = readers_.start(); !r) {
      log_->critical("cannot open reader connections: {}", r.error().message);
      checkpointer_.stop();
      writer_.stop();
      return 1;
    }
    if (auto r = matchers_.start(); !r) {
      log_->critical("cannot open subscription matcher connections: {}", r.error().message);
      shutdown_threads();
      return 1;
    }
    raise_file_limit();
    subs_.discover();
    reactor_beat_ = watchdog_.add("reactor");
    watchdog_.start();
    if (auto r = admin_.start(tasks_); !r) {
      log_->critical("{}", r.error().message);
      shutdown_threads();
      return 1;
    }
    routes_.install(http_);
    sub_routes_.install(http_);
    if (auto r = http_.start(tasks_); !r) {
      log_->critical("{}", r.error().message);
      admin_.stop();
      shutdown_threads();
      return 1;
    }
    if (rc_.config.telemetry.prometheus_addr) {
      prometheus_.add_route({api::http::verb::get, "/", "metrics", 16, &routes_.metrics_handler()});
      prometheus_.add_route({api::http::verb::get, "/metrics", "metrics", 16, &routes_.metrics_handler()});
      if (auto r = prometheus_.start(tasks_); !r) {
        log_->critical("{}", r.error().message);
        admin_.stop();
        http_.stop();
        shutdown_threads();
        return 1;
      }
    }
    if (auto r = start_gossip(); !r) {
      log_->critical("gossip: {}", r.error().message);
      admin_.stop();
      http_.stop();
      prometheus_.stop();
      shutdown_threads();
      return 1;
    }
    core::spawn(ioc_.get_executor(), "reactor-heartbeat", reactor_heartbeat());
    // Installed here, not in the coroutine (which starts only after this
    // function returns): a SIGTERM right after "ready:" must be handled, not
    // kill the process with the default action.
    auto signals = std::make_shared<net::signal_set>(ioc_.get_executor(), SIGINT, SIGTERM, SIGHUP);
    core::spawn(ioc_.get_executor(), "signals", signal_loop(std::move(signals)));
    log_->info("ready: pid={} api={} metrics={} admin={} db={} gossip={} watchdog_stall_ms={}", ::getpid(),
               fmt::join(http_.local_addresses(), ","), fmt::join(prometheus_.local_addresses(), ","),
               rc_.config.admin.uds_path, rc_.config.db.path, gossip_addr_,
               rc_.config.watchdog.stall_ms);
    ioc_.run();
    if (drain_thread_.joinable()) drain_thread_.join();
    watchdog_.stop();
    log_->info("stopped (exit code {})", exit_code_);
    core::log::flush_all();
    return exit_code_;
  }

  net::awaitable<std::vector<json::value>> handle(json::value command) override {
    std::vector<json::value> out;
    if (command.is_string() && command.as_string() == "Ping") {
      out.push_back(api::admin::success());
    } else if (command.is_string() && command.as_string() == "ReloadDicts") {
      // Reading and digesting the files is blocking work: a reader thread
      // does it, the reactor only swaps the set in.
      const core::CompressionConfig c = rc_.config.gossip.compression;
      auto job = [c](core::Db&) { return load_dictionaries(c); };
      auto r = co_await readers_.run<std::shared_ptr<const io::ZstdDictionaries>>("load zstd dictionaries",
                                                                                  std::move(job));
      if (r) {
        use_dictionaries(*r);
        out.push_back(log_line("info", fmt::format("loaded zstd dictionaries [{}]{}", fmt::join(dicts_->ids(), ", "),
                                                   dicts_->encoder() ? fmt::format(", compressing with {}",
                                                                                   dicts_->encoder_id())
                                                                     : std::string())));
        out.push_back(api::admin::success());
      } else {
        log_->warn("reload-dicts failed, keeping the loaded dictionaries: {}", r.error().message);
        out.push_back(api::admin::error(r.error().message));
      }
    } else if (command.is_string() && command.as_string() == "Reload") {
      auto r = co_await reload();
      out.push_back(r ? api::admin::success() : api::admin::error(r.error().message));
    } else if (const json::value* log = find(command, "Log")) {
      if (log->is_string() && log->as_string() == "Reset") {
        core::log::reset_filter();
        log_->info("log filter reset to '{}'", core::log::current_filter());
        out.push_back(api::admin::success());
      } else if (const json::value* set = find(*log, "Set"); set && find(*set, "filter") &&
                                                              find(*set, "filter")->is_string()) {
        std::string filter(find(*set, "filter")->as_string());
        auto r = core::log::set_filter(filter);
        if (r) log_->info("log filter set to '{}'", filter);
        out.push_back(r ? api::admin::success() : api::admin::error(r.error().message));
      } else {
        out.push_back(api::admin::error("malformed Log command"));
      }
    } else if (const json::value* cluster = find(command, "Cluster")) {
      if (const json::value* id = find(*cluster, "SetId")) {
        json::value value = *id;
        json::value reply = co_await set_cluster_id(std::move(value));
        out.push_back(std::move(reply));
      } else {
        handle_cluster(*cluster, out);
      }
    } else if (const json::value* repair = find(command, "Sync"); repair && is_books_command(*repair)) {
      json::value cmd = *repair;
      out = co_await handle_books(std::move(cmd));
    } else if (const json::value* actor = find(command, "Actor")) {
      json::value cmd = *actor;
      out = co_await handle_actor(std::move(cmd));
    } else if (const json::value* sync = find(command, "Sync")) {
      json::value cmd = *sync;
      json::value reply = co_await handle_sync(std::move(cmd));
      // A Json payload is followed by Success, as every command ends.
      bool payload = reply.is_object() && reply.as_object().contains("Json");
      out.push_back(std::move(reply));
      if (payload) out.push_back(api::admin::success());
    } else if (const json::value* subs = find(command, "Subs")) {
      if (subs->is_string() && subs->as_string() == "List") {
        out.push_back(api::admin::json(subs_.list()));
        out.push_back(api::admin::success());
      } else if (const json::value* info = find(*subs, "Info"); info && info->is_object()) {
        auto text = [&](const char* k) -> std::optional<std::string> {
          const json::value* v = find(*info, k);
          if (v == nullptr || !v->is_string()) return std::nullopt;
          return std::string(v->as_string());
        };
        auto r = subs_.info(text("id"), text("hash"));
        if (r) {
          out.push_back(api::admin::json(*r));
          out.push_back(api::admin::success());
        } else {
          out.push_back(api::admin::error("subscription not found"));
        }
      } else {
        out.push_back(api::admin::error("malformed Subs command"));
      }
    } else if (find(command, "Plumtree") != nullptr) {
      // Corrosion answers this only when it broadcasts with Plumtree.
      out.push_back(api::admin::error(fmt::format(
          "not using plumtree broadcast: this node broadcasts with the {} method (gossip.broadcast); its figures are "
          "the patina_broadcast_* metrics",
          rc_.config.gossip.broadcast == core::GossipConfig::Broadcast::tree ? "tree" : "gossip")));
    } else if (const json::value* debug = find(command, "Debug")) {
      json::value cmd = *debug;
      json::value reply = co_await handle_debug(std::move(cmd));
      out.push_back(std::move(reply));
    } else {
      out.push_back(api::admin::error(
          fmt::format("unknown or unsupported admin command: {}", json::serialize(command))));
    }
    co_return out;
  }

 private:
  core::WriterOptions writer_options(const core::Config& c) {
    core::WriterOptions o;
    o.path = c.db.path;
    o.cache_size_kib = c.db.cache_size_kib;
    o.min_free_bytes = c.db.min_free_space_mb * 1024 * 1024;
    o.queue_len = static_cast<std::size_t>(c.perf.writer_queue_len);
    o.batch_jobs_max = static_cast<std::size_t>(c.perf.writer_batch_jobs_max);
    o.batch_time_max = std::chrono::milliseconds(c.perf.writer_batch_ms_max);
    o.wal_autocheckpoint_pages = 0;  // checkpointer_ does it off the writer
    o.on_wal_commit = [this] { checkpointer_.note_commit(); };
    o.wal_restart_frames = 8192;  // 32 MiB of 4 KiB pages
    return o;
  }
  static io::ApplyBatchOptions apply_options(const core::Config& c) {
    io::ApplyBatchOptions o;
    o.min_batch = static_cast<std::size_t>(std::max(1, c.perf.apply_queue_min_batch_size));
    o.step_base = static_cast<std::size_t>(std::max(1, c.perf.apply_queue_step_base));
    o.max_batch = static_cast<std::size_t>(std::max(1, c.perf.apply_queue_max_batch_size));
    o.threshold_ratio = c.perf.apply_queue_batch_threshold_ratio;
    o.timeout = std::chrono::milliseconds(c.perf.apply_queue_timeout);
    o.queue_max = static_cast<std::size_t>(std::max(1, c.perf.processing_queue_len));
    return o;
  }
  static core::ReaderPoolOptions matcher_options(const core::Config& c) {
    core::ReaderPoolOptions o;
    o.path = c.db.path;
    o.connections = 2;
    o.queue_len = 4096;
    o.name = "matcher";
    return o;
  }

  static api::SubscriptionOptions subscription_options(const core::Config& c) {
    api::SubscriptionOptions o;
    o.path = c.db.subscriptions_path;
    o.subscriptions_max = static_cast<std::size_t>(c.api.subscriptions_max);
    o.streams_max = static_cast<std::size_t>(c.api.subscription_streams_max);
    o.client_buffer = static_cast<std::size_t>(c.api.subscription_client_buffer);
    return o;
  }

  // Every subscription client is a socket: the soft descriptor limit
  // (often 1024) goes up to the hard one.
  void raise_file_limit() {
    struct rlimit rl{};
    if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
      auto old = rl.rlim_cur;
      rl.rlim_cur = rl.rlim_max;
      if (::setrlimit(RLIMIT_NOFILE, &rl) == 0) log_->debug("file descriptor limit raised from {} to {}", old, rl.rlim_max);
    }
  }

  static api::HttpOptions http_options(const core::Config& c) {
    api::HttpOptions o;
    o.addrs = c.api.bind_addr;
    o.body_limit = c.api.max_body_bytes;
    o.idle_timeout = std::chrono::seconds(c.api.idle_timeout_secs);
    o.header_timeout = std::chrono::seconds(c.api.header_timeout_secs);
    o.body_timeout = std::chrono::seconds(c.api.body_timeout_secs);
    o.bearer_token = c.api.bearer_token;
    o.endpoint_name = c.api.endpoint_name;
    o.server_name = "api";
    return o;
  }
  static api::HttpOptions prometheus_options(const core::Config& c) {
    api::HttpOptions o;
    if (c.telemetry.prometheus_addr) o.addrs = {*c.telemetry.prometheus_addr};
    o.server_name = "metrics";
    return o;
  }
  static core::ReaderPoolOptions reader_options(const core::Config& c) {
    core::ReaderPoolOptions o;
    o.path = c.db.path;
    o.connections = static_cast<std::size_t>(c.perf.reader_connections);
    o.queue_len = static_cast<std::size_t>(c.perf.reader_queue_len);
    return o;
  }

  static const json::value* find(const json::value& v, std::string_view key) {
    if (!v.is_object()) return nullptr;
    return v.as_object().if_contains(key);
  }

  // gossip.compression.dict_dir: every trained dictionary in it, and
  // dict_file to compress with (at start, and by reload-dicts on a reader
  // thread; the running set stays when loading fails).
  static Result<std::shared_ptr<const io::ZstdDictionaries>> load_dictionaries(const core::CompressionConfig& c) {
    if (!c.dict_dir) return make_error(Errc::invalid_argument, "gossip.compression.dict_dir is not set");
    return io::ZstdDictionaries::load(*c.dict_dir, c.dict_file, c.level);
  }

  // Reactor thread: a loaded set becomes the one frames use.
  void use_dictionaries(std::shared_ptr<const io::ZstdDictionaries> loaded) {
    const auto& dir = *rc_.config.gossip.compression.dict_dir;
    for (const auto& f : loaded->skipped())
      log_->warn("compression dictionaries: skipped {} in {}: not a trained zstd dictionary", f, dir);
    log_->info("compression dictionaries: ids [{}] from {}{}", fmt::join(loaded->ids(), ", "), dir,
               loaded->encoder() ? fmt::format("; compressing with {}", loaded->encoder_id()) : std::string());
    dicts_ = std::move(loaded);
    if (broadcaster_) broadcaster_->set_dictionaries(dicts_);
  }

  // Opens the QUIC endpoint on gossip.addr and starts SWIM membership.
  Result<void> start_gossip() {
    if (rc_.config.gossip.compression.dict_dir) {  // before the reactor runs: blocking is fine here
      auto loaded = load_dictionaries(rc_.config.gossip.compression);
      if (!loaded) return tl::unexpected(loaded.error());
      use_dictionaries(std::move(*loaded));
    }
    auto qc = io::quic_config_from(rc_.config.gossip);
    if (!qc) return tl::unexpected(qc.error());
    auto quic = io::QuicEndpoint::open(ioc_.get_executor(), *qc, metrics_);
    if (!quic) return tl::unexpected(quic.error());
    quic_ = *quic;
    quic_->start();
    auto local = quic_->local_endpoint();
    gossip_addr_ = rc_.config.gossip.external_addr.value_or(
        local.address().is_v6() ? fmt::format("[{}]:{}", local.address().to_string(), local.port())
                                : fmt::format("{}:{}", local.address().to_string(), local.port()));
    swim::Identity self;
    std::copy(store_.tables().site_id().begin(), store_.tables().site_id().end(), self.id.begin());
    self.addr = gossip_addr_;
    self.ts = ntp64_now();
    self.cluster_id = cluster_id_;
    if (rc_.config.gossip.member_id) self.member_id = static_cast<std::uint16_t>(*rc_.config.gossip.member_id);
    std::vector<std::string> bootstrap = rc_.config.gossip.bootstrap;
    std::random_device rd;
    std::uint64_t seed = (std::uint64_t{rd()} << 32) | rd();
    membership_ = std::make_unique<io::MembershipDriver>(ioc_.get_executor(), quic_, metrics_);
    auto swim_config = swim::Config::new_wan(1);
    // SWIM packets ride QUIC DATAGRAM frames: they must fit in one.
    swim_config.max_packet_size = std::min(swim_config.max_packet_size, quic_->max_datagram_size());
    if (auto r = membership_->start(tasks_, self, swim_config, seed, std::move(bootstrap), std::move(saved_members_));
        !r) {
      return r;
    }
    tasks_.spawn("save-members", save_members_loop());
    apply_ = std::make_unique<io::ApplyPipeline>(ioc_.get_executor(), apply_options(rc_.config), metrics_, *this);
    apply_->start(tasks_);
    io::BroadcastOptions bo;
    bo.bytes_per_sec = rc_.config.perf.broadcast_bytes_per_sec;
    bo.max_pending = static_cast<std::size_t>(rc_.config.perf.processing_queue_len);
    bo.send_queue_max = static_cast<std::size_t>(rc_.config.perf.processing_queue_len);
    bo.compress = rc_.config.gossip.compression.enabled;
    bo.compression_level = rc_.config.gossip.compression.level;
    bo.tree = rc_.config.gossip.broadcast == core::GossipConfig::Broadcast::tree;
    bo.seed = seed ^ 0x9e3779b97f4a7c15ULL;
    broadcaster_ = std::make_unique<io::Broadcaster>(ioc_.get_executor(), quic_, *membership_, bo, metrics_);
    broadcaster_->set_dictionaries(dicts_);
    broadcaster_->start(
        tasks_,
        [this](std::string from, std::vector<std::byte> frame) { apply_frame(std::move(from), std::move(frame)); },
        [this](std::shared_ptr<io::QuicStream> stream) { tasks_.spawn("sync-serve", serve_sync(std::move(stream))); });
    tasks_.spawn("sync", sync_loop());
    return {};
  }

  // Member states are saved every minute (and at shutdown) so a restart
  // rejoins at once.
  net::awaitable<void> save_members_loop() {
    net::steady_timer timer(ioc_.get_executor());
    for (;;) {
      timer.expires_after(std::chrono::seconds(60));
      auto [ec] = co_await timer.async_wait(use_nothrow);
      if (ec || shutting_down_) co_return;
      co_await save_members();
    }
  }

  net::awaitable<void> save_members() {
    if (!membership_ || membership_->membership() == nullptr) co_return;
    auto job = [members = membership_->membership()->snapshot()](core::Db& db) -> Result<int> {
      if (auto r = NodeState::save_members(db, members); !r) return tl::unexpected(r.error());
      return 0;
    };
    auto r = co_await writer_.submit<int>("save members", std::move(job));
    if (!r) log_->warn("cannot save member states: {}", r.error().message);
  }

  // Anti-entropy (SPEC.md §5.7): every min..max_sync_backoff, ask a random
  // active member for what we lack; the backoff doubles while rounds bring
  // nothing and resets when one did.
  net::awaitable<void> sync_loop() {
    net::steady_timer timer(ioc_.get_executor());
    swim::Prng prng(std::random_device{}());
    const auto min_wait = std::chrono::seconds(rc_.config.perf.min_sync_backoff);
    const auto max_wait = std::chrono::seconds(rc_.config.perf.max_sync_backoff);
    auto wait = min_wait;
    for (;;) {
      // ±30% jitter keeps nodes that started together from syncing in step.
      auto jittered = std::chrono::duration_cast<std::chrono::milliseconds>(wait) *
                      (70 + static_cast<std::int64_t>(prng.below(61))) / 100;
      timer.expires_after(jittered);
      auto [ec] = co_await timer.async_wait(use_nothrow);
      if (ec || shutting_down_ || !membership_ || membership_->membership() == nullptr) co_return;
      if (apply_->holding_for_space()) {
        // Below the disk floor nothing a peer sends could be applied, and
        // the bounded queue would only turn it over: ask again later.
        wait = std::min<std::chrono::seconds>(wait * 2, max_wait);
        continue;
      }
      CrdtStore* store = &store_;
      auto state_job = [store](core::Db&) -> Result<crdt::SyncState> { return store->sync_state(); };
      auto state = co_await writer_.submit<crdt::SyncState>("sync state", std::move(state_job));
      if (!state) co_return;
      auto peer = choose_sync_peer(*state, prng);
      if (!peer) {
        wait = min_wait;
        continue;
      }
      bool progressed = co_await sync_with(*peer, std::move(*state));
      wait = progressed ? min_wait : std::min<std::chrono::seconds>(wait * 2, max_wait);
    }
  }

  // Ranks the active members by what we lack of theirs (io/sync_peers.hpp).
  std::optional<std::string> choose_sync_peer(const crdt::SyncState& ours, swim::Prng& prng) {
    std::vector<io::SyncCandidate> candidates;
    for (const auto& m : membership_->membership()->members()) {
      if (!m.active()) continue;
      io::SyncCandidate c;
      c.addr = m.id.addr;
      crdt::SiteId actor;
      std::copy(m.id.id.begin(), m.id.id.end(), actor.begin());
      if (auto it = ours.need.find(actor); it != ours.need.end()) c.missing += it->second.count();
      if (auto it = ours.partial_need.find(actor); it != ours.partial_need.end()) {
        c.missing += static_cast<std::int64_t>(it->second.size());
      }
      if (auto it = last_sync_.find(c.addr); it != last_sync_.end()) c.last_sync = it->second.at;
      c.ring = m.rtt.ring();
      candidates.push_back(std::move(c));
    }
    return io::choose_sync_peer(std::move(candidates), prng);
  }

  // One sync round with |peer|; true when it brought something new.
  net::awaitable<bool> sync_with(std::string peer, crdt::SyncState state) {
    auto ep = io::parse_endpoint(peer);
    if (!ep) co_return false;
    auto request = io::wire::encode(io::wire::SyncRequestFrame{cluster_id_, std::move(state)});
    auto response = co_await quic_->request(*ep, std::move(request), sync_response_max);
    if (!response) {
      log_->debug("sync with {} failed: {}", peer, response.error().message);
      co_return false;
    }
    auto decoded = io::wire::decode_sync_response(*response);
    if (!decoded) {
      log_->warn("sync with {}: bad response: {}", peer, decoded.error().message);
      co_return false;
    }
    last_sync_[peer] = LastSync{std::chrono::steady_clock::now(), ntp64_now()};
    std::size_t pushed = 0;
    for (const auto& bytes : decoded->changesets) {
      auto frame = io::wire::decode(bytes, dicts_.get());
      if (!frame) {
        log_->warn("sync with {}: bad changeset: {}", peer, frame.error().message);
        co_return false;
      }
      io::ApplyItem item;
      item.incoming.changeset = std::move(frame->changeset);
      item.source = io::ApplyItem::Source::sync;
      item.from = peer;
      apply_->push(std::move(item));
      ++pushed;
    }
    for (const auto& [site, range] : decoded->empty) {
      io::ApplyItem item;
      item.incoming.changeset.actor = site;
      item.incoming.empty_versions = range;
      item.source = io::ApplyItem::Source::sync;
      item.from = peer;
      apply_->push(std::move(item));
      ++pushed;
    }
    if (pushed > 0) log_->debug("sync with {}: {} changesets queued for apply", peer, pushed);
    co_return pushed > 0;
  }

  // Serves one peer's sync request on its bidirectional stream. At most
  // sync_served_max at once; more are refused (reset), as Corrosion does.
  net::awaitable<void> serve_sync(std::shared_ptr<io::QuicStream> stream) {
    if (syncs_served_ >= sync_served_max) {
      stream->reset();
      co_return;
    }
    ++syncs_served_;
    struct Done {
      int& n;
      ~Done() { --n; }
    } done{syncs_served_};
    auto bytes = co_await stream->read_all(sync_request_max, std::chrono::seconds(10));
    if (!bytes) co_return;
    auto request = io::wire::decode_sync_request(*bytes);
    if (!request || request->cluster_id != cluster_id_) {
      log_->warn("sync request from {} refused: {}", stream->peer().address().to_string(),
                 request ? std::string("another cluster") : request.error().message);
      stream->reset();
      co_return;
    }
    CrdtStore* store = &store_;
    auto job = [store, theirs = std::move(request->state)](core::Db&) {
      return store->serve_sync(theirs, sync_response_budget);
    };
    auto served = co_await writer_.submit<CrdtStore::Served>("serve sync", std::move(job));
    if (!served) {
      stream->reset();
      co_return;
    }
    io::wire::SyncResponseFrame response;
    for (auto& cs : served->changesets) response.changesets.push_back(io::wire::encode(io::wire::ChangesetFrame{.cluster_id = cluster_id_, .hops = 0, .changeset = std::move(cs)}));
    response.empty = std::move(served->empty);
    auto out = io::wire::encode(response);
    (void)co_await stream->write(std::move(out), true);
  }

  static constexpr int sync_served_max = 3;
  static constexpr std::size_t sync_request_max = 16 * 1024 * 1024;
  static constexpr std::size_t sync_response_max = 64 * 1024 * 1024;
  static constexpr std::size_t sync_response_budget = 4 * 1024 * 1024;

  // This node's newly committed |version| (its changesets were read inside
  // the request's transaction): subscriptions, then the members.
  void broadcast_local(std::vector<crdt::Changeset> changesets) {
    if (shutting_down_) return;
    std::map<std::string, crdt::PkSet> changed;
    for (const auto& cs : changesets) {
      for (const auto& c : cs.changes) changed[c.table].insert(c.pk);
    }
    rows_changed(std::move(changed));
    if (!broadcaster_) return;
    std::vector<std::vector<std::byte>> frames;
    for (auto& cs : changesets) {
      frames.push_back(io::wire::encode(
          io::wire::ChangesetFrame{.cluster_id = cluster_id_, .hops = 0, .changeset = std::move(cs)}));
    }
    broadcaster_->broadcast_local(std::move(frames));
  }

  // Every committed change to replicated rows, local or merged from peers,
  // reaches here on the reactor after its commit: table -> packed pks.
  // Subscriptions match against it.
  void rows_changed(std::map<std::string, crdt::PkSet> changed) {
    if (changed.empty()) return;
    subs_.rows_changed(changed);
    feeds_.rows_changed(changed);
  }

  // A changeset frame from a peer's broadcast: duplicates seen recently are
  // dropped here; the rest queue for the apply pipeline, which forwards a
  // frame once, when it brought something this node lacked (the bookkeeping
  // is the durable half of the seen-set: it survives restarts).
  void apply_frame(std::string from, std::vector<std::byte> frame) {
    auto decoded = io::wire::decode(frame, dicts_.get());
    if (!decoded) {
      bad_frames_.inc();
      // Named and counted, but a hostile peer cannot flood the log.
      if (bad_frames_log_.allow(std::chrono::steady_clock::now())) {
        log_->warn("dropped a changeset frame from {}: {}", from, decoded.error().message);
      }
      return;
    }
    if (decoded->cluster_id != cluster_id_) {
      other_cluster_.inc();
      return;  // another cluster: silently dropped, as Corrosion does
    }
    const auto& cs = decoded->changeset;
    // Our own changes bouncing back: we are their source (SPEC.md §5.6
    // step 1); applying or forwarding them again would only echo them.
    if (std::equal(cs.actor.begin(), cs.actor.end(), store_.tables().site_id().begin())) {
      own_echoes_.inc();
      return;
    }
    if (!seen_.insert(fmt::format("{}/{}/{}-{}", crdt::to_hex(cs.actor), cs.version, cs.seqs.start, cs.seqs.end))) {
      duplicates_.inc();
      return;
    }
    io::ApplyItem item;
    // A tree frame with a range to serve goes on now, before our apply: the
    // group behind us should not wait for our writer (at 32 nodes on a busy
    // host that wait was the larger part of the second hop). The seen-set
    // makes this once per frame, and the tree ends at the leaves whatever we
    // hold, so forwarding before knowing the frame is new cannot echo.
    if (auto range = io::wire::tree_range_of(frame);
        broadcaster_ && !shutting_down_ && range && range->first <= range->second) {
      broadcaster_->forward_tree(frame, from);
    }
    item.incoming.changeset = std::move(decoded->changeset);
    item.source = io::ApplyItem::Source::broadcast;
    item.from = std::move(from);
    item.frame = std::move(frame);
    apply_->push(std::move(item));
  }

 public:
  // io::ApplySink: one batch merged in one writer job.
  net::awaitable<Result<Outcome>> apply(std::vector<crdt::Incoming> batch) override {
    CrdtStore* store = &store_;
    auto job = [store, batch = std::move(batch)](core::Db&) -> Result<Outcome> {
      Outcome out;
      out.novel = store->unknown(batch);
      auto report = store->apply_remote(batch);
      if (!report) return tl::unexpected(report.error());
      out.report = std::move(*report);
      return out;
    };
    core::JobOptions options;
    options.timeout = std::chrono::seconds(rc_.config.perf.sql_tx_timeout);
    options.needs_free_space = true;
    co_return co_await writer_.submit<Outcome>("apply changes", std::move(job), options);
  }

  void applied(std::vector<io::ApplyItem>& items, Outcome& outcome) override {
    if (!outcome.report.versions_applied.empty()) {
      // Sync catch-up is worth an info line; steady broadcast traffic is not.
      bool from_sync = std::any_of(items.begin(), items.end(),
                                   [](const io::ApplyItem& i) { return i.source == io::ApplyItem::Source::sync; });
      log_->log(from_sync ? spdlog::level::info : spdlog::level::debug,
                "applied {} versions ({} rows changed, {} no-ops) from {}", outcome.report.versions_applied.size(),
                outcome.report.changes_applied, outcome.report.changes_noop, from_sync ? "sync" : "broadcast");
    }
    rows_changed(std::move(outcome.report.changed_rows));
    if (!broadcaster_ || shutting_down_) return;
    for (std::size_t i = 0; i < items.size() && i < outcome.novel.size(); ++i) {
      auto& item = items[i];
      if (!outcome.novel[i] || item.source != io::ApplyItem::Source::broadcast || item.frame.empty()) continue;
      // A tree frame with a range to serve went on at receipt (apply_frame);
      // a gossip-method frame carries hops (counted when spent).
      auto range = io::wire::tree_range_of(item.frame);
      if (range && range->first <= range->second) continue;
      if (io::wire::hops_of(item.frame).value_or(0) > 0 ||
          rc_.config.gossip.broadcast == core::GossipConfig::Broadcast::gossip) {
        broadcaster_->rebroadcast(std::move(item.frame), item.from);
      }
    }
  }

 private:
  static std::string uuid(const swim::ActorId& id) { return uuid_of(id); }

  // {"Sync": "Generate" | "Digest" | "CheckBookieConsistency"}
  net::awaitable<json::value> handle_sync(json::value cmd) {
    CrdtStore* store = &store_;
    if (cmd.is_string() && cmd.as_string() == "Generate") {
      auto job = [store](core::Db&) -> Result<crdt::SyncState> { return store->sync_state(); };
      auto state = co_await writer_.submit<crdt::SyncState>("sync generate", std::move(job));
      if (!state) co_return api::admin::error(state.error().message);
      co_return api::admin::json(sync_state_json(*state));
    }
    if (cmd.is_string() && cmd.as_string() == "Digest") {
      // On a reader: hashing every table must not hold the writer.
      auto job = [](core::Db& db) -> Result<std::vector<crdt::TableDigest>> {
        auto d = crdt::digest_tables(db.get());
        if (!d) return tl::unexpected(to_error(d.error()));
        return *d;
      };
      auto digests = co_await readers_.run<std::vector<crdt::TableDigest>>("sync digest", std::move(job));
      if (!digests) co_return api::admin::error(digests.error().message);
      co_return api::admin::json(digest_json(store_.actor_id(), *digests));
    }
    if (cmd.is_string() && cmd.as_string() == "CheckBookieConsistency") {
      auto job = [store](core::Db&) -> Result<int> {
        if (auto r = store->check_books(); !r) return tl::unexpected(r.error());
        return 0;
      };
      auto r = co_await writer_.submit<int>("check bookkeeping", std::move(job));
      if (!r) co_return api::admin::error(r.error().message);
      co_return api::admin::json(json::object{{"ok", true}});
    }
    co_return api::admin::error(fmt::format("unsupported Sync command: {}", json::serialize(cmd)));
  }

  // An actor id as the admin protocol carries it: a UUID (or 32 hex digits).
  static std::optional<crdt::SiteId> actor_of(const json::value* v) {
    if (v == nullptr || !v->is_string()) return std::nullopt;
    std::string hex;
    for (char c : v->as_string())
      if (c != '-') hex += c;
    crdt::SiteId id{};
    if (!crdt::site_id_from_hex(hex, id)) return std::nullopt;
    return id;
  }

  static std::optional<std::int64_t> positive_of(const json::value* v) {
    if (v == nullptr) return std::nullopt;
    if (v->is_int64() && v->as_int64() > 0) return v->as_int64();
    if (v->is_uint64() && v->as_uint64() > 0 && v->as_uint64() <= INT64_MAX) return static_cast<std::int64_t>(v->as_uint64());
    return std::nullopt;
  }

  // Which of a command's {actor_id, version} arguments is wrong, and why.
  static std::string bad_version_args(std::string_view command, const json::value* args) {
    const json::value* actor = args ? find(*args, "actor_id") : nullptr;
    if (actor == nullptr) return fmt::format("{}: actor_id is missing", command);
    if (!actor_of(actor)) {
      return fmt::format("{}: actor_id {} is not an actor id (a UUID or 32 hex digits)", command,
                         json::serialize(*actor));
    }
    const json::value* version = find(*args, "version");
    if (version == nullptr) return fmt::format("{}: version is missing", command);
    return fmt::format("{}: version {} is not a positive integer", command, json::serialize(*version));
  }

  static json::value log_line(std::string_view level, std::string msg) {
    return json::object{{"Log", json::object{{"level", level}, {"msg", std::move(msg)}, {"ts", ntp64_now()}}}};
  }

  static bool is_books_command(const json::value& cmd) {
    return (cmd.is_string() && cmd.as_string() == "ReconcileGaps") || find(cmd, "ProcessBufferedChanges") != nullptr;
  }

  // {"Sync": "ReconcileGaps" | {"ProcessBufferedChanges": {actor_id, version, chunk_size}}}
  net::awaitable<std::vector<json::value>> handle_books(json::value cmd) {
    std::vector<json::value> out;
    CrdtStore* store = &store_;
    if (cmd.is_string()) {  // ReconcileGaps
      auto job = [store](core::Db&) { return store->reconcile_gaps(); };
      auto r = co_await writer_.submit<std::vector<CrdtStore::GapsReconciled>>("reconcile gaps", std::move(job));
      if (!r) co_return std::vector<json::value>{api::admin::error(r.error().message)};
      out.push_back(log_line("info", fmt::format("reconciled gaps for {} actors", r->size())));
      for (const auto& g : *r) {
        std::string msg = fmt::format("collapsed ranges for {} (deleted: {}, inserted: {})", uuid(g.actor),
                                      g.rewrite.deleted, g.rewrite.inserted);
        if (g.rewrite.deleted > 0) log_->info("sync reconcile-gaps: {}", msg);
        out.push_back(log_line("info", std::move(msg)));
      }
      out.push_back(api::admin::success());
      co_return out;
    }
    const json::value* args = find(cmd, "ProcessBufferedChanges");
    auto actor = actor_of(args ? find(*args, "actor_id") : nullptr);
    auto version = positive_of(args ? find(*args, "version") : nullptr);
    if (!actor || !version) {
      co_return std::vector<json::value>{api::admin::error(bad_version_args("ProcessBufferedChanges", args))};
    }
    // chunk_size is accepted for Corrosion's CLI, but a version is merged in
    // one transaction here: no reader may see half of it.
    auto job = [store, a = *actor, v = *version](core::Db&) { return store->apply_buffered(a, v); };
    auto r = co_await writer_.submit<std::optional<crdt::ApplyReport>>("process buffered changes", std::move(job));
    if (!r) co_return std::vector<json::value>{api::admin::error(r.error().message)};
    if (!r->has_value()) co_return std::vector<json::value>{api::admin::error("version not fully buffered")};
    crdt::ApplyReport& report = **r;
    if (!report.deferred.empty()) {
      co_return std::vector<json::value>{api::admin::error(
          "the version still names a table or column this node does not have: it stays buffered until the "
          "schema has them")};
    }
    std::string msg = fmt::format("finished processing buffered changes for actor {} version {} ({} rows changed, {} no-ops)",
                                  uuid(*actor), *version, report.changes_applied, report.changes_noop);
    log_->info("{}", msg);
    rows_changed(std::move(report.changed_rows));
    out.push_back(log_line("info", std::move(msg)));
    out.push_back(api::admin::success());
    co_return out;
  }

  // {"Actor": {"Version": {actor_id, version}}}: null when the version is
  // not known here, {"partial": ...} while buffered, {"current": {db_version,
  // last_seq}} when its rows are here, and Corrosion's "cleared or unkown"
  // (sic: scripts match that string) when none of its rows survive.
  net::awaitable<std::vector<json::value>> handle_actor(json::value cmd) {
    const json::value* args = find(cmd, "Version");
    if (args == nullptr) {
      co_return std::vector<json::value>{api::admin::error(
          fmt::format("unsupported Actor command (expected {{\"Version\": {{\"actor_id\": UUID, \"version\": N}}}}): {}",
                      json::serialize(cmd)))};
    }
    auto actor = actor_of(find(*args, "actor_id"));
    auto version = positive_of(find(*args, "version"));
    if (!actor || !version) co_return std::vector<json::value>{api::admin::error(bad_version_args("Actor Version", args))};
    CrdtStore* store = &store_;
    auto job = [store, a = *actor, v = *version](core::Db&) { return store->version_state(a, v); };
    auto r = co_await writer_.submit<CrdtStore::VersionState>("actor version", std::move(job));
    if (!r) co_return std::vector<json::value>{api::admin::error(r.error().message)};
    json::value payload;
    switch (r->kind) {
      case CrdtStore::VersionState::Kind::unknown:
        payload = nullptr;
        break;
      case CrdtStore::VersionState::Kind::partial: {
        json::array seqs;
        for (const auto& s : r->partial.seqs.ranges()) seqs.push_back(json::object{{"start", s.start}, {"end", s.end}});
        payload = json::object{
            {"partial", json::object{{"seqs", std::move(seqs)}, {"last_seq", r->partial.last_seq}, {"ts", r->partial.ts}}}};
        break;
      }
      case CrdtStore::VersionState::Kind::current:
        payload = json::object{{"current", json::object{{"db_version", r->db_version}, {"last_seq", r->last_seq}}}};
        break;
      case CrdtStore::VersionState::Kind::cleared:
        payload = "cleared or unkown";
        break;
    }
    co_return std::vector<json::value>{api::admin::json(std::move(payload)), api::admin::success()};
  }

  static json::object identity_json(const swim::Identity& id) {
    json::object o;
    o["id"] = uuid(id.id);
    o["addr"] = id.addr;
    o["ts"] = id.ts;
    o["cluster_id"] = id.cluster_id;
    o["member_id"] = id.member_id ? json::value(*id.member_id) : json::value(nullptr);
    return o;
  }

  // {"Cluster": "Members" | "MembershipStates" | "Rejoin" | {"SetId": n}}
  void handle_cluster(const json::value& cmd, std::vector<json::value>& out) {
    const swim::Membership* m = membership_ ? membership_->membership() : nullptr;
    if (m == nullptr) {
      out.push_back(api::admin::error("membership is not running"));
      return;
    }
    if (cmd.is_string() && cmd.as_string() == "Members") {
      for (const auto& member : m->members()) {
        if (!member.active()) continue;
        json::object state = identity_json(member.id);
        state.erase("id");
        auto ring = member.rtt.ring();
        state["ring"] = ring ? json::value(*ring) : json::value(nullptr);
        auto synced = last_sync_.find(member.id.addr);
        state["last_sync_ts"] = synced == last_sync_.end() ? json::value(nullptr) : json::value(synced->second.ntp64);
        json::array rtts;
        for (auto d : member.rtt.samples()) rtts.emplace_back(std::chrono::duration<double, std::milli>(d).count());
        json::object entry;
        entry["id"] = uuid(member.id.id);
        entry["state"] = std::move(state);
        entry["rtts"] = std::move(rtts);
        out.push_back(api::admin::json(std::move(entry)));
      }
      out.push_back(api::admin::success());
    } else if (cmd.is_string() && cmd.as_string() == "MembershipStates") {
      for (const auto& member : m->members()) {
        json::object entry;
        entry["id"] = identity_json(member.id);
        entry["incarnation"] = member.incarnation;
        entry["state"] = swim::to_string(member.state);
        out.push_back(api::admin::json(std::move(entry)));
      }
      out.push_back(api::admin::success());
    } else if (cmd.is_string() && cmd.as_string() == "Rejoin") {
      auto r = membership_->rejoin(ntp64_now());
      out.push_back(r ? api::admin::success() : api::admin::error(r.error().message));
    } else {
      out.push_back(api::admin::error(fmt::format("unsupported Cluster command: {}", json::serialize(cmd))));
    }
  }

  // Writes the new cluster id, then moves SWIM to it (Corrosion: "in one
  // step"); from then on frames and syncs of the old cluster are refused.
  net::awaitable<json::value> set_cluster_id(json::value value) {
    if (!value.is_int64() || value.as_int64() < 0 || value.as_int64() > 65535) {
      co_return api::admin::error("SetId needs a cluster id in 0..65535");
    }
    if (!membership_ || membership_->membership() == nullptr) co_return api::admin::error("membership is not running");
    auto id = static_cast<std::uint16_t>(value.as_int64());
    auto job = [id](core::Db& db) -> Result<int> {
      if (auto r = NodeState::set_cluster_id(db, id); !r) return tl::unexpected(r.error());
      return 0;
    };
    auto r = co_await writer_.submit<int>("set cluster id", std::move(job));
    if (!r) co_return api::admin::error(r.error().message);
    if (auto m = membership_->set_cluster_id(id, ntp64_now()); !m) co_return api::admin::error(m.error().message);
    log_->info("cluster id set to {} (was {})", id, cluster_id_);
    cluster_id_ = id;
    co_return api::admin::success();
  }

  net::awaitable<json::value> handle_debug(json::value debug) {
    if (!rc_.config.watchdog.debug_commands) {
      co_return api::admin::error("debug commands are disabled (set watchdog.debug_commands = true)");
    }
    const json::value* stall = find(debug, "Stall");
    const json::value* loop = stall ? find(*stall, "loop") : nullptr;
    const json::value* ms = stall ? find(*stall, "ms") : nullptr;
    if (!loop || !loop->is_string() || !ms || !ms->is_int64() || ms->as_int64() < 0) {
      co_return api::admin::error("malformed Debug command: expected {\"Stall\":{\"loop\":\"reactor|writer\",\"ms\":N}}");
    }
    auto duration = std::chrono::milliseconds(ms->as_int64());
    if (loop->as_string() == "reactor") {
      log_->warn("debug: blocking the reactor for {} ms on request", duration.count());
      // Deliberately blocks the reactor: this is what the watchdog must catch.
      std::this_thread::sleep_for(duration);
      co_return api::admin::success();
    }
    if (loop->as_string() == "writer") {
      log_->warn("debug: blocking the writer for {} ms on request", duration.count());
      core::JobOptions o;
      o.standalone = true;
      auto job = [duration](core::Db&) -> Result<int> {
        std::this_thread::sleep_for(duration);
        return 0;
      };
      auto r = co_await writer_.submit<int>("debug stall", std::move(job), o);
      co_return r ? api::admin::success() : api::admin::error(r.error().message);
    }
    co_return api::admin::error(fmt::format("unknown loop '{}': expected reactor or writer",
                                            std::string_view(loop->as_string())));
  }

  // Re-reads the config file and applies what can change at run time: the
  // log settings, and the schema (through the writer). The files are read on
  // a reader thread: a schema folder on a slow disk must not stall the
  // reactor.
  net::awaitable<Result<void>> reload() {
    struct Read {
      std::optional<core::LoadedConfig> config;  // none when embedded
      std::vector<crdt::SchemaSource> sources;
    };
    auto read = [rc = rc_](core::Db&) -> Result<Read> {
      Read out;
      ResolvedConfig next = rc;
      if (!rc.embedded) {
        auto loaded = core::load_config_file(rc.file, core::process_environment());
        if (!loaded) {
          return make_error(loaded.error().code, "reload failed, keeping the running config: " + loaded.error().message);
        }
        next.config.db.schema_paths = loaded->config.db.schema_paths;
        out.config = std::move(*loaded);
      }
      auto sources = read_schema_sources(next);
      if (!sources) return make_error(sources.error().code, "schema reload failed: " + sources.error().message);
      out.sources = std::move(*sources);
      return out;
    };
    auto files = co_await readers_.run<Read>("read config and schema files", std::move(read));
    if (!files) {
      log_->error("{}", files.error().message);
      co_return tl::unexpected(files.error());
    }
    if (files->config) {
      for (const auto& w : files->config->warnings) log_->warn("{}", w);
      const auto& lc = files->config->config.log;
      std::string filter = startup_filter(lc);
      core::log::set_default_filter(filter);
      core::log::init(lc.format, lc.colors && ::isatty(2));
      log_->info("reloaded {}: log filter '{}'", rc_.file, filter);
      const auto& db = files->config->config.db;
      if (db.min_free_space_mb != rc_.config.db.min_free_space_mb) {
        log_->info("reloaded {}: db.min_free_space_mb {} -> {}", rc_.file, rc_.config.db.min_free_space_mb,
                   db.min_free_space_mb);
        writer_.set_min_free_bytes(db.min_free_space_mb * 1024 * 1024);
        rc_.config.db.min_free_space_mb = db.min_free_space_mb;
      }
    }
    auto sources = std::move(files->sources);
    CrdtStore* store = &store_;
    struct Reloaded {
      crdt::SchemaChanges schema;
      crdt::ApplyReport merged;  // versions from peers that waited for it
    };
    auto job = [store, s = std::move(sources)](core::Db&) -> Result<Reloaded> {
      auto schema = store->apply_schema(s);
      if (!schema) return tl::unexpected(schema.error());
      auto merged = store->retry_deferred();
      if (!merged) return tl::unexpected(merged.error());
      return Reloaded{std::move(*schema), std::move(*merged)};
    };
    auto reloaded = co_await writer_.submit<Reloaded>("schema reload", std::move(job));
    if (!reloaded) {
      log_->error("schema reload failed, nothing was changed: {}", reloaded.error().message);
      co_return tl::unexpected(reloaded.error());
    }
    const crdt::SchemaChanges* changes = &reloaded->schema;
    if (!reloaded->merged.versions_applied.empty()) {
      log_->info("schema reload: merged {} buffered versions that waited for it ({} rows changed)",
                 reloaded->merged.versions_applied.size(), reloaded->merged.changes_applied);
      rows_changed(std::move(reloaded->merged.changed_rows));
    }
    if (changes->empty()) {
      log_->info("schema reload: no changes");
    } else {
      log_->info("schema reload: created tables [{}], added columns [{}], created indexes [{}], dropped indexes [{}]",
                 fmt::join(changes->created_tables, ", "), fmt::join(changes->added_columns, ", "),
                 fmt::join(changes->created_indexes, ", "), fmt::join(changes->dropped_indexes, ", "));
    }
    if (files->config) rc_.config.db.schema_paths = files->config->config.db.schema_paths;
    co_return Result<void>{};
  }

  net::awaitable<void> reactor_heartbeat() {
    net::steady_timer timer(co_await net::this_coro::executor);
    // Twice per stall period: gaps stay well below the limit even with some
    // timer slack, and an idle reactor wakes for this only twice a period.
    auto period = std::chrono::milliseconds(std::max(5, rc_.config.watchdog.stall_ms / 2));
    // A healthy reactor is silent for up to one period between beats (more
    // when a loaded machine delays the timer): only silence beyond
    // stall_ms on top of that is a stall.
    reactor_beat_->set_grace(period.count());
    while (!stopped_) {
      reactor_beat_->stamp();
      // /v1/health reports the active members SWIM knows.
      if (membership_ && membership_->membership() != nullptr) {
        health_.members = static_cast<std::int64_t>(membership_->membership()->num_active());
      }
      timer.expires_at(core::next_aligned(std::chrono::steady_clock::now(), period));
      co_await timer.async_wait(use_nothrow);
    }
  }

  // By value (CP.53): the set lives as long as the loop.
  net::awaitable<void> signal_loop(std::shared_ptr<net::signal_set> signals) {
    while (!stopped_) {
      auto [ec, sig] = co_await signals->async_wait(use_nothrow);
      if (ec) co_return;
      if (sig == SIGHUP) {
        log_->info("SIGHUP: reloading");
        (void)co_await reload();
        continue;
      }
      begin_shutdown(sig == SIGTERM ? "SIGTERM" : "SIGINT", 0);
      co_return;
    }
  }

  // Stops accepting work, lets the writer run every accepted job, then
  // stops the reactor. The reactor keeps running meanwhile, so jobs that
  // finish still resume their callers.
  void begin_shutdown(const std::string& why, int code) {
    if (shutting_down_) return;
    shutting_down_ = true;
    exit_code_ = code;
    log_->info("shutting down ({}): draining the writer queue ({} jobs)", why, writer_.queue_depth());
    admin_.stop();
    http_.stop();
    prometheus_.stop();
    std::vector<swim::MemberUpdate> members;
    if (membership_ && membership_->membership() != nullptr) members = membership_->membership()->snapshot();
    if (membership_) membership_->leave();
    tasks_.stop();
    core::spawn(ioc_.get_executor(), "shutdown", finish_shutdown(std::move(members), code == 0));
  }

  // Saves the member states for the next start (not after a storage
  // failure), then drains the writer and stops the reactor.
  net::awaitable<void> finish_shutdown(std::vector<swim::MemberUpdate> members, bool save) {
    feeds_.shutdown();
    co_await subs_.shutdown();
    if (save && !members.empty()) {
      auto job = [members = std::move(members)](core::Db& db) -> Result<int> {
        if (auto r = NodeState::save_members(db, members); !r) return tl::unexpected(r.error());
        return 0;
      };
      auto r = co_await writer_.submit<int>("save members", std::move(job));
      if (!r) log_->warn("cannot save member states: {}", r.error().message);
    }
    drain_thread_ = std::thread([this] {
      shutdown_threads();
      net::post(ioc_, [this] {
        if (quic_) quic_->close();
        stopped_ = true;
        ioc_.stop();
      });
    });
  }

  void shutdown_threads() {
    matchers_.stop();
    readers_.stop();
    checkpointer_.stop();  // before the writer's final truncating checkpoint
    writer_.stop();
  }

  static std::string startup_filter(const core::LogConfig& lc) {
    if (const char* env = std::getenv("RUST_LOG"); env != nullptr && *env != '\0') return env;
    return lc.filter.value_or("info");
  }

 public:
  static std::string initial_filter(const core::LogConfig& lc) { return startup_filter(lc); }

 private:
  ResolvedConfig rc_;
  std::shared_ptr<spdlog::logger> log_;
  core::Metrics metrics_;
  core::Watchdog watchdog_;
  core::Writer writer_;
  core::Checkpointer checkpointer_;
  core::ReaderPool readers_;
  net::io_context ioc_{1};
  core::TaskGroup tasks_;
  api::AdminServer admin_;
  CrdtStore store_;
  api::HealthFigures health_;
  api::ApiRoutes routes_;
  core::ReaderPool matchers_;  // subscription jobs, apart from API queries
  api::Subscriptions subs_;
  api::UpdateFeeds feeds_;
  api::SubscriptionRoutes sub_routes_;
  api::HttpServer http_;
  api::HttpServer prometheus_;
  std::shared_ptr<io::QuicEndpoint> quic_;
  std::unique_ptr<io::MembershipDriver> membership_;
  std::unique_ptr<io::Broadcaster> broadcaster_;
  std::shared_ptr<const io::ZstdDictionaries> dicts_;  // gossip.compression.dict_dir
  std::unique_ptr<io::ApplyPipeline> apply_;
  swim::SeenSet<std::string> seen_{static_cast<std::size_t>(std::max(1, rc_.config.perf.processing_queue_len))};
  std::uint16_t cluster_id_ = 0;
  struct LastSync {
    std::chrono::steady_clock::time_point at;
    std::uint64_t ntp64 = 0;
  };
  std::map<std::string, LastSync> last_sync_;  // by member address: completed syncs
  std::vector<swim::MemberUpdate> saved_members_;  // loaded at open, handed to SWIM at start
  core::Counter& duplicates_{metrics_.counter("patina_broadcast_duplicates_total",
                                              "Changeset frames dropped as seen recently")};
  core::Counter& own_echoes_{metrics_.counter("patina_broadcast_own_echoes_total",
                                              "Frames of this node's own changes received back and dropped")};
  core::Counter& bad_frames_{metrics_.counter("patina_broadcast_bad_frames_total",
                                              "Changeset frames that did not decode")};
  io::LogRateLimit bad_frames_log_;
  core::Counter& other_cluster_{metrics_.counter("patina_broadcast_other_cluster_total",
                                                 "Changeset frames dropped for carrying another cluster id")};
  int syncs_served_ = 0;
  std::string gossip_addr_;
  std::shared_ptr<core::Heartbeat> reactor_beat_;
  std::thread drain_thread_;
  std::atomic<bool> stopped_{false};
  bool shutting_down_ = false;
  int exit_code_ = 0;
};

}  // namespace

int run_agent(const GlobalOptions& options) {
  auto rc = resolve_config(options);
  if (!rc) {
    fmt::print(stderr, "patina: config error: {}\n", rc.error().message);
    return 2;
  }
  core::log::init(rc->config.log.format, rc->config.log.colors && ::isatty(2));
  api::register_sql_functions_for_every_connection();  // before the first connection opens
  auto filter = Agent::initial_filter(rc->config.log);
  if (auto r = core::log::set_filter(filter); !r) {
    fmt::print(stderr, "patina: config error: log filter '{}': {}\n", filter, r.error().message);
    return 2;
  }
  core::log::set_default_filter(filter);
  auto log = core::log::get("agent");
  log->info("patina {} starting: {}", PATINA_VERSION, rc->description);
  for (const auto& w : rc->warnings) log->warn("{}", w);
  Agent agent(std::move(*rc));
  return agent.run();
}

}  // namespace patina::tools
