package testsvc

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestPostgresDSNGivesAFreshSchemaAndDropsIt(t *testing.T) {
	t.Parallel()
	var schema string
	var admin *sql.DB
	t.Run("inner", func(t *testing.T) {
		dsn := PostgresDSN(t)
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		ctx := context.Background()
		if err := db.QueryRowContext(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(schema, "t_testpostgresdsn") {
			t.Fatalf("current_schema() = %q, want the test's own schema", schema)
		}
		if _, err := db.ExecContext(ctx, "CREATE TABLE x (id int)"); err != nil {
			t.Fatal(err)
		}
		var n int
		err = db.QueryRowContext(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename = 'x'", schema).Scan(&n)
		if err != nil || n != 1 {
			t.Fatalf("table x in schema %s: n=%d err=%v", schema, n, err)
		}
		admin = adminDB(serverDSN())
	})
	if schema == "" {
		t.Skip("inner test skipped (no PostgreSQL)")
	}
	var n int
	if err := admin.QueryRow("SELECT count(*) FROM pg_namespace WHERE nspname = $1", schema).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("schema %s still exists after the test ended", schema)
	}
}

func TestPostgresDSNSchemasAreUnique(t *testing.T) {
	t.Parallel()
	a, b := PostgresDSN(t), PostgresDSN(t)
	if a == b {
		t.Fatalf("two calls gave the same DSN %q", a)
	}
}

// serverDSN mirrors PostgresDSN's choice of server.
func serverDSN() string {
	if v := os.Getenv(EnvPostgresDSN); v != "" {
		return v
	}
	return DefaultPostgresDSN
}

// fakeTB records how a helper ended the test. Skipf and Fatalf end the
// calling goroutine, as the real ones do.
type fakeTB struct {
	testing.TB
	mu       sync.Mutex
	skipped  string
	fatal    string
	cleanups []func()
}

func (f *fakeTB) Helper()      {}
func (f *fakeTB) Name() string { return "TestFake" }
func (f *fakeTB) Cleanup(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups = append(f.cleanups, fn)
}
func (f *fakeTB) Skipf(format string, args ...any) {
	f.mu.Lock()
	f.skipped = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.fatal = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}
func (f *fakeTB) Errorf(format string, args ...any) { f.Fatalf(format, args...) }

func runFake(env map[string]string) *fakeTB {
	f := &fakeTB{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		postgresDSN(f, func(k string) string { return env[k] })
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		panic("postgresDSN did not return")
	}
	return f
}

func TestPostgresDSNUnreachable(t *testing.T) {
	t.Parallel()
	// Port 1 on loopback: nothing listens there, the connection is refused.
	dsn := "postgres://postgres:hunter2@127.0.0.1:1/test?sslmode=disable&connect_timeout=5"
	t.Run("skips without UMBRA_FULL", func(t *testing.T) {
		t.Parallel()
		f := runFake(map[string]string{EnvPostgresDSN: dsn})
		if f.skipped == "" || f.fatal != "" {
			t.Fatalf("skipped=%q fatal=%q, want a skip", f.skipped, f.fatal)
		}
		if !strings.Contains(f.skipped, "127.0.0.1:1") {
			t.Errorf("skip message %q does not name the host", f.skipped)
		}
		if strings.Contains(f.skipped, "hunter2") {
			t.Errorf("skip message %q carries the password", f.skipped)
		}
	})
	t.Run("fails with UMBRA_FULL=1", func(t *testing.T) {
		t.Parallel()
		f := runFake(map[string]string{EnvPostgresDSN: dsn, EnvFull: "1"})
		if f.fatal == "" || f.skipped != "" {
			t.Fatalf("skipped=%q fatal=%q, want a failure", f.skipped, f.fatal)
		}
		if !strings.Contains(f.fatal, "127.0.0.1:1") || strings.Contains(f.fatal, "hunter2") {
			t.Errorf("failure message %q: want host named, password hidden", f.fatal)
		}
	})
	t.Run("unparsable DSN fails without echoing it", func(t *testing.T) {
		t.Parallel()
		f := runFake(map[string]string{EnvPostgresDSN: "postgres://u:hunter2@[::1"})
		if f.fatal == "" || strings.Contains(f.fatal, "hunter2") {
			t.Fatalf("fatal=%q, want a failure without the password", f.fatal)
		}
	})
}

func TestRedactDSN(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"postgres://u:hunter2@h:5432/db", "postgres://u:xxxxx@h:5432/db"},
		{"host=h user=u password=hunter2 dbname=db", "host=h user=u password=xxxxx dbname=db"},
		{"postgres://u@h/db", "postgres://u@h/db"},
		{"postgres://u:p@[::1", "(unparsable DSN)"},
	} {
		if got := RedactDSN(tc.in); got != tc.want {
			t.Errorf("RedactDSN(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestWithSearchPath(t *testing.T) {
	t.Parallel()
	if got := withSearchPath("postgres://u@h/db?sslmode=disable", "s1"); got != "postgres://u@h/db?search_path=s1&sslmode=disable" {
		t.Errorf("URL form: %q", got)
	}
	if got := withSearchPath("host=h dbname=db", "s1"); got != "host=h dbname=db search_path=s1" {
		t.Errorf("key=value form: %q", got)
	}
	if got := schemaName(strings.Repeat("Ab/", 40)); len(got) > 63 || !strings.HasPrefix(got, "t_ab_ab_") {
		t.Errorf("schemaName: %q", got)
	}
}
