package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/umbra-idm/umbra/shadow"
)

// Claim marks up to limit shadows selected by q as claimed by owner until
// now+ttl and returns them, ordered by ID; see shadow.Claimer. A shadow
// under an unexpired claim is skipped, whoever holds it (the owner too): a
// claim hands a shadow out once until it expires or is released. limit <= 0
// means no cap other than q.Limit. Claims survive Update and do not change
// Version.
//
// On PostgreSQL the rows are picked with FOR UPDATE SKIP LOCKED: claimers
// in several processes never wait on each other nor get the same shadow.
// On SQLite the single writer serializes claims. A row that cannot be read
// back fails the call with ErrCorrupt, and no claim is written.
func (s *Store) Claim(ctx context.Context, q shadow.Query, owner string, ttl time.Duration, limit int) ([]*shadow.Shadow, error) {
	switch {
	case owner == "":
		return nil, fmt.Errorf("sqlstore: claim: empty owner: %w", shadow.ErrInvalid)
	case ttl <= 0:
		return nil, fmt.Errorf("sqlstore: claim: ttl %s is not positive: %w", ttl, shadow.ErrInvalid)
	}
	stmt, args, err := s.claimSQL(q, owner, ttl, limit)
	if err != nil {
		return nil, err
	}
	var out []*shadow.Shadow
	err = s.tx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, stmt, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			sh, err := scanShadow(rows)
			if err != nil {
				return err
			}
			out = append(out, sh)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("sqlstore: claim for %q: %w", owner, err)
	}
	slices.SortFunc(out, func(a, b *shadow.Shadow) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// claimSQL is the statement Claim runs: pick the selected, unclaimed (or
// expired) rows in ID order, lock them (skipping rows other transactions
// hold), and mark them claimed, in one statement.
func (s *Store) claimSQL(q shadow.Query, owner string, ttl time.Duration, limit int) (string, []any, error) {
	if q.Limit > 0 && (limit <= 0 || q.Limit < limit) {
		limit = q.Limit
	}
	q.Limit = 0
	now := truncate(s.clock.Now())
	args := []any{owner, now.Add(ttl).UnixMicro(), now.UnixMicro()}
	where, err := whereSQL(q, &args)
	if err != nil {
		return "", nil, err
	}
	if where == "" {
		where = " WHERE "
	} else {
		where += " AND "
	}
	where += "(claim_until IS NULL OR claim_until <= $3)"
	lim := ""
	if limit > 0 {
		args = append(args, int64(limit))
		lim = " LIMIT $" + strconv.Itoa(len(args))
	}
	return s.sql(`WITH picked AS MATERIALIZED (SELECT id FROM {t}shadows` + where + ` ORDER BY id` + lim + s.d.skipLocked + `)
		UPDATE {t}shadows SET claim_owner = $1, claim_until = $2 WHERE id IN (SELECT id FROM picked)
		RETURNING ` + shadowCols), args, nil
}

// releaseChunk bounds the IDs of one Release statement.
const releaseChunk = 500

// Release drops owner's claims on the shadows ids; see shadow.Claimer.
// Unknown IDs and shadows not claimed by owner are left alone.
func (s *Store) Release(ctx context.Context, owner string, ids ...string) error {
	err := s.write(ctx, func(tx querier) error {
		for len(ids) > 0 {
			chunk := ids[:min(len(ids), releaseChunk)]
			ids = ids[len(chunk):]
			args := make([]any, 1, len(chunk)+1)
			args[0] = owner
			ph := make([]string, len(chunk))
			for i, id := range chunk {
				args = append(args, id)
				ph[i] = "$" + strconv.Itoa(i+2)
			}
			if _, err := tx.ExecContext(ctx, s.sql(`UPDATE {t}shadows SET claim_owner = NULL, claim_until = NULL
				WHERE claim_owner = $1 AND id IN (`+strings.Join(ph, ", ")+`)`), args...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlstore: release claims of %q: %w", owner, err)
	}
	return nil
}

func validLease(op, name, owner string, ttl time.Duration) error {
	switch {
	case name == "":
		return fmt.Errorf("sqlstore: %s: empty lease name: %w", op, shadow.ErrInvalid)
	case owner == "":
		return fmt.Errorf("sqlstore: %s %q: empty owner: %w", op, name, shadow.ErrInvalid)
	case ttl <= 0:
		return fmt.Errorf("sqlstore: %s %q: ttl %s is not positive: %w", op, name, ttl, shadow.ErrInvalid)
	}
	return nil
}

// AcquireLease takes the lease name for owner for ttl; see shadow.Leaser.
// The term starts at 1 and increases whenever the lease passes to an owner
// that does not hold it (after expiry or release); the holder acquiring
// again renews it in the same term.
func (s *Store) AcquireLease(ctx context.Context, name, owner string, ttl time.Duration) (shadow.Lease, error) {
	if err := validLease("acquire lease", name, owner, ttl); err != nil {
		return shadow.Lease{}, err
	}
	now := truncate(s.clock.Now())
	var l shadow.Lease
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.sql(`INSERT INTO {t}leases (name, owner, term, expires) VALUES ($1, '', 0, 0)
			ON CONFLICT (name) DO NOTHING`), name); err != nil {
			return err
		}
		var curOwner string
		var term, expires int64
		if err := tx.QueryRowContext(ctx, s.sql(`SELECT owner, term, expires FROM {t}leases WHERE name = $1`+s.d.forUpdate), name).
			Scan(&curOwner, &term, &expires); err != nil {
			return err
		}
		held := curOwner != "" && expires > now.UnixMicro()
		switch {
		case held && curOwner != owner:
			return fmt.Errorf("held by %q until %s: %w", curOwner,
				time.UnixMicro(expires).UTC().Format(time.RFC3339Nano), shadow.ErrLeaseHeld)
		case !held:
			term++
		}
		l = shadow.Lease{Name: name, Owner: owner, Term: term, Expires: truncate(now.Add(ttl))}
		_, err := tx.ExecContext(ctx, s.sql(`UPDATE {t}leases SET owner = $2, term = $3, expires = $4 WHERE name = $1`),
			name, owner, term, l.Expires.UnixMicro())
		return err
	})
	if err != nil {
		return shadow.Lease{}, fmt.Errorf("sqlstore: acquire lease %q for %q: %w", name, owner, err)
	}
	return l, nil
}

// RenewLease extends l by ttl from now; see shadow.Leaser. A lease that
// expired but that nobody took over is still the holder's to renew.
func (s *Store) RenewLease(ctx context.Context, l shadow.Lease, ttl time.Duration) (shadow.Lease, error) {
	if err := validLease("renew lease", l.Name, l.Owner, ttl); err != nil {
		return shadow.Lease{}, err
	}
	expires := truncate(s.clock.Now().Add(ttl))
	err := s.write(ctx, func(tx querier) error {
		res, err := tx.ExecContext(ctx, s.sql(`UPDATE {t}leases SET expires = $4 WHERE name = $1 AND owner = $2 AND term = $3`),
			l.Name, l.Owner, l.Term, expires.UnixMicro())
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return shadow.ErrLeaseLost
		}
		return nil
	})
	if err != nil {
		return shadow.Lease{}, fmt.Errorf("sqlstore: renew lease %q for %q in term %d: %w", l.Name, l.Owner, l.Term, err)
	}
	l.Expires = expires
	return l, nil
}

