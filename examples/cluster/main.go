// Command cluster runs umbra in several processes that share one PostgreSQL
// database, the way clustered IdM nodes share one repository.
//
// The resource is a table of accounts in the same database (through the
// sqltable connector), so that what each process does is visible to all.
// seed provisions N accounts while the resource is in maintenance: each add
// waits in its shadow as a due retry operation. Then every worker, started
// as a process of its own, runs two loops:
//
//   - refresh, with Owner set to the worker's name: shadows are claimed in
//     small batches (FOR UPDATE SKIP LOCKED), so the workers split the retries
//     and no two execute the same operation;
//   - live sync of an HR feed table, under a lease: one worker leads and
//     follows the feed, the others stand by. When the leader dies, its lease
//     expires and another worker takes it over and resumes from the stored
//     token. The token itself is written fenced by the live-sync task's own
//     lease, so a leader that lost its lease cannot move it.
//
// The story, in four terminals:
//
//	go run ./examples/cluster seed -reset -n 200
//	go run ./examples/cluster worker -name w1
//	go run ./examples/cluster worker -name w2
//	go run ./examples/cluster feed -n 3     # new hires appear in the leader's output
//
// Kill the leader (Ctrl-C, or kill -9 for a crash): within -lease-ttl another
// worker says it took over the live-sync lease, and the claims of the dead
// worker expire (-claim-ttl) and are retried by the survivors; the crashed
// worker's add that was in flight is checked on the resource first, never made
// twice. `go run ./examples/cluster status` shows who did what.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"os/signal"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/sqltable"
	"github.com/umbra-idm/umbra/consistency"
	"github.com/umbra-idm/umbra/shadow"
	"github.com/umbra-idm/umbra/shadow/sqlstore"
)

const (
	prog = "cluster"
	// The resources: accounts are provisioned (refresh); the HR feed is
	// followed (live sync).
	accountsID = "accounts"
	feedID     = "hr-feed"
	account    = connector.ObjectClass("account")
	employee   = connector.ObjectClass("employee")
	// leaderLease names the lease that makes one worker the live-sync
	// runner.
	leaderLease = "cluster/livesync-leader"
	// installLock is the advisory lock key serializing the change-log
	// installation of processes starting at once.
	installLock = 0x756d627261 // "umbra"
	defaultDSN  = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, prog+":", err)
		}
		os.Exit(1)
	}
}

// common are the flags every command has.
type common struct {
	dsn, schema string
}

var identRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

func run(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		usage(stdout)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			return flag.ErrHelp
		}
		return errors.New("missing command (seed, worker, feed or status)")
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet(prog+" "+cmd, flag.ContinueOnError)
	fs.SetOutput(stdout)
	var c common
	fs.StringVar(&c.dsn, "dsn", defaultDSN, "PostgreSQL server shared by every process (pgx DSN)")
	fs.StringVar(&c.schema, "schema", "umbra_cluster", "schema holding the example's tables; empty: the first on the DSN's search_path")
	var w workerConfig
	var n int
	var reset bool
	switch cmd {
	case "seed":
		fs.IntVar(&n, "n", 100, "how many accounts to provision")
		fs.BoolVar(&reset, "reset", false, "drop the schema first (only with -schema)")
	case "feed":
		fs.IntVar(&n, "n", 3, "how many new hires to add to the HR feed")
	case "status":
	case "worker":
		fs.StringVar(&w.name, "name", "", "this worker's name, unique in the cluster (required)")
		fs.DurationVar(&w.latency, "latency", 100*time.Millisecond, "how long the resource takes to create one account")
		fs.DurationVar(&w.round, "round", 500*time.Millisecond, "pause between rounds of each loop")
		fs.DurationVar(&w.claimTTL, "claim-ttl", 3*time.Second, "how long a claimed shadow stays claimed")
		fs.DurationVar(&w.leaseTTL, "lease-ttl", 3*time.Second, "how long the live-sync lease lasts without renewal")
		fs.DurationVar(&w.retryPeriod, "retry-period", time.Second, "wait before an interrupted operation is retried")
		fs.IntVar(&w.concurrency, "concurrency", 2, "shadows refreshed at once by this worker")
		fs.IntVar(&w.batch, "batch", 2, "shadows claimed at once")
	default:
		usage(stdout)
		return fmt.Errorf("unknown command %q (want seed, worker, feed or status)", cmd)
	}
	fs.Usage = func() { usage(fs.Output()); fmt.Fprintf(fs.Output(), "\nFlags of %s:\n", cmd); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected arguments %q", cmd, fs.Args())
	}
	if c.schema != "" && !identRE.MatchString(c.schema) {
		return fmt.Errorf("-schema %q: want a lowercase SQL identifier", c.schema)
	}
	switch cmd {
	case "seed":
		if n < 1 {
			return fmt.Errorf("-n %d: must be at least 1", n)
		}
		if reset && c.schema == "" {
			return errors.New("-reset needs -schema (it drops that schema)")
		}
		return seed(ctx, c, n, reset, stdout)
	case "feed":
		if n < 1 {
			return fmt.Errorf("-n %d: must be at least 1", n)
		}
		return feed(ctx, c, n, stdout)
	case "status":
		return status(ctx, c, stdout)
	default:
		if err := w.validate(); err != nil {
			return err
		}
		return work(ctx, c, w, stdout)
	}
}

