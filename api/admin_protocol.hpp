#pragma once
// The admin socket protocol, compatible with Corrosion's (SPEC.md §3.3): a
// Unix stream socket carrying frames of a 4-byte big-endian length followed
// by that many bytes of JSON. The client sends one command; the server
// answers with zero or more {"Log":...} / {"Json":...} frames and ends with
// "Success" or {"Error":{"msg":"..."}}. A connection may carry several
// commands in turn.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <boost/json/value.hpp>

#include "core/result.hpp"

namespace patina::api::admin {

inline constexpr std::uint32_t frame_size_max = 100u * 1024 * 1024;

// Prepends the 4-byte big-endian length.
std::string encode_frame(const boost::json::value& v);
// Reads the length prefix of a frame header (4 bytes).
Result<std::uint32_t> decode_length(const unsigned char header[4]);
Result<boost::json::value> parse_payload(std::string_view bytes);

boost::json::value success();
boost::json::value error(std::string_view msg);
boost::json::value json(boost::json::value v);

// True when |response| ends a command's answer ("Success" or Error).
bool is_final(const boost::json::value& response);

}  // namespace patina::api::admin
