package sqltable_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/connectortest"
	"github.com/umbra-idm/umbra/connector/sqltable"
	"github.com/umbra-idm/umbra/internal/testsvc"
)

const class = connector.ObjectClass("account")

var table = sqltable.Table{
	Name:       "accounts",
	KeyColumn:  "id",
	NameColumn: "username",
	Columns:    map[string]string{"username": "username", "mail": "mail", "description": "description"},
}

// openPostgres returns a database on a fresh schema with the accounts table.
func openPostgres(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", testsvc.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec(`CREATE TABLE accounts (
		id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		username text NOT NULL UNIQUE, mail text, description text)`); err != nil {
		t.Fatal(err)
	}
	return db
}

// openSQLite returns a database in a temp file with the accounts table.
func openSQLite(t *testing.T) *sql.DB {
	t.Helper()
	path := filepath.Join(t.TempDir(), "accounts.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1) // one writer: SQLite's own rule, kept by the pool
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec(`CREATE TABLE accounts (
		id INTEGER PRIMARY KEY AUTOINCREMENT, username TEXT NOT NULL UNIQUE, mail TEXT, description TEXT)`); err != nil {
		t.Fatal(err)
	}
	return db
}

func newConnector(t *testing.T, db *sql.DB, d sqltable.Dialect) *sqltable.LiveSync {
	t.Helper()
	c, err := sqltable.New(context.Background(), sqltable.Config{
		DB: db, Dialect: d, LiveSync: true,
		Classes: map[connector.ObjectClass]sqltable.Table{class: table},
	})
	if err != nil {
		t.Fatal(err)
	}
	ls, ok := c.AsLiveSyncer()
	if !ok {
		t.Fatal("AsLiveSyncer: live sync is on but not offered")
	}
	return ls
}

func harness(c connector.Connector) connectortest.Harness {
	return connectortest.Harness{
		Class:               class,
		New:                 func(*testing.T) connector.Connector { return c },
		NamingAttribute:     "username",
		ModifiableAttribute: "description",
		// Changes wait for every older transaction on the server to end;
		// other tests share the server, so allow for their transactions.
		SyncTimeout: time.Minute,
		NewAttributes: func(i int) connector.Attributes {
			return connector.Attributes{"username": {fmt.Sprintf("user%06d", i)}, "mail": {fmt.Sprintf("user%06d@example.com", i)}}
		},
	}
}

var caps = connectortest.Capabilities{Search: true, LiveSync: true, LiveSyncDeletes: true, PreciseTokens: true, Rename: true}

func TestConformancePostgres(t *testing.T) {
	connectortest.Run(t, caps, harness(newConnector(t, openPostgres(t), sqltable.Postgres)))
}

func TestConformanceSQLite(t *testing.T) {
	connectortest.Run(t, caps, harness(newConnector(t, openSQLite(t), sqltable.SQLite)))
}
