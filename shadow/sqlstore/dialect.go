package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// dialect is everything that differs between SQLite and PostgreSQL. The SQL
// itself is shared: both accept $N placeholders, partial indexes, ON
// CONFLICT, RETURNING and materialized CTEs.
type dialect struct {
	name string
	// schemas says whether Options.Schema is supported.
	schemas bool
	// autocommit says whether a single write statement may run outside
	// a transaction (see Store.write).
	autocommit bool
	// textOnly says that text columns refuse strings that are not text
	// (invalid UTF-8, NUL), so identifiers must be checked before writing.
	textOnly bool
	// ddl replaces the type placeholders of the migrations.
	ddl *strings.Replacer
	// skipLocked, forUpdate and forShare end a SELECT that locks its rows;
	// empty on SQLite, where the single writer serializes transactions.
	skipLocked, forUpdate, forShare string
	// unique reports a unique-constraint violation, and whether it was
	// the primary key's.
	unique func(error) (violated, primaryKey bool)
	// lockMigrations serializes migrations of one table set across
	// processes, inside tx.
	lockMigrations func(ctx context.Context, tx *sql.Tx, schema, prefix string) error
}

var sqliteDialect = &dialect{
	name: "SQLite",
	ddl: strings.NewReplacer(
		"{bool}", "BOOLEAN",
		"{json}", "TEXT",
		"{key}", "TEXT",
		"{seqpk}", "INTEGER PRIMARY KEY AUTOINCREMENT",
	),
	unique: func(err error) (bool, bool) {
		var e *sqlite.Error
		if !errors.As(err, &e) {
			return false, false
		}
		pk := e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
		return pk || e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE, pk
	},
	// The write pool begins every transaction IMMEDIATE: the database's
	// write lock is held from the start, so migrations are serialized.
	lockMigrations: func(context.Context, *sql.Tx, string, string) error { return nil },
}

var postgresDialect = &dialect{
	name:       "PostgreSQL",
	schemas:    true,
	autocommit: true,
	textOnly:   true,
	ddl: strings.NewReplacer(
		"{bool}", "BOOLEAN",
		"{json}", "JSONB",
		// Keys compare by bytes, as the Query contract's ordering wants.
		"{key}", `TEXT COLLATE "C"`,
		"{seqpk}", "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
	),
	skipLocked: " FOR UPDATE SKIP LOCKED",
	forUpdate:  " FOR UPDATE",
	forShare:   " FOR SHARE",
	unique: func(err error) (bool, bool) {
		var e *pgconn.PgError
		if !errors.As(err, &e) || e.Code != "23505" {
			return false, false
		}
		return true, strings.HasSuffix(e.ConstraintName, "_pkey")
	},
	lockMigrations: func(ctx context.Context, tx *sql.Tx, schema, prefix string) error {
		// One lock per table set: the schema (or the search_path's
		// first) and the prefix.
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtextextended(
			'umbra.sqlstore:' || coalesce(NULLIF($1, ''), current_schema(), '') || '.' || $2, 0))`, schema, prefix); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		if schema == "" {
			return nil
		}
		var exists bool
		if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, schema).Scan(&exists); err != nil {
			return fmt.Errorf("look up schema %q: %w", schema, err)
		}
		if exists {
			return nil
		}
		// schema is a validated identifier (Options.validate).
		if _, err := tx.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
			return fmt.Errorf("create schema %q: %w", schema, err)
		}
		return nil
	},
}
