package storetest

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/shadow"
)

func queryCases() []testCase {
	return []testCase{
		{name: "QueryFields", run: testQueryFields},
		{name: "QueryPaging", run: testQueryPaging},
		{name: "QueryMatchesModel", run: testQueryModel},
		{name: "AllWhileUpdating", run: testAllWhileUpdating},
	}
}

// op returns a pending operation of type t requested at requested, unfinished
// unless done.
func op(id int64, t shadow.OpType, d connector.DeltaType, requested time.Time, done bool) shadow.PendingOperation {
	o := shadow.PendingOperation{
		ID:          id,
		Delta:       connector.Delta{Type: d},
		Type:        t,
		Status:      shadow.StatusPendingExecution,
		Result:      shadow.ResultInProgress,
		RequestedAt: requested,
	}
	switch d {
	case connector.DeltaAdd:
		o.Delta.Attributes = connector.Attributes{"cn": {"x"}}
	case connector.DeltaModify:
		o.Delta.Changes = []connector.AttributeDelta{{Op: connector.Replace, Name: "cn", Values: []string{"y"}}}
	}
	if done {
		o.Status, o.Result, o.CompletedAt = shadow.StatusCompleted, shadow.ResultSuccess, requested.Add(time.Minute)
	}
	return o
}

// queryFixture stores ten shadows chosen so that every Query field selects
// a different subset, with values at the boundaries of the time filters.
// T is Start.
func queryFixture(h *harness) {
	T := Start
	mk := func(id, res string, class connector.ObjectClass, uid, name string, f func(*shadow.Shadow)) {
		sh := &shadow.Shadow{ID: id, ResourceID: res, Class: class, UID: uid, Name: name, Exists: uid != "", Origin: shadow.OriginAssigned}
		if f != nil {
			f(sh)
		}
		h.create(sh)
	}
	mk("q01", "r1", "acct", "u1", "n1", func(s *shadow.Shadow) {
		s.ReconciledAt = T.Add(-time.Hour)
	})
	mk("q02", "r1", "acct", "u2", "n2", func(s *shadow.Shadow) {
		s.Dead, s.DeadSince = true, T.Add(-48*time.Hour)
	})
	mk("q03", "r1", "group", "g1", "grp1", func(s *shadow.Shadow) {
		s.Pending = []shadow.PendingOperation{op(1, shadow.OpRetry, connector.DeltaModify, T.Add(-2*time.Hour), false)}
		s.NextDue = T.Add(-time.Hour)
	})
	mk("q04", "r2", "acct", "u1", "n1", func(s *shadow.Shadow) {
		s.Pending = []shadow.PendingOperation{op(1, shadow.OpGrouped, connector.DeltaModify, T.Add(-30*time.Minute), false)}
		s.NextDue = T.Add(time.Hour)
		s.ReconciledAt = T
	})
	mk("q05", "r1", "acct", "", "n5", func(s *shadow.Shadow) {
		s.Pending = []shadow.PendingOperation{op(1, shadow.OpRetry, connector.DeltaAdd, T.Add(-10*time.Minute), false)}
		s.NextDue = T // exactly at the DueBy of the queries below
	})
	mk("q06", "r2", "group", "g2", "grp2", func(s *shadow.Shadow) {
		s.Pending = []shadow.PendingOperation{
			op(1, shadow.OpRetry, connector.DeltaModify, T.Add(-5*time.Hour), true),
			op(2, shadow.OpAsync, connector.DeltaModify, T.Add(-3*time.Hour), false),
		}
		s.NeedsReconciliation = true
	})
	mk("q07", "r1", "acct", "u2", "n2", func(s *shadow.Shadow) {
		s.Pending = []shadow.PendingOperation{op(1, shadow.OpRetry, connector.DeltaModify, T.Add(-6*time.Hour), true)}
		s.NextDue = T.Add(24 * time.Hour)
		s.ReconciledAt = T.Add(-2 * time.Hour)
	})
	mk("q08", "r2", "acct", "u3", "n3", func(s *shadow.Shadow) {
		s.Dead, s.DeadSince = true, T.Add(-time.Hour)
		s.NeedsReconciliation = true
	})
	mk("q09", "r1", "acct", "u9", "n9", func(s *shadow.Shadow) {
		s.Pending = []shadow.PendingOperation{
			op(1, shadow.OpGrouped, connector.DeltaDelete, T.Add(-time.Hour), false),
			op(2, shadow.OpRetry, connector.DeltaModify, T.Add(-20*time.Minute), false),
		}
		s.NextDue = T.Add(-5 * time.Minute)
	})
	mk("q10", "r1", "acct", "u1", "n1", func(s *shadow.Shadow) {
		s.Dead, s.DeadSince = true, T.Add(-200*time.Hour)
	})
}

