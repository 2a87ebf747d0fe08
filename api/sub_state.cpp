#include "api/sub_state.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include <boost/json.hpp>
#include <fmt/format.h>

#include "core/reader_pool.hpp"
#include "crdt/packed_pk.hpp"

namespace patina::api {

namespace json = boost::json;

std::string SubChange::event() const {
  static const char* names[] = {"insert", "update", "delete"};
  return fmt::format(R"({{"change":["{}",{},{},{}]}})", names[type], rowid, cells, change_id);
}

// ---- keys -------------------------------------------------------------------

namespace {

void put_u32(std::string& out, std::uint32_t v) {
  char b[4];
  std::memcpy(b, &v, 4);
  out.append(b, 4);
}

std::uint32_t get_u32(std::string_view s, std::size_t at) {
  std::uint32_t v = 0;
  std::memcpy(&v, s.data() + at, 4);
  return v;
}

// Identity segments: u32 length, then the key.
std::string segment(std::string_view key) {
  std::string out;
  put_u32(out, static_cast<std::uint32_t>(key.size()));
  out.append(key);
  return out;
}

std::vector<std::string_view> segments(std::string_view identity) {
  std::vector<std::string_view> out;
  std::size_t at = 0;
  while (at + 4 <= identity.size()) {
    auto n = get_u32(identity, at);
    at += 4;
    if (at + n > identity.size()) break;
    out.push_back(identity.substr(at, n));
    at += n;
  }
  return out;
}


}  // namespace

core::SqlValue to_sql_value(const crdt::Value& v) {
  return std::visit(
      [](const auto& x) -> core::SqlValue {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, crdt::Null>) return nullptr;
        else if constexpr (std::is_same_v<T, crdt::Bytes>) return core::Blob{x};
        else return x;
      },
      v);
}

std::string encode_key(const std::vector<core::SqlValue>& values) {
  std::string out;
  for (const auto& v : values) {
    switch (v.index()) {
      case 0: out += 'n'; break;
      case 1: {
        out += 'i';
        auto x = std::get<std::int64_t>(v);
        out.append(reinterpret_cast<const char*>(&x), 8);
        break;
      }
      case 2: {
        out += 'r';
        auto x = std::get<double>(v);
        out.append(reinterpret_cast<const char*>(&x), 8);
        break;
      }
      case 3:
        out += 't';
        put_u32(out, static_cast<std::uint32_t>(std::get<std::string>(v).size()));
        out += std::get<std::string>(v);
        break;
      default: {
        const auto& b = std::get<core::Blob>(v).bytes;
        out += 'b';
        put_u32(out, static_cast<std::uint32_t>(b.size()));
        out.append(reinterpret_cast<const char*>(b.data()), b.size());
      }
    }
  }
  return out;
}

std::vector<core::SqlValue> decode_key(std::string_view key) {
  std::vector<core::SqlValue> out;
  std::size_t at = 0;
  while (at < key.size()) {
    char tag = key[at++];
    if (tag == 'n') {
      out.emplace_back(nullptr);
    } else if ((tag == 'i' || tag == 'r') && at + 8 <= key.size()) {
      if (tag == 'i') {
        std::int64_t x;
        std::memcpy(&x, key.data() + at, 8);
        out.emplace_back(x);
      } else {
        double x;
        std::memcpy(&x, key.data() + at, 8);
        out.emplace_back(x);
      }
      at += 8;
    } else if ((tag == 't' || tag == 'b') && at + 4 <= key.size()) {
      auto n = get_u32(key, at);
      at += 4;
      if (at + n > key.size()) break;
      if (tag == 't') out.emplace_back(std::string(key.substr(at, n)));
      else out.emplace_back(core::Blob{std::vector<std::uint8_t>(key.begin() + at, key.begin() + at + n)});
      at += n;
    } else {
      break;  // not produced by encode_key
    }
  }
  return out;
}

// ---- evaluation ---------------------------------------------------------------

