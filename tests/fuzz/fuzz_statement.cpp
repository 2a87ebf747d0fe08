// Client JSON: the statement forms of /v1/transactions, /v1/queries and
// subscriptions, from raw body bytes as the HTTP handler sees them.
#include <boost/json/parse.hpp>

#include "api/statement.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  boost::system::error_code ec;
  auto v = boost::json::parse(std::string_view(reinterpret_cast<const char*>(data), size), ec);
  if (ec) return 0;
  (void)patina::api::parse_statements(v);
  (void)patina::api::parse_statement(v);
  if (v.is_array()) {
    for (const auto& item : v.as_array()) (void)patina::api::value_to_json(patina::api::value_from_json(item));
  }
  return 0;
}
