// Operator input: a config file's text (TOML with Corrosion's keys). It
// either loads or fails with a message; nothing else.
#include <cstdlib>

#include "core/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  static const patina::core::Environment env{{"GOSSIP__MAX_MTU", "1400"}};
  auto r = patina::core::parse_config(text, "fuzz.toml", size % 2 == 0 ? env : patina::core::Environment{});
  if (!r && r.error().message.empty()) std::abort();
  return 0;
}