namespace {
// Loops over a whole result (a million rows) run long outside SQLite.
inline void tick(std::size_t i) {
  if ((i & 4095) == 0) core::ReaderPool::keep_alive();
}
}  // namespace

Result<void> SubState::read_rows(core::Stmt& stmt, NewRows& out) const {
  const std::size_t ncols = plan_.columns().size();
  const bool incremental = plan_.mode() == SubPlan::Mode::incremental;
  std::unordered_map<std::string, int> seen;  // full mode: occurrences of equal rows
  for (std::size_t n = 0;; ++n) {
    tick(n);
    auto row = stmt.step();
    if (!row) return tl::unexpected(row.error());
    if (!*row) break;
    json::array cells;
    for (std::size_t i = 0; i < ncols; ++i) cells.push_back(value_to_json(stmt.column(static_cast<int>(i))));
    std::string text = json::serialize(cells);
    std::string identity;
    if (incremental) {
      for (std::size_t t = 0; t < plan_.tables().size(); ++t) {
        std::vector<core::SqlValue> pk;
        auto off = plan_.pk_offset(t);
        for (std::size_t k = 0; k < plan_.tables()[t].pk.size(); ++k) {
          pk.push_back(stmt.column(static_cast<int>(off + k)));
        }
        identity += segment(encode_key(pk));
      }
    } else {
      identity = text + '#' + std::to_string(seen[text]++);
    }
    out.emplace_back(std::move(identity), std::move(text));
  }
  return {};
}

void SubState::insert_row(const std::string& identity, Row row) {
  rows_[identity] = std::move(row);
  if (plan_.mode() != SubPlan::Mode::incremental || plan_.tables().size() < 2) return;
  auto segs = segments(identity);
  if (segs.size() != plan_.tables().size()) return;
  std::string root(segs[0]);
  by_root_[root].insert(identity);
  if (by_instance_.size() < segs.size()) by_instance_.resize(segs.size());
  for (std::size_t i = 1; i < segs.size(); ++i) ++by_instance_[i][std::string(segs[i])][root];
}

void SubState::erase_row(const std::string& identity) {
  rows_.erase(identity);
  if (plan_.mode() != SubPlan::Mode::incremental || plan_.tables().size() < 2) return;
  auto segs = segments(identity);
  if (segs.size() != plan_.tables().size()) return;
  std::string root(segs[0]);
  if (auto it = by_root_.find(root); it != by_root_.end()) {
    it->second.erase(identity);
    if (it->second.empty()) by_root_.erase(it);
  }
  for (std::size_t i = 1; i < segs.size() && i < by_instance_.size(); ++i) {
    auto it = by_instance_[i].find(std::string(segs[i]));
    if (it == by_instance_[i].end()) continue;
    auto r = it->second.find(root);
    if (r != it->second.end() && --r->second <= 0) it->second.erase(r);
    if (it->second.empty()) by_instance_[i].erase(it);
  }
}

std::vector<SubChange> SubState::diff(const std::vector<std::string>& old, NewRows& fresh) {
  std::vector<SubChange> out;
  std::unordered_set<std::string> fresh_ids;
  fresh_ids.reserve(fresh.size());
  for (const auto& [id, cells] : fresh) fresh_ids.insert(id);
  std::size_t n = 0;
  for (const auto& id : old) {
    tick(++n);
    if (fresh_ids.count(id) != 0) continue;
    auto it = rows_.find(id);
    if (it == rows_.end()) continue;
    out.push_back({SubChange::remove, it->second.rowid, it->second.cells, ++last_change_id_});
    erase_row(id);
  }
  std::unordered_set<std::string> done;
  for (auto& [id, cells] : fresh) {
    tick(++n);
    if (!done.insert(id).second) continue;  // a duplicate identity: the first one wins
    auto it = rows_.find(id);
    if (it == rows_.end()) {
      std::int64_t rowid = next_rowid_++;
      out.push_back({SubChange::insert, rowid, cells, ++last_change_id_});
      insert_row(id, Row{rowid, std::move(cells)});
    } else if (it->second.cells != cells) {
      it->second.cells = std::move(cells);
      out.push_back({SubChange::update, it->second.rowid, it->second.cells, ++last_change_id_});
    }
  }
  return out;
}

