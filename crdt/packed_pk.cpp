#include "crdt/packed_pk.hpp"

#include <sqlite3.h>

#include <cstring>

namespace patina::crdt {
namespace {

constexpr std::uint8_t kInteger = 1, kReal = 2, kText = 3, kBlob = 4, kNull = 5;

// Number of bytes needed to hold |u| unsigned: 0 for 0.
int unsigned_width(std::uint64_t u) {
  int n = 0;
  while (u != 0) {
    ++n;
    u >>= 8;
  }
  return n;
}

void put_be(Bytes& out, std::uint64_t u, int n) {
  for (int i = n - 1; i >= 0; --i) out.push_back(static_cast<std::uint8_t>(u >> (8 * i)));
}

void put_integer(Bytes& out, std::int64_t v) {
  // Negative values keep their full two's complement so the sign survives.
  auto u = static_cast<std::uint64_t>(v);
  int n = v < 0 ? 8 : unsigned_width(u);
  out.push_back(static_cast<std::uint8_t>(n << 3 | kInteger));
  put_be(out, u, n);
}

void put_real(Bytes& out, double d) {
  std::uint64_t u;
  std::memcpy(&u, &d, sizeof u);
  out.push_back(kReal);
  put_be(out, u, 8);
}

void put_bytes(Bytes& out, std::uint8_t type, const void* p, std::size_t len) {
  int n = unsigned_width(len);
  out.push_back(static_cast<std::uint8_t>(n << 3 | type));
  put_be(out, len, n);
  const auto* b = static_cast<const std::uint8_t*>(p);
  out.insert(out.end(), b, b + len);
}

}  // namespace

Bytes PackedPk::pack(std::span<const Value> values) {
  Bytes out;
  out.push_back(static_cast<std::uint8_t>(values.size()));
  for (const auto& v : values) {
    switch (v.index()) {
      case 0: out.push_back(kNull); break;
      case 1: put_integer(out, std::get<std::int64_t>(v)); break;
      case 2: put_real(out, std::get<double>(v)); break;
      case 3: {
        const auto& s = std::get<std::string>(v);
        put_bytes(out, kText, s.data(), s.size());
        break;
      }
      default: {
        const auto& b = std::get<Bytes>(v);
        put_bytes(out, kBlob, b.data(), b.size());
        break;
      }
    }
  }
  return out;
}

Bytes PackedPk::pack(sqlite3_value** values, int n) {
  Bytes out;
  out.reserve(16);
  out.push_back(static_cast<std::uint8_t>(n));
  for (int i = 0; i < n; ++i) {
    sqlite3_value* v = values[i];
    switch (sqlite3_value_type(v)) {
      case SQLITE_INTEGER: put_integer(out, sqlite3_value_int64(v)); break;
      case SQLITE_FLOAT: put_real(out, sqlite3_value_double(v)); break;
      case SQLITE_TEXT: {
        const unsigned char* p = sqlite3_value_text(v);
        put_bytes(out, kText, p, static_cast<std::size_t>(sqlite3_value_bytes(v)));
        break;
      }
      case SQLITE_BLOB: {
        const void* p = sqlite3_value_blob(v);
        put_bytes(out, kBlob, p, static_cast<std::size_t>(sqlite3_value_bytes(v)));
        break;
      }
      default: out.push_back(kNull); break;
    }
  }
  return out;
}

Result<std::vector<Value>> PackedPk::unpack(std::span<const std::uint8_t> packed) {
  auto bad = [](const char* why) {
    return make_error(ErrorCode::invalid_input, std::string("malformed packed pk: ") + why);
  };
  if (packed.empty()) return bad("empty");
  std::size_t pos = 0;
  std::size_t count = packed[pos++];
  std::vector<Value> out;
  out.reserve(count);
  auto read_be = [&](int n, std::uint64_t& u) -> bool {
    if (n > 8 || packed.size() - pos < static_cast<std::size_t>(n)) return false;
    u = 0;
    for (int i = 0; i < n; ++i) u = u << 8 | packed[pos++];
    return true;
  };
  for (std::size_t c = 0; c < count; ++c) {
    if (pos >= packed.size()) return bad("truncated");
    std::uint8_t tb = packed[pos++];
    int type = tb & 7;
    int n = tb >> 3;
    std::uint64_t u = 0;
    switch (type) {
      case kInteger:
        if (!read_be(n, u)) return bad("truncated integer");
        out.emplace_back(static_cast<std::int64_t>(u));
        break;
      case kReal: {
        if (n != 0 || !read_be(8, u)) return bad("bad real");
        double d;
        std::memcpy(&d, &u, sizeof d);
        out.emplace_back(d);
        break;
      }
      case kText:
      case kBlob: {
        if (!read_be(n, u)) return bad("truncated length");
        if (packed.size() - pos < u) return bad("truncated bytes");
        const auto* p = packed.data() + pos;
        pos += static_cast<std::size_t>(u);
        if (type == kText)
          out.emplace_back(std::string(reinterpret_cast<const char*>(p), static_cast<std::size_t>(u)));
        else
          out.emplace_back(Bytes(p, p + u));
        break;
      }
      case kNull:
        if (n != 0) return bad("bad null");
        out.emplace_back(Null{});
        break;
      default: return bad("unknown type");
    }
  }
  if (pos != packed.size()) return bad("trailing bytes");
  // One row, one blob: a value spelled with extra leading zero bytes (an
  // integer or a length) would decode to the same pk yet key a different
  // row in the pks table, so only pack's own spelling is accepted (found by
  // fuzzing; the blob is the row's identity across nodes).
  Bytes canonical = pack(out);
  if (canonical.size() != packed.size() || !std::equal(canonical.begin(), canonical.end(), packed.begin())) {
    return bad("not in canonical form");
  }
  return out;
}

}  // namespace patina::crdt
