package sqlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/livesync"
	"github.com/umbra-idm/umbra/shadow"
)

// Store is a shadow and token store in SQLite or PostgreSQL. It is safe for
// concurrent use, and several Stores (in one process or many) may share one
// database. Close it when done.
type Store struct {
	d *dialect
	// rdb serves reads, wdb writes. On PostgreSQL they are one pool; on
	// SQLite wdb has one connection, so the Store's writers queue for it
	// instead of failing with SQLITE_BUSY, and rdb is read-only.
	rdb, wdb *sql.DB
	clock    connector.Clock
	log      *slog.Logger
	schema   string
	prefix   string
	qual     string // schema.prefix, or prefix
	names    *strings.Replacer
	q        statements
	// bulk holds the multi-row writes of groups (PostgreSQL only; nil on
	// SQLite, where each write is its own prepared statement).
	bulk *bulkStatements
	// bulkRetries counts the groups whose multi-row statements failed a
	// check and that were run again a write at a time (see writeGroup).
	bulkRetries atomic.Int64
	// lite holds the multi-row writes of groups on SQLite (nil on
	// PostgreSQL; see liteStatements).
	lite *liteStatements
	// wprep and rprep hold the prepared statements of the write and read
	// pools on SQLite (nil on PostgreSQL; see prepCache).
	wprep, rprep *prepCache
	closed       sync.Once
}

// Format prints the store as its database kind and table set, whatever the
// verb: never its connections, whose driver state holds the DSN and its
// password (fmt would show them for %s or %d of the struct).
func (s *Store) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, "sqlstore.Store(%s %s)", s.d.name, s.qual)
}

// Interfaces a Store implements.
var (
	_ shadow.Store              = (*Store)(nil)
	_ shadow.Batcher            = (*Store)(nil)
	_ shadow.Claimer            = (*Store)(nil)
	_ shadow.Leaser             = (*Store)(nil)
	_ livesync.TokenStore       = (*Store)(nil)
	_ livesync.FencedTokenStore = (*Store)(nil)
	_ livesync.GroupCommitter   = (*Store)(nil)
)

// OpenSQLite opens (creating when missing) the SQLite database file at path
// (a file system path, not ":memory:" or a file: URI) and migrates its
// schema. The file is put in WAL mode (readers do not block the writer)
// with synchronous=FULL (a committed write survives a power failure, not
// only a crash of the process), foreign keys on, and opts.BusyTimeout for
// other processes' write locks. Writes go through one connection, so concurrent
// writers of this Store queue in order instead of failing.
func OpenSQLite(ctx context.Context, path string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	if err := opts.validate(sqliteDialect); err != nil {
		return nil, err
	}
	switch {
	case path == "":
		return nil, errors.New("sqlstore: OpenSQLite: empty path")
	case path == ":memory:" || strings.HasPrefix(path, "file:"):
		// Each pooled connection would open its own in-memory database,
		// and a URI would bypass the parameters set here.
		return nil, fmt.Errorf("sqlstore: OpenSQLite: path %q is not a file path (for a throwaway store use a file in a temporary directory)", path)
	}
	// A file: URI, so that the driver's parameters follow "?"; a path's own
	// "?", "#" and "%" are escaped.
	uri := "file:" + strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path) +
		"?_pragma=busy_timeout(" + strconv.FormatInt(opts.BusyTimeout.Milliseconds(), 10) + ")" +
		"&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(FULL)&_pragma=temp_store(MEMORY)"
	wdb, err := sql.Open("sqlite", uri+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlstore: open SQLite %q: %w", path, err)
	}
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxLifetime(0)
	wdb.SetConnMaxIdleTime(0)
	if err := wdb.PingContext(ctx); err != nil {
		wdb.Close()
		return nil, fmt.Errorf("sqlstore: open SQLite %q: %w", path, err)
	}
	rdb, err := sql.Open("sqlite", uri+"&_pragma=query_only(1)")
	if err != nil {
		wdb.Close()
		return nil, fmt.Errorf("sqlstore: open SQLite %q: %w", path, err)
	}
	rdb.SetMaxOpenConns(opts.MaxOpenConns)
	rdb.SetMaxIdleConns(opts.MaxOpenConns)
	s := newStore(sqliteDialect, rdb, wdb, opts)
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("sqlstore: open SQLite %q: %w", path, err)
	}
	s.wprep, s.rprep = newPrepCache(wdb, false), newPrepCache(rdb, true)
	s.lite = s.prepareLite()
	if err := s.wprep.prepare(ctx, append(s.lite.texts(), s.q.insert, s.q.update, s.q.updateSame, s.q.versionOf, s.q.deleteOne, s.q.tokenNew, s.q.tokenSwap)...); err != nil {
		s.Close()
		return nil, fmt.Errorf("sqlstore: open SQLite %q: prepare statements: %w", path, err)
	}
	return s, nil
}

