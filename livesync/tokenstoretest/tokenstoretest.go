// Package tokenstoretest is the conformance suite every livesync.TokenStore
// runs with one call from its own tests:
//
//	func TestTokenStore(t *testing.T) {
//		tokenstoretest.Run(t, func(t *testing.T) livesync.TokenStore {
//			return livesync.NewMemoryTokenStore()
//		})
//	}
//
// Every case is a named subtest that runs in parallel with the others on a
// fresh store (newStore is called once per case; register clean-up with
// t.Cleanup).
//
// Beyond the TokenStore contract, the suite holds a store to these points:
//   - Calls with a key that fails TokenKey.Validate fail (any error), and
//     SetAside of a change with an empty ID fails.
//   - A call with a cancelled context fails with an error wrapping
//     context.Canceled.
//   - SetAsideChanges orders by SetAsideAt; the suite gives entries
//     distinct times (ties are the store's choice). Set-aside changes
//     round-trip every field; times within a microsecond, attributes as
//     value sets, nil and empty alike.
//   - SetAside and SetAsideChanges copy: changing what was passed or
//     returned does not change the store.
package tokenstoretest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/livesync"
)

// Run runs the token store conformance suite against the stores newStore
// makes.
func Run(t *testing.T, newStore func(t *testing.T) livesync.TokenStore) {
	t.Helper()
	for _, c := range []struct {
		name string
		run  func(t *testing.T, h *harness)
	}{
		{"LoadTokenNotFound", testLoadNotFound},
		{"CompareAndSwapFromNothing", testCASFromNothing},
		{"CompareAndSwapConflictStoresNothing", testCASConflict},
		{"KeysIndependent", testKeysIndependent},
		{"InvalidKey", testInvalidKey},
		{"ContextCancelled", testContextCancelled},
		{"ConcurrentCompareAndSwap", testConcurrentCAS},
		{"ConcurrentCompareAndSwapCounter", testConcurrentCounter},
		{"SetAsideRoundTrip", testSetAsideRoundTrip},
		{"SetAsideUpsertByID", testSetAsideUpsert},
		{"SetAsideOldestFirst", testSetAsideOrder},
		{"SetAsideRemove", testSetAsideRemove},
		{"SetAsideKeysIndependent", testSetAsideKeys},
		{"SetAsideCopies", testSetAsideCopies},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			if s == nil {
				t.Fatal("newStore returned nil")
			}
			c.run(t, &harness{t: t, s: s, ctx: t.Context()})
		})
	}
}

type harness struct {
	t   *testing.T
	s   livesync.TokenStore
	ctx context.Context
}

var (
	keyA = livesync.TokenKey{ResourceID: "r1", Class: "inetOrgPerson", Task: "sync"}
	// Keys that differ from keyA in exactly one part.
	keyOtherResource = livesync.TokenKey{ResourceID: "r2", Class: "inetOrgPerson", Task: "sync"}
	keyOtherClass    = livesync.TokenKey{ResourceID: "r1", Class: "groupOfNames", Task: "sync"}
	keyOtherTask     = livesync.TokenKey{ResourceID: "r1", Class: "inetOrgPerson", Task: "sync-2"}
)

// base is the time the suite's set-aside changes are stamped from.
var base = time.Date(2031, time.March, 14, 15, 9, 26, 535897000, time.UTC)

func (h *harness) load(key livesync.TokenKey) (connector.Token, bool) {
	h.t.Helper()
	tok, found, err := h.s.LoadToken(h.ctx, key)
	if err != nil {
		h.t.Fatalf("LoadToken(%s): %v", key, err)
	}
	return tok, found
}

func (h *harness) mustLoad(key livesync.TokenKey, want connector.Token) {
	h.t.Helper()
	tok, found := h.load(key)
	if !found || tok != want {
		h.t.Fatalf("LoadToken(%s) = %q, found %v; want %q, found", key, tok, found, want)
	}
}

func (h *harness) cas(key livesync.TokenKey, old, next connector.Token) {
	h.t.Helper()
	if err := h.s.CompareAndSwapToken(h.ctx, key, old, next); err != nil {
		h.t.Fatalf("CompareAndSwapToken(%s, %q, %q): %v", key, old, next, err)
	}
}

