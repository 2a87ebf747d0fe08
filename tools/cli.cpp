#include "tools/cli.hpp"

#include <cstdio>
#include <filesystem>

#include <CLI/CLI.hpp>
#include <boost/json.hpp>
#include <fmt/format.h>

#include "api/admin_client.hpp"
#include "tools/agent.hpp"
#include "io/tls_generate.hpp"
#include "tools/cli_data.hpp"
#include "tools/consul_command.hpp"
#include "tools/template_command.hpp"

namespace patina::tools {
namespace {

namespace json = boost::json;

int fail(const std::string& message) { return cli_fail(message); }

Result<std::string> admin_path(const GlobalOptions& g) {
  if (g.admin_path) return *g.admin_path;
  auto rc = resolve_config(g);
  if (!rc) return tl::unexpected(rc.error());
  return rc->config.admin.uds_path;
}

// Sends one admin command and prints what comes back; Json payloads one per
// line, Log lines to stderr.
int admin_command(const GlobalOptions& g, const json::value& command) {
  auto path = admin_path(g);
  if (!path) return fail(path.error().message);
  auto responses = api::AdminClient::call(*path, command);
  if (!responses) return fail(responses.error().message);
  for (const auto& r : *responses) {
    if (r.is_object()) {
      const auto& o = r.as_object();
      if (const auto* e = o.if_contains("Error")) {
        const json::value* msg = e->is_object() ? e->as_object().if_contains("msg") : nullptr;
        return fail(msg && msg->is_string() ? std::string(msg->as_string()) : json::serialize(*e));
      }
      if (const auto* j = o.if_contains("Json")) fmt::print("{}\n", json::serialize(*j));
      if (const auto* l = o.if_contains("Log")) fmt::print(stderr, "{}\n", json::serialize(*l));
    }
  }
  return 0;
}

}  // namespace

int run_cli(int argc, char** argv) {
  CLI::App app{"Patina: a SQLite database kept in sync across a cluster (compatible with Corrosion)", "patina"};
  app.require_subcommand(1);
  app.fallthrough();  // global flags may follow the subcommand: patina agent -c FILE
  GlobalOptions g;
  std::string config, api_addr, db_path, admin;
  app.add_option("-c,--config", config, "Config file (default /etc/patina/config.toml, else the embedded default)");
  app.add_option("--api-addr", api_addr, "API address, overriding api.bind_addr");
  app.add_option("--db-path", db_path, "Database path, overriding db.path");
  app.add_option("--admin-path", admin, "Admin socket path, overriding admin.uds_path");
  app.set_version_flag("--version", PATINA_VERSION);

  int code = 0;
  auto globals = [&] {
    if (!config.empty()) g.config_path = config;
    if (!api_addr.empty()) g.api_addr = api_addr;
    if (!db_path.empty()) g.db_path = db_path;
    if (!admin.empty()) g.admin_path = admin;
  };

  auto* agent = app.add_subcommand("agent", "Run the node");
  agent->callback([&] {
    globals();
    code = run_agent(g);
  });

  SqlCommand exec_cmd;
  double exec_timeout = 0;
  auto* exec = app.add_subcommand("exec", "Run a write statement as one transaction through the API");
  exec->add_option("sql", exec_cmd.sql, "SQL statement")->required();
  exec->add_option("--param", exec_cmd.params, "Positional parameter (TEXT), repeatable");
  exec->add_flag("--timer", exec_cmd.timer, "Print the run time");
  auto* exec_timeout_opt = exec->add_option("--timeout", exec_timeout, "Timeout in seconds");
  exec->callback([&] {
    globals();
    if (exec_timeout_opt->count() > 0) exec_cmd.timeout = exec_timeout;
    code = cmd_exec(g, exec_cmd);
  });

  SqlCommand query_cmd;
  double query_timeout = 0;
  auto* query = app.add_subcommand("query", "Run a read-only query through the API; cells joined by |");
  query->add_option("sql", query_cmd.sql, "SQL query")->required();
  query->add_option("--param", query_cmd.params, "Positional parameter (TEXT), repeatable");
  query->add_flag("--columns", query_cmd.columns, "Print the column names first");
  query->add_flag("--timer", query_cmd.timer, "Print the run time");
  auto* query_timeout_opt = query->add_option("--timeout", query_timeout, "Timeout in seconds (0: none)");
  query->callback([&] {
    globals();
    if (query_timeout_opt->count() > 0) query_cmd.timeout = query_timeout;
    code = cmd_query(g, query_cmd);
  });

  std::string backup_path;
  auto* backup = app.add_subcommand("backup", "Write a node-neutral snapshot of the database (safe while running)");
  backup->add_option("path", backup_path, "Snapshot file to create")->required();
  backup->callback([&] {
    globals();
    code = cmd_backup(g, backup_path);
  });

  std::vector<std::string> template_specs;
  bool template_once = false;
  auto* templ = app.add_subcommand(
      "template", "Render Rhai templates (SRC:DST[:CMD]) from the node's data, again on every change unless --once");
  templ->add_option("template", template_specs, "SRC:DST[:CMD]: template file, output file, command run after a render")
      ->required();
  templ->add_flag("-o,--once", template_once, "Render once and exit");
  templ->callback([&] {
    globals();
    code = cmd_template(g, template_specs, template_once);
  });

  std::optional<std::string> consul_node;
  auto* consul = app.add_subcommand("consul", "Consul helpers");
  consul->require_subcommand(1);
  auto* consul_sync =
      consul->add_subcommand("sync", "Mirror the local Consul agent's services and checks into consul_services and "
                                     "consul_checks (runs until stopped)");
  consul_sync->add_option("--node", consul_node, "Node name of the rows (default: the host name)");
  consul_sync->callback([&] {
    globals();
    code = cmd_consul_sync(g, consul_node);
  });

  RestoreOptions restore_opts;
  std::string restore_actor;
  auto* restore = app.add_subcommand("restore", "Replace the database with a snapshot (stop the agent first)");
  restore->add_option("path", restore_opts.path, "Snapshot made by patina backup")->required();
  restore->add_flag("--self-actor-id", restore_opts.self_actor_id, "Keep this node's current identity");
  auto* actor_opt = restore->add_option("--actor-id", restore_actor, "Take this actor id (32 hex digits or a UUID)");
  restore->add_flag("--force", restore_opts.force, "Restore even though an agent answers on the admin socket");
  restore->callback([&] {
    globals();
    if (actor_opt->count() > 0) restore_opts.actor_id = restore_actor;
    code = cmd_restore(g, restore_opts);
  });

  auto* db = app.add_subcommand("db", "Database file operations");
  db->require_subcommand(1);
  std::vector<std::string> lock_cmd;
  auto* lock = db->add_subcommand("lock", "Hold an exclusive SQLite lock on the database while CMD runs");
  lock->add_option("cmd", lock_cmd, "Command to run under the lock")->required();
  lock->callback([&] {
    globals();
    code = cmd_db_lock(g, lock_cmd);
  });

  std::string sample_dir;
  std::int64_t sample_limit = 5000;
  auto* sample = db->add_subcommand("sample-changes",
                                    "Write recent versions as changeset frames, samples for zstd --train");
  sample->add_option("--out", sample_dir, "Directory to write the samples to")->required();
  sample->add_option("--limit", sample_limit, "How many of the most recent versions")->check(CLI::PositiveNumber);
  sample->callback([&] {
    globals();
    code = cmd_db_sample_changes(g, sample_dir, sample_limit);
  });

  auto* cluster = app.add_subcommand("cluster", "Cluster membership (through the admin socket)");
  cluster->require_subcommand(1);
  cluster->add_subcommand("members", "Active members: id, address, state, RTTs (one JSON line each)")->callback([&] {
    globals();
    json::value cmd = {{"Cluster", "Members"}};
    code = admin_command(g, cmd);
  });
  cluster->add_subcommand("membership-states", "Every member SWIM knows, with incarnation and state")->callback([&] {
    globals();
    json::value cmd = {{"Cluster", "MembershipStates"}};
    code = admin_command(g, cmd);
  });
  cluster->add_subcommand("rejoin", "Rejoin the cluster with a renewed identity")->callback([&] {
    globals();
    json::value cmd = {{"Cluster", "Rejoin"}};
    code = admin_command(g, cmd);
  });

  auto* sync = app.add_subcommand("sync", "Replication state (through the admin socket)");
  sync->require_subcommand(1);
  sync->add_subcommand("generate", "Print this node's sync state: heads, needs and partial needs per actor")
      ->callback([&] {
        globals();
        json::value cmd = {{"Sync", "Generate"}};
        code = admin_command(g, cmd);
      });
  sync->add_subcommand("digest", "Print a digest of every replicated table's contents, to compare nodes")
      ->callback([&] {
        globals();
        json::value cmd = {{"Sync", "Digest"}};
        code = admin_command(g, cmd);
      });
  sync->add_subcommand("check-bookie-consistency", "Compare the bookkeeping in memory with the database")
      ->callback([&] {
        globals();
        json::value cmd = {{"Sync", "CheckBookieConsistency"}};
        code = admin_command(g, cmd);
      });

  auto* subs = app.add_subcommand("subs", "Subscriptions on this node (through the admin socket)");
  subs->require_subcommand(1);
  subs->add_subcommand("list", "Every subscription: id, hash, sql, clients, cost")->callback([&] {
    globals();
    json::value cmd = {{"Subs", "List"}};
    code = admin_command(g, cmd);
  });
  std::string subs_id;
  std::string subs_hash;
  auto* subs_info = subs->add_subcommand("info", "One subscription's details: mode, statements, last change id");
  subs_info->add_option("--id", subs_id, "Subscription id (uuid)");
  subs_info->add_option("--hash", subs_hash, "Subscription query hash (16 hex)");
  subs_info->callback([&] {
    globals();
    if (subs_id.empty() && subs_hash.empty()) throw CLI::ValidationError("subs info", "give --id or --hash");
    json::object info;
    info["id"] = subs_id.empty() ? json::value(nullptr) : json::value(subs_id);
    info["hash"] = subs_hash.empty() ? json::value(nullptr) : json::value(subs_hash);
    json::value cmd = {{"Subs", {{"Info", std::move(info)}}}};
    code = admin_command(g, cmd);
  });

  // Bookkeeping repair and inspection (Corrosion's operator verbs).
  sync->add_subcommand("reconcile-gaps", "Rewrite each actor's stored gaps as the fewest ranges and reload them")
      ->callback([&] {
        globals();
        json::value cmd = {{"Sync", "ReconcileGaps"}};
        code = admin_command(g, cmd);
      });
  std::string buffered_actor;
  std::int64_t buffered_version = 0, chunk_size = 1000;
  auto* process = sync->add_subcommand("process-buffered-changes",
                                       "Merge a version buffered with all of its seqs (in one transaction)");
  process->add_option("actor", buffered_actor, "Actor id (UUID)")->required();
  process->add_option("version", buffered_version, "Version")->required()->check(CLI::PositiveNumber);
  process->add_option("--chunk-size", chunk_size, "Accepted for Corrosion's CLI; the version is merged whole")
      ->check(CLI::PositiveNumber);
  process->callback([&] {
    globals();
    json::value cmd = {{"Sync",
                        {{"ProcessBufferedChanges",
                          {{"actor_id", buffered_actor}, {"version", buffered_version}, {"chunk_size", chunk_size}}}}}};
    code = admin_command(g, cmd);
  });
  auto* actor_cmd = app.add_subcommand("actor", "One actor's versions on this node (through the admin socket)");
  actor_cmd->require_subcommand(1);
  std::string version_actor;
  std::int64_t version_number = 0;
  auto* version_cmd = actor_cmd->add_subcommand(
      "version", "What this node holds of ACTOR's VERSION: null, partial seqs, or its db_version and last seq");
  version_cmd->add_option("actor", version_actor, "Actor id (UUID)")->required();
  version_cmd->add_option("version", version_number, "Version")->required()->check(CLI::PositiveNumber);
  version_cmd->callback([&] {
    globals();
    json::value cmd = {{"Actor", {{"Version", {{"actor_id", version_actor}, {"version", version_number}}}}}};
    code = admin_command(g, cmd);
  });

  int set_id = 0;
  auto* set_id_cmd = cluster->add_subcommand("set-id", "Move this node to another cluster id (0..65535)");
  set_id_cmd->add_option("id", set_id, "Cluster id")->required()->check(CLI::Range(0, 65535));
  set_id_cmd->callback([&] {
    globals();
    json::value cmd = {{"Cluster", {{"SetId", set_id}}}};
    code = admin_command(g, cmd);
  });

  // patina tls ca|server|client generate: PEM files in the current directory,
  // named as Corrosion names them, accepted by [gossip.tls].
  auto* tls = app.add_subcommand("tls", "Generate TLS certificates for gossip");
  tls->require_subcommand(1);
  auto report = [&](const Result<std::vector<std::filesystem::path>>& r) {
    if (!r) return fail(r.error().message);
    for (const auto& p : *r) fmt::print("wrote {}\n", p.string());
    return 0;
  };
  auto* tls_ca = tls->add_subcommand("ca", "Certificate authority");
  tls_ca->require_subcommand(1);
  tls_ca->add_subcommand("generate", "Write ca_cert.pem and ca_key.pem")->callback([&] {
    code = report(io::tls::generate_ca_files(std::filesystem::current_path()));
  });
  std::string server_ip, ca_key, ca_cert;
  auto* tls_server = tls->add_subcommand("server", "Server certificate");
  tls_server->require_subcommand(1);
  auto* server_gen = tls_server->add_subcommand("generate", "Write server_cert.pem and server_key.pem for IP");
  server_gen->add_option("ip", server_ip, "The server's IP address (certificate SAN)")->required();
  server_gen->add_option("--ca-key", ca_key, "CA key file")->required();
  server_gen->add_option("--ca-cert", ca_cert, "CA certificate file")->required();
  server_gen->callback([&] {
    code = report(io::tls::generate_server_files(std::filesystem::current_path(), server_ip, ca_cert, ca_key));
  });
  auto* tls_client = tls->add_subcommand("client", "Client certificate (mutual TLS)");
  tls_client->require_subcommand(1);
  auto* client_gen = tls_client->add_subcommand("generate", "Write client_cert.pem and client_key.pem");
  client_gen->add_option("--ca-key", ca_key, "CA key file")->required();
  client_gen->add_option("--ca-cert", ca_cert, "CA certificate file")->required();
  client_gen->callback([&] {
    code = report(io::tls::generate_client_files(std::filesystem::current_path(), ca_cert, ca_key));
  });

  auto* log = app.add_subcommand("log", "Change the running agent's log filter");
  log->require_subcommand(1);
  std::string filter;
  auto* log_set = log->add_subcommand("set", "Set the log filter, e.g. 'debug' or 'info,swim=debug'");
  log_set->add_option("filter", filter, "Filter")->required();
  log_set->callback([&] {
    globals();
    json::value cmd = {{"Log", {{"Set", {{"filter", filter}}}}}};
    code = admin_command(g, cmd);
  });
  log->add_subcommand("reset", "Restore the startup log filter")->callback([&] {
    globals();
    json::value cmd = {{"Log", "Reset"}};
    code = admin_command(g, cmd);
  });

  app.add_subcommand("reload",
                    "Re-read the config file (log filter, schema paths) and apply the schema files' changes; "
                    "versions from peers that waited for them are merged")
      ->callback([&] {
        globals();
        code = admin_command(g, json::value("Reload"));
      });

  auto* plumtree = app.add_subcommand("plumtree", "Plumtree broadcast (Corrosion's verbs)");
  plumtree->require_subcommand(1);
  plumtree->add_subcommand("stats", "Plumtree state; Patina broadcasts with its tree or gossip method instead")
      ->callback([&] {
        globals();
        json::value cmd = {{"Plumtree", "Stats"}};
        code = admin_command(g, cmd);
      });

  app.add_subcommand("reload-dicts", "Load the zstd dictionaries of gossip.compression.dict_dir again")
      ->callback([&] {
        globals();
        code = admin_command(g, json::value("ReloadDicts"));
      });

  app.add_subcommand("ping", "Check that the agent answers on its admin socket")->callback([&] {
    globals();
    code = admin_command(g, json::value("Ping"));
  });

  auto* debug = app.add_subcommand("debug", "Debugging commands (need watchdog.debug_commands = true)");
  debug->require_subcommand(1);
  std::string loop;
  std::int64_t ms = 0;
  auto* stall = debug->add_subcommand("stall", "Block one of the agent's loops, to test the watchdog");
  stall->add_option("--loop", loop, "reactor or writer")->required()->check(CLI::IsMember({"reactor", "writer"}));
  stall->add_option("--ms", ms, "How long to block, in milliseconds")->required()->check(CLI::NonNegativeNumber);
  stall->callback([&] {
    globals();
    json::value cmd = {{"Debug", {{"Stall", {{"loop", loop}, {"ms", ms}}}}}};
    code = admin_command(g, cmd);
  });

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::RequiredError& e) {
    // CLI11 says "A subcommand is required" for `patina frobnicate` too:
    // name the word it did not know, or the commands it wanted.
    CLI::App* level = &app;
    std::string path = "patina";
    while (!level->get_subcommands().empty()) {
      level = level->get_subcommands().front();
      path += " " + level->get_name();
    }
    if (level->get_require_subcommand_min() > 0) {
      auto extras = app.remaining(true);
      if (!extras.empty() && !extras.front().empty() && extras.front()[0] != '-') {
        return fail(fmt::format("unknown command '{}' (see {} --help)", extras.front(), path));
      }
      std::vector<std::string> names;
      for (const auto* sub : level->get_subcommands([](CLI::App*) { return true; })) names.push_back(sub->get_name());
      return fail(fmt::format("{} needs a command: one of {} (see {} --help)", path, fmt::join(names, ", "), path));
    }
    return fail(e.what() + std::string(" (see patina --help)"));
  } catch (const CLI::ParseError& e) {
    return fail(e.what() + std::string(" (see patina --help)"));
  }
  return code;
}

}  // namespace patina::tools