// OpenPostgres connects to the PostgreSQL server dsn names (a pgx DSN: URL
// or key=value) and migrates the schema. An unreachable server fails with an
// error naming its host, port, user and database, never the password.
func OpenPostgres(ctx context.Context, dsn string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	if err := opts.validate(postgresDialect); err != nil {
		return nil, err
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// The parser's message may quote the DSN, password included.
		return nil, errors.New("sqlstore: OpenPostgres: the DSN cannot be parsed (check its syntax; it is not repeated here because it may hold a password)")
	}
	where := describePostgres(cfg)
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(opts.MaxOpenConns)
	db.SetMaxIdleConns(opts.MaxOpenConns)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlstore: connect to PostgreSQL at %s: %w", where, redact(err, cfg.Password))
	}
	s := newStore(postgresDialect, db, db, opts)
	s.bulk = s.prepareBulk()
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("sqlstore: PostgreSQL at %s: %w", where, redact(err, cfg.Password))
	}
	return s, nil
}

func describePostgres(cfg *pgx.ConnConfig) string {
	host := net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
	if strings.HasPrefix(cfg.Host, "/") {
		host = cfg.Host
	}
	return fmt.Sprintf("%s (user %q, database %q)", host, cfg.User, cfg.Database)
}

// redactedError hides a password that an error's text might carry, keeping
// the error chain for errors.Is and errors.As.
type redactedError struct {
	err    error
	secret string
}

func (e *redactedError) Error() string { return strings.ReplaceAll(e.err.Error(), e.secret, "xxxxx") }
func (e *redactedError) Unwrap() error { return e.err }

func redact(err error, secret string) error {
	if secret == "" {
		return err
	}
	return &redactedError{err: err, secret: secret}
}

func newStore(d *dialect, rdb, wdb *sql.DB, opts Options) *Store {
	s := &Store{d: d, rdb: rdb, wdb: wdb, clock: opts.Clock, log: opts.Logger, schema: opts.Schema, prefix: opts.TablePrefix}
	s.qual = s.prefix
	if s.schema != "" {
		s.qual = s.schema + "." + s.prefix
	}
	s.names = strings.NewReplacer("{t}", s.qual, "{i}", s.prefix)
	s.q = s.prepareStatements()
	return s
}

// Close closes the Store's connections. It is safe to call more than once.
func (s *Store) Close() error {
	var err error
	s.closed.Do(func() {
		s.wprep.close()
		s.rprep.close()
		err = s.rdb.Close()
		if s.wdb != s.rdb {
			err = errors.Join(err, s.wdb.Close())
		}
	})
	return err
}

// tx runs fn in a write transaction and commits it; any error rolls it
// back, so that nothing fn did is written.
func (s *Store) tx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// querier runs statements: a transaction, or the write pool itself for a
// single statement in autocommit mode.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// write runs fn, one write statement (and reads that explain its outcome),
// in autocommit mode on PostgreSQL — one round trip instead of three — and
// in a transaction on SQLite, where BEGIN IMMEDIATE takes the write lock
// up front (a deferred write could fail with SQLITE_BUSY when it upgrades
// its read lock while another process writes).
func (s *Store) write(ctx context.Context, fn func(q querier) error) error {
	if s.d.autocommit {
		if err := ctx.Err(); err != nil {
			return err
		}
		return fn(s.wdb)
	}
	return s.tx(ctx, func(tx *sql.Tx) error { return fn(tx) })
}

// statements are the hot statements, expanded once.
type statements struct {
	insert, update, versionOf, deleteOne, get string
	// updateSame is update for a shadow whose indexed columns keep their
	// values: it sets only the others, so that SQLite leaves the
	// indexes alone, and misses a row whose indexed columns differ
	// (SQLite only; see updateGroupTx).
	updateSame string
	// tokenNew stores a key's first token, tokenSwap moves it.
	tokenNew, tokenSwap string
}

