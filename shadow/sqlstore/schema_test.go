package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/internal/testsvc"
	"github.com/umbra-idm/umbra/shadow"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 678901234, time.UTC)

// newShadow is a valid live shadow with one unfinished retry operation due
// at t0.
func newShadow(id string) *shadow.Shadow {
	uid := "uid-" + id
	if id == "" {
		uid += newID()
	}
	return &shadow.Shadow{
		ID: id, ResourceID: "r1", Class: "account", UID: uid, Name: "name-" + id,
		Attributes: connector.Attributes{"n": {"0"}}, Exists: true, Origin: shadow.OriginAssigned,
		Pending: []shadow.PendingOperation{{
			ID: 1, Type: shadow.OpRetry, Status: shadow.StatusPendingExecution, Result: shadow.ResultInProgress,
			Delta:       connector.Delta{Type: connector.DeltaModify, Changes: []connector.AttributeDelta{{Op: connector.Replace, Name: "mail", Values: []string{"x@example.org"}}}},
			RequestedAt: t0.Add(-time.Hour),
		}},
		NextDue: t0,
	}
}

// testDB is one fresh database that several Stores (as several processes
// would) open.
type testDB struct {
	open func(opts Options) (*Store, error)
	// raw opens a plain connection pool to it.
	raw func(t *testing.T) *sql.DB
}

func freshDB(t *testing.T, dialect string) testDB {
	t.Helper()
	ctx := context.Background()
	if dialect == "sqlite" {
		path := filepath.Join(t.TempDir(), "umbra.db")
		return testDB{
			open: func(opts Options) (*Store, error) { return OpenSQLite(ctx, path, opts) },
			raw:  func(t *testing.T) *sql.DB { return rawDB(t, "sqlite", "file:"+path) },
		}
	}
	dsn := testsvc.PostgresDSN(t)
	return testDB{
		open: func(opts Options) (*Store, error) { return OpenPostgres(ctx, dsn, opts) },
		raw:  func(t *testing.T) *sql.DB { return rawDB(t, "pgx", dsn) },
	}
}

