// libFuzzer harness for the SWIM decoders and the state machine behind them
// (opt-in: configure with clang and -DPATINA_FUZZ=ON, run ./swim_fuzz).
// Invariants checked: decode() never over-reads (ASan), a decoded packet
// re-encodes to the same bytes, and no input trips a SWIM_ASSERT.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "swim/codec.hpp"
#include "swim/membership.hpp"

namespace {

patina::swim::Identity identity(std::uint8_t n) {
  patina::swim::Identity id;
  id.id[0] = n;
  id.addr = "10.0.0." + std::to_string(n) + ":4001";
  id.ts = 1000;
  return id;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace patina::swim;
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  if (auto p = decode(bytes)) {
    if (encode(*p) != Bytes(bytes.begin(), bytes.end())) std::abort();
  }
  (void)decode_snapshot(bytes);

  // The same bytes as a sequence of datagrams (split on a 2-byte length
  // prefix) against one node that already knows two members.
  static Config config = [] {
    Config c;
    c.probe_period = std::chrono::seconds(1);
    c.probe_rtt = std::chrono::milliseconds(300);
    return c;
  }();
  Membership m(identity(1), config, 7);
  Effects fx;
  const MemberUpdate known[] = {{identity(2), 0, MemberState::alive},
                                {identity(3), 0, MemberState::alive}};
  (void)m.apply_snapshot(Instant{}, known, fx);
  Instant now{};
  std::size_t pos = 0;
  for (int i = 0; i < 64 && pos + 2 <= size; ++i) {
    const std::size_t len = std::min<std::size_t>(size - pos - 2, data[pos] | (data[pos + 1] << 8));
    fx.clear();
    (void)m.handle_datagram(now, bytes.subspan(pos + 2, len), fx);
    for (const auto& e : fx)
      if (const auto* t = std::get_if<ArmTimer>(&e)) {
        Effects more;
        (void)m.handle_timer(now, t->timer, more);
      }
    now += std::chrono::milliseconds(100);
    pos += 2 + len;
  }
  return 0;
}
