// The template engine: template -> tokens (text segments and <%= %> tags
// become write(...) calls, positions stay those of the original file) ->
// recursive-descent parser -> AST -> tree-walking interpreter.
// Each stage is a file of its own under tools/template/.
//
// Errors inside the engine are thrown as ScriptError and caught at the two
// public entry points, which turn them into Result errors; nothing else
// throws across the boundary.
#include "tools/template_script.hpp"

#include <fmt/format.h>

#include "tools/template/interp.hpp"
#include "tools/template/lexer.hpp"
#include "tools/template/parser.hpp"

namespace patina::tools::tpl {

struct Template::Program {
  std::string name;
  std::vector<detail::StmtP> stmts;
};

namespace {

std::string located(const std::string& name, const detail::ScriptError& e) {
  return fmt::format("{}:{}:{}: {}", name, e.pos.line, e.pos.col, e.message);
}

}  // namespace

Template::Template(std::unique_ptr<Program> program) : program_(std::move(program)) {}
Template::~Template() = default;
Template::Template(Template&&) noexcept = default;
Template& Template::operator=(Template&&) noexcept = default;

Result<Template> Template::compile(std::string_view source, std::string name) {
  try {
    auto program = std::make_unique<Program>();
    program->stmts = detail::parse(detail::lex(source));
    program->name = std::move(name);
    return Template(std::move(program));
  } catch (const detail::ScriptError& e) {
    return make_error(Errc::invalid_argument, located(name, e));
  } catch (const std::exception& e) {
    return make_error(Errc::invalid_argument, fmt::format("{}: {}", name, e.what()));
  }
}

Result<void> Template::render(Host& host, std::string& out) const {
  if (!program_) return make_error(Errc::internal, "render of a template that was moved from");
  try {
    detail::run(program_->stmts, host, out);
    return {};
  } catch (const detail::ScriptError& e) {
    return make_error(Errc::invalid_argument, located(program_->name, e));
  } catch (const std::exception& e) {
    return make_error(Errc::invalid_argument, fmt::format("{}: {}", program_->name, e.what()));
  }
}

}  // namespace patina::tools::tpl