Result<void> SubState::initialize(core::Db& db) {
  auto stmt = db.prepare(plan_.full_sql());
  if (!stmt) return tl::unexpected(stmt.error());
  NewRows fresh;
  if (auto r = read_rows(*stmt, fresh); !r) return r;
  rows_.clear();
  by_root_.clear();
  by_instance_.clear();
  rows_.reserve(fresh.size());
  std::size_t n = 0;
  for (auto& [id, cells] : fresh) {
    tick(++n);
    if (rows_.count(id) != 0) continue;
    insert_row(id, Row{next_rowid_++, std::move(cells)});
  }
  return {};
}

Result<std::vector<SubChange>> SubState::refresh(core::Db& db) {
  auto stmt = db.prepare(plan_.full_sql());
  if (!stmt) return tl::unexpected(stmt.error());
  NewRows fresh;
  if (auto r = read_rows(*stmt, fresh); !r) return tl::unexpected(r.error());
  std::vector<std::string> old;
  old.reserve(rows_.size());
  for (const auto& [id, row] : rows_) old.push_back(id);
  return diff(old, fresh);
}

Result<void> SubState::run_restricted(core::Db& db, std::size_t instance,
                                      const std::map<std::string, std::vector<core::SqlValue>>& keys,
                                      const std::function<void(core::Stmt&)>& on_row) const {
  static constexpr std::size_t sizes[] = {1, 8, 64, 256};
  const std::size_t width = plan_.tables()[instance].pk.size();
  auto it = keys.begin();
  while (it != keys.end()) {
    std::size_t left = static_cast<std::size_t>(std::distance(it, keys.end()));
    std::size_t n = sizes[3];
    for (auto s : sizes) {
      if (s >= left) {
        n = s;
        break;
      }
    }
    auto stmt = db.cached(plan_.restricted_sql(instance, n));
    if (!stmt) return tl::unexpected(stmt.error());
    int param = 1;
    const std::vector<core::SqlValue>* last = nullptr;
    for (std::size_t k = 0; k < n; ++k) {
      // Short chunks repeat their last key: fixed sizes keep statements cached.
      if (it != keys.end() && k < left) {
        last = &it->second;
        ++it;
      }
      for (std::size_t c = 0; c < width; ++c) {
        auto b = (*stmt)->bind(param++, c < last->size() ? (*last)[c] : core::SqlValue{nullptr});
        if (!b) return b;
      }
    }
    for (;;) {
      auto row = (*stmt)->step();
      if (!row) {
        (*stmt)->reset();
        return tl::unexpected(row.error());
      }
      if (!*row) break;
      on_row(**stmt);
    }
    (*stmt)->reset();
  }
  return {};
}

