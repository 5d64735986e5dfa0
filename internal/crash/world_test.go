package crash_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/sqltable"
	"github.com/umbra-idm/umbra/consistency"
	"github.com/umbra-idm/umbra/shadow/sqlstore"

	_ "github.com/jackc/pgx/v5/stdlib" // "pgx" database/sql driver
	_ "modernc.org/sqlite"             // "sqlite" database/sql driver
)

const (
	resID = "res"
	class = connector.ObjectClass("account")
)

// The tasks a child runs.
const (
	taskRefresh     = "refresh"
	taskPropagation = "propagation"
)

// backend names the durable databases of one crash test: the store and the
// resource. With a DSN both live in one PostgreSQL schema (the store's tables
// are prefixed umbra_, the resource's are accounts and calls); without, they
// are two SQLite files in Dir.
type backend struct {
	Dir string
	DSN string
	// ResourceDSN, when set, is where the resource's tables live instead
	// of DSN (the connection-cut tests reach the store through a proxy,
	// the resource directly or through another).
	ResourceDSN string
}

func (b backend) dialect() sqltable.Dialect {
	if b.DSN != "" {
		return sqltable.Postgres
	}
	return sqltable.SQLite
}

func (b backend) openStore(ctx context.Context, clk connector.Clock) (*sqlstore.Store, error) {
	if b.DSN != "" {
		return sqlstore.OpenPostgres(ctx, b.DSN, sqlstore.Options{Clock: clk, MaxOpenConns: 4})
	}
	return sqlstore.OpenSQLite(ctx, filepath.Join(b.Dir, "umbra.db"), sqlstore.Options{Clock: clk})
}

// openResource opens the resource's database and installs its tables
// (idempotently).
func (b backend) openResource(ctx context.Context) (*sql.DB, error) {
	var db *sql.DB
	var err error
	if b.DSN != "" {
		dsn := b.DSN
		if b.ResourceDSN != "" {
			dsn = b.ResourceDSN
		}
		db, err = sql.Open("pgx", dsn)
		if err != nil {
			return nil, err
		}
		db.SetMaxOpenConns(4)
	} else {
		// WAL with synchronous=NORMAL: a committed write survives the
		// death of the process (what these tests do), not a power cut.
		db, err = sql.Open("sqlite", "file:"+filepath.Join(b.Dir, "resource.db")+
			"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate")
		if err != nil {
			return nil, err
		}
		db.SetMaxOpenConns(1)
	}
	if err := installResource(ctx, db, b.dialect()); err != nil {
		db.Close()
		return nil, fmt.Errorf("install resource tables: %w", err)
	}
	return db, nil
}

