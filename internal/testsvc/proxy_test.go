package testsvc

import (
	"bufio"
	"context"
	"database/sql"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// echoServer answers every line with the same line, until t ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(c net.Conn, line string) (string, error) {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return "", err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSuffix(got, "\n"), err
}

func TestProxyForwardsCutsAndBlocks(t *testing.T) {
	t.Parallel()
	p := NewProxy(t, echoServer(t))
	c1, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	if got, err := roundTrip(c1, "hello"); err != nil || got != "hello" {
		t.Fatalf("through the proxy: %q, %v; want the echo", got, err)
	}
	if open, _, _ := p.Stats(); open != 1 {
		t.Fatalf("open connections = %d, want 1", open)
	}
	if n := p.Cut(); n != 1 {
		t.Fatalf("Cut dropped %d connections, want 1", n)
	}
	if _, err := roundTrip(c1, "again"); err == nil {
		t.Fatal("a cut connection still answers")
	}

	p.Block()
	c2, err := net.Dial("tcp", p.Addr())
	if err == nil {
		if _, err := roundTrip(c2, "blocked"); err == nil {
			t.Fatal("a blocked proxy let a new connection through")
		}
		c2.Close()
	}
	p.Unblock()
	c3, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if got, err := roundTrip(c3, "back"); err != nil || got != "back" {
		t.Fatalf("after Unblock: %q, %v; want the echo", got, err)
	}
	if _, cut, refused := p.Stats(); cut != 1 || refused != 1 {
		t.Fatalf("Stats: cut %d refused %d, want 1 and 1", cut, refused)
	}
}

func TestProxyCutAnswerToDeliversThenCuts(t *testing.T) {
	t.Parallel()
	p := NewProxy(t, echoServer(t))
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	done := p.CutAnswerTo(func(b []byte) bool { return strings.Contains(string(b), "boom") })
	if got, err := roundTrip(c, "keep"); err != nil || got != "keep" {
		t.Fatalf("data the trap does not match: %q, %v; want the echo", got, err)
	}
	if _, err := roundTrip(c, "boom"); err == nil {
		t.Fatal("the answer to trapped data was delivered")
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the trap's channel was not closed after it cut")
	}
	c2, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if got, err := roundTrip(c2, "boom"); err != nil || got != "boom" {
		t.Fatalf("the trap is one-shot, but a second match was cut: %q, %v", got, err)
	}
}

func TestProxyStopsWithTheTest(t *testing.T) {
	t.Parallel()
	target := echoServer(t)
	var addr string
	var conn net.Conn
	t.Run("inner", func(t *testing.T) {
		p := NewProxy(t, target)
		addr = p.Addr()
		var err error
		if conn, err = net.Dial("tcp", addr); err != nil {
			t.Fatal(err)
		}
		if _, err := roundTrip(conn, "x"); err != nil {
			t.Fatal(err)
		}
	})
	defer conn.Close()
	if _, err := roundTrip(conn, "y"); err == nil {
		t.Fatal("a connection outlived the proxy's test")
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("the proxy still listens after its test ended")
	}
}

func TestRedirectKeepsEverythingButTheAddress(t *testing.T) {
	t.Parallel()
	for _, dsn := range []string{
		"postgres://u:secret@db.example:5432/test?sslmode=disable&search_path=s1",
		"host=db.example port=5432 user=u password=secret dbname=test sslmode=disable search_path=s1",
	} {
		out, err := redirect(dsn, "127.0.0.1:6543")
		if err != nil {
			t.Fatalf("redirect(%q): %v", RedactDSN(dsn), err)
		}
		cfg, err := pgx.ParseConfig(out)
		if err != nil {
			t.Fatalf("redirected DSN does not parse: %v", err)
		}
		if cfg.Host != "127.0.0.1" || cfg.Port != 6543 || cfg.User != "u" || cfg.Password != "secret" ||
			cfg.Database != "test" || cfg.RuntimeParams["search_path"] != "s1" {
			t.Fatalf("redirected %q: host %s port %d user %s db %s search_path %s", RedactDSN(dsn),
				cfg.Host, cfg.Port, cfg.User, cfg.Database, cfg.RuntimeParams["search_path"])
		}
	}
}

// TestPostgresProxyPoolReconnects: a database/sql pool through the proxy
// fails while the connection is cut and blocked, and works again once
// unblocked, without being reopened.
func TestPostgresProxyPoolReconnects(t *testing.T) {
	t.Parallel()
	p, dsn := PostgresProxy(t, PostgresDSN(t))
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var one int
	if err := db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("through the proxy: %d, %v", one, err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "CREATE TABLE cut (n int)"); err != nil {
		t.Fatal(err)
	}
	p.Block()
	if p.Cut() == 0 {
		t.Fatal("Cut found no open connection")
	}
	if err := tx.Commit(); err == nil {
		t.Fatal("a transaction whose connection was cut committed")
	}
	if err := db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err == nil {
		t.Fatal("a query succeeded while the proxy was blocked")
	}
	p.Unblock()
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 'cut' AND schemaname = current_schema()").Scan(&one); err != nil {
		t.Fatalf("after Unblock the pool did not reconnect: %v", err)
	}
	if one != 0 {
		t.Fatal("the cut transaction's table exists: it was committed")
	}

	// A commit whose answer is cut: the client gets an error, the server
	// committed.
	tx, err = db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "CREATE TABLE committed (n int)"); err != nil {
		t.Fatal(err)
	}
	p.CutAnswerTo(func(b []byte) bool { return strings.Contains(strings.ToLower(string(b)), "commit") })
	if err := tx.Commit(); err == nil {
		t.Fatal("a commit whose answer was cut reported success")
	}
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 'committed' AND schemaname = current_schema()").Scan(&one); err != nil {
		// The pool may hand out the cut connection once more.
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 'committed' AND schemaname = current_schema()").Scan(&one); err != nil {
			t.Fatal(err)
		}
	}
	if one != 1 {
		t.Fatal("the commit whose answer was cut did not reach the server")
	}
}
