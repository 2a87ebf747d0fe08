#include "tools/consul_mirror.hpp"

#include <boost/json.hpp>
#include <fmt/format.h>

namespace patina::tools::consul {
namespace {

namespace json = boost::json;

// A string member that may be absent or null (empty then); anything else
// is an error.
Result<std::string> text_field(const json::object& o, std::string_view key, std::string_view what) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr || v->is_null()) return std::string();
  if (!v->is_string()) return make_error(Errc::invalid_argument, fmt::format("{}: {} is not a string", what, key));
  return std::string(v->as_string());
}

Result<json::object> parse_object(std::string_view body, std::string_view what) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec) return make_error(Errc::invalid_argument, fmt::format("{}: not JSON: {}", what, ec.message()));
  if (!v.is_object()) return make_error(Errc::invalid_argument, fmt::format("{}: expected a JSON object", what));
  return std::move(v.as_object());
}

Result<Service> service_from_json(const json::object& o, const std::string& key) {
  const std::string what = fmt::format("service '{}'", key);
  Service s;
  auto id = text_field(o, "ID", what);
  if (!id) return tl::unexpected(id.error());
  s.id = id->empty() ? key : *id;
  auto name = text_field(o, "Service", what);
  if (!name) return tl::unexpected(name.error());
  s.name = *name;
  auto address = text_field(o, "Address", what);
  if (!address) return tl::unexpected(address.error());
  s.address = *address;
  if (const json::value* port = o.if_contains("Port"); port != nullptr && !port->is_null()) {
    if (!port->is_int64() && !port->is_uint64()) return make_error(Errc::invalid_argument, what + ": Port is not an integer");
    s.port = port->to_number<std::int64_t>();
  }
  if (const json::value* tags = o.if_contains("Tags"); tags != nullptr && !tags->is_null()) {
    if (!tags->is_array()) return make_error(Errc::invalid_argument, what + ": Tags is not an array");
    for (const auto& t : tags->as_array()) {
      if (!t.is_string()) return make_error(Errc::invalid_argument, what + ": a tag is not a string");
      s.tags.emplace_back(t.as_string());
    }
  }
  if (const json::value* meta = o.if_contains("Meta"); meta != nullptr && !meta->is_null()) {
    if (!meta->is_object()) return make_error(Errc::invalid_argument, what + ": Meta is not an object");
    for (const auto& [k, v] : meta->as_object()) {
      if (!v.is_string()) return make_error(Errc::invalid_argument, what + ": a Meta value is not a string");
      s.meta[std::string(k)] = std::string(v.as_string());
    }
  }
  return s;
}

Result<Check> check_from_json(const json::object& o, const std::string& key) {
  const std::string what = fmt::format("check '{}'", key);
  Check c;
  struct Field {
    const char* name;
    std::string* out;
  };
  std::string id;
  for (const Field& f : {Field{"CheckID", &id}, Field{"Name", &c.name}, Field{"Status", &c.status},
                         Field{"Output", &c.output}, Field{"ServiceID", &c.service_id},
                         Field{"ServiceName", &c.service_name}, Field{"Notes", &c.notes}}) {
    auto v = text_field(o, f.name, what);
    if (!v) return tl::unexpected(v.error());
    *f.out = std::move(*v);
  }
  c.id = id.empty() ? key : id;
  if (c.status != "passing" && c.status != "warning" && c.status != "critical") {
    return make_error(Errc::invalid_argument, fmt::format("{}: unknown Status '{}'", what, c.status));
  }
  return c;
}

json::value cell(const std::string& s) { return json::value(s); }

Statement upsert_service(const std::string& node, const Service& s, std::int64_t now_ms) {
  return Statement{
      "INSERT INTO consul_services (node, id, name, tags, meta, port, address, updated_at) "
      "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (node, id) DO UPDATE SET name = excluded.name, "
      "tags = excluded.tags, meta = excluded.meta, port = excluded.port, address = excluded.address, "
      "updated_at = excluded.updated_at WHERE source IS NULL",
      json::array{cell(node), cell(s.id), cell(s.name), cell(tags_json(s)), cell(meta_json(s)), s.port,
                  cell(s.address), now_ms}};
}