func usage(out io.Writer) {
	fmt.Fprintf(out, "Usage: %s <command> [flags]\n\n", prog)
	fmt.Fprintln(out, "Several processes share one PostgreSQL database: they split the refresh work and one live-sync lease.")
	fmt.Fprintln(out, "\nCommands:")
	fmt.Fprintln(out, "  seed    provision -n accounts while the resource is in maintenance: -n due retry operations")
	fmt.Fprintln(out, "  worker  -name w1: claim and retry due operations; lead live sync of the HR feed when holding the lease")
	fmt.Fprintln(out, "  feed    add -n new hires to the HR feed table (the leader's live sync picks them up)")
	fmt.Fprintln(out, "  status  who created which accounts, what is pending, what live sync saw")
	fmt.Fprintf(out, "\nEvery command takes -dsn (default %s) and -schema; %s <command> -h lists its flags.\n", defaultDSN, prog)
}

// withSearchPath puts schema on dsn's search_path (URL or key=value form).
func withSearchPath(dsn, schema string) string {
	if schema == "" {
		return dsn
	}
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		if u, err := url.Parse(dsn); err == nil {
			q := u.Query()
			q.Set("search_path", schema)
			u.RawQuery = q.Encode()
			return u.String()
		}
	}
	return dsn + " search_path=" + schema
}

// env is what every command opens: the shadow store and the database of
// the resources, with their connectors.
type env struct {
	store    *sqlstore.Store
	db       *sql.DB
	accounts *sqltable.Connector
	feed     *sqltable.LiveSync
}

func (e *env) Close() {
	if e.db != nil {
		e.db.Close()
	}
	if e.store != nil {
		e.store.Close()
	}
}

var schemaDDL = []string{
	`CREATE TABLE IF NOT EXISTS cluster_accounts (id bigserial PRIMARY KEY, name text NOT NULL UNIQUE, mail text, created_by text)`,
	`CREATE TABLE IF NOT EXISTS cluster_calls (id bigserial PRIMARY KEY, name text NOT NULL, worker text NOT NULL, at timestamptz NOT NULL DEFAULT now())`,
	`CREATE TABLE IF NOT EXISTS cluster_feed (id bigserial PRIMARY KEY, name text NOT NULL UNIQUE, title text)`,
}

// open connects to the database. With install, it creates the example's
// tables and the feed's change log (serialized by an advisory lock, since
// workers may start at the same moment).
func open(ctx context.Context, c common, install bool) (*env, error) {
	e := &env{}
	var err error
	e.store, err = sqlstore.OpenPostgres(ctx, c.dsn, sqlstore.Options{Schema: c.schema, MaxOpenConns: 4})
	if err != nil {
		return nil, err
	}
	e.db, err = sql.Open("pgx", withSearchPath(c.dsn, c.schema))
	if err != nil {
		e.Close()
		return nil, err
	}
	e.db.SetMaxOpenConns(4)
	if install {
		if err := e.install(ctx); err != nil {
			e.Close()
			return nil, err
		}
	}
	e.accounts, err = sqltable.New(ctx, sqltable.Config{DB: e.db, Dialect: sqltable.Postgres, Classes: map[connector.ObjectClass]sqltable.Table{
		account: {Name: "cluster_accounts", KeyColumn: "id", NameColumn: "name",
			Columns: map[string]string{"name": "name", "mail": "mail", "createdBy": "created_by"}},
	}})
	if err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

func (e *env) install(ctx context.Context) error {
	conn, err := e.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, installLock); err != nil {
		return fmt.Errorf("taking the install lock: %w", err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, installLock)
	for _, s := range schemaDDL {
		if _, err := conn.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("creating the example's tables: %w", err)
		}
	}
	fc, err := sqltable.New(ctx, sqltable.Config{DB: e.db, Dialect: sqltable.Postgres, LiveSync: true, ChangeLogTable: "cluster_changelog",
		Classes: map[connector.ObjectClass]sqltable.Table{
			employee: {Name: "cluster_feed", KeyColumn: "id", NameColumn: "name", Columns: map[string]string{"name": "name", "title": "title"}},
		}})
	if err != nil {
		return err
	}
	e.feed, _ = fc.AsLiveSyncer()
	return nil
}

