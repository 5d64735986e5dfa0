package storetest

import (
	"time"

	"github.com/umbra-idm/umbra/shadow"
)

func leaseCases() []testCase {
	return []testCase{
		{name: "LeaseAcquireRenewRelease", needs: needLeaser, run: testLeaseLifecycle},
		{name: "LeaseHeld", needs: needLeaser, run: testLeaseHeld},
		{name: "LeaseTakeOverAfterExpiry", needs: needLeaser, run: testLeaseTakeOver},
		{name: "LeaseReleaseThenOtherOwner", needs: needLeaser, run: testLeaseReleaseOther},
		{name: "LeaseInvalid", needs: needLeaser, run: testLeaseInvalid},
	}
}

func (h *harness) acquire(name, owner string, ttl time.Duration) shadow.Lease {
	h.t.Helper()
	l, err := h.leaser().AcquireLease(h.ctx, name, owner, ttl)
	if err != nil {
		h.t.Fatalf("AcquireLease(%q, %q): %v", name, owner, err)
	}
	return l
}

func testLeaseLifecycle(h *harness) {
	t := h.t
	ls := h.leaser()
	l := h.acquire("sync/r1", "a", time.Minute)
	if l.Name != "sync/r1" || l.Owner != "a" || l.Term < 1 || !sameTime(l.Expires, Start.Add(time.Minute)) {
		t.Fatalf("AcquireLease = %+v, want name sync/r1, owner a, a term >= 1, expiry %v", l, Start.Add(time.Minute))
	}
	h.clk.Advance(40 * time.Second)
	r, err := ls.RenewLease(h.ctx, l, time.Minute)
	if err != nil {
		t.Fatalf("RenewLease: %v", err)
	}
	if r.Term != l.Term || r.Owner != "a" || !sameTime(r.Expires, h.clk.Now().Add(time.Minute)) {
		t.Fatalf("RenewLease = %+v, want term %d and expiry %v", r, l.Term, h.clk.Now().Add(time.Minute))
	}
	// Acquiring again as the holder renews in the same term.
	h.clk.Advance(40 * time.Second) // past the first expiry, within the renewed one
	again := h.acquire("sync/r1", "a", time.Minute)
	if again.Term != l.Term || !sameTime(again.Expires, h.clk.Now().Add(time.Minute)) {
		t.Fatalf("re-acquire by the holder = %+v, want term %d renewed to %v", again, l.Term, h.clk.Now().Add(time.Minute))
	}
	// Another name is another lease.
	other := h.acquire("sync/r2", "b", time.Minute)
	if other.Owner != "b" {
		t.Fatalf("AcquireLease of another name = %+v", other)
	}
	if err := ls.ReleaseLease(h.ctx, again); err != nil {
		t.Fatalf("ReleaseLease: %v", err)
	}
	if err := ls.ReleaseLease(h.ctx, again); err != nil {
		t.Fatalf("second ReleaseLease: %v", err)
	}
	// Released: another owner takes it at once; sync/r2 is untouched.
	c := h.acquire("sync/r1", "c", time.Minute)
	if c.Owner != "c" {
		t.Fatalf("AcquireLease after release = %+v", c)
	}
	_, err = ls.AcquireLease(h.ctx, "sync/r2", "c", time.Minute)
	wantErr(t, "AcquireLease of sync/r2 after sync/r1 was released", err, shadow.ErrLeaseHeld)
}

func testLeaseHeld(h *harness) {
	t := h.t
	ls := h.leaser()
	l := h.acquire("task", "a", time.Minute)
	h.clk.Advance(59 * time.Second)
	_, err := ls.AcquireLease(h.ctx, "task", "b", time.Minute)
	wantErr(t, "AcquireLease of a held lease", err, shadow.ErrLeaseHeld)
	// The failed attempt changed nothing: a still renews.
	if _, err := ls.RenewLease(h.ctx, l, time.Minute); err != nil {
		t.Fatalf("holder's RenewLease after a failed take-over: %v", err)
	}
	h.clk.Advance(59 * time.Second)
	_, err = ls.AcquireLease(h.ctx, "task", "b", time.Minute)
	wantErr(t, "AcquireLease of a renewed lease", err, shadow.ErrLeaseHeld)
}

