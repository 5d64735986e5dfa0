package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/umbra-idm/umbra/shadow"
)

// updateGroupTx is updateTx for a write of a group. On SQLite it first
// tries updateSame, which writes the same row when the shadow's indexed
// columns keep their values (a modify of attributes, the common write of
// live sync) without touching the table's indexes; SQLite would otherwise
// rewrite an entry in each of them. A miss (an indexed column changes, or
// the version or the row is not there) runs update, which also explains a
// conflict.
func (s *Store) updateGroupTx(ctx context.Context, tx querier, sh *shadow.Shadow) error {
	all, now, err := s.updateArgs(sh)
	if err != nil {
		return err
	}
	if s.q.updateSame != "" {
		var version, created int64
		err := s.writer(tx).QueryRowContext(ctx, s.q.updateSame, all...).Scan(&version, &created)
		switch {
		case err == nil:
			sh.Version, sh.CreatedAt, sh.UpdatedAt = version, fromMicros(sql.NullInt64{Int64: created, Valid: true}), now
			return nil
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("shadow %q: %w", sh.ID, err)
		}
	}
	return s.updateWith(ctx, tx, sh, all, now)
}

// liteChunkBits bounds the multi-row statements of a group on SQLite: each
// writes 1<<k rows for a k up to liteChunkBits, and a segment of n rows
// takes one statement per bit of n (past 1<<liteChunkBits, several of the
// largest). Every statement of a pool is prepared once, when the store
// opens, so that a group parses nothing.
const liteChunkBits = 6

// insertCols are the columns of the shadows' insert statements, in the
// order of their values: id, then shadowArgs with version after origin,
// then created_at and updated_at.
const insertCols = `id, resource_id, class, kind, intent, uid, name, attributes, obj_exists,
	dead, dead_since, origin, version, pending, next_due, needs_recon, has_unfinished, oldest_unfinished,
	oldest_retry, oldest_grouped, oldest_async, reconciled_at, created_at, updated_at`

// liteStatements are the multi-row writes of a group on SQLite: insert[k]
// and update[k] write 1<<k rows. Their parameters are anonymous ("?"):
// SQLite looks a numbered or named parameter up in a list of all of them,
// which over a statement's thousands of parameters cost more than the
// writes. A row of insert takes id, shadowArgs and the write time twice
// (created_at, updated_at): liteInsertArgs. update takes the write time,
// then for each row the arguments of the single-row update without it (id,
// version, shadowArgs): liteUpdateArgs.
//
// Each statement costs SQLite and database/sql a fixed amount besides its
// rows (binding goes through the driver, a statement is stepped, reset,
// its result built): one statement for many rows spends it once. The
// update is updateSame for many rows: it writes the rows whose indexed
// columns keep their values, without touching the indexes, and returns
// the IDs it wrote; the others are written one at a time after it.
type liteStatements struct {
	insert, update [liteChunkBits + 1]string
}

// Parameters of one row of the multi-row statements.
const (
	liteInsertArgs = 23
	liteUpdateArgs = 22
)