func testQueryFields(h *harness) {
	queryFixture(h)
	T := Start
	all := []string{"q01", "q02", "q03", "q04", "q05", "q06", "q07", "q08", "q09", "q10"}
	tests := []struct {
		name string
		q    shadow.Query
		want []string
		// count is Count's answer when it differs from len(want)
		// (paging: Count ignores After and Limit).
		count int
	}{
		{"zero", shadow.Query{}, all, 0},
		{"ResourceID r1", shadow.Query{ResourceID: "r1"}, []string{"q01", "q02", "q03", "q05", "q07", "q09", "q10"}, 0},
		{"ResourceID r2", shadow.Query{ResourceID: "r2"}, []string{"q04", "q06", "q08"}, 0},
		{"ResourceID unknown", shadow.Query{ResourceID: "r3"}, nil, 0},
		{"Class group", shadow.Query{Class: "group"}, []string{"q03", "q06"}, 0},
		{"ResourceID+Class", shadow.Query{ResourceID: "r1", Class: "acct"}, []string{"q01", "q02", "q05", "q07", "q09", "q10"}, 0},
		{"UID", shadow.Query{UID: "u1"}, []string{"q01", "q04", "q10"}, 0},
		{"UID unknown", shadow.Query{UID: "zz"}, nil, 0},
		{"ResourceID+UID", shadow.Query{ResourceID: "r1", UID: "u1"}, []string{"q01", "q10"}, 0},
		{"identity live", shadow.Query{ResourceID: "r1", Class: "acct", UID: "u1", Dead: shadow.DeadExclude}, []string{"q01"}, 0},
		{"UID+DeadExclude", shadow.Query{UID: "u2", Dead: shadow.DeadExclude}, []string{"q07"}, 0},
		{"Name", shadow.Query{Name: "n2"}, []string{"q02", "q07"}, 0},
		{"Name+ResourceID", shadow.Query{Name: "n1", ResourceID: "r2"}, []string{"q04"}, 0},
		{"UID+Name", shadow.Query{UID: "u1", Name: "n1", ResourceID: "r1"}, []string{"q01", "q10"}, 0},
		{"UID+Name mismatch", shadow.Query{UID: "u1", Name: "n2"}, nil, 0},
		{"DeadOnly", shadow.Query{Dead: shadow.DeadOnly}, []string{"q02", "q08", "q10"}, 0},
		{"DeadExclude", shadow.Query{Dead: shadow.DeadExclude}, []string{"q01", "q03", "q04", "q05", "q06", "q07", "q09"}, 0},
		{"DeadBefore T-24h", shadow.Query{DeadBefore: T.Add(-24 * time.Hour)}, []string{"q02", "q10"}, 0},
		{"DeadBefore T", shadow.Query{DeadBefore: T}, []string{"q02", "q08", "q10"}, 0},
		{"DeadBefore is strict", shadow.Query{DeadBefore: T.Add(-time.Hour)}, []string{"q02", "q10"}, 0},
		{"DeadBefore+ResourceID", shadow.Query{DeadBefore: T, ResourceID: "r2"}, []string{"q08"}, 0},
		{"DeadBefore+DeadOnly", shadow.Query{DeadBefore: T, Dead: shadow.DeadOnly}, []string{"q02", "q08", "q10"}, 0},
		{"Unfinished", shadow.Query{Unfinished: true}, []string{"q03", "q04", "q05", "q06", "q09"}, 0},
		{"Unfinished retry", shadow.Query{Unfinished: true, PendingType: shadow.OpRetry}, []string{"q03", "q05", "q09"}, 0},
		{"PendingType grouped alone", shadow.Query{PendingType: shadow.OpGrouped}, []string{"q04", "q09"}, 0},
		{"PendingType async", shadow.Query{PendingType: shadow.OpAsync}, []string{"q06"}, 0},
		{"Unfinished+ResourceID", shadow.Query{Unfinished: true, ResourceID: "r2", Dead: shadow.DeadExclude}, []string{"q04", "q06"}, 0},
		{"OldestPendingBefore T-1h strict", shadow.Query{OldestPendingBefore: T.Add(-time.Hour)}, []string{"q03", "q06"}, 0},
		{"OldestPendingBefore T-15m", shadow.Query{OldestPendingBefore: T.Add(-15 * time.Minute)}, []string{"q03", "q04", "q06", "q09"}, 0},
		{"OldestPendingBefore+retry", shadow.Query{OldestPendingBefore: T.Add(-15 * time.Minute), PendingType: shadow.OpRetry}, []string{"q03", "q09"}, 0},
		{"OldestPendingBefore+grouped", shadow.Query{OldestPendingBefore: T.Add(-45 * time.Minute), PendingType: shadow.OpGrouped, Unfinished: true}, []string{"q09"}, 0},
		{"OldestPendingBefore+ResourceID", shadow.Query{OldestPendingBefore: T.Add(-15 * time.Minute), ResourceID: "r2"}, []string{"q04", "q06"}, 0},
		{"DueBy T inclusive", shadow.Query{DueBy: T}, []string{"q03", "q05", "q09"}, 0},
		{"DueBy T+2h", shadow.Query{DueBy: T.Add(2 * time.Hour)}, []string{"q03", "q04", "q05", "q09"}, 0},
		{"DueBy T+48h", shadow.Query{DueBy: T.Add(48 * time.Hour)}, []string{"q03", "q04", "q05", "q07", "q09"}, 0},
		{"DueBy T-2h", shadow.Query{DueBy: T.Add(-2 * time.Hour)}, nil, 0},
		{"DueBy+ResourceID+Unfinished", shadow.Query{DueBy: T, ResourceID: "r1", Unfinished: true}, []string{"q03", "q05", "q09"}, 0},
		{"DueBy+ResourceID+Class", shadow.Query{DueBy: T, ResourceID: "r1", Class: "acct"}, []string{"q05", "q09"}, 0},
		{"NeedsReconciliation", shadow.Query{NeedsReconciliation: true}, []string{"q06", "q08"}, 0},
		{"NeedsReconciliation+DeadOnly", shadow.Query{NeedsReconciliation: true, Dead: shadow.DeadOnly}, []string{"q08"}, 0},
		{"NeedsReconciliation+Unfinished", shadow.Query{NeedsReconciliation: true, Unfinished: true}, []string{"q06"}, 0},
		{"ReconciledBefore T (zero counts)", shadow.Query{ReconciledBefore: T}, []string{"q01", "q02", "q03", "q05", "q06", "q07", "q08", "q09", "q10"}, 0},
		{"ReconciledBefore T-1h strict", shadow.Query{ReconciledBefore: T.Add(-time.Hour)}, []string{"q02", "q03", "q05", "q06", "q07", "q08", "q09", "q10"}, 0},
		{"ReconciledBefore sweep", shadow.Query{ReconciledBefore: T.Add(-90 * time.Minute), ResourceID: "r1", Class: "acct", Dead: shadow.DeadExclude}, []string{"q05", "q07", "q09"}, 0},
		{"After", shadow.Query{After: "q05"}, []string{"q06", "q07", "q08", "q09", "q10"}, 10},
		{"After+Limit", shadow.Query{After: "q05", Limit: 2}, []string{"q06", "q07"}, 10},
		{"Limit", shadow.Query{Limit: 3}, []string{"q01", "q02", "q03"}, 10},
		{"Limit above total", shadow.Query{Limit: 50}, all, 0},
		{"After last", shadow.Query{After: "q10"}, nil, 10},
		{"After between IDs", shadow.Query{After: "q055"}, []string{"q06", "q07", "q08", "q09", "q10"}, 10},
		{"After+ResourceID+Limit", shadow.Query{ResourceID: "r1", After: "q03", Limit: 2}, []string{"q05", "q07"}, 7},
		{"After+UID", shadow.Query{UID: "u1", After: "q01"}, []string{"q04", "q10"}, 3},
		{"After+Unfinished+Limit", shadow.Query{Unfinished: true, After: "q04", Limit: 1}, []string{"q05"}, 5},
		{"After+DueBy+Limit", shadow.Query{DueBy: T, After: "q03", Limit: 1}, []string{"q05"}, 3},
		{"everything", shadow.Query{
			ResourceID: "r1", Class: "acct", UID: "u9", Name: "n9", Dead: shadow.DeadExclude,
			Unfinished: true, PendingType: shadow.OpGrouped, OldestPendingBefore: T,
			DueBy: T, After: "q01", Limit: 5,
		}, []string{"q09"}, 1},
	}
	// Every Query field is exercised, so that a field added to Query
	// later fails here until the suite covers it.
	for i := range reflect.TypeFor[shadow.Query]().NumField() {
		used := false
		for _, tc := range tests {
			if !reflect.ValueOf(tc.q).Field(i).IsZero() {
				used = true
				break
			}
		}
		if !used {
			h.t.Fatalf("suite bug: no QueryFields case sets Query.%s", reflect.TypeFor[shadow.Query]().Field(i).Name)
		}
	}
	for _, tc := range tests {
		got := ids(h.list(tc.q))
		if !cmp.Equal(got, tc.want, Compare) {
			h.t.Errorf("%s: List(%s) = %v, want %v", tc.name, describe(tc.q), got, tc.want)
		}
		wantCount := tc.count
		if wantCount == 0 {
			wantCount = len(tc.want)
		}
		if n := h.count(tc.q); n != wantCount {
			h.t.Errorf("%s: Count(%s) = %d, want %d", tc.name, describe(tc.q), n, wantCount)
		}
	}
}