func seed(ctx context.Context, c common, n int, reset bool, out io.Writer) error {
	if reset {
		db, err := sql.Open("pgx", c.dsn)
		if err != nil {
			return err
		}
		// c.schema is a checked identifier (identRE).
		_, err = db.ExecContext(ctx, `DROP SCHEMA IF EXISTS `+c.schema+` CASCADE`)
		db.Close()
		if err != nil {
			return fmt.Errorf("dropping schema %s: %w", c.schema, err)
		}
		fmt.Fprintf(out, "dropped schema %s\n", c.schema)
	}
	e, err := open(ctx, c, true)
	if err != nil {
		return err
	}
	defer e.Close()
	if k, err := e.store.Count(ctx, shadow.Query{ResourceID: accountsID}); err != nil {
		return err
	} else if k > 0 {
		return fmt.Errorf("the store already has %d account shadows: seed with -reset to start over", k)
	}
	engine, err := consistency.New(consistency.Config{Store: e.store, Resources: []consistency.Resource{{ID: accountsID, Connector: e.accounts}}})
	if err != nil {
		return err
	}
	// In maintenance nothing is called: every add is postponed as a retry
	// operation, due at once, for the workers.
	if err := engine.SetMaintenance(accountsID, true); err != nil {
		return err
	}
	for i := 1; i <= n; i++ {
		name := accountName(i)
		o, err := engine.Add(ctx, consistency.AddRequest{ResourceID: accountsID, Class: account, Name: name,
			Attributes: connector.Attributes{"name": {name}, "mail": {name + "@example.com"}}})
		if err != nil {
			return fmt.Errorf("add %s: %w", name, err)
		}
		if o.Status != consistency.Pending {
			return fmt.Errorf("add %s: %s, want pending", name, o.Status)
		}
	}
	due, err := e.store.Count(ctx, shadow.Query{ResourceID: accountsID, DueBy: time.Now()})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "seeded %d accounts (%s … %s): the resource was in maintenance, so %d shadows hold a due retry operation\n",
		n, accountName(1), accountName(n), due)
	fmt.Fprintln(out, "next: start workers in other terminals, e.g.")
	fmt.Fprintf(out, "  go run ./examples/cluster worker -name w1%s\n  go run ./examples/cluster worker -name w2%s\n", c.flags(), c.flags())
	return nil
}

func accountName(i int) string { return fmt.Sprintf("user-%04d", i) }

// flags returns the flags that point another command at the same place.
func (c common) flags() string {
	s := ""
	if c.dsn != defaultDSN {
		s += " -dsn '" + redactDSN(c.dsn) + "'"
	}
	if c.schema != "umbra_cluster" {
		s += " -schema '" + c.schema + "'"
	}
	return s
}

// redactDSN returns dsn for printing: a password becomes "xxxxx".
func redactDSN(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
			return u.String()
		}
		return dsn
	}
	if strings.Contains(strings.ToLower(dsn), "password") {
		return "<your DSN>"
	}
	return dsn
}

func feed(ctx context.Context, c common, n int, out io.Writer) error {
	e, err := open(ctx, c, true)
	if err != nil {
		return err
	}
	defer e.Close()
	// Insert under the install lock: a worker starting now re-creates the
	// feed's trigger (sqltable drops and creates it, two statements), and a
	// row inserted between the two would never reach the change log.
	conn, err := e.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, installLock); err != nil {
		return fmt.Errorf("taking the install lock: %w", err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, installLock)
	rows, err := conn.QueryContext(ctx, `INSERT INTO cluster_feed (name, title)
		SELECT 'hire-' || substr(md5(random()::text || clock_timestamp()::text), 1, 8), 'new hire' FROM generate_series(1, $1)
		RETURNING name`, n)
	if err != nil {
		return fmt.Errorf("adding to the feed: %w", err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return err
		}
		names = append(names, s)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	fmt.Fprintf(out, "added to the HR feed: %s\n", strings.Join(names, ", "))
	return nil
}

func status(ctx context.Context, c common, out io.Writer) error {
	e, err := open(ctx, c, true)
	if err != nil {
		return err
	}
	defer e.Close()
	total, err := e.store.Count(ctx, shadow.Query{ResourceID: accountsID})
	if err != nil {
		return err
	}
	pending, err := e.store.Count(ctx, shadow.Query{ResourceID: accountsID, Unfinished: true})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "account shadows: %d, with unfinished operations: %d\n\n", total, pending)
	created, err := countBy(ctx, e.db, `SELECT created_by, COUNT(*) FROM cluster_accounts GROUP BY created_by`)
	if err != nil {
		return err
	}
	calls, err := countBy(ctx, e.db, `SELECT worker, COUNT(*) FROM cluster_calls GROUP BY worker`)
	if err != nil {
		return err
	}
	workers := slices.Sorted(maps.Keys(calls))
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "worker	accounts created	add calls")
	for _, w := range workers {
		fmt.Fprintf(tw, "%s\t%d\t%d\n", w, created[w], calls[w])
	}
	tw.Flush()
	var feedRows int
	if err := e.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM cluster_feed`).Scan(&feedRows); err != nil {
		return err
	}
	synced, err := e.store.Count(ctx, shadow.Query{ResourceID: feedID, Dead: shadow.DeadExclude})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nHR feed: %d rows, %d synced by live sync\n", feedRows, synced)
	return nil
}

// countBy runs a query of (key, count) rows.
func countBy(ctx context.Context, db *sql.DB, q string) (map[string]int, error) {
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	m := map[string]int{}
	for rows.Next() {
		var k sql.NullString
		var n int
		if err := rows.Scan(&k, &n); err != nil {
			return nil, err
		}
		m[k.String] += n
	}
	return m, rows.Err()
}
