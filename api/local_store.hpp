#pragma once
// What the API needs from the replicated store, implemented by the
// composition root over crdt/. Every method except actor_id() runs on the
// writer thread, inside the writer's savepoint for the request, so a request
// that fails is rolled back by the writer together with its bookkeeping.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"
#include "core/sqlite.hpp"
#include "crdt/changeset.hpp"
#include "crdt/merge.hpp"

namespace patina::api {

class LocalStore {
 public:
  virtual ~LocalStore() = default;

  // Brackets one API transaction: one request = one version.
  virtual Result<void> begin_request(core::Db& db) = 0;
  // The version the request recorded, or nullopt when it changed nothing.
  virtual Result<std::optional<std::int64_t>> finish_request(core::Db& db) = 0;
  virtual void abort_request(core::Db& db) = 0;
  // The changes |version| recorded, as chunked changesets, read inside the
  // request's own savepoint: broadcast needs no second writer job.
  virtual Result<std::vector<crdt::Changeset>> local_changesets(core::Db& db, std::int64_t version) = 0;

  // Why the API may not write |table| (internal or not replicated), or
  // nullopt when it may.
  virtual std::optional<std::string> refuse_write(std::string_view table) const = 0;

  // Applies schema statements with the rules of schema files, then merges
  // the versions from peers that waited for them (a table or column this
  // node lacked): the rows those changed, table -> packed pks.
  virtual Result<std::map<std::string, crdt::PkSet>> migrate(core::Db& db,
                                                             const std::vector<std::string>& statements) = 0;

  // This node's actor id, 32 lowercase hex digits. Any thread.
  virtual std::string actor_id() const = 0;
};

}  // namespace patina::api
