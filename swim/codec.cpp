#include "swim/codec.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <array>
#include <charconv>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "swim/assert.hpp"

namespace patina::swim {
namespace {

// Smallest encodings, used to bound counts before trusting them: a one-byte
// text address, no optional field, a one-byte incarnation.
constexpr std::size_t identity_size_min = 16 + 1 + 1 + 1 + 8;
constexpr std::size_t update_size_min = identity_size_min + 1 + 1;
// Version 1, still the snapshot format.
constexpr std::size_t identity_v1_size_min = 16 + 1 + 1 + 8 + 2 + 1;
constexpr std::size_t update_v1_size_min = identity_v1_size_min + 8 + 1;

// Identity flags (version 2).
constexpr std::uint8_t addr_text = 0;
constexpr std::uint8_t addr_ipv4 = 1;
constexpr std::uint8_t addr_ipv6 = 2;
constexpr std::uint8_t flag_addr_mask = 0x03;
constexpr std::uint8_t flag_member_id = 0x04;
constexpr std::uint8_t flag_cluster_id = 0x08;
constexpr std::uint8_t flags_known = 0x0F;
constexpr std::uint8_t kind_has_dst = 0x80;

std::size_t varint_size(std::uint64_t v) {
  std::size_t n = 1;
  for (; v >= 0x80; v >>= 7) ++n;
  return n;
}

// An address in binary form; only built when printing it gives the text back.
struct BinaryAddr {
  std::uint8_t form = addr_text;
  std::array<std::uint8_t, 16> ip{};
  std::uint16_t port = 0;
  std::size_t ip_size() const { return form == addr_ipv4 ? 4 : 16; }
};

// "ip:port" or "[ip6]:port" -> its text again, as inet_ntop prints it.
std::string format_addr(const BinaryAddr& a) {
  char buf[INET6_ADDRSTRLEN] = {};
  const int family = a.form == addr_ipv4 ? AF_INET : AF_INET6;
  if (::inet_ntop(family, a.ip.data(), buf, sizeof buf) == nullptr) return {};
  std::string out;
  if (a.form == addr_ipv6) out += '[';
  out += buf;
  if (a.form == addr_ipv6) out += ']';
  out += ':';
  out += std::to_string(a.port);
  return out;
}

std::optional<BinaryAddr> binary_addr(std::string_view text) {
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos || colon + 1 >= text.size()) return std::nullopt;
  std::string_view host = text.substr(0, colon);
  const std::string_view port = text.substr(colon + 1);
  BinaryAddr a;
  unsigned port_value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), port_value);
  if (ec != std::errc{} || end != port.data() + port.size() || port_value > 65535) return std::nullopt;
  a.port = static_cast<std::uint16_t>(port_value);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    a.form = addr_ipv6;
    host = host.substr(1, host.size() - 2);
  } else {
    a.form = addr_ipv4;
  }
  char buf[INET6_ADDRSTRLEN + 1] = {};
  if (host.size() >= sizeof buf) return std::nullopt;
  std::memcpy(buf, host.data(), host.size());
  if (::inet_pton(a.form == addr_ipv4 ? AF_INET : AF_INET6, buf, a.ip.data()) != 1) return std::nullopt;
  // Leading zeros, "+1", upper-case hex, uncompressed zeros: not canonical,
  // so they travel as text and come back byte for byte.
  if (format_addr(a) != text) return std::nullopt;
  return a;
}

