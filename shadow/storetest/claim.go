package storetest

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/shadow"
)

func claimCases() []testCase {
	return []testCase{
		{name: "ClaimSkipsOthersClaims", needs: needClaimer, run: testClaimSkips},
		{name: "ClaimTakesOverExpired", needs: needClaimer, run: testClaimExpired},
		{name: "ClaimReleaseOnlyOwn", needs: needClaimer, run: testClaimRelease},
		{name: "ClaimKeepsVersion", needs: needClaimer, run: testClaimKeepsVersion},
		{name: "ClaimConcurrentDisjoint", needs: needClaimer, run: testClaimConcurrent},
	}
}

// dueFixture stores n shadows with unfinished retries due at Start, and two
// that are not due.
func dueFixture(h *harness, n int) {
	for i := range n {
		sh := newShadow(fmt.Sprintf("due%02d", i), "r1", "account", fmt.Sprintf("u%02d", i))
		sh.Pending = []shadow.PendingOperation{op(1, shadow.OpRetry, connector.DeltaModify, Start.Add(-time.Hour), false)}
		sh.NextDue = Start
		h.create(sh)
	}
	later := newShadow("later", "r1", "account", "later")
	later.Pending = []shadow.PendingOperation{op(1, shadow.OpRetry, connector.DeltaModify, Start, false)}
	later.NextDue = Start.Add(time.Hour)
	h.create(later)
	h.create(newShadow("idle", "r1", "account", "idle"))
}

var dueNow = shadow.Query{DueBy: Start, Unfinished: true}

func (h *harness) claim(owner string, q shadow.Query, ttl time.Duration, limit int) []string {
	h.t.Helper()
	got, err := h.claimer().Claim(h.ctx, q, owner, ttl, limit)
	if err != nil {
		h.t.Fatalf("Claim(%s, owner %q, limit %d): %v", describe(q), owner, limit, err)
	}
	return ids(got)
}

func testClaimSkips(h *harness) {
	t := h.t
	dueFixture(h, 5)
	a := h.claim("a", dueNow, time.Minute, 3)
	if len(a) != 3 {
		t.Fatalf("owner a claimed %v, want 3 shadows", a)
	}
	for _, id := range a {
		if id == "later" || id == "idle" {
			t.Fatalf("Claim returned %q, which the query does not select", id)
		}
	}
	b := h.claim("b", dueNow, time.Minute, 10)
	if len(b) != 2 {
		t.Fatalf("owner b claimed %v while a holds %v, want the other 2", b, a)
	}
	for _, id := range b {
		if slices.Contains(a, id) {
			t.Fatalf("owner b claimed %q, which a holds", id)
		}
	}
	if c := h.claim("c", dueNow, time.Minute, 10); len(c) != 0 {
		t.Fatalf("owner c claimed %v while everything due is claimed", c)
	}
	// A claim does not hide shadows from List.
	if n := len(h.list(dueNow)); n != 5 {
		t.Fatalf("List(due) = %d shadows while claimed, want 5", n)
	}
	// Other queries still reach unclaimed shadows.
	if got := h.claim("c", shadow.Query{ResourceID: "r1"}, time.Minute, 100); !slices.Equal(sortedIDs(got...), []string{"idle", "later"}) {
		t.Fatalf("owner c claimed %v of resource r1, want [idle later]", got)
	}
}

func testClaimExpired(h *harness) {
	t := h.t
	dueFixture(h, 3)
	a := h.claim("a", dueNow, time.Minute, 10)
	if len(a) != 3 {
		t.Fatalf("owner a claimed %v, want 3", a)
	}
	h.clk.Advance(30 * time.Second)
	if b := h.claim("b", dueNow, time.Minute, 10); len(b) != 0 {
		t.Fatalf("owner b claimed %v before a's claims expired", b)
	}
	h.clk.Advance(31 * time.Second)
	b := h.claim("b", dueNow, 2*time.Minute, 10)
	if !slices.Equal(sortedIDs(b...), sortedIDs(a...)) {
		t.Fatalf("after expiry owner b claimed %v, want a's %v", b, a)
	}
	// b's claim runs from the take-over.
	h.clk.Advance(time.Minute)
	if c := h.claim("c", dueNow, time.Minute, 10); len(c) != 0 {
		t.Fatalf("owner c claimed %v from b's unexpired claim", c)
	}
}

