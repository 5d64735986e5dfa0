package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/umbra-idm/umbra/shadow"
)

// errBulkMiss says that a multi-row statement of bulkTx failed on a
// constraint or missed a row: the group is run again a write at a time,
// which finds the write to blame (see Store.writeGroup). It never reaches
// a caller.
var errBulkMiss = errors.New("sqlstore: a multi-row write failed a check")

// bulkStatements are the multi-row writes of a group on PostgreSQL: each
// takes one array per column and writes every row of a segment (see
// groupPlan) in one statement, one round trip.
type bulkStatements struct {
	insert, update, deleteAll string
}

// bulkContent are the content columns of the multi-row statements, after id
// (and, for updates, the expected version), with their array types.
const bulkContent = `resource_id, class, kind, intent, uid, name, attributes, obj_exists, dead, dead_since, origin,
	pending, next_due, needs_recon, has_unfinished, oldest_unfinished, oldest_retry, oldest_grouped, oldest_async, reconciled_at`

// bulkContentTypes are the array types of bulkContent.
var bulkContentTypes = []string{"text", "text", "text", "text", "text", "text", "text", "bool", "bool", "int8", "int2",
	"text", "int8", "bool", "bool", "int8", "int8", "int8", "int8", "int8"}

// bulkArrays are the parameters $from.. as bulkContentTypes arrays.
func bulkArrays(from int) string {
	var b strings.Builder
	for i, t := range bulkContentTypes {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "$%d::%s[]", from+i, t)
	}
	return b.String()
}

// prepareBulk expands the multi-row statements for s's tables.
func (s *Store) prepareBulk() *bulkStatements {
	return &bulkStatements{
		insert: s.sql(`INSERT INTO {t}shadows (id, resource_id, class, kind, intent, uid, name, attributes, obj_exists,
			dead, dead_since, origin, version, pending, next_due, needs_recon, has_unfinished, oldest_unfinished,
			oldest_retry, oldest_grouped, oldest_async, reconciled_at, created_at, updated_at)
			SELECT id, resource_id, class, kind, intent, uid, name, attributes::jsonb, obj_exists,
			dead, dead_since, origin, 1, pending::jsonb, next_due, needs_recon, has_unfinished, oldest_unfinished,
			oldest_retry, oldest_grouped, oldest_async, reconciled_at, $22, $22
			FROM unnest($1::text[], ` + bulkArrays(2) + `) AS v(id, ` + bulkContent + `)`),
		// A row is updated only when its version matches and, if it
		// takes a live identity it did not hold, no other shadow holds
		// that identity at the statement's start: so that the statement
		// succeeds only when the same updates one at a time, in any
		// order, would (one of them taking the identity another frees
		// would depend on the order in which the rows are updated). n is
		// the row's place in the arrays. "s.id = ANY" bounds the rows
		// read to the keys' index entries whichever join the planner
		// picks (it hash-joined a scan of the whole table).
		update: s.sql(`UPDATE {t}shadows AS s SET resource_id = v.resource_id, class = v.class, kind = v.kind,
			intent = v.intent, uid = v.uid, name = v.name, attributes = v.attributes::jsonb, obj_exists = v.obj_exists,
			dead = v.dead, dead_since = v.dead_since, origin = v.origin, pending = v.pending::jsonb, next_due = v.next_due,
			needs_recon = v.needs_recon, has_unfinished = v.has_unfinished, oldest_unfinished = v.oldest_unfinished,
			oldest_retry = v.oldest_retry, oldest_grouped = v.oldest_grouped, oldest_async = v.oldest_async,
			reconciled_at = v.reconciled_at, updated_at = $23, version = s.version + 1
			FROM unnest($1::text[], $2::int8[], ` + bulkArrays(3) + `) WITH ORDINALITY AS v(id, version, ` + bulkContent + `, n)
			WHERE s.id = v.id AND s.version = v.version AND s.id = ANY($1::text[])
			AND NOT (v.obj_exists AND NOT v.dead AND v.uid <> ''
				AND NOT (s.obj_exists AND NOT s.dead AND s.resource_id = v.resource_id AND s.class = v.class AND s.uid = v.uid)
				AND EXISTS (SELECT 1 FROM {t}shadows o
				WHERE o.resource_id = v.resource_id AND o.class = v.class AND o.uid = v.uid
				AND o.obj_exists AND NOT o.dead AND o.uid <> '' AND o.id <> v.id))
			RETURNING v.n, s.created_at`),
		deleteAll: s.sql(`DELETE FROM {t}shadows AS s USING unnest($1::text[], $2::int8[]) AS v(id, version)
			WHERE s.id = v.id AND s.version = v.version AND s.id = ANY($1::text[])`),
	}
}