func (s *Store) prepareStatements() statements {
	return statements{
		insert: s.sql(`INSERT INTO {t}shadows (id, resource_id, class, kind, intent, uid, name, attributes, obj_exists,
			dead, dead_since, origin, version, pending, next_due, needs_recon, has_unfinished, oldest_unfinished,
			oldest_retry, oldest_grouped, oldest_async, reconciled_at, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 1, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $22)`),
		update: s.sql(`UPDATE {t}shadows SET resource_id = $3, class = $4, kind = $5, intent = $6, uid = $7, name = $8,
			attributes = $9, obj_exists = $10, dead = $11, dead_since = $12, origin = $13, pending = $14, next_due = $15,
			needs_recon = $16, has_unfinished = $17, oldest_unfinished = $18, oldest_retry = $19, oldest_grouped = $20,
			oldest_async = $21, reconciled_at = $22, updated_at = $23, version = version + 1
			WHERE id = $1 AND version = $2 RETURNING version, created_at`),
		updateSame: s.sqliteOnly(`UPDATE {t}shadows SET kind = $5, intent = $6, attributes = $9, origin = $13, pending = $14,
			oldest_unfinished = $18, updated_at = $23, version = version + 1
			WHERE id = $1 AND version = $2 AND resource_id = $3 AND class = $4 AND uid = $7 AND name = $8
			AND obj_exists = $10 AND dead = $11 AND dead_since IS $12 AND next_due IS $15 AND needs_recon = $16
			AND has_unfinished = $17 AND oldest_retry IS $19 AND oldest_grouped IS $20 AND oldest_async IS $21
			AND reconciled_at IS $22 RETURNING version, created_at`),
		versionOf: s.sql(`SELECT version FROM {t}shadows WHERE id = $1`),
		deleteOne: s.sql(`DELETE FROM {t}shadows WHERE id = $1 AND version = $2`),
		get:       s.sql(`SELECT ` + shadowCols + ` FROM {t}shadows WHERE id = $1`),
		tokenNew: s.sql(`INSERT INTO {t}tokens AS cur (resource_id, class, task, token, updated_at)
			VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (resource_id, class, task) DO UPDATE SET token = excluded.token, updated_at = excluded.updated_at
			WHERE cur.token = ''`),
		tokenSwap: s.sql(`UPDATE {t}tokens SET token = $4, updated_at = $5
			WHERE resource_id = $1 AND class = $2 AND task = $3 AND token = $6`),
	}
}

// sqliteOnly is s.sql(stmt) on SQLite, and "" on PostgreSQL.
func (s *Store) sqliteOnly(stmt string) string {
	if s.d != sqliteDialect {
		return ""
	}
	return s.sql(stmt)
}

// lastIDMicros is the time part of the last ID newID made in this
// process.
var lastIDMicros atomic.Uint64

// newID returns a new shadow ID: 24 hex digits, the time in microseconds
// (7 bytes; ascending in this process, one more than the last when the
// clock has not moved) then 5 random bytes. IDs ascend, so that a create
// appends to the ID-ordered indexes instead of writing into the middle of
// them: a group of creates then dirties a few index pages, not one per
// shadow (on SQLite this doubled the rate of creates); the random tail
// keeps the IDs of processes creating at the same time apart.
func newID() string {
	now := uint64(time.Now().UnixMicro())
	for {
		last := lastIDMicros.Load()
		next := max(now, last+1)
		if lastIDMicros.CompareAndSwap(last, next) {
			now = next
			break
		}
	}
	var b [12]byte
	binary.BigEndian.PutUint64(b[:8], now<<8)
	_, _ = rand.Read(b[7:])
	return hex.EncodeToString(b[:])
}