class Writer {
 public:
  explicit Writer(Bytes& out) : out_(out) {}
  void u8(std::uint8_t v) { out_.push_back(static_cast<std::byte>(v)); }
  void u16(std::uint16_t v) { le(v, 2); }
  void u32(std::uint32_t v) { le(v, 4); }
  void u64(std::uint64_t v) { le(v, 8); }
  void var(std::uint64_t v) {
    for (; v >= 0x80; v >>= 7) u8(static_cast<std::uint8_t>((v & 0x7F) | 0x80));
    u8(static_cast<std::uint8_t>(v));
  }
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
  // Shortest-form LEB128 only (invariant 3): a longer spelling of the same
  // number, or one beyond 64 bits, is malformed.
  std::uint64_t var() {
    std::uint64_t v = 0;
    for (int i = 0; i < 10; ++i) {
      const std::uint8_t b = u8();
      if (!ok_ || (i == 9 && b > 1)) break;
      v |= static_cast<std::uint64_t>(b & 0x7F) << (7 * i);
      if ((b & 0x80) == 0) {
        if (i > 0 && b == 0) break;
        return v;
      }
    }
    ok_ = false;
    return 0;
  }
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

void write_identity_v1(Writer& w, const Identity& id) {
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

bool read_identity_v1(Reader& r, Identity& id) {
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

void write_identity(Writer& w, const Identity& id, std::uint16_t packet_cluster_id) {
  const auto bin = binary_addr(id.addr);
  std::uint8_t flags = bin ? bin->form : addr_text;
  if (id.member_id) flags |= flag_member_id;
  if (id.cluster_id != packet_cluster_id) flags |= flag_cluster_id;
  w.raw(id.id.data(), id.id.size());
  w.u8(flags);
  if (bin) {
    w.raw(bin->ip.data(), bin->ip_size());
    w.u16(bin->port);
  } else {
    SWIM_ASSERT(!id.addr.empty());
    SWIM_ASSERT(id.addr.size() <= 255);
    w.u8(static_cast<std::uint8_t>(id.addr.size()));
    w.raw(id.addr.data(), id.addr.size());
  }
  w.u64(id.ts);
  if (flags & flag_cluster_id) w.u16(id.cluster_id);
  if (id.member_id) w.u16(*id.member_id);
}

bool read_identity(Reader& r, Identity& id, std::uint16_t packet_cluster_id) {
  r.raw(id.id.data(), id.id.size());
  const std::uint8_t flags = r.u8();
  if (!r.ok() || (flags & ~flags_known) != 0) return false;
  const std::uint8_t form = flags & flag_addr_mask;
  if (form == addr_text) {
    const std::uint8_t len = r.u8();
    if (!r.ok() || len == 0) return false;
    id.addr.resize(len);
    if (!r.raw(id.addr.data(), len)) return false;
    // Text that has a binary form must travel in it (invariant 3).
    if (binary_addr(id.addr)) return false;
  } else if (form == addr_ipv4 || form == addr_ipv6) {
    BinaryAddr a;
    a.form = form;
    if (!r.raw(a.ip.data(), a.ip_size())) return false;
    a.port = r.u16();
    if (!r.ok()) return false;
    id.addr = format_addr(a);
    if (id.addr.empty()) return false;
  } else {
    return false;
  }
  id.ts = r.u64();
  id.cluster_id = (flags & flag_cluster_id) ? r.u16() : packet_cluster_id;
  // A written cluster_id equal to the packet's has a shorter form.
  if ((flags & flag_cluster_id) && id.cluster_id == packet_cluster_id) return false;
  if (flags & flag_member_id)
    id.member_id = r.u16();
  else
    id.member_id.reset();
  return r.ok();
}

void write_update(Writer& w, const MemberUpdate& u, std::uint16_t packet_cluster_id) {
  write_identity(w, u.id, packet_cluster_id);
  w.var(u.incarnation);
  w.u8(static_cast<std::uint8_t>(u.state));
}

bool read_state(Reader& r, MemberUpdate& u) {
  const std::uint8_t st = r.u8();
  if (!r.ok() || st > static_cast<std::uint8_t>(MemberState::down)) return false;
  u.state = static_cast<MemberState>(st);
  return true;
}

bool read_update(Reader& r, MemberUpdate& u, std::uint16_t packet_cluster_id) {
  if (!read_identity(r, u.id, packet_cluster_id)) return false;
  u.incarnation = r.var();
  return read_state(r, u);
}

void write_update_v1(Writer& w, const MemberUpdate& u) {
  write_identity_v1(w, u.id);
  w.u64(u.incarnation);
  w.u8(static_cast<std::uint8_t>(u.state));
}

bool read_update_v1(Reader& r, MemberUpdate& u) {
  if (!read_identity_v1(r, u.id)) return false;
  u.incarnation = r.u64();
  return read_state(r, u);
}

void write_updates(Writer& w, const std::vector<MemberUpdate>& v, std::uint16_t packet_cluster_id) {
  SWIM_ASSERT(v.size() <= UINT16_MAX);
  w.u16(static_cast<std::uint16_t>(v.size()));
  for (const auto& u : v) write_update(w, u, packet_cluster_id);
}

// Never allocates from an untrusted count: each entry needs |entry_size_min|.
template <typename ReadOne>
bool read_list(Reader& r, std::vector<MemberUpdate>& v, std::size_t count, std::size_t entry_size_min,
               ReadOne read_one) {
  if (count > r.remaining() / entry_size_min) return false;
  v.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    MemberUpdate u;
    if (!read_one(r, u)) return false;
    v.push_back(std::move(u));
  }
  return true;
}

bool read_updates(Reader& r, std::vector<MemberUpdate>& v, std::size_t count, std::uint16_t packet_cluster_id) {
  return read_list(r, v, count, update_size_min,
                   [&](Reader& rr, MemberUpdate& u) { return read_update(rr, u, packet_cluster_id); });
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

std::size_t encoded_size(const Identity& id, std::uint16_t packet_cluster_id) {
  const auto bin = binary_addr(id.addr);
  const std::size_t addr = bin ? bin->ip_size() + 2 : 1 + id.addr.size();
  return 16 + 1 + addr + 8 + (id.cluster_id != packet_cluster_id ? 2 : 0) + (id.member_id ? 2 : 0);
}

std::size_t encoded_size(const MemberUpdate& u, std::uint16_t packet_cluster_id) {
  return encoded_size(u.id, packet_cluster_id) + varint_size(u.incarnation) + 1;
}

std::size_t encoded_size_without_lists(const Packet& p) {
  std::size_t n = 1 + 2 + 1 + encoded_size(p.src, p.cluster_id) + varint_size(p.src_incarnation);
  if (p.dst) n += encoded_size(*p.dst, p.cluster_id);
  if (has_probe_number(p.kind)) n += varint_size(p.probe_number);
  if (has_other(p.kind)) n += encoded_size(p.other, p.cluster_id);
  if (p.kind == MessageKind::feed) n += 2;
  if (p.kind == MessageKind::announce) n += 2 + p.digest.size();
  return n + 2;
}

void encode(const Packet& p, Bytes& out) {
  Writer w(out);
  w.u8(protocol_version);
  w.u16(p.cluster_id);
  w.u8(static_cast<std::uint8_t>(static_cast<std::uint8_t>(p.kind) | (p.dst ? kind_has_dst : 0)));
  write_identity(w, p.src, p.cluster_id);
  w.var(p.src_incarnation);
  if (p.dst) write_identity(w, *p.dst, p.cluster_id);
  if (has_probe_number(p.kind)) w.var(p.probe_number);
  if (has_other(p.kind)) write_identity(w, p.other, p.cluster_id);
  if (p.kind == MessageKind::feed) write_updates(w, p.feed, p.cluster_id);
  if (p.kind == MessageKind::announce) {
    SWIM_ASSERT(p.digest.size() <= UINT16_MAX);
    w.u16(static_cast<std::uint16_t>(p.digest.size()));
    w.raw(p.digest.data(), p.digest.size());
  }
  write_updates(w, p.updates, p.cluster_id);
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
  const std::uint8_t kind_byte = r.u8();
  if (!r.ok()) return fail(Errc::malformed_packet, "truncated header");
  const std::uint8_t kind = kind_byte & static_cast<std::uint8_t>(~kind_has_dst);
  if (kind == 0 || kind > message_kind_max) return fail(Errc::malformed_packet, "message kind");
  p.kind = static_cast<MessageKind>(kind);
  if (!read_identity(r, p.src, p.cluster_id)) return fail(Errc::malformed_packet, "src identity");
  p.src_incarnation = r.var();
  if (!r.ok()) return fail(Errc::malformed_packet, "src incarnation");
  if (kind_byte & kind_has_dst) {
    p.dst.emplace();
    if (!read_identity(r, *p.dst, p.cluster_id)) return fail(Errc::malformed_packet, "dst identity");
  }
  if (has_probe_number(p.kind)) {
    const std::uint64_t number = r.var();
    if (!r.ok() || number > UINT32_MAX) return fail(Errc::malformed_packet, "probe number");
    p.probe_number = static_cast<std::uint32_t>(number);
  }
  if (has_other(p.kind) && !read_identity(r, p.other, p.cluster_id))
    return fail(Errc::malformed_packet, "other identity");
  if (p.kind == MessageKind::feed) {
    const std::uint16_t n = r.u16();
    if (!r.ok() || !read_updates(r, p.feed, n, p.cluster_id)) return fail(Errc::malformed_packet, "feed");
  }
  if (p.kind == MessageKind::announce) {
    const std::uint16_t len = r.u16();
    if (!r.ok() || len > r.remaining()) return fail(Errc::malformed_packet, "digest");
    p.digest.resize(len);
    if (!r.raw(p.digest.data(), len)) return fail(Errc::malformed_packet, "digest");
  }
  const std::uint16_t n = r.u16();
  if (!r.ok() || !read_updates(r, p.updates, n, p.cluster_id)) return fail(Errc::malformed_packet, "updates");
  if (r.remaining() != 0) return fail(Errc::malformed_packet, "trailing bytes");
  return p;
}

Bytes encode_snapshot(std::span<const MemberUpdate> members) {
  Bytes out;
  Writer w(out);
  SWIM_ASSERT(members.size() <= UINT32_MAX);
  w.u8(snapshot_version);
  w.u32(static_cast<std::uint32_t>(members.size()));
  for (const auto& m : members) write_update_v1(w, m);
  return out;
}

Result<std::vector<MemberUpdate>> decode_snapshot(std::span<const std::byte> bytes) {
  Reader r(bytes);
  const std::uint8_t version = r.u8();
  if (!r.ok() || version != snapshot_version)
    return fail(Errc::malformed_snapshot, "snapshot version");
  const std::uint32_t n = r.u32();
  std::vector<MemberUpdate> out;
  if (!r.ok() || !read_list(r, out, n, update_v1_size_min, read_update_v1))
    return fail(Errc::malformed_snapshot, "members");
  if (r.remaining() != 0) return fail(Errc::malformed_snapshot, "trailing bytes");
  return out;
}

}  // namespace patina::swim
