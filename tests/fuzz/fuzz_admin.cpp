// The admin socket: a 4-byte big-endian length, then JSON. Lengths and
// payloads are judged separately, as the server reads them.
#include <cstdlib>

#include <boost/json/serialize.hpp>

#include "api/admin_protocol.hpp"

using namespace patina::api::admin;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size >= 4) {
    unsigned char header[4] = {data[0], data[1], data[2], data[3]};
    (void)decode_length(header);
  }
  auto payload = parse_payload(std::string_view(reinterpret_cast<const char*>(data), size));
  if (payload) {
    // Framing what parsed gives a header that states the payload's length.
    // (No value round trip: JSON numbers such as 1E277777777 parse to
    // infinity, which no JSON text spells; the server only frames its own
    // replies.)
    std::string frame = encode_frame(*payload);
    if (frame.size() < 4) std::abort();
    unsigned char header[4] = {static_cast<unsigned char>(frame[0]), static_cast<unsigned char>(frame[1]),
                               static_cast<unsigned char>(frame[2]), static_cast<unsigned char>(frame[3])};
    auto length = decode_length(header);
    if (length && *length != frame.size() - 4) std::abort();
    (void)is_final(*payload);
  }
  return 0;
}