func (s *Store) validShadow(op string, sh *shadow.Shadow) error {
	if sh == nil {
		return fmt.Errorf("sqlstore: %s: nil shadow: %w", op, shadow.ErrInvalid)
	}
	if err := sh.Validate(); err != nil {
		return fmt.Errorf("sqlstore: %s: %w: %w", op, shadow.ErrInvalid, err)
	}
	if s.d.textOnly {
		for _, f := range []struct{ name, v string }{{"ID", sh.ID}, {"ResourceID", sh.ResourceID},
			{"Class", string(sh.Class)}, {"Kind", sh.Kind}, {"Intent", sh.Intent}, {"UID", sh.UID}, {"Name", sh.Name}} {
			if !plainText(f.v) {
				return fmt.Errorf("sqlstore: %s: shadow %q: %s %q is not text (invalid UTF-8 or NUL), which %s cannot keep in a key column: %w",
					op, sh.ID, f.name, f.v, s.d.name, shadow.ErrInvalid)
			}
		}
	}
	return nil
}

// shadowArgs are $2..$21 of insert and $3..$22 of update: the shadow's
// content and derived columns.
func shadowArgs(sh *shadow.Shadow) ([]any, error) {
	attrs, err := encodeAttributes(sh.Attributes)
	if err != nil {
		return nil, fmt.Errorf("shadow %q: encode attributes: %w", sh.ID, err)
	}
	pending, err := encodePending(sh.Pending)
	if err != nil {
		return nil, fmt.Errorf("shadow %q: encode pending operations: %w", sh.ID, err)
	}
	dv := derive(sh)
	return []any{sh.ResourceID, string(sh.Class), sh.Kind, sh.Intent, sh.UID, sh.Name, attrs, sh.Exists, sh.Dead,
		micros(sh.DeadSince), int64(sh.Origin), pending, micros(sh.NextDue), sh.NeedsReconciliation,
		dv.hasUnfinished, dv.oldestAny, dv.oldestRetry, dv.oldestGroup, dv.oldestAsync, micros(sh.ReconciledAt)}, nil
}

// createTx inserts sh and sets its ID, Version and timestamps.
func (s *Store) createTx(ctx context.Context, tx querier, sh *shadow.Shadow) error {
	id := sh.ID
	if id == "" {
		id = newID()
	}
	args, err := shadowArgs(sh)
	if err != nil {
		return err
	}
	now := truncate(s.clock.Now())
	all := append(append([]any{id}, args...), now.UnixMicro())
	if _, err := s.writer(tx).ExecContext(ctx, s.q.insert, all...); err != nil {
		switch dup, onID := s.d.unique(err); {
		case dup && onID:
			return fmt.Errorf("shadow %q: a shadow with this ID exists: %w", id, shadow.ErrDuplicate)
		case dup:
			return fmt.Errorf("shadow %q: live identity %s/%s/%s is held by another shadow: %w",
				id, sh.ResourceID, sh.Class, sh.UID, shadow.ErrDuplicate)
		}
		return fmt.Errorf("shadow %q: %w", id, err)
	}
	sh.ID, sh.Version, sh.CreatedAt, sh.UpdatedAt = id, 1, now, now
	return nil
}

// updateTx replaces the stored shadow sh.ID at sh.Version and sets sh's
// new Version and timestamps.
func (s *Store) updateTx(ctx context.Context, tx querier, sh *shadow.Shadow) error {
	all, now, err := s.updateArgs(sh)
	if err != nil {
		return err
	}
	return s.updateWith(ctx, tx, sh, all, now)
}

// updateArgs are the arguments of update for sh, written now.
func (s *Store) updateArgs(sh *shadow.Shadow) ([]any, time.Time, error) {
	args, err := shadowArgs(sh)
	if err != nil {
		return nil, time.Time{}, err
	}
	now := truncate(s.clock.Now())
	return append(append([]any{sh.ID, sh.Version}, args...), now.UnixMicro()), now, nil
}

// updateWith runs update with its arguments all, written now; see
// updateTx.
func (s *Store) updateWith(ctx context.Context, tx querier, sh *shadow.Shadow, all []any, now time.Time) error {
	var version, created int64
	err := s.writer(tx).QueryRowContext(ctx, s.q.update, all...).Scan(&version, &created)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return s.missOrConflict(ctx, tx, sh.ID, sh.Version)
	case err != nil && isDup(s.d, err):
		return fmt.Errorf("shadow %q: live identity %s/%s/%s is held by another shadow: %w",
			sh.ID, sh.ResourceID, sh.Class, sh.UID, shadow.ErrDuplicate)
	case err != nil:
		return fmt.Errorf("shadow %q: %w", sh.ID, err)
	}
	sh.Version, sh.CreatedAt, sh.UpdatedAt = version, fromMicros(sql.NullInt64{Int64: created, Valid: true}), now
	return nil
}

