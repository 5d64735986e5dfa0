package sqltable_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/sqltable"
)

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	_, err := sqltable.New(context.Background(), sqltable.Config{
		Dialect: 9, ChangeLogTable: "bad name", PageSize: -1,
		Classes: map[connector.ObjectClass]sqltable.Table{
			"account": {Name: "accounts; DROP TABLE x", KeyColumn: "id", NameColumn: "login",
				Columns: map[string]string{"uid": "username", "": "x", "id": "id"}},
		},
	})
	if err == nil {
		t.Fatal("New accepted an invalid config")
	}
	for _, want := range []string{"DB is nil", "Dialect = 9", `ChangeLogTable = "bad name"`, "PageSize = -1",
		`Name = "accounts; DROP TABLE x"`, `NameColumn = "login"`, "empty attribute name", "maps the key column"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
}

func TestErrorsAndTokens(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		open func(*testing.T) *sqltable.LiveSync
		bad  []connector.Token
	}{
		{"postgres", func(t *testing.T) *sqltable.LiveSync { return newConnector(t, openPostgres(t), sqltable.Postgres) },
			[]connector.Token{"12", "x:1", "1:-1", "1:y", "1:2:3"}},
		{"sqlite", func(t *testing.T) *sqltable.LiveSync { return newConnector(t, openSQLite(t), sqltable.SQLite) },
			[]connector.Token{"x", "-1", "1:2", "1.5"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			c := tc.open(t)
			for _, tok := range tc.bad {
				_, err := c.FetchChanges(ctx, class, tok, 10)
				if !errors.Is(err, connector.ErrSchema) || !strings.Contains(err.Error(), string(tok)) {
					t.Errorf("FetchChanges(%q) = %v, want a schema error naming the token", tok, err)
				}
			}
			if _, err := c.Add(ctx, class, connector.Attributes{"username": {"a"}, "shoe": {"x"}}); !errors.Is(err, connector.ErrSchema) {
				t.Errorf("add of an unmapped attribute = %v, want schema", err)
			}
			if _, err := c.Add(ctx, class, connector.Attributes{"username": {"a", "b"}}); !errors.Is(err, connector.ErrSchema) {
				t.Errorf("add of two values = %v, want schema", err)
			}
			if _, err := c.Add(ctx, class, connector.Attributes{"mail": {"m"}}); !errors.Is(err, connector.ErrSchema) {
				t.Errorf("add without the naming attribute = %v, want schema", err)
			}
			if _, err := c.Get(ctx, "nope", connector.Identifiers{UID: "1"}); !errors.Is(err, connector.ErrSchema) {
				t.Errorf("get of an unknown class = %v, want schema", err)
			}
			r, err := c.Add(ctx, class, connector.Attributes{"username": {"x'; DROP TABLE accounts; --"}})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Modify(ctx, class, r.ID, []connector.AttributeDelta{{Op: connector.Replace, Name: "username"}}); !errors.Is(err, connector.ErrSchema) {
				t.Errorf("removing the naming attribute = %v, want schema", err)
			}
			if err := c.Test(ctx); err != nil {
				t.Errorf("Test: %v", err)
			}
			obj, err := c.Get(ctx, class, connector.Identifiers{Name: "x'; DROP TABLE accounts; --"})
			if err != nil || obj.ID.UID != r.ID.UID {
				t.Errorf("get by hostile name = %v, %v", obj, err)
			}
		})
	}
}

// TestPostgresConcurrentWritersNeverSkipped writes from several connections
// with overlapping transactions while a reader follows the change log, and
// checks that every change is delivered exactly once: sequence numbers are
// taken before commit, so a cursor on them alone would skip.
func TestPostgresConcurrentWritersNeverSkipped(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openPostgres(t)
	db.SetMaxOpenConns(8)
	c := newConnector(t, db, sqltable.Postgres)
	tok, err := c.LatestToken(ctx, class)
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 4, 60
	seen := map[string]int{}
	var mu sync.Mutex
	done := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				tx, err := db.BeginTx(ctx, nil)
				if err != nil {
					t.Error(err)
					return
				}
				// Two rows per transaction, so transactions interleave
				// between taking sequence numbers and committing.
				for k := range 2 {
					if _, err := tx.Exec(`INSERT INTO accounts (username) VALUES ($1)`, fmt.Sprintf("w%d-%d-%d", w, i, k)); err != nil {
						t.Error(err)
						tx.Rollback()
						return
					}
				}
				if err := tx.Commit(); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); close(done) }()
	// Changes of transactions still running anywhere on the server (other
	// tests share it) are held back, not lost: after the writers finish,
	// poll until every change arrived or a generous deadline passes.
	var deadline <-chan time.Time
	for len(seen) < writers*each*2 {
		select {
		case <-done:
			if deadline == nil {
				deadline = time.After(2 * time.Minute)
			}
		case <-deadline:
			t.Fatalf("saw %d distinct changes before the deadline, want %d", len(seen), writers*each*2)
		default:
		}
		b, err := c.FetchChanges(ctx, class, tok, 50)
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		for _, ch := range b.Changes {
			seen[ch.ID.Name]++
		}
		mu.Unlock()
		tok = b.Token
		if len(b.Changes) == 0 {
			time.Sleep(5 * time.Millisecond) // waiting on other transactions, not on a retry period
		}
	}
	if more, err := c.FetchChanges(ctx, class, tok, 50); err != nil || len(more.Changes) != 0 {
		t.Fatalf("changes after the last: %+v %v", more.Changes, err)
	}
	if len(seen) != writers*each*2 {
		t.Fatalf("saw %d distinct changes, want %d", len(seen), writers*each*2)
	}
	for name, n := range seen {
		if n != 1 {
			t.Errorf("change of %s delivered %d times", name, n)
		}
	}
}

// A SQLite table whose key is a plain INTEGER PRIMARY KEY reuses the key of
// a deleted row: New refuses it, naming the column; AUTOINCREMENT passes.
func TestNewRefusesReusedSQLiteKeys(t *testing.T) {
	ctx := context.Background()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	for _, s := range []string{
		`CREATE TABLE plain (id INTEGER PRIMARY KEY, username TEXT NOT NULL UNIQUE)`,
		`CREATE TABLE auto (id INTEGER PRIMARY KEY AUTOINCREMENT, username TEXT NOT NULL UNIQUE)`,
		`CREATE TABLE texty (id TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE)`,
	} {
		if _, err := db.Exec(s); err != nil {
			t.Fatal(err)
		}
	}
	cfg := func(tbl string) sqltable.Config {
		return sqltable.Config{DB: db, Dialect: sqltable.SQLite, Classes: map[connector.ObjectClass]sqltable.Table{
			"account": {Name: tbl, KeyColumn: "id", NameColumn: "username", Columns: map[string]string{"username": "username"}},
		}}
	}
	_, err = sqltable.New(ctx, cfg("plain"))
	if err == nil || !strings.Contains(err.Error(), `KeyColumn "id" of table plain`) || !strings.Contains(err.Error(), "AUTOINCREMENT") {
		t.Fatalf("plain INTEGER PRIMARY KEY: got %v, want an error naming the key column and AUTOINCREMENT", err)
	}
	for _, tbl := range []string{"auto", "texty", "main.auto", "not_yet_created"} {
		if _, err := sqltable.New(ctx, cfg(tbl)); err != nil {
			t.Errorf("table %s: %v", tbl, err)
		}
	}
}
