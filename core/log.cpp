#include "core/log.hpp"

#include <chrono>
#include <map>
#include <mutex>

#include <fmt/chrono.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/stdout_sinks.h>

namespace patina::core::log {
namespace {

struct ParsedFilter {
  spdlog::level::level_enum fallback = spdlog::level::info;
  std::map<std::string, spdlog::level::level_enum, std::less<>> per_logger;
};

struct State {
  std::mutex mu;
  spdlog::sink_ptr sink;
  Format format = Format::plaintext;
  std::string default_filter = "info";
  std::string filter = "info";
  ParsedFilter parsed;
};

State& state() {
  static State s;
  return s;
}

Result<spdlog::level::level_enum> parse_level(std::string_view s) {
  if (s == "trace") return spdlog::level::trace;
  if (s == "debug") return spdlog::level::debug;
  if (s == "info") return spdlog::level::info;
  if (s == "warn" || s == "warning") return spdlog::level::warn;
  if (s == "error") return spdlog::level::err;
  if (s == "off") return spdlog::level::off;
  return make_error(Errc::invalid_argument, fmt::format("unknown log level '{}'", s));
}

Result<ParsedFilter> parse_filter(std::string_view filter) {
  ParsedFilter out;
  std::size_t pos = 0;
  bool any = false;
  while (pos <= filter.size()) {
    std::size_t comma = filter.find(',', pos);
    if (comma == std::string_view::npos) comma = filter.size();
    std::string_view part = filter.substr(pos, comma - pos);
    pos = comma + 1;
    while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
    while (!part.empty() && part.back() == ' ') part.remove_suffix(1);
    if (part.empty()) continue;
    any = true;
    auto eq = part.find('=');
    if (eq == std::string_view::npos) {
      auto lvl = parse_level(part);
      if (!lvl) return tl::unexpected(lvl.error());
      out.fallback = *lvl;
    } else {
      auto lvl = parse_level(part.substr(eq + 1));
      if (!lvl) return tl::unexpected(lvl.error());
      std::string name(part.substr(0, eq));
      // RUST_LOG targets look like "corro_agent::api"; keep the last segment.
      if (auto c = name.rfind("::"); c != std::string::npos) name = name.substr(c + 2);
      out.per_logger[name] = *lvl;
    }
  }
  if (!any) return make_error(Errc::invalid_argument, "empty log filter");
  return out;
}

spdlog::level::level_enum level_for(const ParsedFilter& f, const std::string& name) {
  auto it = f.per_logger.find(name);
  return it != f.per_logger.end() ? it->second : f.fallback;
}

// JSON lines: {"ts":"...","level":"info","target":"db","msg":"..."}.
class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    auto ts = std::chrono::time_point_cast<std::chrono::microseconds>(msg.time);
    fmt::format_to(std::back_inserter(dest), "{{\"ts\":\"{:%Y-%m-%dT%H:%M:%S}Z\",\"level\":\"{}\",\"target\":",
                   ts, spdlog::level::to_string_view(msg.level));
    append_json_string(dest, std::string_view(msg.logger_name.data(), msg.logger_name.size()));
    dest.append(std::string_view(",\"msg\":"));
    append_json_string(dest, std::string_view(msg.payload.data(), msg.payload.size()));
    dest.append(std::string_view("}\n"));
  }
  std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<JsonFormatter>(); }

 private:
  static void append_json_string(spdlog::memory_buf_t& dest, std::string_view s) {
    dest.push_back('"');
    for (char c : s) {
      switch (c) {
        case '"': dest.append(std::string_view("\\\"")); break;
        case '\\': dest.append(std::string_view("\\\\")); break;
        case '\n': dest.append(std::string_view("\\n")); break;
        case '\r': dest.append(std::string_view("\\r")); break;
        case '\t': dest.append(std::string_view("\\t")); break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) {
            fmt::format_to(std::back_inserter(dest), "\\u{:04x}", static_cast<unsigned>(c));
          } else {
            dest.push_back(c);
          }
      }
    }
    dest.push_back('"');
  }
};

void apply_format(State& s) {
  if (s.format == Format::json) {
    s.sink->set_formatter(std::make_unique<JsonFormatter>());
  } else {
    s.sink->set_formatter(std::make_unique<spdlog::pattern_formatter>(
        "%Y-%m-%dT%H:%M:%S.%fZ %^%-5l%$ [%n] %v", spdlog::pattern_time_type::utc));
  }
}

}  // namespace

void init(Format format, bool colors) {
  State& s = state();
  std::lock_guard lock(s.mu);
  if (!s.sink) {
    if (colors && format == Format::plaintext) {
      s.sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    } else {
      s.sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    }
    auto parsed = parse_filter(s.filter);
    if (parsed) s.parsed = *parsed;
  }
  s.format = format;
  apply_format(s);
  spdlog::flush_on(spdlog::level::warn);
}

std::shared_ptr<spdlog::logger> get(const std::string& name) {
  State& s = state();
  std::lock_guard lock(s.mu);
  if (!s.sink) {
    s.sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    apply_format(s);
  }
  if (auto existing = spdlog::get(name)) return existing;
  auto logger = std::make_shared<spdlog::logger>(name, s.sink);
  logger->set_level(level_for(s.parsed, name));
  logger->flush_on(spdlog::level::warn);
  spdlog::register_logger(logger);
  return logger;
}

Result<void> set_filter(std::string_view filter) {
  auto parsed = parse_filter(filter);
  if (!parsed) return tl::unexpected(parsed.error());
  State& s = state();
  std::lock_guard lock(s.mu);
  s.parsed = *parsed;
  s.filter = std::string(filter);
  spdlog::apply_all([&](const std::shared_ptr<spdlog::logger>& l) { l->set_level(level_for(s.parsed, l->name())); });
  return {};
}

void set_default_filter(std::string_view filter) {
  {
    std::lock_guard lock(state().mu);
    state().default_filter = std::string(filter);
  }
  (void)set_filter(filter);
}

void reset_filter() {
  std::string f;
  {
    std::lock_guard lock(state().mu);
    f = state().default_filter;
  }
  (void)set_filter(f);
}

std::string current_filter() {
  std::lock_guard lock(state().mu);
  return state().filter;
}

void flush_all() {
  spdlog::apply_all([](const std::shared_ptr<spdlog::logger>& l) { l->flush(); });
}

}  // namespace patina::core::log
