package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/livesync"
	"github.com/umbra-idm/umbra/shadow"
)

// Apply performs the writes in order in one transaction, all or none; see
// shadow.Batcher. Later writes see the earlier ones (a batch may create a
// shadow and update it). On failure the callers' shadows keep their IDs,
// versions and timestamps, and the error names the failing write's index.
func (s *Store) Apply(ctx context.Context, writes []shadow.Write) error {
	if err := s.validWrites("apply", writes); err != nil {
		return err
	}
	if err := s.writeGroup(ctx, writes, nil); err != nil {
		return fmt.Errorf("sqlstore: apply: %w", err)
	}
	return nil
}

func (s *Store) validWrites(op string, writes []shadow.Write) error {
	for i, w := range writes {
		if w.Shadow == nil {
			return fmt.Errorf("sqlstore: %s: write %d: nil shadow: %w", op, i, shadow.ErrInvalid)
		}
		switch w.Op {
		case shadow.WriteCreate, shadow.WriteUpdate:
			if err := s.validShadow(fmt.Sprintf("%s: write %d", op, i), w.Shadow); err != nil {
				return err
			}
		case shadow.WriteDelete:
		default:
			return fmt.Errorf("sqlstore: %s: write %d: unknown WriteOp %d: %w", op, i, w.Op, shadow.ErrInvalid)
		}
	}
	return nil
}

// saveCallers records the fields a write sets on the caller's shadows and
// returns a function that puts them back.
func saveCallers(writes []shadow.Write) func() {
	type fields struct {
		id                   string
		version              int64
		createdAt, updatedAt time.Time
	}
	saved := make([]fields, len(writes))
	for i, w := range writes {
		saved[i] = fields{w.Shadow.ID, w.Shadow.Version, w.Shadow.CreatedAt, w.Shadow.UpdatedAt}
	}
	return func() {
		// In reverse, so that a shadow written twice gets its first state.
		for i := len(writes) - 1; i >= 0; i-- {
			sh, f := writes[i].Shadow, saved[i]
			sh.ID, sh.Version, sh.CreatedAt, sh.UpdatedAt = f.id, f.version, f.createdAt, f.updatedAt
		}
	}
}

// applyTx performs the writes in tx, setting the callers' IDs, versions and
// timestamps as it goes (later writes use them).
func (s *Store) applyTx(ctx context.Context, tx *sql.Tx, writes []shadow.Write) error {
	for i, w := range writes {
		var err error
		switch w.Op {
		case shadow.WriteCreate:
			err = s.createTx(ctx, tx, w.Shadow)
		case shadow.WriteUpdate:
			err = s.updateGroupTx(ctx, tx, w.Shadow)
		case shadow.WriteDelete:
			err = s.deleteTx(ctx, tx, w.Shadow.ID, w.Shadow.Version)
		}
		if err != nil {
			return fmt.Errorf("write %d of %d: %w", i, len(writes), err)
		}
	}
	return nil
}

// CommitGroup applies the shadow writes and moves key's token from old to
// next in one transaction; see livesync.GroupCommitter. With a lease, the
// token write is fenced as in CompareAndSwapTokenFenced. On failure nothing
// is written and the callers' shadows are left as they were.
func (s *Store) CommitGroup(ctx context.Context, writes []shadow.Write, key livesync.TokenKey, old, next connector.Token, lease *shadow.Lease) error {
	if err := validKey("commit group", key); err != nil {
		return err
	}
	if err := s.validWrites("commit group", writes); err != nil {
		return err
	}
	err := s.writeGroup(ctx, writes, func(tx *sql.Tx) error {
		if lease != nil {
			if err := s.checkLeaseTx(ctx, tx, *lease); err != nil {
				return err
			}
		}
		return s.casTokenTx(ctx, tx, key, old, next)
	})
	if err != nil {
		return fmt.Errorf("sqlstore: commit group for %s: %w", key, err)
	}
	return nil
}

// writeGroup runs first (when not nil) and then the writes in one
// transaction. On failure nothing is written and the callers' shadows are
// left as they were.
//
// On PostgreSQL the writes go as a few multi-row statements (see
// bulkTx); when those fail or miss a row, the transaction is rolled back
// and run again a write at a time, which finds the failing write and
// names it (or succeeds where the multi-row statements' order of checks
// could not).
func (s *Store) writeGroup(ctx context.Context, writes []shadow.Write, first func(tx *sql.Tx) error) error {
	restore := saveCallers(writes)
	run := func(apply func(tx *sql.Tx) error) error {
		err := s.tx(ctx, func(tx *sql.Tx) error {
			if first != nil {
				if err := first(tx); err != nil {
					return err
				}
			}
			return apply(tx)
		})
		if err != nil {
			restore()
		}
		return err
	}
	if s.bulk != nil && len(writes) > 1 {
		plan, err := s.planGroup(writes)
		if err != nil {
			restore()
			return err
		}
		err = run(func(tx *sql.Tx) error { return s.bulkTx(ctx, tx, plan) })
		if !errors.Is(err, errBulkMiss) {
			return err
		}
		s.bulkRetries.Add(1)
	}
	if s.lite != nil && len(writes) > 1 {
		// SQLite: multi-row statements too (see liteStatements).
		err := run(func(tx *sql.Tx) error { return s.liteGroupTx(ctx, tx, writes) })
		if !errors.Is(err, errBulkMiss) {
			return err
		}
		s.bulkRetries.Add(1)
	}
	return run(func(tx *sql.Tx) error { return s.applyTx(ctx, tx, writes) })
}
