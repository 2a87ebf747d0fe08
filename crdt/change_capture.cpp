// Change capture: the functions the AFTER INSERT/UPDATE/DELETE triggers of a
// replicated table call (see crr_tables.hpp for why triggers).
//
// Each function reproduces what cr-sqlite (the build Corrosion ships) records
// for the same write, statement by statement, because the oracle cases pin the
// exact col_version, cl and seq of every change:
//
//  insert   first insert of a pk: every non-pk column gets a clock entry at
//           cv 1 (no sentinel, its cl is implicitly 1); a pk-only table gets
//           the sentinel instead. A pk already known (deleted row coming back,
//           or INSERT OR REPLACE over a live row without recursive triggers)
//           first bumps the sentinel to the next odd cl (it consumes a seq even
//           when no sentinel row exists), then bumps every column.
//  update   only columns whose value changed (type-sensitive compare) get
//           cv+1; a write that changes nothing records nothing and takes no
//           db_version. A pk change deletes the old pk (sentinel cl+1), creates
//           the new one (sentinel), and moves the column clocks over with cv+1.
//  delete   sentinel cl+1 and the column clocks are dropped.
//
// Seq numbering when columns are (re)inserted: columns that already have a
// clock entry take the first seqs in column order, the missing ones the next.

#include <sqlite3.h>

#include <string>

#include "crdt/detail/capture.hpp"
#include "crdt/packed_pk.hpp"