func (h *harness) setAside(key livesync.TokenKey, c livesync.SetAsideChange) {
	h.t.Helper()
	if err := h.s.SetAside(h.ctx, key, c); err != nil {
		h.t.Fatalf("SetAside(%s, %q): %v", key, c.ID, err)
	}
}

func (h *harness) aside(key livesync.TokenKey) []livesync.SetAsideChange {
	h.t.Helper()
	list, err := h.s.SetAsideChanges(h.ctx, key)
	if err != nil {
		h.t.Fatalf("SetAsideChanges(%s): %v", key, err)
	}
	return list
}

func (h *harness) asideIDs(key livesync.TokenKey) []string {
	h.t.Helper()
	list := h.aside(key)
	out := make([]string, len(list))
	for i, c := range list {
		out[i] = c.ID
	}
	return out
}

func wantConflict(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, livesync.ErrTokenConflict) {
		t.Fatalf("%s: error %v, want one wrapping livesync.ErrTokenConflict", what, err)
	}
}

func testLoadNotFound(t *testing.T, h *harness) {
	if tok, found := h.load(keyA); found || tok != "" {
		t.Fatalf("LoadToken of a fresh store = %q, found %v; want not found", tok, found)
	}
}

func testCASFromNothing(t *testing.T, h *harness) {
	h.cas(keyA, "", "t1")
	h.mustLoad(keyA, "t1")
	h.cas(keyA, "t1", "t2")
	h.mustLoad(keyA, "t2")
	// Once a token is stored, "" no longer matches it.
	wantConflict(t, `CompareAndSwapToken from "" over a stored token`, h.s.CompareAndSwapToken(h.ctx, keyA, "", "t3"))
	h.mustLoad(keyA, "t2")
	// The empty token is a token like any other: stored, found, and
	// matched by "".
	h.cas(keyA, "t2", "")
	h.mustLoad(keyA, "")
	h.cas(keyA, "", "t4")
	h.mustLoad(keyA, "t4")
	// Swapping to the same token is allowed.
	h.cas(keyA, "t4", "t4")
	h.mustLoad(keyA, "t4")
}

func testCASConflict(t *testing.T, h *harness) {
	wantConflict(t, "CompareAndSwapToken from a token on an absent key", h.s.CompareAndSwapToken(h.ctx, keyA, "t0", "t1"))
	if _, found := h.load(keyA); found {
		t.Fatal("a conflicting CompareAndSwapToken stored a token")
	}
	h.cas(keyA, "", "t1")
	wantConflict(t, "CompareAndSwapToken with a stale token", h.s.CompareAndSwapToken(h.ctx, keyA, "t0", "t9"))
	h.mustLoad(keyA, "t1")
}

func testKeysIndependent(t *testing.T, h *harness) {
	h.cas(keyA, "", "a1")
	for _, k := range []livesync.TokenKey{keyOtherResource, keyOtherClass, keyOtherTask} {
		if tok, found := h.load(k); found {
			t.Fatalf("LoadToken(%s) = %q after storing only %s", k, tok, keyA)
		}
		wantConflict(t, "CompareAndSwapToken of "+k.String()+" from keyA's token", h.s.CompareAndSwapToken(h.ctx, k, "a1", "x"))
	}
	h.cas(keyOtherResource, "", "b1")
	h.cas(keyOtherClass, "", "c1")
	h.cas(keyOtherTask, "", "d1")
	h.cas(keyA, "a1", "a2")
	h.mustLoad(keyA, "a2")
	h.mustLoad(keyOtherResource, "b1")
	h.mustLoad(keyOtherClass, "c1")
	h.mustLoad(keyOtherTask, "d1")
}