func isDup(d *dialect, err error) bool {
	dup, _ := d.unique(err)
	return dup
}

// missOrConflict explains why a write at version touched no row.
func (s *Store) missOrConflict(ctx context.Context, tx querier, id string, version int64) error {
	var stored int64
	err := s.writer(tx).QueryRowContext(ctx, s.q.versionOf, id).Scan(&stored)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("shadow %q: %w", id, shadow.ErrNotFound)
	case err != nil:
		return fmt.Errorf("shadow %q: %w", id, err)
	}
	return fmt.Errorf("shadow %q: stored version is %d, caller's %d: %w", id, stored, version, shadow.ErrConflict)
}

func (s *Store) deleteTx(ctx context.Context, tx querier, id string, version int64) error {
	res, err := s.writer(tx).ExecContext(ctx, s.q.deleteOne, id, version)
	if err != nil {
		return fmt.Errorf("shadow %q: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("shadow %q: %w", id, err)
	} else if n == 0 {
		return s.missOrConflict(ctx, tx, id, version)
	}
	return nil
}

// Create stores a new shadow; see shadow.Store. On failure sh is left as
// it was.
func (s *Store) Create(ctx context.Context, sh *shadow.Shadow) error {
	if err := s.validShadow("create", sh); err != nil {
		return err
	}
	c := sh.Clone()
	if err := s.write(ctx, func(q querier) error { return s.createTx(ctx, q, c) }); err != nil {
		return fmt.Errorf("sqlstore: create: %w", err)
	}
	sh.ID, sh.Version, sh.CreatedAt, sh.UpdatedAt = c.ID, c.Version, c.CreatedAt, c.UpdatedAt
	return nil
}

// Get returns the shadow id; see shadow.Store.
func (s *Store) Get(ctx context.Context, id string) (*shadow.Shadow, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: get %q: %w", id, err)
	}
	sh, err := scanShadow(s.reader().QueryRowContext(ctx, s.q.get, id))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("sqlstore: get %q: %w", id, shadow.ErrNotFound)
	case err != nil:
		return nil, fmt.Errorf("sqlstore: get %q: %w", id, err)
	}
	return sh, nil
}

// Update replaces the stored shadow when its version is sh.Version; see
// shadow.Store. On success sh.Version, sh.CreatedAt and sh.UpdatedAt are set
// to the stored values; on failure sh is left as it was.
func (s *Store) Update(ctx context.Context, sh *shadow.Shadow) error {
	if err := s.validShadow("update", sh); err != nil {
		return err
	}
	c := sh.Clone()
	if err := s.write(ctx, func(q querier) error { return s.updateTx(ctx, q, c) }); err != nil {
		return fmt.Errorf("sqlstore: update: %w", err)
	}
	sh.Version, sh.CreatedAt, sh.UpdatedAt = c.Version, c.CreatedAt, c.UpdatedAt
	return nil
}

// Delete removes the shadow id when its version is version; see
// shadow.Store.
func (s *Store) Delete(ctx context.Context, id string, version int64) error {
	if err := s.write(ctx, func(q querier) error { return s.deleteTx(ctx, q, id, version) }); err != nil {
		return fmt.Errorf("sqlstore: delete: %w", err)
	}
	return nil
}

// List returns the shadows q selects, ordered by ID; see shadow.Store.
func (s *Store) List(ctx context.Context, q shadow.Query) ([]*shadow.Shadow, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: list: %w", err)
	}
	stmt, args, err := s.listSQL(q)
	if err != nil {
		return nil, err
	}
	rows, err := s.reader().QueryContext(ctx, stmt, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: list: %w", err)
	}
	defer rows.Close()
	var out []*shadow.Shadow
	for rows.Next() {
		sh, err := scanShadow(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlstore: list: %w", err)
		}
		out = append(out, sh)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: list: %w", err)
	}
	return out, nil
}

// Count returns how many shadows q selects; see shadow.Store.
func (s *Store) Count(ctx context.Context, q shadow.Query) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("sqlstore: count: %w", err)
	}
	q.After, q.Limit = "", 0
	var args []any
	where, err := whereSQL(q, &args)
	if err != nil {
		return 0, err
	}
	var n int
	if err := s.reader().QueryRowContext(ctx, s.sql(`SELECT count(*) FROM {t}shadows`+where), args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("sqlstore: count: %w", err)
	}
	return n, nil
}

