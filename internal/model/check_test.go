package model_test

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/umbra-idm/umbra/connector"

	"github.com/umbra-idm/umbra/shadow"
)

// check compares the quiet world with the model and returns every
// difference.
func (w *world) check(ctx context.Context) ([]string, error) {
	var problems []string
	all, err := w.store.List(ctx, shadow.Query{})
	if err != nil {
		return nil, err
	}
	byID := map[string]*shadow.Shadow{}
	for _, sh := range all {
		byID[sh.ID] = sh
		for _, op := range sh.Pending {
			if !op.Completed() {
				problems = append(problems, fmt.Sprintf("shadow %s (%s %s) has unfinished operation %d (%s %s %s attempt %d: %s)",
					sh.ID, sh.ResourceID, sh.Name, op.ID, op.Delta.Type, op.Type, op.Status, op.Attempt, op.LastError))
			}
		}
	}

	// The model's states, accounts first: a successful add that collided
	// absorbs the foreign object it linked to.
	states := map[*entity][]state{}
	orphans := map[string]bool{}
	for _, e := range w.ents {
		if e.foreign {
			continue
		}
		sh := byID[e.shadowID]
		ss, ps := w.fold(e, sh)
		states[e] = ss
		problems = append(problems, ps...)
		if len(ss) > 1 {
			w.stats.add("entities with several possible states", 1)
		}
		for _, s := range e.orphans {
			orphans[s.key()] = true
		}
	}
	for _, e := range w.ents {
		if e.foreign {
			states[e], _ = w.fold(e, nil)
		}
	}

	for _, r := range w.res {
		var ents []*entity
		for _, e := range w.ents {
			if e.res == r.idx {
				ents = append(ents, e)
			}
		}
		objects := r.conn.Objects(class)
		for _, p := range match(ents, states, objects, orphans) {
			problems = append(problems, r.id+": "+p)
		}

		// Live shadows: one per object, naming it as it is, caching what
		// it holds unless marked for reconciliation.
		uids, names := map[string]string{}, map[string]string{}
		for _, sh := range all {
			if sh.ResourceID != r.id || !sh.Live() {
				continue
			}
			if other, dup := uids[sh.UID]; dup {
				problems = append(problems, fmt.Sprintf("%s: live shadows %s and %s share UID %s", r.id, other, sh.ID, sh.UID))
			}
			if other, dup := names[sh.Name]; dup {
				problems = append(problems, fmt.Sprintf("%s: live shadows %s and %s share name %s", r.id, other, sh.ID, sh.Name))
			}
			uids[sh.UID], names[sh.Name] = sh.ID, sh.ID
			obj, ok := r.conn.Object(class, sh.UID)
			switch {
			case !ok:
				if !sh.NeedsReconciliation && r.sync != nil {
					problems = append(problems, fmt.Sprintf("%s: live shadow %s (%s) has no object %s", r.id, sh.ID, sh.Name, sh.UID))
				}
			case !sh.NeedsReconciliation && obj.ID.Name != sh.Name:
				problems = append(problems, fmt.Sprintf("%s: shadow %s names object %s %q, the resource %q", r.id, sh.ID, sh.UID, sh.Name, obj.ID.Name))
			case !sh.NeedsReconciliation && !obj.Attributes.Equal(sh.Attributes):
				problems = append(problems, fmt.Sprintf("%s: shadow %s caches %v, object %s holds %v", r.id, sh.ID, sh.Attributes.Normalize(), sh.UID, obj.Attributes.Normalize()))
			}
		}
		if r.sync == nil {
			continue
		}
		// Live sync follows r: every object has its live shadow, and the
		// token is the resource's latest.
		for _, o := range objects {
			if _, ok := uids[o.ID.UID]; !ok {
				problems = append(problems, fmt.Sprintf("%s: object %s (%s) has no live shadow", r.id, o.ID.UID, o.ID.Name))
			}
		}
		tok, found, err := r.sync.Token(ctx)
		if err != nil {
			return nil, err
		}
		latest, err := r.conn.LatestToken(ctx, class)
		if err != nil {
			return nil, err
		}
		if !found || tok != latest {
			problems = append(problems, fmt.Sprintf("%s: live-sync token %q (found %v), resource's latest %q", r.id, tok, found, latest))
		}
	}
	sort.Strings(problems)
	return problems, nil
}

// dump describes every shadow and its operations, for a failing seed.
func (w *world) dump(ctx context.Context) string {
	all, err := w.store.List(ctx, shadow.Query{})
	if err != nil {
		return err.Error() + "\n"
	}
	var b strings.Builder
	for _, sh := range all {
		fmt.Fprintf(&b, "  %s %s %s uid=%q name=%q exists=%v dead=%v recon=%v origin=%s %v\n", sh.ID, sh.ResourceID, sh.State(),
			sh.UID, sh.Name, sh.Exists, sh.Dead, sh.NeedsReconciliation, sh.Origin, sh.Attributes.Normalize())
		for _, op := range sh.Pending {
			fmt.Fprintf(&b, "      op %d %s %v %s %s %s attempt %d err=%s(%s) cancel=%q events=[%s]\n", op.ID, op.Delta.Type, deltaText(op.Delta),
				op.Type, op.Status, op.Result, op.Attempt, op.LastErrorCategory, op.LastError, op.CancelReason, w.history(sh.ID, op.ID))
		}
	}
	return b.String()
}

func deltaText(d connector.Delta) string {
	if d.Attributes != nil {
		return fmt.Sprint(d.Attributes.Normalize())
	}
	return fmt.Sprint(d.Changes)
}
