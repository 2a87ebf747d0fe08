#include "api/admin_protocol.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <fmt/format.h>

namespace patina::api::admin {

std::string encode_frame(const boost::json::value& v) {
  std::string body = boost::json::serialize(v);
  auto n = static_cast<std::uint32_t>(body.size());
  std::string out;
  out.reserve(4 + body.size());
  out.push_back(static_cast<char>((n >> 24) & 0xff));
  out.push_back(static_cast<char>((n >> 16) & 0xff));
  out.push_back(static_cast<char>((n >> 8) & 0xff));
  out.push_back(static_cast<char>(n & 0xff));
  out += body;
  return out;
}

Result<std::uint32_t> decode_length(const unsigned char header[4]) {
  std::uint32_t n = (std::uint32_t{header[0]} << 24) | (std::uint32_t{header[1]} << 16) |
                    (std::uint32_t{header[2]} << 8) | std::uint32_t{header[3]};
  if (n > frame_size_max) {
    return make_error(Errc::protocol, fmt::format("admin frame of {} bytes exceeds the {} byte limit", n, frame_size_max));
  }
  return n;
}

Result<boost::json::value> parse_payload(std::string_view bytes) {
  boost::system::error_code ec;
  auto v = boost::json::parse(bytes, ec);
  if (ec) return make_error(Errc::protocol, fmt::format("admin frame is not valid JSON: {}", ec.message()));
  return v;
}

boost::json::value success() { return boost::json::value("Success"); }

boost::json::value error(std::string_view msg) {
  return boost::json::value{{"Error", {{"msg", msg}}}};
}

boost::json::value json(boost::json::value v) {
  boost::json::object o;
  o["Json"] = std::move(v);
  return o;
}

bool is_final(const boost::json::value& response) {
  if (response.is_string()) return response.as_string() == "Success";
  return response.is_object() && response.as_object().contains("Error");
}

}  // namespace patina::api::admin
