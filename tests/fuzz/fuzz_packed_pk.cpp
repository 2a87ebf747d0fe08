// Packed primary keys arrive from peers inside changes: unpack must reject
// anything pack could not have produced, and what unpacks packs back to the
// same bytes.
#include <cstdlib>

#include "crdt/packed_pk.hpp"

using patina::crdt::PackedPk;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::span<const std::uint8_t> bytes(data, size);
  if (auto values = PackedPk::unpack(bytes)) {
    auto packed = PackedPk::pack(*values);
    if (packed.size() != size || !std::equal(packed.begin(), packed.end(), data)) std::abort();
  }
  return 0;
}
