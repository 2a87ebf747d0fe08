#include "swim/error.hpp"

#include <cstdio>
#include <cstdlib>

#include "swim/assert.hpp"

namespace patina::swim {

const char* to_string(Errc code) {
  switch (code) {
    case Errc::malformed_packet:
      return "malformed_packet";
    case Errc::unsupported_version:
      return "unsupported_version";
    case Errc::packet_too_large:
      return "packet_too_large";
    case Errc::wrong_cluster:
      return "wrong_cluster";
    case Errc::foreign_member_id:
      return "foreign_member_id";
    case Errc::data_from_ourselves:
      return "data_from_ourselves";
    case Errc::sender_is_down:
      return "sender_is_down";
    case Errc::not_for_us:
      return "not_for_us";
    case Errc::not_active:
      return "not_active";
    case Errc::invalid_argument:
      return "invalid_argument";
    case Errc::malformed_snapshot:
      return "malformed_snapshot";
  }
  return "unknown";
}

namespace detail {
void assert_fail(const char* expr, const char* file, int line) {
  // The only output swim/ ever produces: a bug report right before abort.
  std::fprintf(stderr, "swim assertion failed: %s (%s:%d)\n", expr, file, line);
  std::abort();
}
}  // namespace detail

}  // namespace patina::swim