Statement upsert_check(const std::string& node, const Check& c, std::int64_t now_ms) {
  return Statement{
      "INSERT INTO consul_checks (node, id, service_id, service_name, name, status, output, updated_at) "
      "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (node, id) DO UPDATE SET service_id = excluded.service_id, "
      "service_name = excluded.service_name, name = excluded.name, status = excluded.status, "
      "output = excluded.output, updated_at = excluded.updated_at WHERE source IS NULL",
      json::array{cell(node), cell(c.id), cell(c.service_id), cell(c.service_name), cell(c.name), cell(c.status),
                  cell(c.output), now_ms}};
}

Statement delete_row(const char* table, const std::string& node, const std::string& id) {
  return Statement{fmt::format("DELETE FROM {} WHERE node = ? AND id = ? AND source IS NULL", table),
                   json::array{cell(node), cell(id)}};
}

// Every row of our node whose id Consul does not have (a restored backup,
// rows written while the mirror was not running).
Statement delete_others(const char* table, const std::string& node, const json::array& ids) {
  return Statement{fmt::format("DELETE FROM {} WHERE node = ? AND source IS NULL AND id NOT IN "
                               "(SELECT value FROM json_each(?))",
                               table),
                   json::array{cell(node), cell(json::serialize(ids))}};
}

// Corrosion's update_services/update_checks: known ids Consul still has are
// rewritten when their fingerprint changed (or always, when |full|); known
// ids it lost are deleted; new ids are written.
template <class Item, class Upsert>
void plan_table(const char* table, const std::string& node, const std::map<std::string, std::string>& known,
                const std::map<std::string, Item>& current, bool full, Upsert upsert, std::vector<Statement>& out,
                Stats& stats, std::map<std::string, std::string>& next) {
  for (const auto& [id, item] : current) {
    std::string fp = fingerprint(item);
    auto it = known.find(id);
    if (full || it == known.end() || it->second != fp) {
      out.push_back(upsert(item));
      ++stats.upserted;
    }
    next[id] = std::move(fp);
  }
  for (const auto& [id, fp] : known) {
    if (current.count(id) == 0) {
      out.push_back(delete_row(table, node, id));
      ++stats.deleted;
    }
  }
  if (full) {
    json::array ids;
    for (const auto& [id, item] : current) ids.emplace_back(id);
    out.push_back(delete_others(table, node, ids));
  }
}

// Consul answers with an object keyed by id; each entry through |one|.
template <class Item, class One>
Result<std::map<std::string, Item>> parse_map(std::string_view body, std::string_view what, std::string_view kind,
                                              One one) {
  auto o = parse_object(body, what);
  if (!o) return tl::unexpected(o.error());
  std::map<std::string, Item> out;
  for (const auto& [k, v] : *o) {
    if (!v.is_object()) return make_error(Errc::invalid_argument, fmt::format("{} '{}' is not an object", kind, k));
    auto item = one(v.as_object(), std::string(k));
    if (!item) return tl::unexpected(item.error());
    out[item->id] = std::move(*item);
  }
  return out;
}

}  // namespace

Result<std::map<std::string, Service>> parse_services(std::string_view body) {
  return parse_map<Service>(body, "consul /v1/agent/services", "service", service_from_json);
}

Result<std::map<std::string, Check>> parse_checks(std::string_view body) {
  return parse_map<Check>(body, "consul /v1/agent/checks", "check", check_from_json);
}

std::string tags_json(const Service& s) {
  json::array a;
  for (const auto& t : s.tags) a.emplace_back(t);
  return json::serialize(a);
}

std::string meta_json(const Service& s) {
  json::object o;
  for (const auto& [k, v] : s.meta) o[k] = v;  // std::map order: sorted keys
  return json::serialize(o);
}

std::string fingerprint(const Service& s) {
  return json::serialize(json::array{cell(s.id), cell(s.name), cell(tags_json(s)), cell(meta_json(s)), s.port,
                                     cell(s.address)});
}

