#include "swim/codec.hpp"

#include <cstring>

#include "swim/assert.hpp"

namespace patina::swim {
namespace {

// Smallest encodings, used to bound counts before trusting them.
constexpr std::size_t identity_size_min = 16 + 1 + 1 + 8 + 2 + 1;
constexpr std::size_t update_size_min = identity_size_min + 8 + 1;

class Writer {
 public:
  explicit Writer(Bytes& out) : out_(out) {}
  void u8(std::uint8_t v) { out_.push_back(static_cast<std::byte>(v)); }
  void u16(std::uint16_t v) { le(v, 2); }
  void u32(std::uint32_t v) { le(v, 4); }
  void u64(std::uint64_t v) { le(v, 8); }
  void raw(const void* p, std::size_t n) {
    const auto* b = static_cast<const std::byte*>(p);
    out_.insert(out_.end(), b, b + n);
  }

 private:
  void le(std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out_.push_back(static_cast<std::byte>((v >> (8 * i)) & 0xFF));
  }
  Bytes& out_;
};

// Every read checks the remaining length first; a failed read latches ok_ =
// false and yields zeros, so callers check once at the end of a field group.
class Reader {
 public:
  explicit Reader(std::span<const std::byte> in) : in_(in) {}
  bool ok() const { return ok_; }
  std::size_t remaining() const { return in_.size() - pos_; }
  void fail() { ok_ = false; }
  std::uint8_t u8() { return static_cast<std::uint8_t>(le(1)); }
  std::uint16_t u16() { return static_cast<std::uint16_t>(le(2)); }
  std::uint32_t u32() { return static_cast<std::uint32_t>(le(4)); }
  std::uint64_t u64() { return le(8); }
  bool raw(void* dst, std::size_t n) {
    if (!ok_ || remaining() < n) return ok_ = false;
    if (n == 0) return true;  // |dst| may be null for an empty buffer
    std::memcpy(dst, in_.data() + pos_, n);
    pos_ += n;
    return true;
  }

 private:
  std::uint64_t le(std::size_t n) {
    if (!ok_ || remaining() < n) {
      ok_ = false;
      return 0;
    }
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < n; ++i)
      v |= static_cast<std::uint64_t>(std::to_integer<std::uint8_t>(in_[pos_ + i])) << (8 * i);
    pos_ += n;
    return v;
  }
  std::span<const std::byte> in_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

void write_identity(Writer& w, const Identity& id) {
  SWIM_ASSERT(!id.addr.empty());
  SWIM_ASSERT(id.addr.size() <= 255);
  w.raw(id.id.data(), id.id.size());
  w.u8(static_cast<std::uint8_t>(id.addr.size()));
  w.raw(id.addr.data(), id.addr.size());
  w.u64(id.ts);
  w.u16(id.cluster_id);
  w.u8(id.member_id ? 1 : 0);
  if (id.member_id) w.u16(*id.member_id);
}

bool read_identity(Reader& r, Identity& id) {
  r.raw(id.id.data(), id.id.size());
  const std::uint8_t len = r.u8();
  if (!r.ok() || len == 0) return false;
  id.addr.resize(len);
  if (!r.raw(id.addr.data(), len)) return false;
  id.ts = r.u64();
  id.cluster_id = r.u16();
  const std::uint8_t has_member = r.u8();
  if (has_member > 1) return false;
  if (has_member == 1)
    id.member_id = r.u16();
  else
    id.member_id.reset();
  return r.ok();
}

void write_update(Writer& w, const MemberUpdate& u) {
  write_identity(w, u.id);
  w.u64(u.incarnation);
  w.u8(static_cast<std::uint8_t>(u.state));
}

bool read_update(Reader& r, MemberUpdate& u) {
  if (!read_identity(r, u.id)) return false;
  u.incarnation = r.u64();
  const std::uint8_t st = r.u8();
  if (!r.ok() || st > static_cast<std::uint8_t>(MemberState::down)) return false;
  u.state = static_cast<MemberState>(st);
  return true;
}

void write_updates(Writer& w, const std::vector<MemberUpdate>& v) {
  SWIM_ASSERT(v.size() <= UINT16_MAX);
  w.u16(static_cast<std::uint16_t>(v.size()));
  for (const auto& u : v) write_update(w, u);
}

bool read_updates(Reader& r, std::vector<MemberUpdate>& v, std::size_t count) {
  // Never allocate from an untrusted count: each entry needs update_size_min.
  if (count > r.remaining() / update_size_min) return false;
  v.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    MemberUpdate u;
    if (!read_update(r, u)) return false;
    v.push_back(std::move(u));
  }
  return true;
}

}  // namespace

const char* to_string(MessageKind k) {
  switch (k) {
    case MessageKind::ping:
      return "ping";
    case MessageKind::ack:
      return "ack";
    case MessageKind::ping_req:
      return "ping_req";
    case MessageKind::indirect_ping:
      return "indirect_ping";
    case MessageKind::indirect_ack:
      return "indirect_ack";
    case MessageKind::forwarded_ack:
      return "forwarded_ack";
    case MessageKind::gossip:
      return "gossip";
    case MessageKind::announce:
      return "announce";
    case MessageKind::feed:
      return "feed";
    case MessageKind::turn_undead:
      return "turn_undead";
  }
  return "unknown";
}