func testQueryPaging(h *harness) {
	t := h.t
	const n = 23
	for i := range n {
		sh := newShadow("", "r1", "account", fmt.Sprintf("u%02d", i))
		if i%3 == 0 {
			sh.ResourceID = "r2"
		}
		h.create(sh)
	}
	for _, q := range []shadow.Query{{}, {ResourceID: "r1"}, {ResourceID: "r2", Dead: shadow.DeadExclude}} {
		full := ids(h.list(q))
		if len(full) != h.count(q) {
			t.Fatalf("List(%s) returned %d, Count says %d", describe(q), len(full), h.count(q))
		}
		for _, size := range []int{1, 4, 7, len(full), len(full) + 1} {
			var paged []string
			p := q
			p.Limit = size
			for pages := 0; ; pages++ {
				if pages > len(full)+1 {
					t.Fatalf("paging %s by %d does not end", describe(q), size)
				}
				page := ids(h.list(p))
				if len(page) > size {
					t.Fatalf("page of %s has %d shadows, Limit %d", describe(q), len(page), size)
				}
				paged = append(paged, page...)
				if len(page) < size {
					break
				}
				p.After = page[len(page)-1]
			}
			if !slices.Equal(paged, full) {
				t.Fatalf("paging %s by %d gave %v, want %v", describe(q), size, paged, full)
			}
		}
	}
	// Keyset paging is stable when shadows are added meanwhile: no page
	// repeats a shadow and none stored before the walk is missed.
	before := ids(h.list(shadow.Query{}))
	seen := map[string]bool{}
	p := shadow.Query{Limit: 5}
	for pages := 0; ; pages++ {
		if pages > len(before) {
			t.Fatal("paging while creating does not end")
		}
		page := ids(h.list(p))
		for _, id := range page {
			if seen[id] {
				t.Fatalf("paging while creating returned %q twice", id)
			}
			seen[id] = true
		}
		if len(page) < p.Limit {
			break
		}
		p.After = page[len(page)-1]
		h.create(newShadow("", "r1", "account", fmt.Sprintf("late%02d", pages)))
	}
	for _, id := range before {
		if !seen[id] {
			t.Fatalf("paging while creating missed %q", id)
		}
	}
}

