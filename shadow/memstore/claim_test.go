package memstore

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/shadow"
)

func newTestStore(t *testing.T, n int) (*Store, *connector.FakeClock) {
	t.Helper()
	clk := connector.NewFakeClock(costStart)
	s := New(Options{Clock: clk})
	for i := range n {
		sh := &shadow.Shadow{ID: fmt.Sprintf("s%02d", i), ResourceID: "r", Class: "c", Origin: shadow.OriginAssigned}
		if err := s.Create(t.Context(), sh); err != nil {
			t.Fatal(err)
		}
	}
	return s, clk
}

// Claim's limit and the query's Limit: the smaller one wins, and a limit
// of 0 means no cap but the query's.
func TestClaimLimits(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, _ := newTestStore(t, 10)
	for _, tc := range []struct {
		qLimit, limit, want int
	}{
		{0, 2, 2},
		{3, 0, 3},
		{2, 5, 2},
		{5, 1, 1},
		{0, 0, 2}, // the 10 - 2 - 3 - 2 - 1 left: no cap
	} {
		got, err := s.Claim(ctx, shadow.Query{Limit: tc.qLimit}, "o", time.Hour, tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != tc.want {
			t.Fatalf("Claim with Query.Limit %d, limit %d took %d, want %d", tc.qLimit, tc.limit, len(got), tc.want)
		}
	}
	// The owner's own unexpired claims are not handed out again.
	if got, _ := s.Claim(ctx, shadow.Query{}, "o", time.Hour, 0); len(got) != 0 {
		t.Fatalf("the owner re-claimed %d of its own claims", len(got))
	}
}

func TestClaimInvalid(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, _ := newTestStore(t, 1)
	for _, tc := range []struct {
		name  string
		q     shadow.Query
		owner string
		ttl   time.Duration
	}{
		{"empty owner", shadow.Query{}, "", time.Hour},
		{"zero ttl", shadow.Query{}, "o", 0},
		{"bad query", shadow.Query{Limit: -1}, "o", time.Hour},
	} {
		if _, err := s.Claim(ctx, tc.q, tc.owner, tc.ttl, 1); !errors.Is(err, shadow.ErrInvalid) {
			t.Fatalf("Claim with %s: %v, want ErrInvalid", tc.name, err)
		}
	}
}

// A delete undone by a failed batch brings the shadow's claim back.
func TestBatchUndoKeepsClaim(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, clk := newTestStore(t, 2)
	if got, err := s.Claim(ctx, shadow.Query{UID: "", ResourceID: "r", Limit: 1}, "o", time.Hour, 1); err != nil || len(got) != 1 || got[0].ID != "s00" {
		t.Fatalf("Claim: %v, %v", got, err)
	}
	del, _ := s.Get(ctx, "s00")
	stale, _ := s.Get(ctx, "s01")
	stale.Version = 7
	err := s.Apply(ctx, []shadow.Write{{Op: shadow.WriteDelete, Shadow: del}, {Op: shadow.WriteUpdate, Shadow: stale}})
	if !errors.Is(err, shadow.ErrConflict) {
		t.Fatalf("Apply: %v, want ErrConflict", err)
	}
	if got, _ := s.Claim(ctx, shadow.Query{}, "p", time.Hour, 0); len(got) != 1 || got[0].ID != "s01" {
		t.Fatalf("after the undone delete p claimed %v, want only s01", ids(got))
	}
	clk.Advance(2 * time.Hour)
	if got, _ := s.Claim(ctx, shadow.Query{}, "p", time.Hour, 0); len(got) != 2 {
		t.Fatalf("after expiry p claimed %d, want 2", len(got))
	}
	if err := s.Apply(ctx, []shadow.Write{{Op: 9, Shadow: del}}); !errors.Is(err, shadow.ErrInvalid) {
		t.Fatalf("Apply of an unknown WriteOp: %v, want ErrInvalid", err)
	}
}

func ids(list []*shadow.Shadow) []string {
	out := make([]string, len(list))
	for i, sh := range list {
		out[i] = sh.ID
	}
	return out
}

// NextDue values a nanosecond apart order by the nanosecond.
func TestDueOrderNanoseconds(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, _ := newTestStore(t, 0)
	for i, d := range []time.Duration{3, 1, 2} {
		sh := &shadow.Shadow{ID: fmt.Sprintf("d%d", i), ResourceID: "r", Class: "c", Origin: shadow.OriginAssigned, NextDue: costStart.Add(d)}
		if err := s.Create(ctx, sh); err != nil {
			t.Fatal(err)
		}
	}
	var order []string
	s.due.ascend(nil, func(r *record) bool { order = append(order, r.id); return true })
	if fmt.Sprint(order) != "[d1 d2 d0]" {
		t.Fatalf("due order %v, want [d1 d2 d0]", order)
	}
	got, err := s.List(ctx, shadow.Query{DueBy: costStart.Add(2)})
	if err != nil || fmt.Sprint(ids(got)) != "[d1 d2]" {
		t.Fatalf("List(DueBy +2ns) = %v, %v; want [d1 d2]", ids(got), err)
	}
}

// The intern table stops growing at its cap and still returns the value.
func TestInternCap(t *testing.T) {
	t.Parallel()
	s := New(Options{})
	for i := range 1<<16 + 10 {
		v := fmt.Sprint(i)
		if got := s.internString(v); got != v {
			t.Fatalf("internString(%q) = %q", v, got)
		}
	}
	if len(s.intern) != 1<<16 {
		t.Fatalf("intern table holds %d, want the cap %d", len(s.intern), 1<<16)
	}
	long := string(make([]byte, 200))
	if s.internString(long) != long || s.internString("") != "" {
		t.Fatal("internString changed a value it does not intern")
	}
}