func testClaimRelease(h *harness) {
	t := h.t
	dueFixture(h, 4)
	a := h.claim("a", dueNow, time.Hour, 2)
	b := h.claim("b", dueNow, time.Hour, 2)
	if len(a) != 2 || len(b) != 2 {
		t.Fatalf("claims a %v, b %v: want 2 each", a, b)
	}
	c := h.claimer()
	// b releasing a's shadows (and unknown IDs) changes nothing.
	if err := c.Release(h.ctx, "b", append(slices.Clone(a), "no-such-shadow")...); err != nil {
		t.Fatalf("Release of others' claims: %v", err)
	}
	if got := h.claim("x", dueNow, time.Hour, 10); len(got) != 0 {
		t.Fatalf("after b released a's claims, x claimed %v", got)
	}
	// a releasing its own frees them.
	if err := c.Release(h.ctx, "a", a...); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if got := h.claim("x", dueNow, time.Hour, 10); !slices.Equal(sortedIDs(got...), sortedIDs(a...)) {
		t.Fatalf("after a released %v, x claimed %v", a, got)
	}
	if err := c.Release(h.ctx, "a"); err != nil {
		t.Fatalf("Release of no IDs: %v", err)
	}

	_, err := c.Claim(h.cancelled(), dueNow, "y", time.Hour, 10)
	wantCancelled(t, "Claim", err)
	wantCancelled(t, "Release", c.Release(h.cancelled(), "x", a...))
	if got := h.claim("y", dueNow, time.Hour, 10); len(got) != 0 {
		t.Fatalf("a cancelled Release freed %v", got)
	}
}

func testClaimKeepsVersion(h *harness) {
	t := h.t
	dueFixture(h, 2)
	before := h.snapshot("due00")
	got, err := h.claimer().Claim(h.ctx, shadow.Query{UID: "u00"}, "a", time.Hour, 1)
	if err != nil || len(got) != 1 {
		t.Fatalf("Claim by UID: %v, %v", ids(got), err)
	}
	mustEqual(t, "claimed shadow as Claim returns it", got[0], before)
	mustEqual(t, "claimed shadow as Get returns it", h.get("due00"), before)

	// The owner works on it: the update succeeds with the version it
	// read, and the claim survives the update.
	got[0].Pending[0].Status, got[0].Pending[0].Result = shadow.StatusCompleted, shadow.ResultSuccess
	got[0].Pending[0].Attempt = 1
	h.update(got[0])
	if got[0].Version != 2 {
		t.Fatalf("Update of a claimed shadow set Version %d, want 2", got[0].Version)
	}
	if b := h.claim("b", shadow.Query{ResourceID: "r1"}, time.Hour, 100); slices.Contains(b, "due00") {
		t.Fatalf("owner b claimed due00 after a updated it under its claim: %v", b)
	}
}

func testClaimConcurrent(h *harness) {
	t := h.t
	const n, claimers = 40, 4
	dueFixture(h, n)
	var (
		mu  sync.Mutex
		got = map[string]string{}
		wg  sync.WaitGroup
	)
	errs := make(chan error, claimers)
	for w := range claimers {
		owner := fmt.Sprintf("w%d", w)
		wg.Go(func() {
			for {
				list, err := h.claimer().Claim(h.ctx, dueNow, owner, time.Hour, 3)
				if err != nil {
					errs <- fmt.Errorf("%s: Claim: %w", owner, err)
					return
				}
				if len(list) == 0 {
					return
				}
				mu.Lock()
				for _, sh := range list {
					if prev, dup := got[sh.ID]; dup {
						mu.Unlock()
						errs <- fmt.Errorf("%q claimed by both %s and %s", sh.ID, prev, owner)
						return
					}
					got[sh.ID] = owner
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("concurrent claimers took %d shadows, want all %d", len(got), n)
	}
}