func testInvalidKey(t *testing.T, h *harness) {
	for _, k := range []livesync.TokenKey{
		{Class: "c", Task: "t"},
		{ResourceID: "r", Task: "t"},
		{ResourceID: "r", Class: "c"},
	} {
		if _, _, err := h.s.LoadToken(h.ctx, k); err == nil {
			t.Fatalf("LoadToken(%+v) succeeded with an invalid key", k)
		}
		if err := h.s.CompareAndSwapToken(h.ctx, k, "", "t"); err == nil {
			t.Fatalf("CompareAndSwapToken(%+v) succeeded with an invalid key", k)
		}
		if err := h.s.SetAside(h.ctx, k, change("x", base)); err == nil {
			t.Fatalf("SetAside(%+v) succeeded with an invalid key", k)
		}
		if _, err := h.s.SetAsideChanges(h.ctx, k); err == nil {
			t.Fatalf("SetAsideChanges(%+v) succeeded with an invalid key", k)
		}
		if err := h.s.RemoveSetAside(h.ctx, k, "x"); err == nil {
			t.Fatalf("RemoveSetAside(%+v) succeeded with an invalid key", k)
		}
	}
	if err := h.s.SetAside(h.ctx, keyA, change("", base)); err == nil {
		t.Fatal("SetAside of a change with an empty ID succeeded")
	}
	if ids := h.asideIDs(keyA); len(ids) != 0 {
		t.Fatalf("set-aside changes after invalid calls: %v", ids)
	}
}

func testContextCancelled(t *testing.T, h *harness) {
	h.cas(keyA, "", "t1")
	ctx, cancel := context.WithCancel(h.ctx)
	cancel()
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("%s with a cancelled context: error %v, want one wrapping context.Canceled", what, err)
		}
	}
	_, _, err := h.s.LoadToken(ctx, keyA)
	check("LoadToken", err)
	check("CompareAndSwapToken", h.s.CompareAndSwapToken(ctx, keyA, "t1", "t2"))
	check("SetAside", h.s.SetAside(ctx, keyA, change("x", base)))
	_, err = h.s.SetAsideChanges(ctx, keyA)
	check("SetAsideChanges", err)
	check("RemoveSetAside", h.s.RemoveSetAside(ctx, keyA, "x"))
	h.mustLoad(keyA, "t1")
	if ids := h.asideIDs(keyA); len(ids) != 0 {
		t.Fatalf("set-aside changes after a cancelled SetAside: %v", ids)
	}
}

// testConcurrentCAS runs rounds in which many goroutines try to move the
// token from the same value: exactly one wins each round, the others get
// ErrTokenConflict, and the stored token is the winner's.
func testConcurrentCAS(t *testing.T, h *harness) {
	const rounds, racers = 10, 8
	cur := connector.Token("")
	for round := range rounds {
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			winners []connector.Token
			errs    []error
		)
		start := make(chan struct{})
		for r := range racers {
			next := connector.Token(fmt.Sprintf("round%d-racer%d", round, r))
			wg.Go(func() {
				<-start
				err := h.s.CompareAndSwapToken(h.ctx, keyA, cur, next)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					winners = append(winners, next)
				case !errors.Is(err, livesync.ErrTokenConflict):
					errs = append(errs, err)
				}
			})
		}
		close(start)
		wg.Wait()
		if len(errs) > 0 {
			t.Fatalf("round %d: CompareAndSwapToken failed other than with a conflict: %v", round, errs)
		}
		if len(winners) != 1 {
			t.Fatalf("round %d: %d racers moved the token from %q (%v), want exactly 1", round, len(winners), cur, winners)
		}
		h.mustLoad(keyA, winners[0])
		cur = winners[0]
	}
}

