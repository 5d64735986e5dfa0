package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// ErrSchemaTooNew is returned by Open when the database was migrated by a
// newer version of this library than the running one: its tables may hold
// what this version cannot read. Nothing is written.
var ErrSchemaTooNew = errors.New("sqlstore: database schema is newer than this library")

// migrations are the schema's versions, in order: migrations[i] takes the
// schema from version i to i+1. Released migrations MUST NOT change; a
// change of schema is a new migration appended here.
//
// Placeholders: {t} is the qualified table prefix (schema.prefix), {i} the
// index prefix (indexes live in their table's schema), and {bool}, {json},
// {key}, {seqpk} the dialect's column types.
var migrations = [][]string{
	// 1: shadows, leases, tokens, set-aside changes.
	{
		`CREATE TABLE {t}shadows (
			id                {key} PRIMARY KEY,
			resource_id       TEXT NOT NULL,
			class             TEXT NOT NULL,
			kind              TEXT NOT NULL,
			intent            TEXT NOT NULL,
			uid               TEXT NOT NULL,
			name              TEXT NOT NULL,
			attributes        {json},
			obj_exists        {bool} NOT NULL,
			dead              {bool} NOT NULL,
			dead_since        BIGINT,
			origin            SMALLINT NOT NULL,
			version           BIGINT NOT NULL,
			pending           {json},
			next_due          BIGINT,
			needs_recon       {bool} NOT NULL,
			reconciled_at     BIGINT,
			has_unfinished    {bool} NOT NULL,
			oldest_unfinished BIGINT,
			oldest_retry      BIGINT,
			oldest_grouped    BIGINT,
			oldest_async      BIGINT,
			claim_owner       TEXT,
			claim_until       BIGINT,
			created_at        BIGINT NOT NULL,
			updated_at        BIGINT NOT NULL
		)`,
		// Live identity: at most one live shadow per (resource, class, UID).
		`CREATE UNIQUE INDEX {i}shadows_live_uid ON {t}shadows (resource_id, class, uid)
			WHERE obj_exists AND NOT dead AND uid <> ''`,
		`CREATE INDEX {i}shadows_uid ON {t}shadows (uid, resource_id, class)`,
		`CREATE INDEX {i}shadows_name ON {t}shadows (name, resource_id, class)`,
		`CREATE INDEX {i}shadows_resource ON {t}shadows (resource_id, class, id)`,
		// The engines' work queues: each index holds only the shadows it
		// selects, so reading it costs what it selects.
		`CREATE INDEX {i}shadows_unfinished ON {t}shadows (id) WHERE has_unfinished`,
		`CREATE INDEX {i}shadows_oldest_retry ON {t}shadows (resource_id, oldest_retry) WHERE oldest_retry IS NOT NULL`,
		`CREATE INDEX {i}shadows_oldest_grouped ON {t}shadows (resource_id, oldest_grouped) WHERE oldest_grouped IS NOT NULL`,
		`CREATE INDEX {i}shadows_oldest_async ON {t}shadows (resource_id, oldest_async) WHERE oldest_async IS NOT NULL`,
		`CREATE INDEX {i}shadows_next_due ON {t}shadows (next_due) WHERE next_due IS NOT NULL`,
		`CREATE INDEX {i}shadows_dead ON {t}shadows (dead_since) WHERE dead`,
		`CREATE INDEX {i}shadows_needs_recon ON {t}shadows (id) WHERE needs_recon`,
		`CREATE INDEX {i}shadows_reconciled ON {t}shadows (resource_id, class, reconciled_at)`,
		`CREATE TABLE {t}leases (
			name    TEXT PRIMARY KEY,
			owner   TEXT NOT NULL,
			term    BIGINT NOT NULL,
			expires BIGINT NOT NULL
		)`,
		`CREATE TABLE {t}tokens (
			resource_id TEXT NOT NULL,
			class       TEXT NOT NULL,
			task        TEXT NOT NULL,
			token       TEXT NOT NULL,
			updated_at  BIGINT NOT NULL,
			PRIMARY KEY (resource_id, class, task)
		)`,
		`CREATE TABLE {t}set_aside (
			seq                 {seqpk},
			resource_id         TEXT NOT NULL,
			class               TEXT NOT NULL,
			task                TEXT NOT NULL,
			id                  TEXT NOT NULL,
			change              {json} NOT NULL,
			attempts            INTEGER NOT NULL,
			last_error          TEXT NOT NULL,
			last_error_category SMALLINT NOT NULL,
			set_aside_at        BIGINT NOT NULL
		)`,
		`CREATE UNIQUE INDEX {i}set_aside_key ON {t}set_aside (resource_id, class, task, id)`,
	},
	// 2: room in PostgreSQL's heap pages, so that writes of columns no
	// index holds (a claim, its release) are HOT updates, which add no
	// index entries. Pages written before keep none until the table is
	// rewritten (VACUUM FULL).
	{
		postgresOnly + `ALTER TABLE {t}shadows SET (fillfactor = 80)`,
	},
}