// ReleaseLease gives l up; see shadow.Leaser. The term is kept, so the next
// holder gets a higher one and fenced writes of l's term fail.
func (s *Store) ReleaseLease(ctx context.Context, l shadow.Lease) error {
	err := s.write(ctx, func(tx querier) error {
		_, err := tx.ExecContext(ctx, s.sql(`UPDATE {t}leases SET owner = '', expires = 0
			WHERE name = $1 AND owner = $2 AND term = $3`), l.Name, l.Owner, l.Term)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlstore: release lease %q of %q: %w", l.Name, l.Owner, err)
	}
	return nil
}

// checkLeaseTx fails with shadow.ErrLeaseLost unless l is held now, at its
// term. On PostgreSQL the lease row is share-locked until tx ends, so that
// no take-over commits between the check and the write it guards.
func (s *Store) checkLeaseTx(ctx context.Context, tx querier, l shadow.Lease) error {
	var one int
	err := tx.QueryRowContext(ctx, s.sql(`SELECT 1 FROM {t}leases WHERE name = $1 AND owner = $2 AND term = $3 AND expires > $4`+s.d.forShare),
		l.Name, l.Owner, l.Term, s.clock.Now().UnixMicro()).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("lease %q of %q in term %d is not held: %w", l.Name, l.Owner, l.Term, shadow.ErrLeaseLost)
	case err != nil:
		return fmt.Errorf("check lease %q: %w", l.Name, err)
	}
	return nil
}