// testQueryModel stores random shadows and checks random queries against
// the suite's reading of the Query contract (queryModel).
func testQueryModel(h *harness) {
	t := h.t
	rng := rand.New(rand.NewPCG(1, 2))
	T := Start
	pick := func(vals ...string) string { return vals[rng.IntN(len(vals))] }
	randTime := func() time.Time {
		if rng.IntN(3) == 0 {
			return time.Time{}
		}
		return T.Add(time.Duration(rng.IntN(9)-4) * time.Hour)
	}
	var stored []*shadow.Shadow
	for i := range 80 {
		sh := &shadow.Shadow{
			ID:         fmt.Sprintf("m%03d", i),
			ResourceID: pick("ra", "rb", "rc"),
			Class:      connector.ObjectClass(pick("acct", "group")),
			UID:        pick("", "x1", "x2", "x3", "x4"),
			Name:       pick("", "na", "nb", "nc"),
			Origin:     shadow.OriginDiscovered,
		}
		sh.Exists = sh.UID != "" && rng.IntN(4) > 0
		if sh.Exists {
			sh.UID = fmt.Sprintf("%s-%d", sh.UID, i) // live identities stay unique
		}
		if rng.IntN(3) == 0 {
			sh.Dead = true
			sh.DeadSince = T.Add(time.Duration(rng.IntN(9)-4) * time.Hour)
		}
		for j := range rng.IntN(4) {
			o := op(int64(j+1), shadow.OpType(1+rng.IntN(3)),
				[]connector.DeltaType{connector.DeltaAdd, connector.DeltaModify, connector.DeltaDelete}[rng.IntN(3)],
				T.Add(time.Duration(rng.IntN(9)-8)*time.Hour), rng.IntN(3) == 0)
			sh.Pending = append(sh.Pending, o)
		}
		sh.NextDue = randTime()
		sh.NeedsReconciliation = rng.IntN(5) == 0
		sh.ReconciledAt = randTime()
		h.create(sh)
		stored = append(stored, sh.Clone())
	}
	for i := range 400 {
		q := shadow.Query{}
		if rng.IntN(3) == 0 {
			q.ResourceID = pick("ra", "rb", "rc", "rz")
		}
		if rng.IntN(4) == 0 {
			q.Class = connector.ObjectClass(pick("acct", "group"))
		}
		if rng.IntN(6) == 0 {
			q.UID = pick("x1", "x2", stored[rng.IntN(len(stored))].UID)
		}
		if rng.IntN(6) == 0 {
			q.Name = pick("na", "nb", "nc")
		}
		q.Dead = shadow.DeadFilter(rng.IntN(3))
		if rng.IntN(5) == 0 {
			q.DeadBefore = randTime()
		}
		q.Unfinished = rng.IntN(3) == 0
		if rng.IntN(4) == 0 {
			q.PendingType = shadow.OpType(rng.IntN(4))
		}
		if rng.IntN(4) == 0 {
			q.OldestPendingBefore = T.Add(time.Duration(rng.IntN(9)-8) * time.Hour)
		}
		if rng.IntN(3) == 0 {
			q.DueBy = randTime()
		}
		q.NeedsReconciliation = rng.IntN(6) == 0
		if rng.IntN(5) == 0 {
			q.ReconciledBefore = randTime()
		}
		if rng.IntN(3) == 0 {
			q.After = fmt.Sprintf("m%03d", rng.IntN(85))
		}
		if rng.IntN(3) == 0 {
			q.Limit = rng.IntN(10)
		}
		var want []string
		total := 0
		for _, sh := range stored {
			if !queryModel(sh, q) {
				continue
			}
			total++
			if (q.After == "" || sh.ID > q.After) && (q.Limit == 0 || len(want) < q.Limit) {
				want = append(want, sh.ID)
			}
		}
		if got := ids(h.list(q)); !cmp.Equal(got, want, Compare) {
			t.Fatalf("query %d: List(%s) = %v, want %v", i, describe(q), got, want)
		}
		if n := h.count(q); n != total {
			t.Fatalf("query %d: Count(%s) = %d, want %d", i, describe(q), n, total)
		}
	}
}

