// Package testsvc hands tests the real services they run against. It is a
// test helper, imported only from _test.go files.
//
// PostgreSQL: PostgresDSN gives each test its own freshly created schema on
// the server named by UMBRA_PG_DSN and drops it when the test ends. When the
// server cannot be reached the test is skipped, unless UMBRA_FULL=1 asks for
// the full suite, in which case it fails. Messages name the server's host,
// never its password.
//
// OpenLDAP: StartSlapd starts a throwaway slapd (its own cn=config with mdb,
// the accesslog overlay with a raised olcDbMaxSize, syncprov) on a free
// loopback port, as a direct child stopped by PID; StartSlapdWith adds TLS.
// A missing slapd skips the test, or fails it under UMBRA_FULL=1.
package testsvc

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
)

// DefaultPostgresDSN is the server PostgresDSN uses when UMBRA_PG_DSN is not
// set: the project machines' PostgreSQL with trust authentication.
const DefaultPostgresDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// The environment variables PostgresDSN reads.
const (
	// EnvPostgresDSN names the PostgreSQL server (a pgx DSN, URL or
	// key=value form) whose database the tests create their schemas in.
	EnvPostgresDSN = "UMBRA_PG_DSN"
	// EnvFull set to "1" turns every "service missing" skip into a failure.
	EnvFull = "UMBRA_FULL"
)

var (
	adminMu  sync.Mutex
	adminDBs = map[string]*sql.DB{}
)

// PostgresDSN returns a DSN for a fresh, empty schema of its own on the
// PostgreSQL server given by UMBRA_PG_DSN (DefaultPostgresDSN when unset).
// The schema is first on the returned DSN's search_path, so tables a test
// creates without a schema land in it; it is dropped (CASCADE) when t ends.
//
// When the server cannot be reached, PostgresDSN skips t with a message
// naming the server's host, or fails t when UMBRA_FULL=1. A DSN that cannot
// be parsed always fails t. No message carries the DSN's password.
//
// PostgresDSN is safe to call from parallel tests.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	return postgresDSN(t, os.Getenv)
}

func postgresDSN(t testing.TB, getenv func(string) string) string {
	t.Helper()
	base := getenv(EnvPostgresDSN)
	if base == "" {
		base = DefaultPostgresDSN
	}
	cfg, err := pgx.ParseConfig(base)
	if err != nil {
		// The parse error may quote the DSN; say only which variable.
		t.Fatalf("testsvc: %s cannot be parsed as a PostgreSQL DSN", EnvPostgresDSN)
		return ""
	}
	where := describe(cfg)
	db := adminDB(base)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		msg := fmt.Sprintf("testsvc: PostgreSQL at %s is not reachable: %s", where, scrub(err.Error(), cfg.Password))
		if getenv(EnvFull) == "1" {
			t.Fatalf("%s (%s=1: the full suite needs it)", msg, EnvFull)
			return ""
		}
		t.Skipf("%s; start it or set %s (set %s=1 to fail instead of skipping)", msg, EnvPostgresDSN, EnvFull)
		return ""
	}
	schema := schemaName(t.Name())
	ident := pgx.Identifier{schema}.Sanitize()
	if _, err := db.ExecContext(ctx, "CREATE SCHEMA "+ident); err != nil {
		t.Fatalf("testsvc: create schema %s on %s: %s", schema, where, scrub(err.Error(), cfg.Password))
		return ""
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := db.ExecContext(ctx, "DROP SCHEMA IF EXISTS "+ident+" CASCADE"); err != nil {
			t.Errorf("testsvc: drop schema %s on %s: %s", schema, where, scrub(err.Error(), cfg.Password))
		}
	})
	return withSearchPath(base, schema)
}

// adminDB returns the shared pool for base, opening it on first use. The
// pools live as long as the test binary.
func adminDB(base string) *sql.DB {
	adminMu.Lock()
	defer adminMu.Unlock()
	db, ok := adminDBs[base]
	if !ok {
		db, _ = sql.Open("pgx", base) // only fails for an unknown driver name
		db.SetMaxOpenConns(4)
		db.SetConnMaxIdleTime(30 * time.Second)
		adminDBs[base] = db
	}
	return db
}

// describe names a server for messages: host:port, user and database.
func describe(cfg *pgx.ConnConfig) string {
	host := net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
	if strings.HasPrefix(cfg.Host, "/") {
		host = cfg.Host // unix socket directory
	}
	return fmt.Sprintf("%s (user %q, database %q)", host, cfg.User, cfg.Database)
}

// scrub removes password from msg, in case a driver error quotes it.
func scrub(msg, password string) string {
	if password == "" {
		return msg
	}
	return strings.ReplaceAll(msg, password, "xxxxx")
}

// RedactDSN returns dsn with its password replaced by "xxxxx", for messages.
// A DSN it cannot parse is replaced as a whole.
func RedactDSN(dsn string) string {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return "(unparsable DSN)"
	}
	return scrub(dsn, cfg.Password)
}

// schemaName derives a unique, valid, unquoted-safe schema name from a test
// name: "t_", up to 30 lowercase letters, digits or underscores, "_", and 12
// random hex digits.
func schemaName(testName string) string {
	var b strings.Builder
	b.WriteString("t_")
	for _, r := range strings.ToLower(testName) {
		if b.Len() >= 32 {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	b.WriteByte('_')
	b.WriteString(hex.EncodeToString(rnd[:]))
	return b.String()
}

// withSearchPath adds search_path=schema to dsn as a run-time parameter,
// in whichever form (URL or key=value) dsn is written.
func withSearchPath(dsn, schema string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err == nil {
			q := u.Query()
			q.Set("search_path", schema)
			u.RawQuery = q.Encode()
			return u.String()
		}
	}
	return dsn + " search_path=" + schema
}