std::string fingerprint(const Check& c) {
  json::array a{cell(c.service_name), cell(c.service_id)};
  bool directed = false;
  boost::system::error_code ec;
  json::value notes = c.notes.empty() ? json::value() : json::parse(c.notes, ec);
  if (!ec && notes.is_object()) {
    if (const json::value* inc = notes.as_object().if_contains("hash_include"); inc != nullptr && inc->is_array()) {
      directed = true;
      for (const auto& f : inc->as_array()) {
        if (f == "status") a.emplace_back(c.status);
        if (f == "output") a.emplace_back(c.output);
      }
    }
  }
  if (!directed) a.emplace_back(c.status);
  return json::serialize(a);
}

Statement services_query(const std::string& node) {
  return Statement{"SELECT id, name, tags, meta, port, address FROM consul_services WHERE node = ? AND source IS NULL",
                   json::array{cell(node)}};
}

Statement checks_query(const std::string& node) {
  return Statement{
      "SELECT id, name, status, output, service_id, service_name FROM consul_checks WHERE node = ? AND source IS NULL",
      json::array{cell(node)}};
}

Result<Service> service_from_row(const json::array& cells) {
  if (cells.size() != 6) return make_error(Errc::invalid_argument, "consul_services row: expected 6 columns");
  auto text = [](const json::value& v) { return v.is_string() ? std::string(v.as_string()) : std::string(); };
  Service s;
  s.id = text(cells[0]);
  s.name = text(cells[1]);
  // Stored tags or meta that are not the JSON we write keep their text in a
  // form no Consul answer matches, so the first pass rewrites the row.
  boost::system::error_code ec;
  json::value tags = json::parse(text(cells[2]), ec);
  if (!ec && tags.is_array()) {
    for (const auto& t : tags.as_array()) s.tags.push_back(t.is_string() ? std::string(t.as_string()) : "\x01");
  } else {
    s.tags.push_back("\x01");
  }
  json::value meta = json::parse(text(cells[3]), ec);
  if (!ec && meta.is_object()) {
    for (const auto& [k, v] : meta.as_object()) s.meta[std::string(k)] = v.is_string() ? std::string(v.as_string()) : "\x01";
  } else {
    s.meta["\x01"] = "";
  }
  s.port = cells[4].is_int64() ? cells[4].as_int64() : -1;
  s.address = text(cells[5]);
  return s;
}

Result<Check> check_from_row(const json::array& cells) {
  if (cells.size() != 6) return make_error(Errc::invalid_argument, "consul_checks row: expected 6 columns");
  auto text = [](const json::value& v) { return v.is_string() ? std::string(v.as_string()) : std::string(); };
  Check c;
  c.id = text(cells[0]);
  c.name = text(cells[1]);
  c.status = text(cells[2]);
  c.output = text(cells[3]);
  c.service_id = text(cells[4]);
  c.service_name = text(cells[5]);
  return c;
}

void Mirror::seed(const std::vector<Service>& services, const std::vector<Check>& checks) {
  services_.clear();
  checks_.clear();
  for (const auto& s : services) services_[s.id] = fingerprint(s);
  for (const auto& c : checks) checks_[c.id] = fingerprint(c);
}

Mirror::Plan Mirror::plan(const std::map<std::string, Service>& services, const std::map<std::string, Check>& checks,
                          bool full, std::int64_t now_ms) const {
  Plan p;
  plan_table(
      "consul_services", node_, services_, services, full,
      [&](const Service& s) { return upsert_service(node_, s, now_ms); }, p.statements, p.services, p.next_services);
  plan_table(
      "consul_checks", node_, checks_, checks, full, [&](const Check& c) { return upsert_check(node_, c, now_ms); },
      p.statements, p.checks, p.next_checks);
  return p;
}

void Mirror::commit(Plan plan) {
  services_ = std::move(plan.next_services);
  checks_ = std::move(plan.next_checks);
}

}  // namespace patina::tools::consul