// prepareLite expands the multi-row statements of a group for s's tables.
func (s *Store) prepareLite() *liteStatements {
	var l liteStatements
	// Placeholders of one row: insert puts the version, 1, after origin.
	insertRow := "(" + strings.Repeat("?, ", 12) + "1, " + strings.Repeat("?, ", 10) + "?)"
	updateRow := "(" + strings.Repeat("?, ", liteUpdateArgs-1) + "?)"
	for k := range liteChunkBits + 1 {
		rows := 1 << k
		l.insert[k] = s.sql(`INSERT INTO {t}shadows (` + insertCols + `) VALUES ` +
			strings.Repeat(insertRow+", ", rows-1) + insertRow)
		// v.columnN is the row's $N of the single-row update: 1 id,
		// 2 version, 3.. shadowArgs.
		l.update[k] = s.sql(`UPDATE {t}shadows AS s SET kind = v.column5, intent = v.column6, attributes = v.column9,
			origin = v.column13, pending = v.column14, oldest_unfinished = v.column18,
			updated_at = ?, version = s.version + 1
			FROM (VALUES ` + strings.Repeat(updateRow+", ", rows-1) + updateRow + `) AS v
			WHERE s.id = v.column1 AND s.version = v.column2 AND s.resource_id = v.column3 AND s.class = v.column4
			AND s.uid = v.column7 AND s.name = v.column8 AND s.obj_exists = v.column10 AND s.dead = v.column11
			AND s.dead_since IS v.column12 AND s.next_due IS v.column15 AND s.needs_recon = v.column16
			AND s.has_unfinished = v.column17 AND s.oldest_retry IS v.column19 AND s.oldest_grouped IS v.column20
			AND s.oldest_async IS v.column21 AND s.reconciled_at IS v.column22
			RETURNING id, created_at`)
	}
	return &l
}

// texts are l's statements.
func (l *liteStatements) texts() []string {
	return append(l.insert[:], l.update[:]...)
}

// liteUpdate is an update of a segment: its shadow, and the arguments of
// the single-row update (id, version, shadowArgs, the write time).
type liteUpdate struct {
	sh   *shadow.Shadow
	args []any
	done bool
}

// liteSegment is a run of consecutive writes of a group in which no shadow
// is written twice, as in groupPlan: its creates are inserted first, then
// its updates made, then its deletes done, which succeeds only when the
// writes one at a time in their order would, with the same result (see
// segment). Its rows' arguments are made when a write joins it, after the
// segments before it were written.
type liteSegment struct {
	inserts []any // liteInsertArgs a row
	creates []*shadow.Shadow
	updates []liteUpdate
	// updateArgs holds the updates' args, one after the other.
	updateArgs []any
	byID       map[string]int // index in updates
	deletes    []shadow.Write
	// seen are the IDs written by the segment.
	seen map[string]struct{}
}

// liteSegments keeps the segments of finished groups for reuse: their
// argument lists run to thousands of entries.
var liteSegments = sync.Pool{New: func() any {
	return &liteSegment{byID: make(map[string]int), seen: make(map[string]struct{})}
}}

func (g *liteSegment) reset() {
	clear(g.inserts)
	g.inserts = g.inserts[:0]
	clear(g.creates)
	g.creates = g.creates[:0]
	clear(g.updates)
	g.updates = g.updates[:0]
	clear(g.updateArgs)
	g.updateArgs = g.updateArgs[:0]
	clear(g.byID)
	clear(g.deletes)
	g.deletes = g.deletes[:0]
}

// liteGroupTx performs writes in tx as liteStatements, segment by segment,
// and sets the callers' IDs, versions and timestamps as it goes (the
// caller restores them on failure). A write that fails a check (a taken
// identity or ID, a version that moved, a missing shadow) fails the group
// with errBulkMiss: the writes one at a time then find the one to blame,
// in the order of the group.
func (s *Store) liteGroupTx(ctx context.Context, tx *sql.Tx, writes []shadow.Write) error {
	now := truncate(s.clock.Now())
	at := now.UnixMicro()
	seg := liteSegments.Get().(*liteSegment)
	defer func() {
		seg.reset()
		clear(seg.seen)
		liteSegments.Put(seg)
	}()
	end := func() error {
		if err := s.liteSegmentTx(ctx, tx, seg, now); err != nil {
			return err
		}
		seg.reset()
		return nil
	}
	return forSegments(writes, seg.seen, end, func(_ int, id string, w shadow.Write) error {
		sh := w.Shadow
		switch w.Op {
		case shadow.WriteCreate:
			args, err := shadowArgs(sh)
			if err != nil {
				return err
			}
			seg.inserts = append(append(append(seg.inserts, id), args...), at, at)
			seg.creates = append(seg.creates, sh)
			sh.ID, sh.Version, sh.CreatedAt, sh.UpdatedAt = id, 1, now, now
		case shadow.WriteUpdate:
			args, err := shadowArgs(sh)
			if err != nil {
				return err
			}
			start := len(seg.updateArgs)
			seg.updateArgs = append(append(append(seg.updateArgs, id, sh.Version), args...), at)
			all := seg.updateArgs[start:len(seg.updateArgs):len(seg.updateArgs)]
			seg.byID[id] = len(seg.updates)
			seg.updates = append(seg.updates, liteUpdate{sh: sh, args: all})
		case shadow.WriteDelete:
			seg.deletes = append(seg.deletes, w)
		}
		return nil
	})
}

