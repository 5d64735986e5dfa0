package memstore

import (
	"slices"

	"github.com/umbra-idm/umbra/shadow"
)

// matches reports whether r is selected by q, apart from After and Limit.
// This is the meaning of every Query field; the indexes only narrow down
// which shadows are tested.
func matches(r *record, q *shadow.Query) bool {
	switch {
	case q.ResourceID != "" && r.resourceID != q.ResourceID,
		q.Class != "" && r.class != q.Class,
		q.UID != "" && r.uid != q.UID,
		q.Name != "" && r.name != q.Name,
		q.Dead == shadow.DeadExclude && r.dead,
		q.Dead == shadow.DeadOnly && !r.dead,
		!q.DeadBefore.IsZero() && !(r.dead && r.compareTime(tDeadSince, q.DeadBefore) < 0),
		!q.DueBy.IsZero() && (r.timeIsZero(tNextDue) || r.compareTime(tNextDue, q.DueBy) > 0),
		q.NeedsReconciliation && !r.needsRecon,
		// A zero ReconciledAt is before any time.
		!q.ReconciledBefore.IsZero() && r.compareTime(tReconciledAt, q.ReconciledBefore) >= 0:
		return false
	}
	if q.Unfinished || q.PendingType != 0 || !q.OldestPendingBefore.IsZero() {
		oldest, ok := r.oldestUnfinished(q.PendingType)
		if !ok || (!q.OldestPendingBefore.IsZero() && !oldest.Before(q.OldestPendingBefore)) {
			return false
		}
	}
	return true
}

// scan calls fn for every record q selects, in ID order, starting after
// q.After, until fn returns false (q.Limit is the caller's business). It
// returns how many records it examined: the cost of the query. The caller
// holds at least the read lock; fn MUST NOT change indexes.
//
// The plan: a UID or Name reads the handful of shadows with it; otherwise
// the smallest of the ID-ordered indexes the query's fields allow is read
// from After on, and the first Limit matches end the scan. A DueBy query
// reads the due index up to DueBy instead when that range is smaller; its
// matches are then sorted by ID.
func (s *Store) scan(q shadow.Query, fn func(*record) bool) (examined int) {
	var candidates []*record
	switch {
	case q.UID != "" || q.Name != "":
		// A handful of shadows share an identifier: walk the chain
		// into a small buffer, sorting only when several match.
		var buf [8]*record
		sel := buf[:0]
		take := func(r *record) {
			examined++
			if (q.After == "" || r.id > q.After) && matches(r, &q) {
				sel = append(sel, r)
			}
		}
		if q.UID != "" {
			for r := s.byUID[q.UID]; r != nil; r = r.nextUID {
				take(r)
			}
		} else {
			for r := s.byName[q.Name]; r != nil; r = r.nextName {
				take(r)
			}
		}
		if len(sel) > 1 {
			slices.SortFunc(sel, byID)
		}
		for _, r := range sel {
			if !fn(r) {
				break
			}
		}
		return examined
	default:
		best := s.ids
		consider := func(set *orderedSet) {
			if set.len() < best.len() {
				best = set
			}
		}
		if q.ResourceID != "" {
			res := s.byResource[q.ResourceID]
			if res == nil {
				return 0
			}
			consider(res)
		}
		if q.Unfinished || q.PendingType != 0 || !q.OldestPendingBefore.IsZero() {
			consider(s.unfinished[q.PendingType])
		}
		if q.Dead == shadow.DeadOnly || !q.DeadBefore.IsZero() {
			consider(s.dead)
		}
		if q.NeedsReconciliation {
			consider(s.recon)
		}
		if !q.DueBy.IsZero() {
			due, ok := s.dueUpTo(q, best.len())
			if ok {
				candidates = due
				break
			}
			examined += len(due) // the probe's cost
		}
		var before func(*record) bool
		if q.After != "" {
			before = func(r *record) bool { return r.id <= q.After }
		}
		best.ascend(before, func(r *record) bool {
			examined++
			if matches(r, &q) {
				return fn(r)
			}
			return true
		})
		return examined
	}

	var sel []*record
	for _, r := range candidates {
		examined++
		if (q.After == "" || r.id > q.After) && matches(r, &q) {
			sel = append(sel, r)
		}
	}
	slices.SortFunc(sel, byID)
	for _, r := range sel {
		if !fn(r) {
			break
		}
	}
	return examined
}

// dueUpTo returns the shadows whose NextDue is not after q.DueBy, reading
// the due index in time order, when there are at most limit of them;
// otherwise false (another index is cheaper) with the ones it read.
func (s *Store) dueUpTo(q shadow.Query, limit int) ([]*record, bool) {
	var out []*record
	ok := true
	s.due.ascend(nil, func(r *record) bool {
		if r.compareTime(tNextDue, q.DueBy) > 0 {
			return false
		}
		out = append(out, r)
		if len(out) > limit {
			ok = false
			return false
		}
		return true
	})
	return out, ok
}
