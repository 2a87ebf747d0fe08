#include "io/wire.hpp"

#include <zstd.h>

#include <cmath>
#include <cstring>
#include <memory>

#include <fmt/format.h>

#include "io/zstd_dictionaries.hpp"

namespace patina::io::wire {

namespace {

class Writer {
 public:
  void u8(std::uint8_t v) { out_.push_back(static_cast<std::byte>(v)); }
  void u16(std::uint16_t v) { le(v, 2); }
  void u32(std::uint32_t v) { le(v, 4); }
  void u64(std::uint64_t v) { le(v, 8); }
  void i64(std::int64_t v) { le(static_cast<std::uint64_t>(v), 8); }
  void raw(const void* p, std::size_t n) {
    auto* b = static_cast<const std::byte*>(p);
    out_.insert(out_.end(), b, b + n);
  }
  void str16(const std::string& s) {
    u16(static_cast<std::uint16_t>(s.size()));
    raw(s.data(), s.size());
  }
  void varint(std::uint64_t v) {
    while (v >= 0x80) {
      out_.push_back(static_cast<std::byte>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    out_.push_back(static_cast<std::byte>(v));
  }
  // Zig-zag: small negative and positive numbers both stay short.
  void svarint(std::int64_t v) { varint((static_cast<std::uint64_t>(v) << 1) ^ static_cast<std::uint64_t>(v >> 63)); }
  void bytes(const void* p, std::size_t n) {
    varint(n);
    raw(p, n);
  }
  std::vector<std::byte> take() { return std::move(out_); }

 private:
  void le(std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out_.push_back(static_cast<std::byte>((v >> (8 * i)) & 0xff));
  }
  std::vector<std::byte> out_;
};

class Reader {
 public:
  explicit Reader(std::span<const std::byte> in) : in_(in) {}
  bool ok() const { return ok_; }
  bool done() const { return pos_ == in_.size(); }
  std::uint64_t le(int n) {
    if (!need(static_cast<std::size_t>(n))) return 0;
    std::uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= std::uint64_t(std::to_integer<std::uint8_t>(in_[pos_ + i])) << (8 * i);
    pos_ += static_cast<std::size_t>(n);
    return v;
  }
  std::uint8_t u8() { return static_cast<std::uint8_t>(le(1)); }
  std::uint16_t u16() { return static_cast<std::uint16_t>(le(2)); }
  std::uint32_t u32() { return static_cast<std::uint32_t>(le(4)); }
  std::uint64_t u64() { return le(8); }
  std::int64_t i64() { return static_cast<std::int64_t>(le(8)); }
  void raw(void* p, std::size_t n) {
    if (n == 0 || !need(n)) return;  // memcpy of nothing may still not take null
    std::memcpy(p, in_.data() + pos_, n);
    pos_ += n;
  }
  std::uint64_t varint() {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (!need(1)) return 0;
      auto b = std::to_integer<std::uint8_t>(in_[pos_++]);
      v |= std::uint64_t(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return v;
    }
    ok_ = false;  // more than 10 bytes: not a varint we wrote
    return 0;
  }
  std::int64_t svarint() {
    std::uint64_t z = varint();
    return static_cast<std::int64_t>((z >> 1) ^ (~(z & 1) + 1));
  }
  // A length that must fit in what is left of the input.
  std::size_t length() {
    std::uint64_t n = varint();
    if (!ok_ || n > in_.size() - pos_) {
      ok_ = false;
      return 0;
    }
    return static_cast<std::size_t>(n);
  }
  std::string str(std::size_t n) {
    std::string s;
    if (!need(n)) return s;
    s.assign(reinterpret_cast<const char*>(in_.data() + pos_), n);
    pos_ += n;
    return s;
  }

 private:
  bool need(std::size_t n) {
    if (!ok_ || in_.size() - pos_ < n) {
      ok_ = false;
      return false;
    }
    return true;
  }
  std::span<const std::byte> in_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

enum : std::uint8_t { t_null = 0, t_int = 1, t_real = 2, t_text = 3, t_blob = 4 };

// Per-change flags: what a change shares with the previous one or with its
// frame, and so is not repeated on the wire.
enum : std::uint8_t {
  f_same_table = 1,
  f_same_pk = 2,
  f_actor_site = 4,     // site_id == the frame's actor
  f_frame_version = 8,  // db_version == the frame's version
  f_frame_ts = 16,      // ts == the frame's ts
  f_all = 31,
};

}  // namespace

std::vector<std::byte> encode(const ChangesetFrame& frame) {
  Writer w;
  const auto& cs = frame.changeset;
  w.u8(version);
  w.u8(1);
  w.u16(frame.cluster_id);
  w.u8(frame.hops);
  w.u16(frame.tree_first);
  w.u16(frame.tree_last);
  w.raw(cs.actor.data(), cs.actor.size());
  w.svarint(cs.version);
  w.svarint(cs.seqs.start);
  w.svarint(cs.seqs.end);
  w.svarint(cs.last_seq);
  w.u64(cs.ts);
  w.varint(cs.changes.size());
  const crdt::Change* prev = nullptr;
  for (const auto& c : cs.changes) {
    std::uint8_t flags = 0;
    if (prev != nullptr && prev->table == c.table) flags |= f_same_table;
    if (prev != nullptr && prev->pk == c.pk) flags |= f_same_pk;
    if (c.site_id == cs.actor) flags |= f_actor_site;
    if (c.db_version == cs.version) flags |= f_frame_version;
    if (c.ts == cs.ts) flags |= f_frame_ts;
    w.u8(flags);
    if ((flags & f_same_table) == 0) w.bytes(c.table.data(), c.table.size());
    if ((flags & f_same_pk) == 0) w.bytes(c.pk.data(), c.pk.size());
    w.bytes(c.cid.data(), c.cid.size());
    std::visit(
        [&](const auto& v) {
          using V = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<V, crdt::Null>) {
            w.u8(t_null);
          } else if constexpr (std::is_same_v<V, std::int64_t>) {
            w.u8(t_int);
            w.svarint(v);
          } else if constexpr (std::is_same_v<V, double>) {
            w.u8(t_real);
            std::uint64_t bits = 0;
            std::memcpy(&bits, &v, 8);
            w.u64(bits);
          } else if constexpr (std::is_same_v<V, std::string>) {
            w.u8(t_text);
            w.bytes(v.data(), v.size());
          } else {
            w.u8(t_blob);
            w.bytes(v.data(), v.size());
          }
        },
        c.val);
    w.svarint(c.col_version);
    if ((flags & f_frame_version) == 0) w.svarint(c.db_version);
    if ((flags & f_actor_site) == 0) w.raw(c.site_id.data(), c.site_id.size());
    w.svarint(c.cl);
    w.svarint(c.seq);
    if ((flags & f_frame_ts) == 0) w.u64(c.ts);
    prev = &c;
  }
  return w.take();
}

std::vector<std::byte> compress(std::span<const std::byte> frame, int level, const ZstdDictionaries* dicts) {
  if (frame.size() < 4) return {};
  std::vector<std::byte> out(compressed_header + ZSTD_compressBound(frame.size()));
  // With zstd's content checksum, a corrupted frame fails to inflate
  // instead of inflating to different, still well-formed changes.
  std::unique_ptr<ZSTD_CCtx, decltype(&ZSTD_freeCCtx)> cctx(ZSTD_createCCtx(), &ZSTD_freeCCtx);
  if (!cctx) return {};
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, level);
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_checksumFlag, 1);
  if (dicts != nullptr && dicts->encoder() != nullptr) {
    if (ZSTD_isError(ZSTD_CCtx_refCDict(cctx.get(), dicts->encoder()))) return {};
  }
  std::size_t n = ZSTD_compress2(cctx.get(), out.data() + compressed_header, out.size() - compressed_header,
                                 frame.data(), frame.size());
  if (ZSTD_isError(n) || compressed_header + n >= frame.size()) return {};
  out.resize(compressed_header + n);
  // Same version and cluster id as the frame inside, so a receiver can drop
  // another cluster's frame without inflating it.
  out[0] = std::byte{version};
  out[1] = std::byte{compressed_kind};
  out[2] = frame[2];
  out[3] = frame[3];
  for (int i = 4; i < 9; ++i) out[i] = frame[i];  // hops, tree range: patched in place when forwarding
  auto raw = static_cast<std::uint32_t>(frame.size());
  for (int i = 0; i < 4; ++i) out[9 + i] = static_cast<std::byte>(raw >> (8 * i));
  return out;
}

std::optional<std::uint8_t> hops_of(std::span<const std::byte> frame) {
  if (frame.size() < 9 || frame[0] != std::byte{version}) return std::nullopt;
  if (frame[1] != std::byte{1} && frame[1] != std::byte{compressed_kind}) return std::nullopt;
  return std::to_integer<std::uint8_t>(frame[4]);
}

void set_hops(std::vector<std::byte>& frame, std::uint8_t hops) {
  if (hops_of(frame)) frame[4] = std::byte{hops};
}

std::optional<std::pair<std::uint16_t, std::uint16_t>> tree_range_of(std::span<const std::byte> frame) {
  if (!hops_of(frame)) return std::nullopt;
  auto at = [&](int i) {
    return static_cast<std::uint16_t>(std::to_integer<unsigned>(frame[i]) | std::to_integer<unsigned>(frame[i + 1]) << 8);
  };
  return std::pair{at(5), at(7)};
}

void set_tree_range(std::vector<std::byte>& frame, std::uint16_t first, std::uint16_t last) {
  if (!hops_of(frame)) return;
  frame[5] = static_cast<std::byte>(first & 0xff);
  frame[6] = static_cast<std::byte>(first >> 8);
  frame[7] = static_cast<std::byte>(last & 0xff);
  frame[8] = static_cast<std::byte>(last >> 8);
}

Result<ChangesetFrame> decode(std::span<const std::byte> bytes, const ZstdDictionaries* dicts) {
  if (bytes.size() >= compressed_header && bytes[0] == std::byte{version} && bytes[1] == std::byte{compressed_kind}) {
    std::uint32_t raw = 0;
    for (int i = 0; i < 4; ++i) raw |= static_cast<std::uint32_t>(bytes[9 + i]) << (8 * i);
    if (raw > inflated_max) return make_error(Errc::protocol, fmt::format("compressed frame claims {} bytes", raw));
    const std::byte* z = bytes.data() + compressed_header;
    const std::size_t z_size = bytes.size() - compressed_header;
    std::vector<std::byte> inflated(raw);
    std::size_t n = 0;
    if (const unsigned dict = ZSTD_getDictID_fromFrame(z, z_size); dict != 0) {
      const ZSTD_DDict* d = dicts ? dicts->decoder(dict) : nullptr;
      if (d == nullptr) {
        return make_error(Errc::not_found,
                          fmt::format("frame compressed with zstd dictionary {}, which is not in this node's "
                                      "gossip.compression.dict_dir",
                                      dict));
      }
      thread_local std::unique_ptr<ZSTD_DCtx, decltype(&ZSTD_freeDCtx)> dctx(ZSTD_createDCtx(), &ZSTD_freeDCtx);
      if (!dctx) return make_error(Errc::busy, "zstd: no memory for a decompression context");
      n = ZSTD_decompress_usingDDict(dctx.get(), inflated.data(), inflated.size(), z, z_size, d);
    } else {
      n = ZSTD_decompress(inflated.data(), inflated.size(), z, z_size);
    }
    if (ZSTD_isError(n) || n != raw) return make_error(Errc::protocol, "corrupt compressed frame");
    if (raw >= 2 && inflated[1] == std::byte{compressed_kind}) return make_error(Errc::protocol, "nested compression");
    auto inner = decode(inflated, dicts);
    if (inner) {  // the envelope's hops and range are the live ones
      inner->hops = std::to_integer<std::uint8_t>(bytes[4]);
      auto range = tree_range_of(bytes);
      inner->tree_first = range->first;
      inner->tree_last = range->second;
    }
    return inner;
  }
  Reader r(bytes);
  ChangesetFrame f;
  std::uint8_t v = r.u8();
  std::uint8_t kind = r.u8();
  if (!r.ok()) return make_error(Errc::protocol, "truncated frame header");
  if (v != version) return make_error(Errc::protocol, fmt::format("unknown wire version {}", v));
  if (kind != 1) return make_error(Errc::protocol, fmt::format("unknown frame kind {}", kind));
  f.cluster_id = r.u16();
  f.hops = r.u8();
  f.tree_first = r.u16();
  f.tree_last = r.u16();
  auto& cs = f.changeset;
  r.raw(cs.actor.data(), cs.actor.size());
  cs.version = r.svarint();
  cs.seqs.start = r.svarint();
  cs.seqs.end = r.svarint();
  cs.last_seq = r.svarint();
  cs.ts = r.u64();
  std::uint64_t n = r.varint();
  if (!r.ok()) return make_error(Errc::protocol, "truncated changeset header");
  if (n > changes_max) return make_error(Errc::protocol, fmt::format("changeset claims {} changes", n));
  if (cs.version <= 0 || cs.seqs.start < 0 || cs.seqs.end < cs.seqs.start || cs.last_seq < cs.seqs.end) {
    return make_error(Errc::protocol, "changeset version or seq range out of bounds");
  }
  for (std::uint64_t i = 0; i < n && r.ok(); ++i) {
    crdt::Change c;
    std::uint8_t flags = r.u8();
    if ((flags & ~f_all) != 0) return make_error(Errc::protocol, "unknown change flags");
    if (cs.changes.empty() && (flags & (f_same_table | f_same_pk)) != 0) {
      return make_error(Errc::protocol, "first change refers to a previous one");
    }
    if ((flags & f_same_table) != 0) {
      c.table = cs.changes.back().table;
    } else {
      c.table = r.str(r.length());
    }
    if ((flags & f_same_pk) != 0) {
      c.pk = cs.changes.back().pk;
    } else {
      std::size_t pk_len = r.length();
      c.pk.resize(pk_len);
      r.raw(c.pk.data(), pk_len);
    }
    c.cid = r.str(r.length());
    switch (r.u8()) {
      case t_null: c.val = crdt::Null{}; break;
      case t_int: c.val = r.svarint(); break;
      case t_real: {
        std::uint64_t bits = r.u64();
        double d = 0;
        std::memcpy(&d, &bits, 8);
        // SQLite has no NaN (it stores NULL), so no honest peer sends one;
        // accepting it would write NULL here while the sender holds a value.
        if (std::isnan(d)) return make_error(Errc::protocol, "REAL value is NaN");
        c.val = d;
        break;
      }
      case t_text: c.val = r.str(r.length()); break;
      case t_blob: {
        std::size_t len = r.length();
        crdt::Bytes b(len);
        r.raw(b.data(), len);
        c.val = std::move(b);
        break;
      }
      default:
        if (!r.ok()) break;
        return make_error(Errc::protocol, "unknown value type");
    }
    c.col_version = r.svarint();
    c.db_version = (flags & f_frame_version) != 0 ? cs.version : r.svarint();
    if ((flags & f_actor_site) != 0) {
      c.site_id = cs.actor;
    } else {
      r.raw(c.site_id.data(), c.site_id.size());
    }
    c.cl = r.svarint();
    c.seq = r.svarint();
    c.ts = (flags & f_frame_ts) != 0 ? cs.ts : r.u64();
    if (r.ok()) cs.changes.push_back(std::move(c));
  }
  if (!r.ok()) return make_error(Errc::protocol, "truncated change");
  if (!r.done()) return make_error(Errc::protocol, "trailing bytes after the changeset");
  return f;
}

namespace {

constexpr std::uint32_t entries_max = 1'000'000;

void put_site(Writer& w, const crdt::SiteId& id) { w.raw(id.data(), id.size()); }
crdt::SiteId get_site(Reader& r) {
  crdt::SiteId id{};
  r.raw(id.data(), id.size());
  return id;
}
void put_ranges(Writer& w, const crdt::RangeSet& set) {
  auto ranges = set.ranges();
  w.u32(static_cast<std::uint32_t>(ranges.size()));
  for (const auto& x : ranges) {
    w.i64(x.start);
    w.i64(x.end);
  }
}
bool get_ranges(Reader& r, crdt::RangeSet& out) {
  std::uint32_t n = r.u32();
  if (!r.ok() || n > entries_max) return false;
  for (std::uint32_t i = 0; i < n && r.ok(); ++i) {
    crdt::Range x{r.i64(), 0};
    x.end = r.i64();
    if (!r.ok() || x.end < x.start) return false;
    out.insert(x);
  }
  return r.ok();
}

}  // namespace

std::vector<std::byte> encode(const SyncRequestFrame& frame) {
  Writer w;
  w.u8(version);
  w.u8(2);
  w.u16(frame.cluster_id);
  const auto& st = frame.state;
  put_site(w, st.actor);
  w.u32(static_cast<std::uint32_t>(st.heads.size()));
  for (const auto& [site, head] : st.heads) {
    put_site(w, site);
    w.i64(head);
  }
  w.u32(static_cast<std::uint32_t>(st.need.size()));
  for (const auto& [site, set] : st.need) {
    put_site(w, site);
    put_ranges(w, set);
  }
  w.u32(static_cast<std::uint32_t>(st.partial_need.size()));
  for (const auto& [site, versions] : st.partial_need) {
    put_site(w, site);
    w.u32(static_cast<std::uint32_t>(versions.size()));
    for (const auto& [v, seqs] : versions) {
      w.i64(v);
      put_ranges(w, seqs);
    }
  }
  return w.take();
}

Result<SyncRequestFrame> decode_sync_request(std::span<const std::byte> bytes) {
  Reader r(bytes);
  SyncRequestFrame f;
  if (r.u8() != version || r.u8() != 2 || !r.ok()) return make_error(Errc::protocol, "not a sync request frame");
  f.cluster_id = r.u16();
  auto& st = f.state;
  st.actor = get_site(r);
  std::uint32_t heads = r.u32();
  if (!r.ok() || heads > entries_max) return make_error(Errc::protocol, "bad sync request heads");
  for (std::uint32_t i = 0; i < heads && r.ok(); ++i) {
    auto site = get_site(r);
    st.heads[site] = r.i64();
  }
  std::uint32_t needs = r.u32();
  if (!r.ok() || needs > entries_max) return make_error(Errc::protocol, "bad sync request needs");
  for (std::uint32_t i = 0; i < needs && r.ok(); ++i) {
    auto site = get_site(r);
    if (!get_ranges(r, st.need[site])) return make_error(Errc::protocol, "bad sync request need ranges");
  }
  std::uint32_t partials = r.u32();
  if (!r.ok() || partials > entries_max) return make_error(Errc::protocol, "bad sync request partials");
  for (std::uint32_t i = 0; i < partials && r.ok(); ++i) {
    auto site = get_site(r);
    std::uint32_t versions = r.u32();
    if (!r.ok() || versions > entries_max) return make_error(Errc::protocol, "bad sync request partial versions");
    for (std::uint32_t j = 0; j < versions && r.ok(); ++j) {
      std::int64_t v = r.i64();
      if (!get_ranges(r, st.partial_need[site][v])) return make_error(Errc::protocol, "bad sync request seqs");
    }
  }
  if (!r.ok() || !r.done()) return make_error(Errc::protocol, "truncated or trailing sync request");
  return f;
}

std::vector<std::byte> encode(const SyncResponseFrame& frame) {
  Writer w;
  w.u8(version);
  w.u8(3);
  w.u32(static_cast<std::uint32_t>(frame.changesets.size()));
  for (const auto& cs : frame.changesets) {
    w.u32(static_cast<std::uint32_t>(cs.size()));
    w.raw(cs.data(), cs.size());
  }
  w.u32(static_cast<std::uint32_t>(frame.empty.size()));
  for (const auto& [site, range] : frame.empty) {
    put_site(w, site);
    w.i64(range.start);
    w.i64(range.end);
  }
  return w.take();
}

Result<SyncResponseFrame> decode_sync_response(std::span<const std::byte> bytes) {
  Reader r(bytes);
  SyncResponseFrame f;
  if (r.u8() != version || r.u8() != 3 || !r.ok()) return make_error(Errc::protocol, "not a sync response frame");
  std::uint32_t n = r.u32();
  if (!r.ok() || n > entries_max) return make_error(Errc::protocol, "bad sync response count");
  for (std::uint32_t i = 0; i < n && r.ok(); ++i) {
    std::uint32_t len = r.u32();
    if (!r.ok() || len > bytes.size()) return make_error(Errc::protocol, "bad changeset length in sync response");
    std::vector<std::byte> cs(len);
    r.raw(cs.data(), len);
    f.changesets.push_back(std::move(cs));
  }
  std::uint32_t e = r.u32();
  if (!r.ok() || e > entries_max) return make_error(Errc::protocol, "bad sync response empties");
  for (std::uint32_t i = 0; i < e && r.ok(); ++i) {
    auto site = get_site(r);
    crdt::Range x{r.i64(), 0};
    x.end = r.i64();
    f.empty.emplace_back(site, x);
  }
  if (!r.ok() || !r.done()) return make_error(Errc::protocol, "truncated or trailing sync response");
  return f;
}

}  // namespace patina::io::wire
