#pragma once
// SQL functions every connection of the agent has, as Corrosion registers
// them (SPEC §4.1 "Registered extras"), so queries, transactions and
// subscriptions written for Corrosion run here unchanged:
//
//   generate_series(start [, stop [, step]])  table-valued, column "value":
//       start, start+step, ... up to stop (default 4294967295), step
//       default 1; a negative step gives the same values in descending
//       order; a NULL argument gives no rows. Debian's libsqlite3 is built
//       without the series extension, hence ours.
//   corro_json_contains(selector, object)  1 when every key of the JSON
//       object |selector| is in |object| with a value that is contained in
//       turn (objects recursively, anything else by equality), else 0. Both
//       arguments must be JSON text; anything else is an error, as in
//       Corrosion.
//
// Corrosion's unnest()/corro_unnest() take arrays bound as pointers by its
// own Rust code, which no HTTP client can bind; they are not provided.

#include <sqlite3.h>

namespace patina::api {

// Registers the functions on |db|. SQLITE_OK or an SQLite error code.
int register_sql_functions(sqlite3* db);

// Makes every connection opened from now on in this process get them
// (sqlite3_auto_extension). Idempotent.
void register_sql_functions_for_every_connection();

}  // namespace patina::api
