// Subscription SQL from clients: the tokenizer, the FROM-clause parser and
// the pk-restricting rewrite of api/sub_plan. Whatever the text, make()
// answers (a plan or an error) and never crashes; an incremental plan's
// rewritten statements always compile (a rewrite that does not would fail
// at the first change instead of at creation).
#include <cstdlib>

#include "api/sub_plan.hpp"

namespace {

patina::core::Db& database() {
  static patina::core::Db db = [] {
    auto d = patina::core::Db::open(":memory:", patina::core::Db::Mode::read_write);
    if (!d) std::abort();
    if (!d->exec("CREATE TABLE t1 (id INTEGER NOT NULL PRIMARY KEY, a INTEGER, b TEXT);"
                 "CREATE TABLE t2 (k INTEGER NOT NULL PRIMARY KEY, v INTEGER);"
                 "CREATE TABLE t3 (p INTEGER NOT NULL, q TEXT NOT NULL, w INTEGER, PRIMARY KEY (p, q));"
                 "CREATE TABLE other (id INTEGER PRIMARY KEY);")) {
      std::abort();
    }
    return std::move(*d);
  }();
  return db;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 4096) return 0;
  patina::api::Statement st;
  st.sql.assign(reinterpret_cast<const char*>(data), size);
  auto& db = database();
  auto plan = patina::api::SubPlan::make(db, st, {"t1", "t2", "t3"});
  if (!plan || plan->mode() != patina::api::SubPlan::Mode::incremental) return 0;
  for (std::size_t i = 0; i < plan->tables().size(); ++i) {
    if (!db.prepare(plan->restricted_sql(i, 3))) __builtin_trap();
  }
  if (!db.prepare(plan->full_sql())) __builtin_trap();
  return 0;
}
