// SWIM datagrams and persisted member snapshots: decode, and for what
// decodes, encoding is stable (encode(decode(encode(p))) == encode(p)).
#include <cstdlib>

#include "swim/codec.hpp"

using namespace patina::swim;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  if (auto p = decode(bytes)) {
    Bytes once = encode(*p);
    auto back = decode(once);
    if (!back || encode(*back) != once) std::abort();
  }
  if (auto s = decode_snapshot(bytes)) {
    Bytes once = encode_snapshot(*s);
    auto back = decode_snapshot(once);
    if (!back || *back != *s) std::abort();
  }
  return 0;
}