// bulkRows are shadows as one array per column, the arguments of the
// multi-row statements.
type bulkRows struct {
	id                                         []string
	version                                    []int64
	resourceID, class, kind, intent, uid, name []string
	attrs, pending                             []*string
	exists, dead, needsRecon, hasUnfinished    []bool
	origin                                     []int16
	deadSince, nextDue, reconciledAt           []*int64
	oldestAny, oldestRetry, oldestGroup        []*int64
	oldestAsync                                []*int64
}

// add appends sh, stored as id at version.
func (r *bulkRows) add(id string, version int64, sh *shadow.Shadow) error {
	attrs, err := encodeAttributes(sh.Attributes)
	if err != nil {
		return fmt.Errorf("shadow %q: encode attributes: %w", id, err)
	}
	pending, err := encodePending(sh.Pending)
	if err != nil {
		return fmt.Errorf("shadow %q: encode pending operations: %w", id, err)
	}
	dv := derive(sh)
	r.id = append(r.id, id)
	r.version = append(r.version, version)
	r.resourceID = append(r.resourceID, sh.ResourceID)
	r.class = append(r.class, string(sh.Class))
	r.kind = append(r.kind, sh.Kind)
	r.intent = append(r.intent, sh.Intent)
	r.uid = append(r.uid, sh.UID)
	r.name = append(r.name, sh.Name)
	r.attrs = append(r.attrs, textPtr(attrs))
	r.exists = append(r.exists, sh.Exists)
	r.dead = append(r.dead, sh.Dead)
	r.deadSince = append(r.deadSince, microsPtr(sh.DeadSince))
	r.origin = append(r.origin, int16(sh.Origin))
	r.pending = append(r.pending, textPtr(pending))
	r.nextDue = append(r.nextDue, microsPtr(sh.NextDue))
	r.needsRecon = append(r.needsRecon, sh.NeedsReconciliation)
	r.hasUnfinished = append(r.hasUnfinished, dv.hasUnfinished)
	r.oldestAny = append(r.oldestAny, int64Ptr(dv.oldestAny))
	r.oldestRetry = append(r.oldestRetry, int64Ptr(dv.oldestRetry))
	r.oldestGroup = append(r.oldestGroup, int64Ptr(dv.oldestGroup))
	r.oldestAsync = append(r.oldestAsync, int64Ptr(dv.oldestAsync))
	r.reconciledAt = append(r.reconciledAt, microsPtr(sh.ReconciledAt))
	return nil
}

// args are the arguments of the statement update (with versions) or
// insert (without) for r, written at now.
func (r *bulkRows) args(withVersion bool, now time.Time) []any {
	args := make([]any, 0, 23)
	args = append(args, r.id)
	if withVersion {
		args = append(args, r.version)
	}
	return append(args, r.resourceID, r.class, r.kind, r.intent, r.uid, r.name, r.attrs, r.exists,
		r.dead, r.deadSince, r.origin, r.pending, r.nextDue, r.needsRecon, r.hasUnfinished, r.oldestAny,
		r.oldestRetry, r.oldestGroup, r.oldestAsync, r.reconciledAt, now.UnixMicro())
}

func textPtr(v any) *string {
	if v == nil {
		return nil
	}
	s := v.(string)
	return &s
}

func int64Ptr(v any) *int64 {
	if v == nil {
		return nil
	}
	n := v.(int64)
	return &n
}

// groupPlan is a group of writes as segments, each run as at most three
// multi-row statements.
type groupPlan struct {
	now      time.Time
	segments []*segment
}

// segment is a run of consecutive writes of a group in which no shadow is
// written twice. Its creates are inserted first, then its updates made,
// then its deletes done. When all three statements succeed, the writes one
// at a time in their order would have succeeded too, with the same result:
// inserts only add rows (a live identity or ID taken by a shadow that a
// later write frees or deletes fails the insert as it fails the create),
// the update statement refuses a live identity held at its start by
// another shadow (one of the creates, or one that a later update or delete
// frees), and versions are per shadow. When one fails, the writes one at a
// time decide (see Store.writeGroup).
type segment struct {
	creates, updates bulkRows
	// updated are the updates' shadows, in the order of updates.
	updated []*shadow.Shadow
	// deleteIDs and deleteVersions are the deletes' shadows.
	deleteIDs      []string
	deleteVersions []int64
}