bool has_probe_number(MessageKind k) {
  switch (k) {
    case MessageKind::ping:
    case MessageKind::ack:
    case MessageKind::ping_req:
    case MessageKind::indirect_ping:
    case MessageKind::indirect_ack:
    case MessageKind::forwarded_ack:
      return true;
    default:
      return false;
  }
}

bool has_other(MessageKind k) {
  switch (k) {
    case MessageKind::ping_req:
    case MessageKind::indirect_ping:
    case MessageKind::indirect_ack:
    case MessageKind::forwarded_ack:
      return true;
    default:
      return false;
  }
}

std::size_t encoded_size(const Identity& id) {
  return 16 + 1 + id.addr.size() + 8 + 2 + 1 + (id.member_id ? 2 : 0);
}

std::size_t encoded_size(const MemberUpdate& u) { return encoded_size(u.id) + 8 + 1; }

std::size_t encoded_size_without_lists(const Packet& p) {
  std::size_t n = 1 + 2 + 1 + encoded_size(p.src) + 8 + 1;
  if (p.dst) n += encoded_size(*p.dst);
  if (has_probe_number(p.kind)) n += 4;
  if (has_other(p.kind)) n += encoded_size(p.other);
  if (p.kind == MessageKind::feed) n += 2;
  if (p.kind == MessageKind::announce) n += 2 + p.digest.size();
  return n + 2;
}

void encode(const Packet& p, Bytes& out) {
  Writer w(out);
  w.u8(protocol_version);
  w.u16(p.cluster_id);
  w.u8(static_cast<std::uint8_t>(p.kind));
  write_identity(w, p.src);
  w.u64(p.src_incarnation);
  w.u8(p.dst ? 1 : 0);
  if (p.dst) write_identity(w, *p.dst);
  if (has_probe_number(p.kind)) w.u32(p.probe_number);
  if (has_other(p.kind)) write_identity(w, p.other);
  if (p.kind == MessageKind::feed) write_updates(w, p.feed);
  if (p.kind == MessageKind::announce) {
    SWIM_ASSERT(p.digest.size() <= UINT16_MAX);
    w.u16(static_cast<std::uint16_t>(p.digest.size()));
    w.raw(p.digest.data(), p.digest.size());
  }
  write_updates(w, p.updates);
}

Bytes encode(const Packet& p) {
  Bytes out;
  out.reserve(encoded_size_without_lists(p) + 64 * p.updates.size());
  encode(p, out);
  return out;
}

Result<Packet> decode(std::span<const std::byte> bytes) {
  Reader r(bytes);
  const std::uint8_t version = r.u8();
  if (!r.ok()) return fail(Errc::malformed_packet, "empty packet");
  if (version != protocol_version) return fail(Errc::unsupported_version, "packet version");
  Packet p;
  p.cluster_id = r.u16();
  const std::uint8_t kind = r.u8();
  if (!r.ok()) return fail(Errc::malformed_packet, "truncated header");
  if (kind == 0 || kind > message_kind_max) return fail(Errc::malformed_packet, "message kind");
  p.kind = static_cast<MessageKind>(kind);
  if (!read_identity(r, p.src)) return fail(Errc::malformed_packet, "src identity");
  p.src_incarnation = r.u64();
  const std::uint8_t has_dst = r.u8();
  if (!r.ok() || has_dst > 1) return fail(Errc::malformed_packet, "dst flag");
  if (has_dst == 1) {
    p.dst.emplace();
    if (!read_identity(r, *p.dst)) return fail(Errc::malformed_packet, "dst identity");
  }
  if (has_probe_number(p.kind)) {
    p.probe_number = r.u32();
    if (!r.ok()) return fail(Errc::malformed_packet, "probe number");
  }
  if (has_other(p.kind) && !read_identity(r, p.other))
    return fail(Errc::malformed_packet, "other identity");
  if (p.kind == MessageKind::feed) {
    const std::uint16_t n = r.u16();
    if (!r.ok() || !read_updates(r, p.feed, n)) return fail(Errc::malformed_packet, "feed");
  }
  if (p.kind == MessageKind::announce) {
    const std::uint16_t len = r.u16();
    if (!r.ok() || len > r.remaining()) return fail(Errc::malformed_packet, "digest");
    p.digest.resize(len);
    if (!r.raw(p.digest.data(), len)) return fail(Errc::malformed_packet, "digest");
  }
  const std::uint16_t n = r.u16();
  if (!r.ok() || !read_updates(r, p.updates, n)) return fail(Errc::malformed_packet, "updates");
  if (r.remaining() != 0) return fail(Errc::malformed_packet, "trailing bytes");
  return p;
}

Bytes encode_snapshot(std::span<const MemberUpdate> members) {
  Bytes out;
  Writer w(out);
  SWIM_ASSERT(members.size() <= UINT32_MAX);
  w.u8(snapshot_version);
  w.u32(static_cast<std::uint32_t>(members.size()));
  for (const auto& m : members) write_update(w, m);
  return out;
}

Result<std::vector<MemberUpdate>> decode_snapshot(std::span<const std::byte> bytes) {
  Reader r(bytes);
  const std::uint8_t version = r.u8();
  if (!r.ok() || version != snapshot_version)
    return fail(Errc::malformed_snapshot, "snapshot version");
  const std::uint32_t n = r.u32();
  std::vector<MemberUpdate> out;
  if (!r.ok() || !read_updates(r, out, n)) return fail(Errc::malformed_snapshot, "members");
  if (r.remaining() != 0) return fail(Errc::malformed_snapshot, "trailing bytes");
  return out;
}

}  // namespace patina::swim