Result<std::vector<SubChange>> SubState::match(core::Db& db, const ChangedRows& changed) {
  if (plan_.mode() == SubPlan::Mode::full) return refresh(db);
  const auto& tables = plan_.tables();
  std::map<std::string, std::vector<core::SqlValue>> roots;
  std::vector<std::map<std::string, std::vector<core::SqlValue>>> keys(tables.size());
  for (std::size_t i = 0; i < tables.size(); ++i) {
    auto c = changed.find(tables[i].table);
    if (c == changed.end()) continue;
    for (const auto& packed : c->second) {
      auto values = crdt::PackedPk::unpack(packed);
      if (!values || values->size() != tables[i].pk.size()) continue;  // not a pk of this table
      std::vector<core::SqlValue> pk;
      for (const auto& v : *values) pk.push_back(to_sql_value(v));
      auto key = encode_key(pk);
      if (i == 0) roots.emplace(key, pk);
      else keys[i].emplace(std::move(key), std::move(pk));
    }
  }
  // A change to a joined table affects the root rows it was joined with
  // (in the stored rows) and will be joined with (in the database now).
  const std::size_t root_width = tables[0].pk.size();
  const std::size_t root_off = plan_.pk_offset(0);
  for (std::size_t i = 1; i < tables.size(); ++i) {
    if (keys[i].empty()) continue;
    if (i < by_instance_.size()) {
      for (const auto& [key, pk] : keys[i]) {
        auto it = by_instance_[i].find(key);
        if (it == by_instance_[i].end()) continue;
        for (const auto& [root, count] : it->second) roots.emplace(root, decode_key(root));
      }
    }
    auto r = run_restricted(db, i, keys[i], [&](core::Stmt& st) {
      std::vector<core::SqlValue> pk;
      for (std::size_t k = 0; k < root_width; ++k) pk.push_back(st.column(static_cast<int>(root_off + k)));
      auto key = encode_key(pk);
      roots.emplace(std::move(key), std::move(pk));
    });
    if (!r) return tl::unexpected(r.error());
  }
  if (roots.empty()) return std::vector<SubChange>{};
  std::vector<std::string> old;
  if (tables.size() == 1) {
    for (const auto& [key, pk] : roots) {
      auto id = segment(key);
      if (rows_.count(id) != 0) old.push_back(std::move(id));
    }
  } else {
    for (const auto& [key, pk] : roots) {
      auto it = by_root_.find(key);
      if (it != by_root_.end()) old.insert(old.end(), it->second.begin(), it->second.end());
    }
  }
  NewRows fresh;
  const std::size_t ncols = plan_.columns().size();
  auto r = run_restricted(db, 0, roots, [&](core::Stmt& st) {
    json::array cells;
    for (std::size_t i = 0; i < ncols; ++i) cells.push_back(value_to_json(st.column(static_cast<int>(i))));
    std::string identity;
    for (std::size_t t = 0; t < tables.size(); ++t) {
      std::vector<core::SqlValue> pk;
      auto off = plan_.pk_offset(t);
      for (std::size_t k = 0; k < tables[t].pk.size(); ++k) pk.push_back(st.column(static_cast<int>(off + k)));
      identity += segment(encode_key(pk));
    }
    fresh.emplace_back(std::move(identity), json::serialize(cells));
  });
  if (!r) return tl::unexpected(r.error());
  return diff(old, fresh);
}

std::vector<std::string> SubState::snapshot() const {
  std::vector<const Row*> sorted;
  sorted.reserve(rows_.size());
  for (const auto& [id, row] : rows_) sorted.push_back(&row);
  core::ReaderPool::keep_alive();
  std::sort(sorted.begin(), sorted.end(), [](const Row* a, const Row* b) { return a->rowid < b->rowid; });
  core::ReaderPool::keep_alive();
  std::vector<std::string> out;
  out.reserve(sorted.size());
  std::size_t n = 0;
  for (const Row* r : sorted) {
    tick(++n);
    out.push_back(fmt::format(R"({{"row":[{},{}]}})", r->rowid, r->cells));
  }
  return out;
}

// ---- persistence -----------------------------------------------------------------

