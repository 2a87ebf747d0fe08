#include "tools/template/format.hpp"

#include <charconv>
#include <cmath>
#include <cstdint>

#include <boost/json.hpp>
#include <fmt/format.h>

namespace patina::tools::tpl::detail {

// ---------------------------------------------------------------- UTF-8

std::u32string decode_utf8(std::string_view s) {
  std::u32string out;
  for (std::size_t i = 0; i < s.size();) {
    auto b = static_cast<unsigned char>(s[i]);
    int extra = b < 0x80 ? 0 : (b >> 5) == 6 ? 1 : (b >> 4) == 14 ? 2 : (b >> 3) == 30 ? 3 : 0;
    char32_t c = extra == 0 ? b : extra == 1 ? (b & 0x1f) : extra == 2 ? (b & 0x0f) : (b & 0x07);
    std::size_t j = 1;
    for (; j <= static_cast<std::size_t>(extra) && i + j < s.size(); ++j) {
      c = (c << 6) | (static_cast<unsigned char>(s[i + j]) & 0x3f);
    }
    out.push_back(c);
    i += j;
  }
  return out;
}

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xc0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3f));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xe0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (c & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (c & 0x3f));
  }
}

std::string encode_utf8(std::u32string_view s) {
  std::string out;
  for (char32_t c : s) append_utf8(out, c);
  return out;
}

// ---------------------------------------------------------------- numbers

namespace {

// Shortest round-trip digits of a finite, non-zero |d|: |d| = 0.DIGITS * 10^point.
void shortest_digits(double d, std::string& digits, int& point) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, std::fabs(d), std::chars_format::scientific);
  std::string_view s(buf, static_cast<std::size_t>(r.ptr - buf));
  auto e = s.find('e');
  digits.clear();
  for (char c : s.substr(0, e)) {
    if (c != '.') digits += c;
  }
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  point = std::stoi(std::string(s.substr(e + 1))) + 1;
}

// Rust's `{}` for f64: never an exponent, whole numbers without ".0".
std::string rust_float_display(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
  if (d == 0) return std::signbit(d) ? "-0" : "0";
  std::string digits;
  int point = 0;
  shortest_digits(d, digits, point);
  std::string out = d < 0 ? "-" : "";
  auto n = static_cast<int>(digits.size());
  if (point <= 0) {
    out += "0." + std::string(static_cast<std::size_t>(-point), '0') + digits;
  } else if (point >= n) {
    out += digits + std::string(static_cast<std::size_t>(point - n), '0');
  } else {
    out += digits.substr(0, static_cast<std::size_t>(point)) + "." +
           digits.substr(static_cast<std::size_t>(point));
  }
  return out;
}

// Rust's `{:e}` for f64: "1e20", "1.5e-14".
std::string rust_float_exp(double d) {
  std::string digits;
  int point = 0;
  shortest_digits(d, digits, point);
  std::string out = d < 0 ? "-" : "";
  out += digits.substr(0, 1);
  if (digits.size() > 1) out += "." + digits.substr(1);
  return out + "e" + std::to_string(point - 1);
}

}  // namespace

// Rhai's float display: whole numbers keep ".0", extremes use an exponent.
std::string rhai_float_display(double d) {
  double a = std::fabs(d);
  if (a == 0) return "0.0";
  if (std::isnan(d) || std::isinf(d)) return rust_float_display(d);
  if (a > 10000000000000.0 || a < 0.0000000000001) return rust_float_exp(d);
  std::string s = rust_float_display(d);
  if (s.find('.') == std::string::npos) s += ".0";
  return s;
}

