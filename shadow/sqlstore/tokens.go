package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/livesync"
	"github.com/umbra-idm/umbra/shadow"
)

func validKey(op string, key livesync.TokenKey) error {
	if err := key.Validate(); err != nil {
		return fmt.Errorf("sqlstore: %s: %w: %w", op, shadow.ErrInvalid, err)
	}
	return nil
}

// LoadToken returns key's stored token; see livesync.TokenStore.
func (s *Store) LoadToken(ctx context.Context, key livesync.TokenKey) (connector.Token, bool, error) {
	if err := validKey("load token", key); err != nil {
		return "", false, err
	}
	if err := ctx.Err(); err != nil {
		return "", false, fmt.Errorf("sqlstore: load token %s: %w", key, err)
	}
	var tok string
	err := s.reader().QueryRowContext(ctx, s.sql(`SELECT token FROM {t}tokens WHERE resource_id = $1 AND class = $2 AND task = $3`),
		key.ResourceID, string(key.Class), key.Task).Scan(&tok)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "", false, nil
	case err != nil:
		return "", false, fmt.Errorf("sqlstore: load token %s: %w", key, err)
	}
	return connector.Token(tok), true, nil
}

// CompareAndSwapToken stores next when key's token is old (old == ""
// matches none stored and the empty token); see livesync.TokenStore.
func (s *Store) CompareAndSwapToken(ctx context.Context, key livesync.TokenKey, old, next connector.Token) error {
	if err := validKey("swap token", key); err != nil {
		return err
	}
	if err := s.write(ctx, func(q querier) error { return s.casTokenTx(ctx, q, key, old, next) }); err != nil {
		return fmt.Errorf("sqlstore: swap token %s: %w", key, err)
	}
	return nil
}

// CompareAndSwapTokenFenced is CompareAndSwapToken that also fails, with
// shadow.ErrLeaseLost, unless lease is held now at its term; the check and
// the write are one transaction. See livesync.FencedTokenStore.
func (s *Store) CompareAndSwapTokenFenced(ctx context.Context, key livesync.TokenKey, old, next connector.Token, lease shadow.Lease) error {
	if err := validKey("swap token", key); err != nil {
		return err
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if err := s.checkLeaseTx(ctx, tx, lease); err != nil {
			return err
		}
		return s.casTokenTx(ctx, tx, key, old, next)
	})
	if err != nil {
		return fmt.Errorf("sqlstore: swap token %s: %w", key, err)
	}
	return nil
}

func (s *Store) casTokenTx(ctx context.Context, tx querier, key livesync.TokenKey, old, next connector.Token) error {
	now := s.clock.Now().UnixMicro()
	var res sql.Result
	var err error
	if old == "" {
		res, err = s.writer(tx).ExecContext(ctx, s.q.tokenNew, key.ResourceID, string(key.Class), key.Task, string(next), now)
	} else {
		res, err = s.writer(tx).ExecContext(ctx, s.q.tokenSwap, key.ResourceID, string(key.Class), key.Task, string(next), now, string(old))
	}
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("expected token %q: %w", old, livesync.ErrTokenConflict)
	}
	return nil
}

// SetAside stores c under key, replacing an entry with the same ID (which
// keeps its place in the order); see livesync.TokenStore. A zero
// SetAsideAt is set to now.
func (s *Store) SetAside(ctx context.Context, key livesync.TokenKey, c livesync.SetAsideChange) error {
	if err := validKey("set aside", key); err != nil {
		return err
	}
	if c.ID == "" {
		return fmt.Errorf("sqlstore: set aside for %s: empty change ID: %w", key, shadow.ErrInvalid)
	}
	change, err := encodeChange(c.Change)
	if err != nil {
		return fmt.Errorf("sqlstore: set aside %q for %s: %w", c.ID, key, err)
	}
	at := c.SetAsideAt
	if at.IsZero() {
		at = s.clock.Now()
	}
	err = s.write(ctx, func(tx querier) error {
		_, err := tx.ExecContext(ctx, s.sql(`INSERT INTO {t}set_aside
			(resource_id, class, task, id, change, attempts, last_error, last_error_category, set_aside_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
			ON CONFLICT (resource_id, class, task, id) DO UPDATE SET change = excluded.change, attempts = excluded.attempts,
				last_error = excluded.last_error, last_error_category = excluded.last_error_category,
				set_aside_at = excluded.set_aside_at`),
			key.ResourceID, string(key.Class), key.Task, c.ID, change, c.Attempts, c.LastError,
			int64(c.LastErrorCategory), at.UnixMicro())
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlstore: set aside %q for %s: %w", c.ID, key, err)
	}
	return nil
}

// SetAsideChanges returns key's set-aside changes, oldest first (by
// SetAsideAt, then by when they were first set aside); see
// livesync.TokenStore.
func (s *Store) SetAsideChanges(ctx context.Context, key livesync.TokenKey) ([]livesync.SetAsideChange, error) {
	if err := validKey("set-aside changes", key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: set-aside changes of %s: %w", key, err)
	}
	rows, err := s.reader().QueryContext(ctx, s.sql(`SELECT id, change, attempts, last_error, last_error_category, set_aside_at
		FROM {t}set_aside WHERE resource_id = $1 AND class = $2 AND task = $3 ORDER BY set_aside_at, seq`),
		key.ResourceID, string(key.Class), key.Task)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: set-aside changes of %s: %w", key, err)
	}
	defer rows.Close()
	var out []livesync.SetAsideChange
	for rows.Next() {
		var c livesync.SetAsideChange
		var change string
		var category, at int64
		if err := rows.Scan(&c.ID, &change, &c.Attempts, &c.LastError, &category, &at); err != nil {
			return nil, fmt.Errorf("sqlstore: set-aside changes of %s: %w", key, err)
		}
		if c.Change, err = decodeChange(change); err != nil {
			return nil, fmt.Errorf("sqlstore: set-aside changes of %s: %w: change %q: %w", key, ErrCorrupt, c.ID, err)
		}
		c.LastErrorCategory = connector.Category(category)
		c.SetAsideAt = fromMicros(sql.NullInt64{Int64: at, Valid: true})
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: set-aside changes of %s: %w", key, err)
	}
	return out, nil
}

// RemoveSetAside deletes key's entry id; a missing entry is not an error.
// See livesync.TokenStore.
func (s *Store) RemoveSetAside(ctx context.Context, key livesync.TokenKey, id string) error {
	if err := validKey("remove set-aside", key); err != nil {
		return err
	}
	err := s.write(ctx, func(tx querier) error {
		_, err := tx.ExecContext(ctx, s.sql(`DELETE FROM {t}set_aside WHERE resource_id = $1 AND class = $2 AND task = $3 AND id = $4`),
			key.ResourceID, string(key.Class), key.Task, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlstore: remove set-aside %q of %s: %w", id, key, err)
	}
	return nil
}
