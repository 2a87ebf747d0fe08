#pragma once
// Text that must match Corrosion's byte for byte. Its templates run in Rust,
// so numbers print as Rust and Rhai print them, JSON is laid out as
// serde_json writes it (not as Boost.JSON would), SQL values display as
// SqliteValue does and CSV is quoted per RFC 4180. None of this depends on
// the script's values, so it stands apart from them and from the
// interpreter.

#include <string>
#include <string_view>

#include <boost/json/array.hpp>
#include <boost/json/value.hpp>

#include "tools/template_script.hpp"

namespace patina::tools::tpl::detail {

namespace json = boost::json;

// UTF-8 <-> code points; scripts index and measure strings in characters.
std::u32string decode_utf8(std::string_view s);
void append_utf8(std::string& out, char32_t c);
std::string encode_utf8(std::u32string_view s);

// Rhai's float display: whole numbers keep ".0", extremes use an exponent.
std::string rhai_float_display(double d);

// serde_json's compact or PrettyFormatter layout.
void write_json(std::string& out, const json::value& v, bool pretty, int indent);

// A blob (the API's array of bytes) as lowercase hex.
std::string blob_hex(const json::array& a);

// Corrosion's SqliteValue Display.
std::string sql_display(const json::value& v);

// result.to_json(): an array of objects, or of arrays with |as_array|.
std::string query_json(const QueryResult& res, bool pretty, bool as_array);

// result.to_csv(): a header line, then one line per row.
std::string query_csv(const QueryResult& res);

}  // namespace patina::tools::tpl::detail
