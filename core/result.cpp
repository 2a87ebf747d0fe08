#include "core/result.hpp"

namespace patina {

const char* to_string(Errc code) {
  switch (code) {
    case Errc::invalid_argument: return "invalid argument";
    case Errc::not_found: return "not found";
    case Errc::busy: return "busy";
    case Errc::timeout: return "timeout";
    case Errc::interrupted: return "interrupted";
    case Errc::sql: return "sql error";
    case Errc::storage_fatal: return "fatal storage error";
    case Errc::storage_full: return "disk space low";
    case Errc::io: return "i/o error";
    case Errc::protocol: return "protocol error";
    case Errc::shutting_down: return "shutting down";
    case Errc::internal: return "internal error";
  }
  return "unknown error";
}

}  // namespace patina
