package sqlstore

import (
	"context"
	"database/sql"
	"sync"
)

// maxPrepared bounds a pool's statement cache. The store's statements are
// a fixed set and the shapes of its list queries few; past the bound a
// statement simply runs unprepared.
const maxPrepared = 256

// prepCache keeps the prepared statements of one SQLite pool, by text.
// SQLite parses every statement it runs, and for the store's small writes
// and lookups parsing cost more than the work itself; a statement prepared
// once is reused by every later call, in and out of transactions.
//
// PostgreSQL needs none: pgx prepares and caches statements per connection
// by itself.
type prepCache struct {
	db *sql.DB
	// lazy says that a statement missing from the cache may be prepared
	// on db when first run. The write pool is not lazy: it has a single
	// connection, and preparing on the pool while a transaction holds
	// that connection would wait forever; its statements are prepared
	// when the store opens.
	lazy bool
	mu   sync.RWMutex
	m    map[string]*sql.Stmt
}

func newPrepCache(db *sql.DB, lazy bool) *prepCache {
	return &prepCache{db: db, lazy: lazy, m: map[string]*sql.Stmt{}}
}

// prepare adds the statements texts to the cache.
func (c *prepCache) prepare(ctx context.Context, texts ...string) error {
	for _, text := range texts {
		if _, err := c.add(ctx, text); err != nil {
			return err
		}
	}
	return nil
}

func (c *prepCache) add(ctx context.Context, text string) (*sql.Stmt, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.m[text]; st != nil {
		return st, nil
	}
	if len(c.m) >= maxPrepared {
		return nil, nil
	}
	st, err := c.db.PrepareContext(ctx, text)
	if err != nil {
		return nil, err
	}
	c.m[text] = st
	return st, nil
}

// stmt returns the prepared statement for text on q, or nil to run text
// unprepared. q is c's pool or a transaction on it.
func (c *prepCache) stmt(ctx context.Context, q querier, text string) *sql.Stmt {
	if c == nil {
		return nil
	}
	c.mu.RLock()
	st := c.m[text]
	c.mu.RUnlock()
	if st == nil && c.lazy && q == querier(c.db) {
		// A failed prepare is not the caller's error: the statement
		// runs unprepared and reports it.
		st, _ = c.add(ctx, text)
	}
	if st == nil {
		return nil
	}
	if tx, ok := q.(*sql.Tx); ok {
		// Reuses the driver statement prepared on the transaction's
		// connection; closed with the transaction.
		return tx.StmtContext(ctx, st)
	}
	return st
}

func (c *prepCache) close() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.m {
		st.Close()
	}
	clear(c.m)
}

// prepared runs statements on q through c: a querier that is q with c's
// statements.
type prepared struct {
	q querier
	c *prepCache
}

func (p prepared) ExecContext(ctx context.Context, text string, args ...any) (sql.Result, error) {
	if st := p.c.stmt(ctx, p.q, text); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return p.q.ExecContext(ctx, text, args...)
}

func (p prepared) QueryContext(ctx context.Context, text string, args ...any) (*sql.Rows, error) {
	if st := p.c.stmt(ctx, p.q, text); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return p.q.QueryContext(ctx, text, args...)
}

func (p prepared) QueryRowContext(ctx context.Context, text string, args ...any) *sql.Row {
	if st := p.c.stmt(ctx, p.q, text); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return p.q.QueryRowContext(ctx, text, args...)
}

// writer returns q (the write pool or a transaction on it) with the write
// pool's prepared statements.
func (s *Store) writer(q querier) querier {
	if s.wprep == nil {
		return q
	}
	return prepared{q: q, c: s.wprep}
}

// reader returns the read pool with its prepared statements.
func (s *Store) reader() querier {
	if s.rprep == nil {
		return s.rdb
	}
	return prepared{q: s.rdb, c: s.rprep}
}