namespace patina::crdt::detail {
namespace {

const std::string& ts_text(const CrrTables& t) { return t.ts_text(); }

Result<void> run(sqlite3* db, sqlite3_stmt* s, const char* what) { return step_done(db, s, what); }

Result<void> mark_sentinel(CrrTables& t, sqlite3_stmt* s, std::int64_t key, std::int64_t dbv,
                           std::int64_t seq, const char* what) {
  Reset reset(s);
  sqlite3_bind_int64(s, 1, key);
  sqlite3_bind_int64(s, 2, dbv);
  sqlite3_bind_int64(s, 3, seq);
  bind_text_static(s, 4, ts_text(t));
  return run(t.db(), s, what);
}

// Bumps (key, col) to cv+1, or creates it at cv 1. Returns true if it existed.
Result<bool> bump_clock(CrrTables& t, TableState& st, std::int64_t key, const std::string& col,
                        std::int64_t dbv, std::int64_t seq) {
  sqlite3* db = t.db();
  sqlite3_stmt* u = st.update_clock.get();
  {
    Reset reset(u);
    sqlite3_bind_int64(u, 1, dbv);
    sqlite3_bind_int64(u, 2, seq);
    bind_text_static(u, 3, ts_text(t));
    sqlite3_bind_int64(u, 4, key);
    bind_text_static(u, 5, col);
    if (auto r = run(db, u, "update clock"); !r) return tl::unexpected(r.error());
  }
  return sqlite3_changes(db) > 0;
}

Result<void> insert_clock(CrrTables& t, TableState& st, std::int64_t key, const std::string& col,
                          std::int64_t dbv, std::int64_t seq) {
  sqlite3_stmt* s = st.insert_clock.get();
  Reset reset(s);
  sqlite3_bind_int64(s, 1, key);
  bind_text_static(s, 2, col);
  sqlite3_bind_int64(s, 3, dbv);
  sqlite3_bind_int64(s, 4, seq);
  bind_text_static(s, 5, ts_text(t));
  return run(t.db(), s, "insert clock");
}

Result<void> mark_all_columns(CrrTables& t, TableState& st, std::int64_t key, std::int64_t dbv) {
  std::vector<std::size_t> missing;
  std::int64_t saved = -1;  // a seq handed out but not used yet
  auto next_seq = [&] {
    if (saved >= 0) return std::exchange(saved, -1);
    return t.bump_seq();
  };
  for (std::size_t i = 0; i < st.info.non_pks.size(); ++i) {
    std::int64_t seq = next_seq();
    auto existed = bump_clock(t, st, key, st.info.non_pks[i], dbv, seq);
    if (!existed) return tl::unexpected(existed.error());
    if (!*existed) {
      saved = seq;
      missing.push_back(i);
    }
  }
  for (std::size_t i : missing)
    if (auto r = insert_clock(t, st, key, st.info.non_pks[i], dbv, next_seq()); !r) return r;
  return {};
}

Result<void> record_insert(CrrTables& t, TableState& st, const Bytes& packed,
                           const PkBinder& bind_pks) {
  auto dbv = t.next_db_version();
  if (!dbv) return tl::unexpected(dbv.error());
  auto key = get_or_create_key(t.db(), st, packed, bind_pks);
  if (!key) return tl::unexpected(key.error());
  if (st.info.non_pks.empty())
    return mark_sentinel(t, st.mark_created.get(), key->first, *dbv, t.bump_seq(), "mark created");
  if (!key->second) {
    // A pk never seen has no clock entries: one statement inserts them all,
    // with seqs in column order (what the general path below would give).
    sqlite3_stmt* s = st.insert_all_clocks.get();
    Reset reset(s);
    for (std::size_t i = 0; i < st.info.non_pks.size(); ++i) {
      int at = static_cast<int>(i) * 5;
      sqlite3_bind_int64(s, at + 1, key->first);
      bind_text_static(s, at + 2, st.info.non_pks[i]);
      sqlite3_bind_int64(s, at + 3, *dbv);
      sqlite3_bind_int64(s, at + 4, t.bump_seq());
      bind_text_static(s, at + 5, ts_text(t));
    }
    return run(t.db(), s, "insert clocks");
  }
  {
    // Known pk: a deleted row comes back (even cl -> next odd), or a REPLACE over
    // a live row (odd -> odd + 2). Without a sentinel row this is a no-op that
    // still consumes a seq, exactly as cr-sqlite does.
    sqlite3_stmt* s = st.reinsert_sentinel.get();
    Reset reset(s);
    sqlite3_bind_int64(s, 1, *dbv);
    sqlite3_bind_int64(s, 2, t.bump_seq());
    bind_text(s, 3, ts_text(t));
    sqlite3_bind_int64(s, 4, key->first);
    if (auto r = run(t.db(), s, "reinsert sentinel"); !r) return r;
  }
  return mark_all_columns(t, st, key->first, *dbv);
}

Result<void> record_update(CrrTables& t, TableState& st, sqlite3_value** argv) {
  const int npk = static_cast<int>(st.info.pks.size());
  const int nnp = static_cast<int>(st.info.non_pks.size());
  sqlite3_value** new_pk = argv;
  sqlite3_value** old_pk = argv + npk;
  sqlite3_value** new_val = argv + 2 * npk;
  sqlite3_value** old_val = argv + 2 * npk + nnp;
  bool pk_changed = false;
  for (int i = 0; i < npk && !pk_changed; ++i)
    pk_changed = compare_values(new_pk[i], old_pk[i]) != 0;
  bool any_col = false;
  for (int i = 0; i < nnp && !any_col; ++i) any_col = compare_values(new_val[i], old_val[i]) != 0;
  if (!pk_changed && !any_col) return {};  // a no-op write records nothing

  auto dbv = t.next_db_version();
  if (!dbv) return tl::unexpected(dbv.error());
  auto binder = [](sqlite3_value** vals, int n) {
    return [vals, n](sqlite3_stmt* s, int first) {
      for (int i = 0; i < n; ++i) sqlite3_bind_value(s, first + i, vals[i]);
    };
  };
  auto new_key = get_or_create_key(t.db(), st, PackedPk::pack(new_pk, npk), binder(new_pk, npk));
  if (!new_key) return tl::unexpected(new_key.error());
  if (pk_changed) {
    auto old_key = get_or_create_key(t.db(), st, PackedPk::pack(old_pk, npk), binder(old_pk, npk));
    if (!old_key) return tl::unexpected(old_key.error());
    if (auto r = mark_sentinel(t, st.mark_deleted.get(), old_key->first, *dbv, t.bump_seq(),
                               "mark old pk deleted");
        !r)
      return r;
    if (auto r = mark_sentinel(t, st.mark_created.get(), new_key->first, *dbv, t.bump_seq(),
                               "mark new pk created");
        !r)
      return r;
    for (const auto& col : st.info.non_pks) {
      sqlite3_stmt* s = st.move_col.get();
      Reset reset(s);
      sqlite3_bind_int64(s, 1, new_key->first);
      sqlite3_bind_int64(s, 2, *dbv);
      sqlite3_bind_int64(s, 3, t.bump_seq());
      bind_text_static(s, 4, ts_text(t));
      sqlite3_bind_int64(s, 5, old_key->first);
      bind_text(s, 6, col);
      if (auto r = run(t.db(), s, "move column clock"); !r) return r;
    }
  }
  for (int i = 0; i < nnp; ++i) {
    if (compare_values(new_val[i], old_val[i]) == 0) continue;
    std::int64_t seq = t.bump_seq();
    auto existed = bump_clock(t, st, new_key->first, st.info.non_pks[i], *dbv, seq);
    if (!existed) return tl::unexpected(existed.error());
    if (!*existed)
      if (auto r = insert_clock(t, st, new_key->first, st.info.non_pks[i], *dbv, seq); !r) return r;
  }
  return {};
}

Result<void> record_delete(CrrTables& t, TableState& st, sqlite3_value** old_pk) {
  const int npk = static_cast<int>(st.info.pks.size());
  auto dbv = t.next_db_version();
  if (!dbv) return tl::unexpected(dbv.error());
  std::int64_t seq = t.bump_seq();
  auto key = get_or_create_key(t.db(), st, PackedPk::pack(old_pk, npk),
                               [old_pk, npk](sqlite3_stmt* s, int first) {
                                 for (int i = 0; i < npk; ++i)
                                   sqlite3_bind_value(s, first + i, old_pk[i]);
                               });
  if (!key) return tl::unexpected(key.error());
  if (auto r = mark_sentinel(t, st.mark_deleted.get(), key->first, *dbv, seq, "mark deleted"); !r)
    return r;
  sqlite3_stmt* d = st.drop_clocks.get();
  Reset reset(d);
  sqlite3_bind_int64(d, 1, key->first);
  return run(t.db(), d, "drop clocks");
}

enum class Kind { insert, update, remove };

template <Kind kind>
void trigger_fn(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  auto* t = static_cast<CrrTables*>(sqlite3_user_data(ctx));
  if (t == nullptr) {
    sqlite3_result_error(ctx, "patina: change capture is not active on this connection", -1);
    return;
  }
  if (t->capture_suspended()) {
    sqlite3_result_null(ctx);
    return;
  }
  if (argc < 1) {
    sqlite3_result_error(ctx, "patina: capture called without a table", -1);
    return;
  }
  const char* name = reinterpret_cast<const char*>(sqlite3_value_text(argv[0]));
  TableState* st = name ? t->state(name) : nullptr;
  if (st == nullptr) {
    sqlite3_result_error(ctx, "patina: capture called for a table that is not replicated", -1);
    return;
  }
  const int npk = static_cast<int>(st->info.pks.size());
  const int nnp = static_cast<int>(st->info.non_pks.size());
  int expected = 1 + (kind == Kind::update ? 2 * (npk + nnp) : npk);
  if (argc != expected) {
    std::string msg = "patina: trigger of " + st->info.name + " passed " + std::to_string(argc - 1) +
                      " values, expected " + std::to_string(expected - 1) +
                      " (schema changed without a reload?)";
    sqlite3_result_error(ctx, msg.c_str(), -1);
    return;
  }
  Result<void> r;
  if constexpr (kind == Kind::insert) {
    sqlite3_value** pk = argv + 1;
    r = record_insert(*t, *st, PackedPk::pack(pk, npk), [pk, npk](sqlite3_stmt* s, int first) {
      for (int i = 0; i < npk; ++i) sqlite3_bind_value(s, first + i, pk[i]);
    });
  } else if constexpr (kind == Kind::update) {
    r = record_update(*t, *st, argv + 1);
  } else {
    r = record_delete(*t, *st, argv + 1);
  }
  if (!r) {
    sqlite3_result_error(ctx, r.error().message.c_str(), -1);
    if (r.error().sqlite_code != 0) sqlite3_result_error_code(ctx, r.error().sqlite_code);
    return;
  }
  sqlite3_result_null(ctx);
}

}  // namespace

Result<std::pair<std::int64_t, bool>> get_or_create_key(sqlite3* db, TableState& st,
                                                        const Bytes& packed,
                                                        const PkBinder& bind_pks) {
  // Insert first (ON CONFLICT DO NOTHING): a new row costs one statement; a
  // known pk inserts nothing and is looked up. (No RETURNING: SQLite buffers
  // its rows in an ephemeral table, which costs more than the rowid lookup.)
  {
    sqlite3_stmt* s = st.insert_key.get();
    Reset reset(s);
    bind_blob_static(s, 1, packed.data(), packed.size());
    bind_pks(s, 2);
    if (auto r = step_done(db, s, "insert pk key"); !r) return tl::unexpected(r.error());
    if (sqlite3_changes(db) > 0) return std::pair<std::int64_t, bool>{sqlite3_last_insert_rowid(db), false};
  }
  sqlite3_stmt* s = st.select_key.get();
  Reset reset(s);
  bind_blob(s, 1, packed.data(), packed.size());
  int rc = sqlite3_step(s);
  if (rc == SQLITE_ROW) return std::pair<std::int64_t, bool>{sqlite3_column_int64(s, 0), true};
  return sqlite_error(db, "select pk key", rc == SQLITE_DONE ? SQLITE_CORRUPT : rc);
}

Result<void> record_local_insert(CrrTables& t, TableState& st, std::span<const Value> pks) {
  return record_insert(t, st, PackedPk::pack(pks), [pks](sqlite3_stmt* s, int first) {
    for (std::size_t i = 0; i < pks.size(); ++i)
      bind_value(s, first + static_cast<int>(i), pks[i]);
  });
}

Result<void> register_capture_functions(sqlite3* db, CrrTables* tables) {
  // INNOCUOUS so the triggers keep working with PRAGMA trusted_schema=OFF; the
  // functions only touch this connection's own CRDT bookkeeping.
  const int flags = SQLITE_UTF8 | SQLITE_INNOCUOUS;
  struct Fn {
    const char* name;
    void (*fn)(sqlite3_context*, int, sqlite3_value**);
  };
  const Fn fns[] = {{"patina_crr_insert", &trigger_fn<Kind::insert>},
                    {"patina_crr_update", &trigger_fn<Kind::update>},
                    {"patina_crr_delete", &trigger_fn<Kind::remove>}};
  for (const auto& f : fns) {
    int rc = sqlite3_create_function_v2(db, f.name, -1, flags, tables, f.fn, nullptr, nullptr,
                                        nullptr);
    if (rc != SQLITE_OK) return sqlite_error(db, std::string("register ") + f.name, rc);
  }
  return {};
}

}  // namespace patina::crdt::detail