func testLeaseTakeOver(h *harness) {
	t := h.t
	ls := h.leaser()
	a := h.acquire("task", "a", time.Minute)
	h.clk.Advance(61 * time.Second)
	b := h.acquire("task", "b", time.Minute)
	if b.Owner != "b" || b.Term <= a.Term {
		t.Fatalf("take-over after expiry = %+v, want owner b and a term above %d", b, a.Term)
	}
	_, err := ls.RenewLease(h.ctx, a, time.Minute)
	wantErr(t, "RenewLease by the old holder after a take-over", err, shadow.ErrLeaseLost)
	_, err = ls.AcquireLease(h.ctx, "task", "a", time.Minute)
	wantErr(t, "AcquireLease by the old holder while b holds it", err, shadow.ErrLeaseHeld)
	// The old holder's release leaves b's lease alone.
	if err := ls.ReleaseLease(h.ctx, a); err != nil {
		t.Fatalf("ReleaseLease of a lost lease: %v", err)
	}
	if _, err := ls.RenewLease(h.ctx, b, time.Minute); err != nil {
		t.Fatalf("b's RenewLease after a's stale release: %v", err)
	}
	_, err = ls.AcquireLease(h.ctx, "task", "c", time.Minute)
	wantErr(t, "AcquireLease while b holds it", err, shadow.ErrLeaseHeld)

	// The old holder comes back after b's expiry: a new term, and its
	// first lease stays lost.
	h.clk.Advance(2 * time.Minute)
	a2 := h.acquire("task", "a", time.Minute)
	if a2.Term <= b.Term {
		t.Fatalf("re-acquire by a after b = term %d, want above b's %d", a2.Term, b.Term)
	}
	_, err = ls.RenewLease(h.ctx, a, time.Minute)
	wantErr(t, "RenewLease with a's first term", err, shadow.ErrLeaseLost)
	_, err = ls.RenewLease(h.ctx, b, time.Minute)
	wantErr(t, "RenewLease by b after a took over", err, shadow.ErrLeaseLost)
}

func testLeaseReleaseOther(h *harness) {
	t := h.t
	ls := h.leaser()
	a := h.acquire("task", "a", time.Hour)
	if err := ls.ReleaseLease(h.ctx, a); err != nil {
		t.Fatalf("ReleaseLease: %v", err)
	}
	_, err := ls.RenewLease(h.ctx, a, time.Minute)
	wantErr(t, "RenewLease of a released lease", err, shadow.ErrLeaseLost)
	b := h.acquire("task", "b", time.Hour)
	if b.Term <= a.Term {
		t.Fatalf("after a's release b got term %d, want above %d (fencing)", b.Term, a.Term)
	}
	_, err = ls.RenewLease(h.ctx, a, time.Minute)
	wantErr(t, "RenewLease of a released lease another owner holds", err, shadow.ErrLeaseLost)
	_, err = ls.RenewLease(h.ctx, shadow.Lease{Name: "never", Owner: "a", Term: 1}, time.Minute)
	wantErr(t, "RenewLease of a lease never acquired", err, shadow.ErrLeaseLost)
}

func testLeaseInvalid(h *harness) {
	t := h.t
	ls := h.leaser()
	for _, c := range []struct {
		what, name, owner string
		ttl               time.Duration
	}{
		{"empty name", "", "a", time.Minute},
		{"empty owner", "task", "", time.Minute},
		{"zero ttl", "task", "a", 0},
		{"negative ttl", "task", "a", -time.Minute},
	} {
		_, err := ls.AcquireLease(h.ctx, c.name, c.owner, c.ttl)
		wantErr(t, "AcquireLease with "+c.what, err, shadow.ErrInvalid)
	}
	l := h.acquire("task", "a", time.Minute)
	_, err := ls.RenewLease(h.ctx, l, 0)
	wantErr(t, "RenewLease with a zero ttl", err, shadow.ErrInvalid)

	_, err = ls.AcquireLease(h.cancelled(), "other", "a", time.Minute)
	wantCancelled(t, "AcquireLease", err)
	_, err = ls.RenewLease(h.cancelled(), l, time.Minute)
	wantCancelled(t, "RenewLease", err)
	wantCancelled(t, "ReleaseLease", ls.ReleaseLease(h.cancelled(), l))
	// None of them did anything: "other" is free, l is still held.
	h.acquire("other", "b", time.Minute)
	_, err = ls.AcquireLease(h.ctx, "task", "b", time.Minute)
	wantErr(t, "AcquireLease after a cancelled ReleaseLease", err, shadow.ErrLeaseHeld)
}