namespace {

// serde_json (ryu) number text: "2.0", "1.5", "1e20", "1.5e-7".
std::string json_float(double d) {
  if (!std::isfinite(d)) return "null";
  if (d == 0) return std::signbit(d) ? "-0.0" : "0.0";
  std::string digits;
  int point = 0;
  shortest_digits(d, digits, point);
  std::string out = d < 0 ? "-" : "";
  auto n = static_cast<int>(digits.size());
  if (n <= point && point <= 16) {
    out += digits + std::string(static_cast<std::size_t>(point - n), '0') + ".0";
  } else if (0 < point && point <= 16) {
    out += digits.substr(0, static_cast<std::size_t>(point)) + "." +
           digits.substr(static_cast<std::size_t>(point));
  } else if (-5 < point && point <= 0) {
    out += "0." + std::string(static_cast<std::size_t>(-point), '0') + digits;
  } else {
    out += digits.substr(0, 1);
    if (n > 1) out += "." + digits.substr(1);
    out += "e" + std::to_string(point - 1);
  }
  return out;
}

// ---------------------------------------------------------------- JSON text

void json_escape(std::string& out, std::string_view s) {
  out += '"';
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          out += fmt::format("\\u{:04x}", c);
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

void newline_indent(std::string& out, int indent) {
  out += '\n';
  out.append(static_cast<std::size_t>(indent) * 2, ' ');
}

}  // namespace

// serde_json's compact or PrettyFormatter layout.
void write_json(std::string& out, const json::value& v, bool pretty, int indent) {
  switch (v.kind()) {
    case json::kind::null: out += "null"; break;
    case json::kind::bool_: out += v.get_bool() ? "true" : "false"; break;
    case json::kind::int64: out += std::to_string(v.get_int64()); break;
    case json::kind::uint64: out += std::to_string(v.get_uint64()); break;
    case json::kind::double_: out += json_float(v.get_double()); break;
    case json::kind::string: json_escape(out, v.get_string()); break;
    case json::kind::array: {
      const auto& a = v.get_array();
      out += '[';
      for (std::size_t i = 0; i < a.size(); ++i) {
        if (i) out += ',';
        if (pretty) newline_indent(out, indent + 1);
        write_json(out, a[i], pretty, indent + 1);
      }
      if (pretty && !a.empty()) newline_indent(out, indent);
      out += ']';
      break;
    }
    case json::kind::object: {
      const auto& o = v.get_object();
      out += '{';
      bool first = true;
      for (const auto& kv : o) {
        if (!first) out += ',';
        first = false;
        if (pretty) newline_indent(out, indent + 1);
        json_escape(out, kv.key());
        out += pretty ? ": " : ":";
        write_json(out, kv.value(), pretty, indent + 1);
      }
      if (pretty && !o.empty()) newline_indent(out, indent);
      out += '}';
      break;
    }
  }
}

std::string blob_hex(const json::array& a) {
  std::string out;
  for (const auto& b : a) {
    std::int64_t n = b.is_int64() ? b.get_int64() : b.is_uint64() ? static_cast<std::int64_t>(b.get_uint64()) : 0;
    out += fmt::format("{:02x}", static_cast<unsigned>(n & 0xff));
  }
  return out;
}

// Corrosion's SqliteValue Display.
std::string sql_display(const json::value& v) {
  switch (v.kind()) {
    case json::kind::null: return "";
    case json::kind::bool_: return v.get_bool() ? "1" : "0";
    case json::kind::int64: return std::to_string(v.get_int64());
    case json::kind::uint64: return std::to_string(v.get_uint64());
    case json::kind::double_: return rust_float_display(v.get_double());
    case json::kind::string: return std::string(v.get_string());
    case json::kind::array: return blob_hex(v.get_array());
    case json::kind::object: return json::serialize(v);
  }
  return "";
}

// ---------------------------------------------------------------- query results

std::string query_json(const QueryResult& res, bool pretty, bool as_array) {
  std::string out;
  json::array rows;
  for (const auto& row : res.rows) {
    if (as_array) {
      rows.emplace_back(json::array(row.begin(), row.end()));
    } else {
      json::object o;
      for (std::size_t c = 0; c < res.columns.size() && c < row.size(); ++c) o[res.columns[c]] = row[c];
      rows.emplace_back(std::move(o));
    }
  }
  write_json(out, rows, pretty, 0);
  return out;
}

std::string query_csv(const QueryResult& res) {
  std::string out;
  auto line = [&](const std::vector<std::string>& fields, const std::vector<bool>& text) {
    for (std::size_t i = 0; i < fields.size(); ++i) {
      if (i) out += ',';
      const auto& f = fields[i];
      bool quote = f.find_first_of(",\"\r\n") != std::string::npos || (f.empty() && fields.size() == 1 && text[i]);
      if (!quote) {
        out += f;
        continue;
      }
      out += '"';
      for (char ch : f) {
        if (ch == '"') out += '"';
        out += ch;
      }
      out += '"';
    }
    out += '\n';
  };
  line(res.columns, std::vector<bool>(res.columns.size(), true));
  for (const auto& row : res.rows) {
    std::vector<std::string> fields;
    std::vector<bool> text;
    for (const auto& cell : row) {
      fields.push_back(cell.is_double() ? json_float(cell.get_double()) : sql_display(cell));
      text.push_back(cell.is_string());
    }
    line(fields, text);
  }
  return out;
}

}  // namespace patina::tools::tpl::detail
