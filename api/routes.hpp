#pragma once
// Corrosion's HTTP routes (SPEC.md §1) over the writer, the reader pool and
// the replicated store:
//   POST /v1/transactions   statements -> one transaction -> one version
//   POST /v1/queries        one read-only statement -> NDJSON stream
//   POST /v1/table_stats    row counts
//   GET  /v1/health         health summary with Corrosion's thresholds
//   POST /v1/migrations     schema statements (kept for old clients)
// and the Prometheus scrape route for the telemetry listener.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>

#include "api/http_server.hpp"
#include "api/local_store.hpp"
#include "core/metrics.hpp"
#include "core/reader_pool.hpp"
#include "core/writer.hpp"

namespace patina::api {

// Live figures for /v1/health, kept by the composition root.
struct HealthFigures {
  std::atomic<std::int64_t> gaps{0};
  std::atomic<std::int64_t> members{0};
  std::atomic<std::int64_t> queue_size{0};
  // p99 commit lag of remote changes in the last 120 s; negative: no data.
  std::atomic<double> p99_lag{-1};
};

struct ApiContext {
  core::Writer& writer;
  core::ReaderPool& readers;
  LocalStore& store;
  core::Metrics& metrics;
  HealthFigures& health;
  std::string db_path;
  // Called on the reactor after a transaction committed a new version,
  // with that version's changesets.
  std::function<void(std::int64_t version, std::vector<crdt::Changeset> changesets)> on_local_commit;
  // Called on the reactor with rows a migration let in (versions from peers
  // that had waited for the new schema).
  std::function<void(std::map<std::string, crdt::PkSet> rows)> on_rows_merged;
};

class ApiRoutes {
 public:
  explicit ApiRoutes(ApiContext ctx);
  ~ApiRoutes();
  // Registers every route with Corrosion's concurrency limits.
  void install(HttpServer& server);
  // The handler for the Prometheus listener (any GET path).
  HttpHandler& metrics_handler();

 private:
  struct Handlers;
  std::unique_ptr<Handlers> handlers_;
};

// Query-string helpers, exposed for tests.
std::optional<std::string> query_param(std::string_view target, std::string_view name);

}  // namespace patina::api
