#pragma once
// Errors of the crdt library, as values.
//
// Every fallible entry point of crdt/ returns Result<T>. An Error says what
// kind of failure it is (so callers can decide: retry, reject input, or stop
// the node) and carries a human-readable message; for SQLite failures the
// primary result code is kept so the writer can recognise fatal codes
// (SQLITE_FULL, SQLITE_IOERR, SQLITE_CORRUPT, SQLITE_READONLY).

#include <string>
#include <utility>

#include <tl/expected.hpp>

namespace patina::crdt {

enum class ErrorCode {
  sqlite,         // SQLite returned an error; sqlite_code says which.
  invalid_input,  // malformed data from a peer or caller (bad pk blob, unknown column).
  schema,         // a schema rule was violated (message names file/table/column).
  not_found,      // an unknown table, actor or version.
  corrupt,        // persisted state disagrees with itself.
};

struct Error {
  ErrorCode code = ErrorCode::sqlite;
  std::string message;
  int sqlite_code = 0;  // primary SQLite result code when code == sqlite

  const std::string& what() const { return message; }
};

template <class T>
using Result = tl::expected<T, Error>;

inline tl::unexpected<Error> make_error(ErrorCode code, std::string message, int sqlite_code = 0) {
  return tl::unexpected<Error>(Error{code, std::move(message), sqlite_code});
}

}  // namespace patina::crdt