// planGroup makes the plan of writes and sets the callers' IDs, versions
// and timestamps as the writes would (the caller restores them on
// failure); the update's CreatedAt is set by bulkTx.
func (s *Store) planGroup(writes []shadow.Write) (*groupPlan, error) {
	p := &groupPlan{now: truncate(s.clock.Now())}
	seg := &segment{}
	next := func() error {
		p.segments = append(p.segments, seg)
		seg = &segment{}
		return nil
	}
	err := forSegments(writes, make(map[string]struct{}, len(writes)), next, func(i int, id string, w shadow.Write) error {
		sh := w.Shadow
		var err error
		switch w.Op {
		case shadow.WriteCreate:
			err = seg.creates.add(id, 0, sh)
			sh.ID, sh.Version, sh.CreatedAt, sh.UpdatedAt = id, 1, p.now, p.now
		case shadow.WriteUpdate:
			err = seg.updates.add(id, sh.Version, sh)
			seg.updated = append(seg.updated, sh)
			sh.Version, sh.UpdatedAt = sh.Version+1, p.now
		case shadow.WriteDelete:
			seg.deleteIDs = append(seg.deleteIDs, id)
			seg.deleteVersions = append(seg.deleteVersions, sh.Version)
		}
		if err != nil {
			return fmt.Errorf("write %d of %d: %w", i, len(writes), err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// forSegments cuts writes into segments, runs of consecutive writes in
// which no shadow is written twice (see segment): it calls add for each
// write with the shadow's ID (a new one for a create without), and end
// after the last write of each segment. seen is scratch space, empty.
func forSegments(writes []shadow.Write, seen map[string]struct{}, end func() error, add func(i int, id string, w shadow.Write) error) error {
	for i, w := range writes {
		id := w.Shadow.ID
		if w.Op == shadow.WriteCreate && id == "" {
			id = newID()
		}
		if _, ok := seen[id]; ok {
			if err := end(); err != nil {
				return err
			}
			clear(seen)
		}
		seen[id] = struct{}{}
		if err := add(i, id, w); err != nil {
			return err
		}
	}
	return end()
}

// bulkTx runs p's statements in tx and sets the updated shadows'
// CreatedAt. A statement that fails on a unique constraint, or misses one
// of its rows, fails with errBulkMiss.
func (s *Store) bulkTx(ctx context.Context, tx *sql.Tx, p *groupPlan) error {
	for _, seg := range p.segments {
		if len(seg.creates.id) > 0 {
			if _, err := tx.ExecContext(ctx, s.bulk.insert, seg.creates.args(false, p.now)...); err != nil {
				return bulkErr(s.d, err)
			}
		}
		if len(seg.updated) > 0 {
			if err := s.bulkUpdateTx(ctx, tx, p.now, seg); err != nil {
				return err
			}
		}
		if len(seg.deleteIDs) > 0 {
			res, err := tx.ExecContext(ctx, s.bulk.deleteAll, seg.deleteIDs, seg.deleteVersions)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n != int64(len(seg.deleteIDs)) {
				return errBulkMiss
			}
		}
	}
	return nil
}

func (s *Store) bulkUpdateTx(ctx context.Context, tx *sql.Tx, now time.Time, seg *segment) error {
	rows, err := tx.QueryContext(ctx, s.bulk.update, seg.updates.args(true, now)...)
	if err != nil {
		return bulkErr(s.d, err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var at, created int64
		if err := rows.Scan(&at, &created); err != nil {
			return err
		}
		if at < 1 || at > int64(len(seg.updated)) {
			return fmt.Errorf("multi-row update returned row %d of %d", at, len(seg.updated))
		}
		seg.updated[at-1].CreatedAt = fromMicros(sql.NullInt64{Int64: created, Valid: true})
		n++
	}
	if err := rows.Err(); err != nil {
		return bulkErr(s.d, err)
	}
	if n != len(seg.updated) {
		return errBulkMiss
	}
	return nil
}

// bulkErr is errBulkMiss for a unique violation, else err.
func bulkErr(d *dialect, err error) error {
	if isDup(d, err) {
		return errBulkMiss
	}
	return err
}
