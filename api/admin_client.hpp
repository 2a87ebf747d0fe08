#pragma once
// A blocking admin-socket client for the CLI: one command, all responses.

#include <string>
#include <vector>

#include <boost/json/value.hpp>

#include "core/result.hpp"

namespace patina::api {

class AdminClient {
 public:
  // Sends |command| to the agent at |path| and returns every response
  // frame, the last being final. Fails if the socket does not answer or
  // the connection drops before a final response.
  static Result<std::vector<boost::json::value>> call(const std::string& path, const boost::json::value& command,
                                                      int timeout_ms = 30000);
  // True when an agent accepts connections on |path|.
  static bool is_answering(const std::string& path);
};

}  // namespace patina::api