// queryModel is the suite's reading of Query, apart from After and Limit.
func queryModel(sh *shadow.Shadow, q shadow.Query) bool {
	if q.ResourceID != "" && sh.ResourceID != q.ResourceID ||
		q.Class != "" && sh.Class != q.Class ||
		q.UID != "" && sh.UID != q.UID ||
		q.Name != "" && sh.Name != q.Name ||
		q.Dead == shadow.DeadExclude && sh.Dead ||
		q.Dead == shadow.DeadOnly && !sh.Dead ||
		q.NeedsReconciliation && !sh.NeedsReconciliation {
		return false
	}
	// A zero ReconciledAt (never reconciled) counts as before.
	if !q.ReconciledBefore.IsZero() && !sh.ReconciledAt.IsZero() && !sh.ReconciledAt.Before(q.ReconciledBefore) {
		return false
	}
	if !q.DeadBefore.IsZero() && (!sh.Dead || !sh.DeadSince.Before(q.DeadBefore)) {
		return false
	}
	if !q.DueBy.IsZero() && (sh.NextDue.IsZero() || sh.NextDue.After(q.DueBy)) {
		return false
	}
	if q.Unfinished || q.PendingType != 0 || !q.OldestPendingBefore.IsZero() {
		var oldest time.Time
		found := false
		for _, o := range sh.Pending {
			if o.Status == shadow.StatusCompleted || (q.PendingType != 0 && o.Type != q.PendingType) {
				continue
			}
			if !found || o.RequestedAt.Before(oldest) {
				oldest, found = o.RequestedAt, true
			}
		}
		if !found || (!q.OldestPendingBefore.IsZero() && !oldest.Before(q.OldestPendingBefore)) {
			return false
		}
	}
	return true
}

