// Package storetest is the conformance suite every shadow.Store runs before
// it is considered ready: one call from the store's own tests,
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, storetest.Capabilities{Batcher: true, Claimer: true, Leaser: true},
//			func(t *testing.T, clk connector.Clock) shadow.Store {
//				return memstore.New(memstore.Options{Clock: clk})
//			})
//	}
//
// Every case is a named subtest that runs in parallel with the others on a
// fresh store of its own (newStore is called once per case) and a
// *connector.FakeClock the case moves by hand; the store MUST read time only
// from that clock (CreatedAt, UpdatedAt, claim and lease expiry). newStore
// should register its clean-up with t.Cleanup.
//
// # What the suite holds a store to
//
// Beyond the contract written on shadow.Store and the optional interfaces,
// the suite pins down these points, which the contract leaves to judgment:
//
//   - Times MAY be kept to the microsecond only (truncated or rounded, as
//     SQL databases do): the suite compares times within a microsecond.
//     Their location need not survive. The zero time MUST come back zero.
//   - A nil and an empty attribute map, slice of pending operations or
//     value list are the same; attribute value order need not survive
//     (values are sets).
//   - Create sets the caller's ID (when empty), Version (1), CreatedAt and
//     UpdatedAt (clock now). Update ignores the caller's CreatedAt and
//     UpdatedAt and stores the clock's now as UpdatedAt. A failed write
//     leaves the caller's Version as it was.
//   - Live identity (ResourceID, Class, UID) is unique only for shadows
//     that are Live() and have a UID; two existing shadows known only by
//     Name do not collide.
//   - Query: PendingType alone selects shadows with an unfinished
//     operation of that type (as if Unfinished were set); DeadBefore,
//     OldestPendingBefore and ReconciledBefore are strict (before, not at);
//     DueBy is inclusive (NextDue at DueBy is due). A dead shadow in the
//     suite always has a DeadSince. A Query with a negative Limit, an unknown
//     Dead filter or an unknown PendingType fails with shadow.ErrInvalid,
//     and so do Create and Update of a nil shadow.
//   - Results are ordered by ID and keyset-paged by it. The suite's own IDs
//     sort the same way in every common collation; a SQL store still
//     SHOULD order by bytes (PostgreSQL: COLLATE "C").
//   - A call with a cancelled context fails with an error that wraps
//     context.Canceled.
//   - Batcher: later writes of a batch see the earlier ones; on failure the
//     callers' shadows keep their IDs and versions.
//   - Claimer: claims survive Update of the claimed shadow. Whether an
//     owner's own unexpired claims are handed to it again is the store's
//     choice (memstore: no). The suite only uses limits above zero.
//   - Leaser: the term also increases when the lease passes to a new owner
//     after a release (so that fenced writes of the old term fail);
//     AcquireLease and RenewLease with an empty name or owner or a ttl
//     that is not positive fail with shadow.ErrInvalid.
//   - IdentifierFinder needs no Capabilities flag: its case runs when the
//     store implements it and is skipped otherwise. Empty values in the
//     lists match nothing (a shadow's empty UID is no identifier).
//
// Bench runs the shared benchmarks (create, get, update, the due query, a
// keyset page, claim and release) so that every store reports the same
// numbers.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/shadow"
)

// Capabilities says which optional interfaces the store under test
// implements. A flag that is set makes the suite run the cases of that
// interface, and those cases fail when the store does not implement it.
type Capabilities struct {
	// Batcher: the store implements shadow.Batcher.
	Batcher bool
	// Claimer: the store implements shadow.Claimer.
	Claimer bool
	// Leaser: the store implements shadow.Leaser.
	Leaser bool
}

// Start is the fake clock's time at the start of every case. It has
// nanoseconds so that a store keeping microseconds shows that it does.
var Start = time.Date(2031, time.March, 14, 15, 9, 26, 535897932, time.UTC)

// Run runs the conformance suite against the stores newStore makes. It
// calls newStore once per case, with the case's fake clock.
func Run(t *testing.T, caps Capabilities, newStore func(t *testing.T, clk connector.Clock) shadow.Store) {
	t.Helper()
	for _, c := range cases() {
		switch {
		case c.needs == needBatcher && !caps.Batcher,
			c.needs == needClaimer && !caps.Claimer,
			c.needs == needLeaser && !caps.Leaser:
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			clk := connector.NewFakeClock(Start)
			s := newStore(t, clk)
			if s == nil {
				t.Fatal("newStore returned nil")
			}
			c.run(&harness{t: t, clk: clk, s: s, ctx: t.Context()})
		})
	}
}

type need uint8

const (
	needStore need = iota
	needBatcher
	needClaimer
	needLeaser
)

type testCase struct {
	name  string
	needs need
	run   func(h *harness)
}

func cases() []testCase {
	var all []testCase
	all = append(all, crudCases()...)
	all = append(all, queryCases()...)
	all = append(all, concurrencyCases()...)
	all = append(all, batchCases()...)
	all = append(all, claimCases()...)
	all = append(all, leaseCases()...)
	all = append(all, findCases()...)
	return all
}

// harness is one case's store, clock and context.
type harness struct {
	t   *testing.T
	clk *connector.FakeClock
	s   shadow.Store
	ctx context.Context
}

func (h *harness) batcher() shadow.Batcher {
	h.t.Helper()
	b, ok := h.s.(shadow.Batcher)
	if !ok {
		h.t.Fatalf("Capabilities.Batcher is set but %T does not implement shadow.Batcher", h.s)
	}
	return b
}