// postgresOnly starts a migration statement that only PostgreSQL runs.
const postgresOnly = "{postgres}"

// SchemaVersion is the schema version this library writes and reads: the
// number of migrations.
const SchemaVersion = 2

// migrate brings the schema to SchemaVersion in one transaction, under the
// dialect's migration lock: idempotent, and safe when several processes
// open one database at once.
func (s *Store) migrate(ctx context.Context) error {
	if len(migrations) != SchemaVersion {
		panic(fmt.Sprintf("sqlstore: %d migrations but SchemaVersion %d", len(migrations), SchemaVersion))
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		if err := s.d.lockMigrations(ctx, tx, s.schema, s.prefix); err != nil {
			return fmt.Errorf("sqlstore: migrate: %w", err)
		}
		if _, err := tx.ExecContext(ctx, s.sql(`CREATE TABLE IF NOT EXISTS {t}schema_version (
			version    INTEGER PRIMARY KEY,
			applied_at BIGINT NOT NULL
		)`)); err != nil {
			return fmt.Errorf("sqlstore: migrate: create %sschema_version: %w", s.prefix, err)
		}
		var current int
		if err := tx.QueryRowContext(ctx, s.sql(`SELECT COALESCE(MAX(version), 0) FROM {t}schema_version`)).Scan(&current); err != nil {
			return fmt.Errorf("sqlstore: migrate: read %sschema_version: %w", s.prefix, err)
		}
		if current > SchemaVersion {
			return fmt.Errorf("%w: %s tables %q are at version %d, this library knows up to %d; upgrade umbra",
				ErrSchemaTooNew, s.d.name, s.qual, current, SchemaVersion)
		}
		for v := current + 1; v <= SchemaVersion; v++ {
			for i, stmt := range migrations[v-1] {
				stmt, pgOnly := strings.CutPrefix(stmt, postgresOnly)
				if pgOnly && s.d == sqliteDialect {
					continue
				}
				if _, err := tx.ExecContext(ctx, s.sql(stmt)); err != nil {
					return fmt.Errorf("sqlstore: migrate to version %d, statement %d: %w", v, i+1, err)
				}
			}
			if _, err := tx.ExecContext(ctx, s.sql(`INSERT INTO {t}schema_version (version, applied_at) VALUES ($1, $2)`),
				v, s.clock.Now().UnixMicro()); err != nil {
				return fmt.Errorf("sqlstore: migrate: record version %d: %w", v, err)
			}
			s.log.Info("sqlstore: migrated schema", "dialect", s.d.name, "tables", s.qual, "version", v)
		}
		return nil
	})
}

// sql expands the table and type placeholders of a statement.
func (s *Store) sql(stmt string) string {
	return s.d.ddl.Replace(s.names.Replace(stmt))
}