// listSQL is the statement List runs for q.
func (s *Store) listSQL(q shadow.Query) (string, []any, error) {
	var args []any
	where, err := whereSQL(q, &args)
	if err != nil {
		return "", nil, err
	}
	stmt := `SELECT ` + shadowCols + ` FROM {t}shadows` + where + ` ORDER BY id`
	if q.Limit > 0 {
		args = append(args, int64(q.Limit))
		stmt += ` LIMIT $` + strconv.Itoa(len(args))
	}
	return s.sql(stmt), args, nil
}

// whereSQL translates q (but Limit) into a WHERE clause, appending its
// parameters to args. Boolean conditions are written as literals, not
// parameters, so that the planner matches them to the partial indexes.
func whereSQL(q shadow.Query, args *[]any) (string, error) {
	switch {
	case q.Limit < 0:
		return "", fmt.Errorf("sqlstore: query: negative Limit %d: %w", q.Limit, shadow.ErrInvalid)
	case q.Dead > shadow.DeadOnly:
		return "", fmt.Errorf("sqlstore: query: unknown Dead filter %d: %w", q.Dead, shadow.ErrInvalid)
	case q.PendingType > shadow.OpAsync:
		return "", fmt.Errorf("sqlstore: query: unknown PendingType %d: %w", q.PendingType, shadow.ErrInvalid)
	}
	var conds []string
	param := func(v any) string {
		*args = append(*args, v)
		return "$" + strconv.Itoa(len(*args))
	}
	// With an identifier the uid or name index finds the handful of rows;
	// resource and class are then only filters. Written as expressions so
	// that SQLite's planner, seeing ORDER BY id LIMIT n, does not walk the
	// (resource_id, class, id) index through every shadow of the resource.
	resCol, classCol := "resource_id", "class"
	if q.UID != "" || q.Name != "" {
		resCol, classCol = "resource_id || ''", "class || ''"
	}
	if q.ResourceID != "" {
		conds = append(conds, resCol+" = "+param(q.ResourceID))
	}
	if q.Class != "" {
		conds = append(conds, classCol+" = "+param(string(q.Class)))
	}
	if q.UID != "" {
		conds = append(conds, "uid = "+param(q.UID))
	}
	if q.Name != "" {
		conds = append(conds, "name = "+param(q.Name))
	}
	switch q.Dead {
	case shadow.DeadExclude:
		conds = append(conds, "NOT dead")
	case shadow.DeadOnly:
		conds = append(conds, "dead")
	}
	if !q.DeadBefore.IsZero() {
		// A dead shadow without DeadSince counts as dead since ever.
		conds = append(conds, "dead AND (dead_since IS NULL OR dead_since < "+param(q.DeadBefore.UnixMicro())+")")
	}
	if q.Unfinished || q.PendingType != 0 || !q.OldestPendingBefore.IsZero() {
		col := "oldest_unfinished"
		switch q.PendingType {
		case shadow.OpRetry:
			col = "oldest_retry"
		case shadow.OpGrouped:
			col = "oldest_grouped"
		case shadow.OpAsync:
			col = "oldest_async"
		default:
			conds = append(conds, "has_unfinished")
		}
		if q.PendingType != 0 || !q.OldestPendingBefore.IsZero() {
			conds = append(conds, col+" IS NOT NULL")
		}
		if !q.OldestPendingBefore.IsZero() {
			conds = append(conds, col+" < "+param(q.OldestPendingBefore.UnixMicro()))
		}
	}
	if !q.DueBy.IsZero() {
		conds = append(conds, "next_due IS NOT NULL AND next_due <= "+param(q.DueBy.UnixMicro()))
	}
	if q.NeedsReconciliation {
		conds = append(conds, "needs_recon")
	}
	if !q.ReconciledBefore.IsZero() {
		// A shadow never reconciled counts as reconciled before anything.
		conds = append(conds, "(reconciled_at IS NULL OR reconciled_at < "+param(q.ReconciledBefore.UnixMicro())+")")
	}
	if q.After != "" {
		conds = append(conds, "id > "+param(q.After))
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), nil
}
