#pragma once
// What `patina consul sync` writes (SPEC.md §7.5), as pure functions: the
// local Consul agent's services and checks (its /v1/agent/services and
// /v1/agent/checks answers) become rows of the user tables consul_services
// and consul_checks, keyed by (node, id). Only what changed since the last
// pass is written, in one transaction; rows with a non-NULL `source` belong
// to someone else and are never touched.
//
// Corrosion remembers a seahash of every row in its own tables
// (__corro_consul_*), written through its transactions API. Patina's API
// refuses writes to non-replicated tables, so the mirror keeps the same
// knowledge in memory and rebuilds it at start from the rows themselves:
// the outcome is the same (a restart writes nothing that did not change),
// and a restored backup's stale rows are deleted on the first pass.
//
// What counts as a change is Corrosion's: every field of a service; for a
// check its service name and id, and its status, or the fields its Notes
// list as {"hash_include": ["status", "output"]} (a check whose output
// changes on every run would otherwise write every second).

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/array.hpp>

#include "core/result.hpp"

namespace patina::tools::consul {

struct Service {
  std::string id;
  std::string name;
  std::vector<std::string> tags;
  std::map<std::string, std::string> meta;  // sorted: its JSON is canonical
  std::int64_t port = 0;
  std::string address;
};

struct Check {
  std::string id;
  std::string name;
  std::string status;
  std::string output;
  std::string service_id;
  std::string service_name;
  std::string notes;
};

// Consul's answers, keyed by id. A malformed body is an error naming what
// was wrong.
Result<std::map<std::string, Service>> parse_services(std::string_view body);
Result<std::map<std::string, Check>> parse_checks(std::string_view body);

// The columns as stored (tags and meta as JSON text).
std::string tags_json(const Service& s);
std::string meta_json(const Service& s);

// One statement of POST /v1/transactions.
struct Statement {
  std::string sql;
  boost::json::array params;
};

// The queries that read what the tables hold for |node| at start, and the
// columns each table must have.
Statement services_query(const std::string& node);
Statement checks_query(const std::string& node);
// From the cells of a services_query / checks_query row.
Result<Service> service_from_row(const boost::json::array& cells);
Result<Check> check_from_row(const boost::json::array& cells);

struct Stats {
  std::size_t upserted = 0;
  std::size_t deleted = 0;
};

class Mirror {
 public:
  explicit Mirror(std::string node) : node_(std::move(node)) {}

  // What the tables hold for our node (rows without a source).
  void seed(const std::vector<Service>& services, const std::vector<Check>& checks);

  struct Plan {
    std::vector<Statement> statements;  // empty: nothing to write
    Stats services;
    Stats checks;
    std::map<std::string, std::string> next_services;  // id -> fingerprint
    std::map<std::string, std::string> next_checks;
  };
  // The writes that bring the tables to Consul's state. |full| writes every
  // row again (Corrosion's 15-minute resync) and deletes any row of our
  // node that Consul does not have. |now_ms| is the rows' updated_at.
  Plan plan(const std::map<std::string, Service>& services, const std::map<std::string, Check>& checks, bool full,
            std::int64_t now_ms) const;
  // After the plan's transaction committed.
  void commit(Plan plan);

  const std::string& node() const { return node_; }
  std::size_t services_known() const { return services_.size(); }
  std::size_t checks_known() const { return checks_.size(); }

 private:
  std::string node_;
  std::map<std::string, std::string> services_;  // id -> fingerprint
  std::map<std::string, std::string> checks_;
};

std::string fingerprint(const Service& s);
std::string fingerprint(const Check& c);

}  // namespace patina::tools::consul
