// Writes the seed corpora of the fuzz targets from the real encoders, so the
// seeds follow the wire format: build/fuzz (clang) make_seeds <corpus dir>.
// The hand-made edge cases beside them are kept in the repository as files.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "crdt/packed_pk.hpp"
#include "io/wire.hpp"
#include "swim/codec.hpp"

namespace fs = std::filesystem;
using namespace patina;

namespace {

void write(const fs::path& dir, const std::string& name, const void* data, std::size_t n) {
  fs::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary).write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
}
template <class Bytes>
void write(const fs::path& dir, const std::string& name, const Bytes& b) {
  write(dir, name, b.data(), b.size());
}
void write_text(const fs::path& dir, const std::string& name, const std::string& s) { write(dir, name, s.data(), s.size()); }

crdt::Changeset changeset(int n) {
  crdt::Changeset cs;
  cs.actor.fill(0xab);
  cs.version = 7;
  cs.seqs = {0, n - 1};
  cs.last_seq = n - 1;
  cs.ts = 42;
  for (int i = 0; i < n; ++i) {
    crdt::Change c;
    c.table = i % 3 == 0 ? "machines" : "services";
    c.pk = crdt::PackedPk::pack(std::vector<crdt::Value>{std::string("m") + std::to_string(i / 2)});
    c.cid = i % 2 == 0 ? "-1" : "state";
    if (i % 5 == 1) c.val = std::int64_t{-i};
    if (i % 5 == 2) c.val = 1.5 * i;
    if (i % 5 == 3) c.val = std::string(static_cast<std::size_t>(i), 'x');
    if (i % 5 == 4) c.val = crdt::Bytes{0, 255, 7};
    c.col_version = i + 1;
    c.db_version = i % 4 == 0 ? 3 : 7;
    if (i % 3 == 0) c.site_id.fill(0xcd); else c.site_id.fill(0xab);
    c.cl = 1 + (i % 3);
    c.seq = i;
    c.ts = i % 2 == 0 ? 42 : 43;
    cs.changes.push_back(c);
  }
  return cs;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_seeds <corpus dir>\n");
    return 2;
  }
  fs::path root = argv[1];
  // wire
  for (int n : {1, 2, 9, 40}) {
    io::wire::ChangesetFrame f{.cluster_id = 3, .hops = static_cast<std::uint8_t>(n % 4), .changeset = changeset(n)};
    if (n % 2 == 0) {  // a tree frame with a range to forward to
      f.tree_first = static_cast<std::uint16_t>(n * 1000);
      f.tree_last = 0xfff0;
    }
    auto plain = io::wire::encode(f);
    write(root / "fuzz_wire", "changeset-" + std::to_string(n), plain);
    auto packed = io::wire::compress(plain, 3);
    if (!packed.empty()) write(root / "fuzz_wire", "compressed-" + std::to_string(n), packed);
  }
  crdt::SyncState st;
  st.actor.fill(1);
  crdt::SiteId other;
  other.fill(2);
  st.heads[other] = 100;
  st.need[other] = crdt::RangeSet{{3, 9}, {20, 20}};
  st.partial_need[other][50] = crdt::RangeSet{{0, 4}};
  write(root / "fuzz_wire", "sync-request", io::wire::encode(io::wire::SyncRequestFrame{0, st}));
  io::wire::SyncResponseFrame resp;
  resp.changesets.push_back(io::wire::encode(io::wire::ChangesetFrame{.cluster_id = 0, .hops = 0, .changeset = changeset(3)}));
  resp.empty.push_back({other, crdt::Range{1, 5}});
  write(root / "fuzz_wire", "sync-response", io::wire::encode(resp));
  // swim
  swim::Identity a{}, b{};
  a.id.fill(1);
  a.addr = "127.0.0.1:4001";
  a.ts = 5;
  b.id.fill(2);
  b.addr = "[::1]:4002";
  b.ts = 6;
  b.member_id = 3;
  std::vector<swim::MemberUpdate> members{{a, 1, swim::MemberState::alive}, {b, 9, swim::MemberState::down}};
  write(root / "fuzz_swim_packet", "snapshot", swim::encode_snapshot(members));
  for (std::uint8_t k = 1; k <= swim::message_kind_max; ++k) {
    swim::Packet p;
    p.cluster_id = 2;
    p.kind = static_cast<swim::MessageKind>(k);
    p.src = a;
    p.src_incarnation = 3;
    if (p.kind != swim::MessageKind::announce) p.dst = b;
    p.probe_number = 77;
    p.other = b;
    if (p.kind == swim::MessageKind::feed) p.feed = members;
    if (p.kind == swim::MessageKind::announce) p.digest = swim::Bytes(16, std::byte{0x5a});
    p.updates = members;
    write(root / "fuzz_swim_packet", "packet-" + std::to_string(k), swim::encode(p));
  }
  // packed pks
  write(root / "fuzz_packed_pk", "text", crdt::PackedPk::pack(std::vector<crdt::Value>{std::string("m1")}));
  write(root / "fuzz_packed_pk", "mixed",
        crdt::PackedPk::pack(std::vector<crdt::Value>{std::int64_t{-300}, 2.5, crdt::Bytes{1, 2}, crdt::Null{},
                                                      std::int64_t{1} << 40}));
  // statements, admin frames and configs are text: hand-written seeds.
  write_text(root / "fuzz_statement", "forms",
             R"J(["SELECT 1", ["INSERT INTO t VALUES (?, ?)", [1, "a"]], ["UPDATE t SET a = :a", {"a": [1, 2]}], {"query": "SELECT ?", "params": [null, 1.5, true]}])J");
  write_text(root / "fuzz_admin", "cluster", R"J({"Cluster":{"SetId":7}})J");
  write_text(root / "fuzz_admin", "sync", R"J({"Sync":"Generate"})J");
  write_text(root / "fuzz_config", "full", R"T([db]
path = "/var/lib/patina/state.db"
schema_paths = ["/etc/patina/schema"]
[api]
addr = ["127.0.0.1:8080", "[::1]:8081"]
authz.bearer-token = "secret"
[gossip]
addr = "0.0.0.0:8787"
bootstrap = ["10.0.0.1:8787", "peer.example:8787@10.0.0.53"]
plaintext = true
compression = { enabled = true, level = 3 }
[admin]
path = "/run/patina/admin.sock"
[perf]
apply_queue_timeout = 10
)T");
  std::printf("seeds written under %s\n", root.c_str());
  return 0;
}
