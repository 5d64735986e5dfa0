package memstore

import (
	"fmt"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/shadow"
)

var costStart = time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)

// costFixture stores n plain shadows of resource "big" plus a few of each
// kind the indexes serve, and returns the store.
func costFixture(tb testing.TB, n int) *Store {
	tb.Helper()
	s := New(Options{Clock: connector.NewFakeClock(costStart)})
	ctx := tb.Context()
	add := func(sh *shadow.Shadow) {
		if err := s.Create(ctx, sh); err != nil {
			tb.Fatal(err)
		}
	}
	for i := range n {
		add(&shadow.Shadow{
			ID: fmt.Sprintf("s%07d", i), ResourceID: "big", Class: "acct",
			UID: fmt.Sprintf("u%07d", i), Name: fmt.Sprintf("n%07d", i), Exists: true,
			Origin: shadow.OriginAssigned,
			// Everything has a NextDue far ahead (retention clean-up),
			// so the due index is as big as the store.
			NextDue: costStart.Add(24 * time.Hour),
		})
	}
	pending := func(t shadow.OpType) []shadow.PendingOperation {
		return []shadow.PendingOperation{{
			ID: 1, Delta: connector.Delta{Type: connector.DeltaDelete}, Type: t,
			Status: shadow.StatusPendingExecution, Result: shadow.ResultInProgress, RequestedAt: costStart,
		}}
	}
	for i := range 30 { // due now
		add(&shadow.Shadow{ID: fmt.Sprintf("due%03d", i), ResourceID: "big", Class: "acct", Origin: shadow.OriginAssigned,
			Pending: pending(shadow.OpRetry), NextDue: costStart.Add(-time.Minute)})
	}
	for i := range 20 { // grouped, due later
		add(&shadow.Shadow{ID: fmt.Sprintf("grp%03d", i), ResourceID: "big", Class: "acct", Origin: shadow.OriginAssigned,
			Pending: pending(shadow.OpGrouped), NextDue: costStart.Add(time.Hour)})
	}
	for i := range 10 {
		add(&shadow.Shadow{ID: fmt.Sprintf("dead%03d", i), ResourceID: "big", Class: "acct", Origin: shadow.OriginAssigned,
			UID: "u0000001", Exists: true, Dead: true, DeadSince: costStart.Add(-time.Hour), NeedsReconciliation: i < 3})
	}
	for i := range 40 {
		add(&shadow.Shadow{ID: fmt.Sprintf("small%03d", i), ResourceID: "small", Class: "acct", Origin: shadow.OriginAssigned})
	}
	return s
}

// TestQueryCost checks that each query reads in proportion to what it
// selects (examined is what scan reports), not the whole store.
func TestQueryCost(t *testing.T) {
	t.Parallel()
	const n = 20000
	s := costFixture(t, n)
	tests := []struct {
		name        string
		q           shadow.Query
		want        int // matches (with Limit)
		maxExamined int
	}{
		{"due now", shadow.Query{DueBy: costStart, Unfinished: true}, 30, 30},
		{"due now of a resource", shadow.Query{ResourceID: "big", DueBy: costStart}, 30, 30},
		{"due within two hours", shadow.Query{DueBy: costStart.Add(2 * time.Hour)}, 50, 50},
		{"unfinished", shadow.Query{Unfinished: true}, 50, 50},
		{"unfinished of a resource", shadow.Query{ResourceID: "big", Unfinished: true}, 50, 50},
		{"grouped", shadow.Query{PendingType: shadow.OpGrouped}, 20, 20},
		{"grouped and old", shadow.Query{PendingType: shadow.OpGrouped, OldestPendingBefore: costStart.Add(time.Second)}, 20, 20},
		{"retry page", shadow.Query{PendingType: shadow.OpRetry, After: "due010", Limit: 5}, 5, 5},
		{"by UID", shadow.Query{UID: "u0000001", ResourceID: "big", Dead: shadow.DeadExclude}, 1, 11},
		{"by Name", shadow.Query{Name: "n0012345"}, 1, 1},
		{"dead before", shadow.Query{DeadBefore: costStart}, 10, 10},
		{"needs reconciliation", shadow.Query{NeedsReconciliation: true}, 3, 3},
		{"small resource", shadow.Query{ResourceID: "small"}, 40, 40},
		{"unknown resource", shadow.Query{ResourceID: "none"}, 0, 0},
		// Everything is due within two days: the due index is not the
		// cheap one; probing it costs at most one more than the cheap one.
		{"due far ahead and needing reconciliation", shadow.Query{DueBy: costStart.Add(48 * time.Hour), NeedsReconciliation: true}, 0, 7},
		{"due far ahead of the small resource", shadow.Query{DueBy: costStart.Add(48 * time.Hour), ResourceID: "small"}, 0, 81},
		{"first page of everything", shadow.Query{Limit: 100}, 100, 100},
		{"page in the middle", shadow.Query{After: "s0010000", Limit: 100}, 100, 100},
	}
	for _, tc := range tests {
		got := 0
		examined := s.scan(tc.q, func(*record) bool {
			got++
			return tc.q.Limit == 0 || got < tc.q.Limit
		})
		if got != tc.want {
			t.Errorf("%s: %d matches, want %d", tc.name, got, tc.want)
		}
		if examined > tc.maxExamined {
			t.Errorf("%s: examined %d shadows of %d to find %d, want at most %d", tc.name, examined, n, got, tc.maxExamined)
		}
	}
}

// BenchmarkDueQuery measures a refresh query (shadows due now) in a store
// of a million shadows of which a thousand are due.
func BenchmarkDueQuery(b *testing.B) {
	s := New(Options{Clock: connector.NewFakeClock(costStart)})
	ctx := b.Context()
	const n, due = 1_000_000, 1000
	for i := range n {
		sh := &shadow.Shadow{ID: fmt.Sprintf("s%07d", i), ResourceID: "r", Class: "acct", Origin: shadow.OriginAssigned,
			NextDue: costStart.Add(24 * time.Hour)}
		if i%(n/due) == 0 {
			sh.NextDue = costStart.Add(-time.Minute)
			sh.Pending = []shadow.PendingOperation{{ID: 1, Delta: connector.Delta{Type: connector.DeltaDelete}, Type: shadow.OpRetry,
				Status: shadow.StatusPendingExecution, Result: shadow.ResultInProgress, RequestedAt: costStart}}
		}
		if err := s.Create(ctx, sh); err != nil {
			b.Fatal(err)
		}
	}
	q := shadow.Query{DueBy: costStart, Unfinished: true, Limit: 100}
	var examined int
	for b.Loop() {
		got, err := s.List(ctx, q)
		if err != nil || len(got) != 100 {
			b.Fatalf("List: %d, %v", len(got), err)
		}
		examined = s.scan(q, func(*record) bool { return true })
	}
	b.ReportMetric(float64(examined), "examined/query")
}