func (h *harness) claimer() shadow.Claimer {
	h.t.Helper()
	c, ok := h.s.(shadow.Claimer)
	if !ok {
		h.t.Fatalf("Capabilities.Claimer is set but %T does not implement shadow.Claimer", h.s)
	}
	return c
}

func (h *harness) leaser() shadow.Leaser {
	h.t.Helper()
	l, ok := h.s.(shadow.Leaser)
	if !ok {
		h.t.Fatalf("Capabilities.Leaser is set but %T does not implement shadow.Leaser", h.s)
	}
	return l
}

// create stores sh and fails the case on error.
func (h *harness) create(sh *shadow.Shadow) *shadow.Shadow {
	h.t.Helper()
	if err := h.s.Create(h.ctx, sh); err != nil {
		h.t.Fatalf("Create(%q): %v", sh.ID, err)
	}
	return sh
}

// get reads id and fails the case on error.
func (h *harness) get(id string) *shadow.Shadow {
	h.t.Helper()
	sh, err := h.s.Get(h.ctx, id)
	if err != nil {
		h.t.Fatalf("Get(%q): %v", id, err)
	}
	if sh == nil {
		h.t.Fatalf("Get(%q) returned nil and no error", id)
	}
	return sh
}

// snapshot reads id and returns a deep copy of what the store returned, so
// that a store which shares memory between the shadows it returns cannot
// fool a comparison with it.
func (h *harness) snapshot(id string) *shadow.Shadow {
	h.t.Helper()
	return h.get(id).Clone()
}

// update writes sh and fails the case on error.
func (h *harness) update(sh *shadow.Shadow) {
	h.t.Helper()
	if err := h.s.Update(h.ctx, sh); err != nil {
		h.t.Fatalf("Update(%q, version %d): %v", sh.ID, sh.Version, err)
	}
}

// list runs q and fails the case on error.
func (h *harness) list(q shadow.Query) []*shadow.Shadow {
	h.t.Helper()
	out, err := h.s.List(h.ctx, q)
	if err != nil {
		h.t.Fatalf("List(%+v): %v", q, err)
	}
	return out
}

// count runs q and fails the case on error.
func (h *harness) count(q shadow.Query) int {
	h.t.Helper()
	n, err := h.s.Count(h.ctx, q)
	if err != nil {
		h.t.Fatalf("Count(%+v): %v", q, err)
	}
	return n
}

// mustBeMissing fails unless id is not in the store.
func (h *harness) mustBeMissing(id string) {
	h.t.Helper()
	if _, err := h.s.Get(h.ctx, id); !errors.Is(err, shadow.ErrNotFound) {
		h.t.Fatalf("Get(%q) = %v, want shadow.ErrNotFound", id, err)
	}
}

// cancelled returns a context that is already cancelled.
func (h *harness) cancelled() context.Context {
	ctx, cancel := context.WithCancel(h.ctx)
	cancel()
	return ctx
}

// wantCancelled fails unless err wraps context.Canceled.
func wantCancelled(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("%s with a cancelled context: error %v, want one wrapping context.Canceled", what, err)
	}
}

// wantErr fails unless err wraps target.
func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: error %v, want one wrapping %v", what, err, target)
	}
}

// Compare are the options with which the suite compares shadows: times
// within a microsecond (and zero only with zero), attributes as value sets,
// nil and empty maps and slices alike. Store tests may use them too.
var Compare = cmp.Options{
	cmp.Comparer(func(a, b time.Time) bool {
		if a.IsZero() || b.IsZero() {
			return a.IsZero() == b.IsZero()
		}
		d := a.Sub(b)
		return d > -time.Microsecond && d < time.Microsecond
	}),
	cmp.Comparer(func(a, b connector.Attributes) bool { return a.Equal(b) }),
	// Attributes have their own comparer above, which already treats nil
	// and empty alike.
	cmp.FilterPath(func(p cmp.Path) bool { return p.Last().Type() != attributesType }, cmpopts.EquateEmpty()),
}

var attributesType = reflect.TypeFor[connector.Attributes]()

// sameTime reports whether two times are equal at the suite's precision.
func sameTime(a, b time.Time) bool { return cmp.Equal(a, b, Compare) }

// mustEqual fails when got and want differ under Compare.
func mustEqual(t *testing.T, what string, got, want *shadow.Shadow) {
	t.Helper()
	if diff := cmp.Diff(want, got, Compare); diff != "" {
		t.Fatalf("%s: shadow differs (-want +got):\n%s", what, diff)
	}
}

// newShadow returns a valid shadow: an existing object of resource res and
// class class with the given UID (not existing when uid is empty).
func newShadow(id, res string, class connector.ObjectClass, uid string) *shadow.Shadow {
	sh := &shadow.Shadow{
		ID:         id,
		ResourceID: res,
		Class:      class,
		UID:        uid,
		Name:       "uid=" + uid + ",ou=people",
		Exists:     uid != "",
		Origin:     shadow.OriginAssigned,
		Attributes: connector.Attributes{"cn": {"Name " + uid}},
	}
	if uid == "" {
		sh.Name = ""
	}
	return sh
}

// ids returns the IDs of list, in its order.
func ids(list []*shadow.Shadow) []string {
	out := make([]string, len(list))
	for i, sh := range list {
		out[i] = sh.ID
	}
	return out
}

// sortedIDs returns ids sorted.
func sortedIDs(in ...string) []string {
	out := slices.Clone(in)
	slices.Sort(out)
	return out
}

func describe(q shadow.Query) string { return fmt.Sprintf("%+v", q) }