// testConcurrentCounter moves a token that counts from many goroutines,
// each loading it and swapping in the next number until it has made its
// share of moves: a swap that is not atomic loses moves.
func testConcurrentCounter(t *testing.T, h *harness) {
	const workers, moves = 8, 50
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for done := 0; done < moves; {
				tok, _, err := h.s.LoadToken(h.ctx, keyA)
				if err != nil {
					errs <- fmt.Errorf("worker %d: LoadToken: %w", w, err)
					return
				}
				n := 0
				if tok != "" {
					if n, err = strconv.Atoi(string(tok)); err != nil {
						errs <- fmt.Errorf("worker %d: token %q: %w", w, tok, err)
						return
					}
				}
				err = h.s.CompareAndSwapToken(h.ctx, keyA, tok, connector.Token(strconv.Itoa(n+1)))
				switch {
				case errors.Is(err, livesync.ErrTokenConflict):
					continue
				case err != nil:
					errs <- fmt.Errorf("worker %d: CompareAndSwapToken: %w", w, err)
					return
				}
				done++
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	h.mustLoad(keyA, connector.Token(strconv.Itoa(workers*moves)))
}

// change returns a set-aside change with every field set.
func change(id string, at time.Time) livesync.SetAsideChange {
	return livesync.SetAsideChange{
		ID: id,
		Change: connector.Change{
			Type:    connector.ChangeModify,
			Class:   "inetOrgPerson",
			ID:      connector.Identifiers{UID: "uid-" + id, Name: "uid=" + id + ",ou=people"},
			OldName: "uid=old-" + id + ",ou=people",
			Object:  connector.Attributes{"cn": {"Jöns " + id, "J"}, "photo": {"\x00\xff"}},
			Token:   connector.Token("tok-" + id),
		},
		Attempts:          3,
		LastError:         "schema violation: unknown attribute 'x'",
		LastErrorCategory: connector.CategorySchema,
		SetAsideAt:        at,
	}
}

// compare compares set-aside changes: times within a microsecond,
// attributes as value sets, nil and empty alike.
var compare = cmp.Options{
	cmp.Comparer(func(a, b time.Time) bool {
		if a.IsZero() || b.IsZero() {
			return a.IsZero() == b.IsZero()
		}
		d := a.Sub(b)
		return d > -time.Microsecond && d < time.Microsecond
	}),
	cmp.Comparer(func(a, b connector.Attributes) bool { return a.Equal(b) }),
	cmp.FilterPath(func(p cmp.Path) bool { return p.Last().Type() != reflect.TypeFor[connector.Attributes]() },
		cmpopts.EquateEmpty()),
}

func testSetAsideRoundTrip(t *testing.T, h *harness) {
	if list := h.aside(keyA); len(list) != 0 {
		t.Fatalf("SetAsideChanges of a fresh store = %v", list)
	}
	want := change("c1", base)
	h.setAside(keyA, want)
	got := h.aside(keyA)
	if len(got) != 1 {
		t.Fatalf("SetAsideChanges returned %d changes, want 1", len(got))
	}
	if diff := cmp.Diff(want, got[0], compare); diff != "" {
		t.Fatalf("set-aside change differs (-want +got):\n%s", diff)
	}
	// A delete without attributes round-trips too.
	del := change("c2", base.Add(time.Second))
	del.Change.Type, del.Change.Object, del.Change.OldName = connector.ChangeDelete, nil, ""
	del.Attempts, del.LastError, del.LastErrorCategory = 1, "", connector.CategoryGeneric
	h.setAside(keyA, del)
	got = h.aside(keyA)
	if len(got) != 2 {
		t.Fatalf("SetAsideChanges returned %d changes, want 2", len(got))
	}
	if diff := cmp.Diff(del, got[1], compare); diff != "" {
		t.Fatalf("set-aside delete differs (-want +got):\n%s", diff)
	}
}

func testSetAsideUpsert(t *testing.T, h *harness) {
	h.setAside(keyA, change("c1", base))
	h.setAside(keyA, change("c2", base.Add(time.Second)))
	again := change("c1", base)
	again.Attempts = 4
	again.LastError = "second failure"
	again.Change.Token = "tok-c1-later"
	h.setAside(keyA, again)
	got := h.aside(keyA)
	if len(got) != 2 {
		t.Fatalf("after re-setting c1 aside there are %d entries, want 2", len(got))
	}
	if diff := cmp.Diff(again, got[0], compare); diff != "" {
		t.Fatalf("replaced entry differs (-want +got):\n%s", diff)
	}
	if got[1].ID != "c2" || got[1].Attempts != 3 {
		t.Fatalf("the other entry changed: %+v", got[1])
	}
}

func testSetAsideOrder(t *testing.T, h *harness) {
	// Set aside out of time order: the store orders by SetAsideAt.
	h.setAside(keyA, change("late", base.Add(2*time.Hour)))
	h.setAside(keyA, change("early", base))
	h.setAside(keyA, change("middle", base.Add(time.Hour)))
	if got := h.asideIDs(keyA); !cmp.Equal(got, []string{"early", "middle", "late"}) {
		t.Fatalf("SetAsideChanges order = %v, want [early middle late]", got)
	}
}

func testSetAsideRemove(t *testing.T, h *harness) {
	h.setAside(keyA, change("c1", base))
	h.setAside(keyA, change("c2", base.Add(time.Second)))
	h.setAside(keyA, change("c3", base.Add(2*time.Second)))
	if err := h.s.RemoveSetAside(h.ctx, keyA, "c2"); err != nil {
		t.Fatalf("RemoveSetAside: %v", err)
	}
	if got := h.asideIDs(keyA); !cmp.Equal(got, []string{"c1", "c3"}) {
		t.Fatalf("after removing c2: %v, want [c1 c3]", got)
	}
	if err := h.s.RemoveSetAside(h.ctx, keyA, "c2"); err != nil {
		t.Fatalf("RemoveSetAside of a removed entry: %v", err)
	}
	if err := h.s.RemoveSetAside(h.ctx, keyOtherTask, "c1"); err != nil {
		t.Fatalf("RemoveSetAside under a key with no entries: %v", err)
	}
	if got := h.asideIDs(keyA); !cmp.Equal(got, []string{"c1", "c3"}) {
		t.Fatalf("removing under another key changed keyA's entries: %v", got)
	}
	for _, id := range []string{"c1", "c3"} {
		if err := h.s.RemoveSetAside(h.ctx, keyA, id); err != nil {
			t.Fatalf("RemoveSetAside(%s): %v", id, err)
		}
	}
	if got := h.asideIDs(keyA); len(got) != 0 {
		t.Fatalf("after removing every entry: %v", got)
	}
	// The ID is free to be set aside again.
	h.setAside(keyA, change("c2", base.Add(time.Hour)))
	if got := h.asideIDs(keyA); !cmp.Equal(got, []string{"c2"}) {
		t.Fatalf("after setting c2 aside again: %v", got)
	}
}

func testSetAsideKeys(t *testing.T, h *harness) {
	h.setAside(keyA, change("same-id", base))
	other := change("same-id", base.Add(time.Second))
	other.Attempts = 7
	h.setAside(keyOtherClass, other)
	h.setAside(keyOtherResource, change("r2-only", base))
	if got := h.aside(keyA); len(got) != 1 || got[0].Attempts != 3 {
		t.Fatalf("keyA's entries after setting the same ID aside under another key: %+v", got)
	}
	if got := h.aside(keyOtherClass); len(got) != 1 || got[0].Attempts != 7 {
		t.Fatalf("other class's entries: %+v", got)
	}
	if got := h.asideIDs(keyOtherTask); len(got) != 0 {
		t.Fatalf("a key with nothing set aside lists %v", got)
	}
	if err := h.s.RemoveSetAside(h.ctx, keyOtherClass, "same-id"); err != nil {
		t.Fatalf("RemoveSetAside: %v", err)
	}
	if got := h.asideIDs(keyA); !cmp.Equal(got, []string{"same-id"}) {
		t.Fatalf("removing under another key removed keyA's entry: %v", got)
	}
	// Tokens and set-aside changes do not touch each other.
	if _, found := h.load(keyA); found {
		t.Fatal("setting changes aside stored a token")
	}
}

func testSetAsideCopies(t *testing.T, h *harness) {
	c := change("c1", base)
	h.setAside(keyA, c)
	c.Change.Object["cn"][0] = "changed"
	c.Change.Object["new"] = []string{"x"}
	got := h.aside(keyA)
	if diff := cmp.Diff(change("c1", base), got[0], compare); diff != "" {
		t.Fatalf("changing the passed change changed the store (-want +got):\n%s", diff)
	}
	got[0].Change.Object["cn"][0] = "changed"
	got[0].Change.Object["new"] = []string{"x"}
	got[0].Attempts = 99
	if diff := cmp.Diff(change("c1", base), h.aside(keyA)[0], compare); diff != "" {
		t.Fatalf("changing a returned change changed the store (-want +got):\n%s", diff)
	}
}