func testAllWhileUpdating(h *harness) {
	t := h.t
	const n = 25
	for i := range n {
		sh := newShadow(fmt.Sprintf("a%02d", i), "r1", "account", fmt.Sprintf("u%02d", i))
		sh.Pending = []shadow.PendingOperation{op(1, shadow.OpRetry, connector.DeltaModify, Start, false)}
		h.create(sh)
	}
	h.create(newShadow("b00", "r2", "account", "other"))

	seen := map[string]int{}
	var order []string
	for sh, err := range shadow.All(h.ctx, h.s, shadow.Query{ResourceID: "r1", Unfinished: true}, 4) {
		if err != nil {
			t.Fatalf("All: %v", err)
		}
		seen[sh.ID]++
		order = append(order, sh.ID)
		// Finish the operation: the shadow leaves the query's selection
		// while the iteration is under way.
		sh.Pending[0].Status, sh.Pending[0].Result = shadow.StatusCompleted, shadow.ResultSuccess
		sh.Attributes["visited"] = []string{"yes"}
		h.update(sh)
		// And a new matching shadow appears behind the cursor.
		if sh.ID == "a10" {
			late := newShadow("a00x", "r1", "account", "late")
			late.Pending = []shadow.PendingOperation{op(1, shadow.OpRetry, connector.DeltaModify, Start, false)}
			h.create(late)
		}
	}
	if len(seen) != n {
		t.Fatalf("All visited %d shadows, want %d: %v", len(seen), n, order)
	}
	for id, c := range seen {
		if c != 1 {
			t.Fatalf("All visited %q %d times", id, c)
		}
		if !strings.HasPrefix(id, "a") || id == "a00x" {
			t.Fatalf("All visited %q, which the query does not select at that point", id)
		}
	}
	if !slices.IsSorted(order) {
		t.Fatalf("All visited out of ID order: %v", order)
	}
	if c := h.count(shadow.Query{ResourceID: "r1", Unfinished: true}); c != 1 {
		t.Fatalf("after the iteration %d unfinished shadows remain, want 1 (the late one)", c)
	}
	for sh, err := range shadow.All(h.ctx, h.s, shadow.Query{Dead: shadow.DeadExclude}, 0) {
		if err != nil {
			t.Fatalf("All: %v", err)
		}
		if sh.ResourceID == "r1" && sh.ID != "a00x" && sh.Attributes.Get("visited") != "yes" {
			t.Fatalf("shadow %q was not updated during the iteration", sh.ID)
		}
	}
}