// installResource creates the accounts table (username unique: a second
// account of one name cannot exist) and the calls table, which triggers
// fill in the same transaction as every committed insert, update and delete
// of an account: what reached the resource, durably and countably.
func installResource(ctx context.Context, db *sql.DB, d sqltable.Dialect) error {
	var stmts []string
	if d == sqltable.Postgres {
		stmts = []string{
			`CREATE TABLE IF NOT EXISTS accounts (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
				username text NOT NULL UNIQUE, v text, seq text)`,
			`CREATE TABLE IF NOT EXISTS calls (n bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
				op text NOT NULL, username text NOT NULL, seq text)`,
			`CREATE OR REPLACE FUNCTION log_call() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN
				IF TG_OP = 'DELETE' THEN
					INSERT INTO calls (op, username, seq) VALUES ('delete', OLD.username, OLD.seq);
					RETURN OLD;
				END IF;
				INSERT INTO calls (op, username, seq) VALUES (CASE TG_OP WHEN 'INSERT' THEN 'add' ELSE 'modify' END, NEW.username, NEW.seq);
				RETURN NEW;
			END $$`,
			`CREATE OR REPLACE TRIGGER accounts_log AFTER INSERT OR UPDATE OR DELETE ON accounts
				FOR EACH ROW EXECUTE FUNCTION log_call()`,
		}
	} else {
		stmts = []string{
			`CREATE TABLE IF NOT EXISTS accounts (id INTEGER PRIMARY KEY AUTOINCREMENT, username TEXT NOT NULL UNIQUE, v TEXT, seq TEXT)`,
			`CREATE TABLE IF NOT EXISTS calls (n INTEGER PRIMARY KEY, op TEXT NOT NULL, username TEXT NOT NULL, seq TEXT)`,
			`CREATE TRIGGER IF NOT EXISTS accounts_add AFTER INSERT ON accounts BEGIN
				INSERT INTO calls (op, username, seq) VALUES ('add', NEW.username, NEW.seq); END`,
			`CREATE TRIGGER IF NOT EXISTS accounts_mod AFTER UPDATE ON accounts BEGIN
				INSERT INTO calls (op, username, seq) VALUES ('modify', NEW.username, NEW.seq); END`,
			`CREATE TRIGGER IF NOT EXISTS accounts_del AFTER DELETE ON accounts BEGIN
				INSERT INTO calls (op, username, seq) VALUES ('delete', OLD.username, OLD.seq); END`,
		}
	}
	for _, s := range stmts {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

func newConnector(ctx context.Context, db *sql.DB, d sqltable.Dialect) (*sqltable.Connector, error) {
	return sqltable.New(ctx, sqltable.Config{DB: db, Dialect: d, Classes: map[connector.ObjectClass]sqltable.Table{
		class: {Name: "accounts", KeyColumn: "id", NameColumn: "username",
			Columns: map[string]string{"username": "username", "v": "v", "seq": "seq"}},
	}})
}

// settings are the resource's consistency settings in a crash test: retry
// soon (the clock jumps an hour between runs), never give up (kills are not
// failures), keep completed operations and dead shadows for the checks.
func settings(task string) consistency.Settings {
	s := consistency.DefaultSettings()
	s.OperationRetryPeriod = time.Minute
	s.OperationRetryMaxAttempts = 1_000_000
	s.PendingOperationRetentionPeriod = 100_000 * time.Hour
	s.DeadShadowRetentionPeriod = 100_000 * time.Hour
	s.ProbeInterval = time.Minute
	if task == taskPropagation {
		s.OperationGroupingInterval = time.Minute
	}
	return s
}

// clockBase is the fake time the tests start from. Child number c runs its
// i-th loop at clockBase + (100c + i) hours, and the parent seeds round work
// before child c at clockBase + 100c - 10 hours: time never goes back across
// processes, and every retry or grouped operation is due at the next loop.
var clockBase = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func childTime(child, loop int) time.Time {
	return clockBase.Add(time.Duration(100*child+loop) * time.Hour)
}

// journaled wraps the resource's connector in a child process. It appends a
// line per call to a journal file before and after the call (each line one
// write(2) on an O_APPEND file: it survives SIGKILL), and kills its own
// process with SIGKILL right after a chosen write reached the resource,
// before the engine can record the outcome.
type journaled struct {
	c       *sqltable.Connector
	mu      sync.Mutex
	journal *os.File
	// selfKill > 0 kills the process right after the selfKill-th write of
	// kind killOp ("add", "modify", "delete"; empty: any) succeeded.
	selfKill int64
	killOp   string
	writes   atomic.Int64
	// onWrite, when set, is called after every write that reached the
	// resource (instead of the self-kill).
	onWrite func(op, name string)
}

func (j *journaled) log(format string, args ...any) {
	line := fmt.Sprintf(format, args...) + "\n"
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, err := j.journal.WriteString(line); err != nil {
		panic(fmt.Sprintf("crash child: journal: %v", err))
	}
}

// wrote counts a write that reached the resource and kills the process when
// it is the chosen one.
func (j *journaled) wrote(op, name string) {
	if j.onWrite != nil {
		j.onWrite(op, name)
		return
	}
	if j.selfKill == 0 || (j.killOp != "" && j.killOp != op) {
		return
	}
	if n := j.writes.Add(1); n == j.selfKill {
		j.log("kill %s %s", op, name)
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
}

func (j *journaled) Add(ctx context.Context, cl connector.ObjectClass, attrs connector.Attributes) (connector.Result, error) {
	name := attrs.Get("username")
	j.log("add %s %s", name, attrs.Get("seq"))
	res, err := j.c.Add(ctx, cl, attrs)
	switch {
	case errors.Is(err, connector.ErrAlreadyExists):
		j.log("dup %s", name)
	case err == nil:
		j.wrote("add", name)
	}
	return res, err
}

func (j *journaled) Modify(ctx context.Context, cl connector.ObjectClass, id connector.Identifiers, changes []connector.AttributeDelta) (connector.Result, error) {
	seq := ""
	for _, c := range changes {
		if c.Name == "seq" && len(c.Values) == 1 {
			seq = c.Values[0]
		}
	}
	j.log("modify %s %s", id.Name, seq)
	res, err := j.c.Modify(ctx, cl, id, changes)
	if err == nil {
		j.wrote("modify", id.Name)
	} else {
		j.log("failed %s modify %s: %s", id.Name, seq, strings.ReplaceAll(err.Error(), "\n", " "))
	}
	return res, err
}

func (j *journaled) Delete(ctx context.Context, cl connector.ObjectClass, id connector.Identifiers) (connector.Result, error) {
	j.log("delete %s", id.Name)
	res, err := j.c.Delete(ctx, cl, id)
	if err == nil {
		j.wrote("delete", id.Name)
	}
	return res, err
}

// Get journals reads by name alone: that is how the engine settles an add
// whose outcome is unknown.
func (j *journaled) Get(ctx context.Context, cl connector.ObjectClass, id connector.Identifiers) (connector.Object, error) {
	obj, err := j.c.Get(ctx, cl, id)
	if id.UID == "" {
		if err == nil {
			j.log("found %s", id.Name)
		} else {
			j.log("missing %s", id.Name)
		}
	} else if err == nil {
		j.log("read %s %s", obj.ID.Name, obj.Attributes.Get("seq"))
	}
	return obj, err
}

func (j *journaled) Test(ctx context.Context) error { return j.c.Test(ctx) }

// journalEntries reads the journal file in dir: one []string of fields per
// line; a torn last line (a kill mid-write) is dropped.
func journalEntries(dir string) ([][]string, error) {
	data, err := os.ReadFile(filepath.Join(dir, "journal"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out [][]string
	lines := strings.Split(string(data), "\n")
	for _, l := range lines[:len(lines)-1] { // the text after the last \n is torn or empty
		out = append(out, strings.Fields(l))
	}
	return out, nil
}