// extraSchema names a PostgreSQL schema of this test's own beside its
// search_path schema, and drops it when the test ends: Options.Schema is
// absolute, so a fixed name would be shared by every run.
func extraSchema(t *testing.T, db testDB, suffix string) string {
	t.Helper()
	raw := db.raw(t)
	var base string
	if err := raw.QueryRow(`SELECT current_schema()`).Scan(&base); err != nil {
		t.Fatal(err)
	}
	name := base + "_" + suffix
	t.Cleanup(func() {
		if _, err := raw.Exec(`DROP SCHEMA IF EXISTS ` + name + ` CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", name, err)
		}
	})
	return name
}

func rawDB(t *testing.T, driver, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// sameDatabase returns an opener of Stores with opts on one fresh database.
func sameDatabase(t *testing.T, dialect string, opts Options) func() (*Store, error) {
	t.Helper()
	db := freshDB(t, dialect)
	return func() (*Store, error) { return db.open(opts) }
}

func mustOpen(t *testing.T, open func() (*Store, error)) *Store {
	t.Helper()
	s, err := open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func schemaVersions(t *testing.T, s *Store) []int {
	t.Helper()
	rows, err := s.rdb.Query(s.sql(`SELECT version FROM {t}schema_version ORDER BY version`))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

func TestMigrationsIdempotentAndConcurrent(t *testing.T) {
	t.Parallel()
	for _, d := range []string{"sqlite", "postgres"} {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			db := freshDB(t, d)
			opts := Options{TablePrefix: "mig_"}
			if d == "postgres" {
				opts.Schema = extraSchema(t, db, "mig") // created by the library, by one of the openers
			}
			open := func() (*Store, error) { return db.open(opts) }
			// Four "processes" open the fresh database at once.
			const n = 4
			stores := make([]*Store, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() { stores[i], errs[i] = open() })
			}
			wg.Wait()
			for i := range n {
				if errs[i] != nil {
					t.Fatalf("concurrent open %d: %v", i, errs[i])
				}
				defer stores[i].Close()
			}
			if got := schemaVersions(t, stores[0]); len(got) != SchemaVersion || got[len(got)-1] != SchemaVersion {
				t.Fatalf("schema_version rows %v, want 1..%d once each", got, SchemaVersion)
			}
			ctx := context.Background()
			if err := stores[1].Create(ctx, newShadow("a")); err != nil {
				t.Fatal(err)
			}
			// Reopening migrates nothing and keeps the data.
			again := mustOpen(t, open)
			if got := schemaVersions(t, again); len(got) != SchemaVersion {
				t.Fatalf("after reopen: schema_version rows %v", got)
			}
			if _, err := again.Get(ctx, "a"); err != nil {
				t.Fatalf("reopened store lost shadow a: %v", err)
			}
		})
	}
}

func TestSchemaTooNewWritesNothing(t *testing.T) {
	t.Parallel()
	for _, d := range []string{"sqlite", "postgres"} {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			db := freshDB(t, d)
			open := func() (*Store, error) { return db.open(Options{TablePrefix: "new_"}) }
			s := mustOpen(t, open)
			ctx := context.Background()
			// A newer library migrated the database to version 99 and
			// dropped a table this version knows.
			for _, stmt := range []string{`DROP TABLE {t}set_aside`, `INSERT INTO {t}schema_version (version, applied_at) VALUES (99, 0)`} {
				if _, err := s.wdb.ExecContext(ctx, s.sql(stmt)); err != nil {
					t.Fatal(err)
				}
			}
			s.Close()
			_, err := open()
			if !errors.Is(err, ErrSchemaTooNew) {
				t.Fatalf("open of a version-99 database: %v, want ErrSchemaTooNew", err)
			}
			if !strings.Contains(err.Error(), "version 99") || !strings.Contains(err.Error(), fmt.Sprintf("up to %d", SchemaVersion)) {
				t.Errorf("error %q does not name both versions", err)
			}
			// Nothing was written: no migration re-created the table, and
			// the version rows are as they were.
			probe := db.raw(t)
			var n int
			if err := probe.QueryRowContext(ctx, s.sql(`SELECT count(*) FROM {t}schema_version`)).Scan(&n); err != nil || n != SchemaVersion+1 {
				t.Fatalf("schema_version rows: %d (%v), want %d", n, err, SchemaVersion+1)
			}
			if _, err := probe.ExecContext(ctx, s.sql(`SELECT 1 FROM {t}set_aside`)); err == nil {
				t.Fatal("the failed open re-created set_aside")
			}
		})
	}
}

func TestOptionsValidation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, err := OpenSQLite(ctx, filepath.Join(t.TempDir(), "x.db"), Options{
		TablePrefix: "Bad-Prefix", Schema: "s", BusyTimeout: -1, MaxOpenConns: -2,
	})
	if err == nil {
		t.Fatal("OpenSQLite with bad options succeeded")
	}
	for _, want := range []string{`TablePrefix "Bad-Prefix"`, `Schema "s"`, "BusyTimeout -1ns", "MaxOpenConns -2"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	_, err = OpenPostgres(ctx, "postgres://u@127.0.0.1:1/db", Options{Schema: `x"; DROP TABLE y; --`})
	if err == nil || !strings.Contains(err.Error(), "Options.Schema") {
		t.Fatalf("OpenPostgres with an injected schema: %v", err)
	}
	for _, path := range []string{"", ":memory:", "file:x.db?mode=ro"} {
		if _, err := OpenSQLite(ctx, path, Options{}); err == nil {
			t.Fatalf("OpenSQLite(%q) succeeded", path)
		}
	}
	// A path with URI metacharacters is a plain file name.
	odd := filepath.Join(t.TempDir(), "a?b#c%d.db")
	s, err := OpenSQLite(ctx, odd, Options{})
	if err != nil {
		t.Fatalf("OpenSQLite(%q): %v", odd, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := os.Stat(odd); err != nil {
		t.Fatalf("the database file is not at its path: %v", err)
	}
	if _, err := OpenSQLite(ctx, filepath.Join(t.TempDir(), "missing-dir", "x.db"), Options{}); err == nil {
		t.Fatal("OpenSQLite in a missing directory succeeded")
	}
}

func TestPostgresUnreachableNamesHostNotPassword(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := OpenPostgres(ctx, "postgres://bob:hunter2@127.0.0.1:1/umbra?sslmode=disable&connect_timeout=5", Options{})
	if err == nil {
		t.Fatal("connected to 127.0.0.1:1")
	}
	if !strings.Contains(err.Error(), "127.0.0.1:1") || !strings.Contains(err.Error(), `"bob"`) {
		t.Errorf("error %q does not name host and user", err)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error %q carries the password", err)
	}
	_, err = OpenPostgres(ctx, "postgres://bob:hunter2@[::1", Options{})
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("unparsable DSN: %v", err)
	}
	// The redaction keeps the chain and hides the secret wherever it is.
	base := errors.New("auth for hunter2 failed")
	r := redact(base, "hunter2")
	if !errors.Is(r, base) || strings.Contains(r.Error(), "hunter2") {
		t.Errorf("redact: %v", r)
	}
	if redact(base, "") != base {
		t.Error("redact without a secret changed the error")
	}
}

func TestPrefixesAndSchemasIsolate(t *testing.T) {
	t.Parallel()
	for _, d := range []string{"sqlite", "postgres"} {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := freshDB(t, d)
			a := mustOpen(t, func() (*Store, error) { return db.open(Options{}) })
			other := Options{TablePrefix: "x_"}
			if d == "postgres" {
				other.Schema = extraSchema(t, db, "other")
			}
			b := mustOpen(t, func() (*Store, error) { return db.open(other) })
			if err := a.Create(ctx, newShadow("only-in-a")); err != nil {
				t.Fatal(err)
			}
			if n, err := b.Count(ctx, shadow.Query{}); err != nil || n != 0 {
				t.Fatalf("other prefix sees %d shadows (%v)", n, err)
			}
		})
	}
}

// A database at schema version 1 is brought to the current version when it
// is opened: on PostgreSQL the shadows table gets its fillfactor (room for
// HOT updates of claims); SQLite records the version and changes nothing.
func TestMigrationFromVersion1(t *testing.T) {
	t.Parallel()
	for _, d := range []string{"sqlite", "postgres"} {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			db := freshDB(t, d)
			opts := Options{TablePrefix: "up_"}
			open := func() (*Store, error) { return db.open(opts) }
			s := mustOpen(t, open)
			ctx := context.Background()
			if err := s.Create(ctx, newShadow("a")); err != nil {
				t.Fatal(err)
			}
			// Back to version 1, as a database written before migration 2.
			execSQL(t, s, `DELETE FROM {t}schema_version WHERE version > 1`)
			if d == "postgres" {
				execSQL(t, s, `ALTER TABLE {t}shadows RESET (fillfactor)`)
			}
			s.Close()
			again := mustOpen(t, open)
			defer again.Close()
			if got := schemaVersions(t, again); len(got) != SchemaVersion || got[len(got)-1] != SchemaVersion {
				t.Fatalf("schema_version rows %v, want 1..%d", got, SchemaVersion)
			}
			if _, err := again.Get(ctx, "a"); err != nil {
				t.Fatalf("migrated store lost shadow a: %v", err)
			}
			if d == "postgres" {
				var opts []string
				var raw sql.NullString
				if err := again.rdb.QueryRowContext(ctx, `SELECT array_to_string(reloptions, ',') FROM pg_class WHERE oid = $1::regclass`,
					again.qual+"shadows").Scan(&raw); err != nil {
					t.Fatal(err)
				}
				opts = strings.Split(raw.String, ",")
				if !slices.Contains(opts, "fillfactor=80") {
					t.Errorf("shadows reloptions %q, want fillfactor=80", raw.String)
				}
			}
		})
	}
}
