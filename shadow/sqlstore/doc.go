// Package sqlstore keeps shadows, live-sync tokens, work claims and leases
// in SQL: SQLite (OpenSQLite: embedded, one file, pure Go, for a single
// process that must survive restarts) and PostgreSQL (OpenPostgres: shared by
// several processes or machines). Both dialects run the same code and SQL;
// only the column types, the row-locking clauses and the migration lock
// differ.
//
// A *Store implements shadow.Store, shadow.Batcher, shadow.Claimer,
// shadow.Leaser, livesync.TokenStore, livesync.FencedTokenStore and
// livesync.GroupCommitter, and passes shadow/storetest and
// livesync/tokenstoretest on both databases.
//
// # Schema
//
// Open creates and migrates the tables it needs (names start with
// Options.TablePrefix, in Options.Schema on PostgreSQL). Migrations are
// numbered, recorded in the <prefix>schema_version table, applied in one
// transaction under a lock (pg_advisory_xact_lock on PostgreSQL, BEGIN
// IMMEDIATE on SQLite), so two processes opening one database at once are
// safe. A database migrated by a newer library fails Open with
// ErrSchemaTooNew and is left untouched.
//
// A shadow is one row: identifiers and flags as columns, attributes and
// pending operations as JSON (jsonb on PostgreSQL), and columns derived from
// the pending operations on every write — has_unfinished, the oldest
// unfinished request time overall and per operation type, next_due — that
// partial indexes cover, so that the engines' queries (due shadows, shadows
// with unfinished operations of a type, dead shadows, shadows needing
// reconciliation) cost in proportion to the shadows they select, not to all
// shadows. Live identity (resource, class, UID of a live shadow) is a
// unique partial index. Times are kept as microseconds since the Unix epoch
// (UTC); finer digits are dropped, and a Query's times are compared at the
// same precision. Attribute values that are not text (invalid UTF-8, NUL)
// are stored base64-encoded inside the JSON, so binary values round-trip.
// The identifiers (ID, ResourceID, Class, Kind, Intent, UID, Name) are key
// columns: SQLite keeps any bytes there, but PostgreSQL's text cannot, so a
// PostgreSQL store refuses a shadow whose identifier is not text with
// shadow.ErrInvalid naming the field.
//
// # Concurrency
//
// Update and Delete are compare-and-set on the version column. Claim picks
// due rows with FOR UPDATE SKIP LOCKED on PostgreSQL, so concurrent
// claimers in several processes never get the same shadow; SQLite has one
// writer (a one-connection write pool with BEGIN IMMEDIATE; readers use a
// separate pool under WAL), so its claims are serialized. A claim is two
// columns (owner, until) that an expired claim's successor overwrites.
// Leases are rows with an owner, a term and an expiry; fenced token writes
// check the lease in the same transaction.
//
// A claim is a promise among claimers, not a lock on the row: a worker whose
// claim expired while it was still working may race its successor. The
// version check settles it — the loser's Update fails with
// shadow.ErrConflict — so an operation completed by a version-checked
// update, in the same transaction as its effect, counts once.
//
// # Errors
//
// Store methods return the shadow and livesync sentinels (shadow.ErrNotFound,
// shadow.ErrConflict, shadow.ErrDuplicate, shadow.ErrInvalid,
// shadow.ErrLeaseHeld, shadow.ErrLeaseLost, livesync.ErrTokenConflict),
// wrapped with what failed. Open fails with ErrSchemaTooNew for a database
// of a newer schema; a row that cannot be decoded fails with ErrCorrupt
// naming it. Errors name a PostgreSQL server by host, port, user and
// database, never by its password.
//
// # Tests
//
// The PostgreSQL tests use the server UMBRA_PG_DSN names (default
// postgres://postgres@127.0.0.1:5432/test), each in a schema of its own
// (internal/testsvc); without a server they skip, unless UMBRA_FULL=1.
package sqlstore
