// Peer bytes: changeset frames (plain and compressed), sync requests and
// sync responses. Whatever decodes must re-encode to something that decodes
// to the same value.
#include <cstdlib>

#include "io/wire.hpp"

using namespace patina::io::wire;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  if (auto f = decode(bytes)) {
    auto again = decode(encode(*f));
    if (!again || again->changeset != f->changeset || again->cluster_id != f->cluster_id || again->hops != f->hops) {
      std::abort();
    }
    (void)hops_of(bytes);
  }
  if (auto r = decode_sync_request(bytes)) {
    auto again = decode_sync_request(encode(*r));
    if (!again || again->state != r->state || again->cluster_id != r->cluster_id) std::abort();
  }
  if (auto r = decode_sync_response(bytes)) {
    auto again = decode_sync_response(encode(*r));
    if (!again || again->changesets != r->changesets || again->empty != r->empty) std::abort();
  }
  return 0;
}