Result<void> SubState::save(const std::string& path, const Saved& saved) const {
  std::string tmp = path + ".tmp";
  std::error_code ec;
  std::filesystem::remove(tmp, ec);
  {
    auto db = core::Db::open(tmp, core::Db::Mode::read_write);
    if (!db) return tl::unexpected(db.error());
    auto r = db->exec(
        "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; "
        "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL); "
        "CREATE TABLE rows(rowid INTEGER PRIMARY KEY, identity BLOB NOT NULL, cells TEXT NOT NULL); "
        "CREATE TABLE changes(id INTEGER PRIMARY KEY, event TEXT NOT NULL); BEGIN");
    if (!r) return r;
    auto meta = db->prepare("INSERT OR REPLACE INTO meta VALUES (?, ?)");
    if (!meta) return tl::unexpected(meta.error());
    auto put = [&](const std::string& k, const std::string& v) -> Result<void> {
      meta->reset();
      if (auto b = meta->bind(1, k); !b) return b;
      if (auto b = meta->bind(2, v); !b) return b;
      return meta->run();
    };
    for (const auto& [k, v] : saved.meta) {
      if (auto p = put(k, v); !p) return p;
    }
    if (auto p = put("sql", plan_.sql()); !p) return p;
    if (auto p = put("next_rowid", std::to_string(next_rowid_)); !p) return p;
    if (auto p = put("last_change_id", std::to_string(last_change_id_)); !p) return p;
    auto ins = db->prepare("INSERT INTO rows VALUES (?, ?, ?)");
    if (!ins) return tl::unexpected(ins.error());
    std::size_t n = 0;
    for (const auto& [id, row] : rows_) {
      tick(++n);
      ins->reset();
      if (auto b = ins->bind(1, row.rowid); !b) return b;
      if (auto b = ins->bind(2, core::Blob{std::vector<std::uint8_t>(id.begin(), id.end())}); !b) return b;
      if (auto b = ins->bind(3, row.cells); !b) return b;
      if (auto x = ins->run(); !x) return x;
    }
    auto ch = db->prepare("INSERT INTO changes VALUES (?, ?)");
    if (!ch) return tl::unexpected(ch.error());
    for (const auto& [id, ev] : saved.log) {
      ch->reset();
      if (auto b = ch->bind(1, id); !b) return b;
      if (auto b = ch->bind(2, ev); !b) return b;
      if (auto x = ch->run(); !x) return x;
    }
    if (auto c = db->exec("COMMIT"); !c) return c;
  }
  std::filesystem::rename(tmp, path, ec);
  if (ec) return make_error(Errc::io, fmt::format("rename {}: {}", tmp, ec.message()));
  return {};
}

Result<SubState::Saved> SubState::load(const std::string& path) {
  auto db = core::Db::open(path, core::Db::Mode::read_only);
  if (!db) return tl::unexpected(db.error());
  Saved out;
  auto meta = db->prepare("SELECT key, value FROM meta");
  if (!meta) return tl::unexpected(meta.error());
  for (;;) {
    auto row = meta->step();
    if (!row) return tl::unexpected(row.error());
    if (!*row) break;
    out.meta[meta->column_text(0)] = meta->column_text(1);
  }
  if (out.meta["sql"] != plan_.sql()) return make_error(Errc::invalid_argument, "saved for another query");
  try {
    next_rowid_ = std::stoll(out.meta["next_rowid"]);
    last_change_id_ = std::stoll(out.meta["last_change_id"]);
  } catch (const std::exception&) {
    return make_error(Errc::invalid_argument, "bad counters");
  }
  rows_.clear();
  by_root_.clear();
  by_instance_.clear();
  auto rows = db->prepare("SELECT rowid, identity, cells FROM rows");
  if (!rows) return tl::unexpected(rows.error());
  for (std::size_t n = 0;; ++n) {
    tick(n);
    auto row = rows->step();
    if (!row) return tl::unexpected(row.error());
    if (!*row) break;
    auto id = rows->column(1);
    if (!std::holds_alternative<core::Blob>(id)) continue;
    const auto& b = std::get<core::Blob>(id).bytes;
    insert_row(std::string(b.begin(), b.end()), Row{rows->column_int(0), rows->column_text(2)});
  }
  auto ch = db->prepare("SELECT id, event FROM changes ORDER BY id");
  if (!ch) return tl::unexpected(ch.error());
  for (;;) {
    auto row = ch->step();
    if (!row) return tl::unexpected(row.error());
    if (!*row) break;
    out.log.emplace_back(ch->column_int(0), ch->column_text(1));
  }
  return out;
}

}  // namespace patina::api