// liteSegmentTx writes seg in tx at now.
func (s *Store) liteSegmentTx(ctx context.Context, tx *sql.Tx, seg *liteSegment, now time.Time) error {
	at := now.UnixMicro()
	w := s.writer(tx)
	for rows := seg.inserts; len(rows) > 0; {
		k := liteChunk(len(rows) / liteInsertArgs)
		n := (1 << k) * liteInsertArgs
		if _, err := w.ExecContext(ctx, s.lite.insert[k], rows[:n]...); err != nil {
			return bulkErr(s.d, err)
		}
		rows = rows[n:]
	}
	if len(seg.updates) > 0 {
		args := make([]any, 0, 1+min(len(seg.updates), 1<<liteChunkBits)*liteUpdateArgs)
		for rest := seg.updates; len(rest) > 0; {
			k := liteChunk(len(rest))
			args = append(args[:0], at)
			for _, u := range rest[:1<<k] {
				args = append(args, u.args[:liteUpdateArgs]...)
			}
			if err := s.liteUpdateTx(ctx, w, s.lite.update[k], args, seg, now); err != nil {
				return err
			}
			rest = rest[1<<k:]
		}
		// The rows whose indexed columns change, or that missed: one at a
		// time, in order.
		for i := range seg.updates {
			u := &seg.updates[i]
			if u.done {
				continue
			}
			if err := s.updateWith(ctx, tx, u.sh, u.args, now); err != nil {
				return liteMiss(err)
			}
		}
	}
	for _, d := range seg.deletes {
		if err := s.deleteTx(ctx, tx, d.Shadow.ID, d.Shadow.Version); err != nil {
			return liteMiss(err)
		}
	}
	return nil
}

// liteUpdateTx runs the multi-row update stmt and marks the updates it
// wrote done, with their new version and timestamps.
func (s *Store) liteUpdateTx(ctx context.Context, w querier, stmt string, args []any, seg *liteSegment, now time.Time) error {
	rows, err := w.QueryContext(ctx, stmt, args...)
	if err != nil {
		return bulkErr(s.d, err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var created int64
		if err := rows.Scan(&id, &created); err != nil {
			return err
		}
		i, ok := seg.byID[id]
		if !ok || seg.updates[i].done {
			return fmt.Errorf("multi-row update returned shadow %q, not one of its rows", id)
		}
		u := &seg.updates[i]
		u.done = true
		u.sh.Version = u.args[1].(int64) + 1
		u.sh.CreatedAt = fromMicros(sql.NullInt64{Int64: created, Valid: true})
		u.sh.UpdatedAt = now
	}
	if err := rows.Err(); err != nil {
		return bulkErr(s.d, err)
	}
	return nil
}

// liteChunk is the k of the largest statement of liteStatements for n rows
// (n > 0): 1<<k ≤ n.
func liteChunk(n int) int {
	k := 0
	for k < liteChunkBits && 2<<k <= n {
		k++
	}
	return k
}

// liteMiss is errBulkMiss for an error that the writes one at a time
// explain (and may not meet, in their order), else err.
func liteMiss(err error) error {
	if errors.Is(err, shadow.ErrDuplicate) || errors.Is(err, shadow.ErrConflict) || errors.Is(err, shadow.ErrNotFound) {
		return errBulkMiss
	}
	return err
}
