package compensation_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/compensation"
	"github.com/umbra-idm/umbra/connector"
)

// TestHookRetriggerDoesNotLoop wires the managed store as an IdM server
// does: every write re-synchronizes the object to every target through the
// same Synchronizer. The revert's write re-triggers Sync with the
// compensation's context; that Sync applies the revert and never
// compensates, even though the failing target fails again.
func TestHookRetriggerDoesNotLoop(t *testing.T) {
	t.Parallel()
	for _, sc := range scenarios {
		t.Run(sc.action.String(), func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			sc.start(b)
			b.targets[1].fail = func(context.Context, compensation.Change) error { return errPolicy } // hr always fails
			s := b.sync(t)
			var depth, nested atomic.Int32
			var nestedRep compensation.Report
			var nestedErr error
			b.store.after = func(ctx context.Context, c compensation.Change) error {
				if depth.Add(1) > 5 {
					t.Error("synchronization loops")
					return errors.New("loop")
				}
				defer depth.Add(-1)
				nested.Add(1)
				nestedRep, nestedErr = s.Sync(ctx, c)
				return nil // the hook's failure is the hook's to report
			}
			rep, err := s.Sync(t.Context(), sc.change())

			if n := nested.Load(); n != 1 {
				t.Fatalf("the store hook ran Sync %d times, want once", n)
			}
			if !nestedRep.Compensation || nestedRep.Compensated {
				t.Errorf("nested report = %+v, want a compensation run that did not compensate", nestedRep)
			}
			var ce *compensation.Error
			if !errors.As(nestedErr, &ce) || !ce.Compensation || !errors.Is(nestedErr, errPolicy) ||
				!strings.Contains(nestedErr.Error(), "not compensated again") {
				t.Errorf("nested error = %v", nestedErr)
			}
			// The nested run went on past hr to tickets.
			diff(t, "nested outcomes", map[string]compensation.Outcome{
				"ldap": compensation.OutcomeApplied, "hr": compensation.OutcomeFailed, "tickets": compensation.OutcomeApplied,
			}, outcomes(nestedRep))
			if w := b.logs.warnings(t, "synchronization of a compensation failed"); len(w) != 1 || w[0]["action"] != sc.action.Revert().Notify() ||
				w[0]["target"] != "hr" || !strings.Contains(fmt.Sprint(w[0]["original_error"]), "hr rejects the title") {
				t.Errorf("nested warnings = %v, want the revert's action, hr, and the original error", w)
			}

			if !errors.Is(err, errPolicy) || !rep.StoreReverted {
				t.Fatalf("outer Sync = %+v, %v", rep, err)
			}
			// hr failed the revert too, so it is out of step; ldap and
			// tickets hold the old value again.
			diff(t, "outer OutOfStep", []string{"hr"}, rep.OutOfStep)
			if got := b.store.get("jdoe"); !sameObject(got, sc.before) {
				t.Errorf("store holds %v, want %v", got, sc.before)
			}
			for _, i := range []int{0, 2} {
				if got := b.targets[i].get("jdoe"); !sameObject(got, sc.before) {
					t.Errorf("%s holds %v, want %v", b.targets[i].name, got, sc.before)
				}
			}
		})
	}
}

// TestBestEffortFailureDoesNotCompensate: a best-effort target's failure is
// logged and reported; the run goes on and is not reverted.
func TestBestEffortFailureDoesNotCompensate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sc := scenarios[1]
	sc.start(b)
	b.targets[1].fail = failWhen(false, errDown)
	cfg := b.config()
	cfg.Targets[1].BestEffort = true
	s, err := compensation.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := s.Sync(t.Context(), sc.change())
	if err != nil {
		t.Fatalf("Sync = %v, want nil: best-effort failures do not fail the run", err)
	}
	diff(t, "calls", []string{"ldap:update", "hr:update", "tickets:update"}, b.j.list())
	diff(t, "outcomes", map[string]compensation.Outcome{
		"ldap": compensation.OutcomeApplied, "hr": compensation.OutcomeFailed, "tickets": compensation.OutcomeApplied,
	}, outcomes(rep))
	diff(t, "OutOfStep", []string{"hr"}, rep.OutOfStep)
	if res, _ := rep.Target("hr"); !res.BestEffort || !errors.Is(res.Err, errDown) || res.Category != connector.CategoryNotSent {
		t.Errorf("hr result = %+v", res)
	}
	if rep.Compensated {
		t.Error("a best-effort failure compensated")
	}
	if w := b.logs.warnings(t, "best-effort target failed"); len(w) != 1 || w[0]["target"] != "hr" || w[0]["action"] != "notifyUpdate" {
		t.Errorf("warnings = %v", b.logs.records(t))
	}
}

// TestBestEffortNotReverted: a later failure reverts the participating
// targets but not the best-effort one, which is reported out of step.
func TestBestEffortNotReverted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sc := scenarios[1]
	sc.start(b)
	b.targets[2].fail = failWhen(false, errPolicy)
	cfg := b.config()
	cfg.Targets[1].BestEffort = true
	s, err := compensation.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := s.Sync(t.Context(), sc.change())
	diff(t, "calls", []string{"ldap:update", "hr:update", "tickets:update", "store:put(comp)", "tickets:update(comp)", "ldap:update(comp)"}, b.j.list())
	diff(t, "outcomes", map[string]compensation.Outcome{
		"ldap": compensation.OutcomeReverted, "hr": compensation.OutcomeApplied, "tickets": compensation.OutcomeReverted,
	}, outcomes(rep))
	diff(t, "OutOfStep", []string{"hr"}, rep.OutOfStep)
	var ce *compensation.Error
	if !errors.As(err, &ce) || !ce.Reverted || !strings.Contains(err.Error(), "targets out of step: hr") {
		t.Errorf("Sync error = %v", err)
	}
	diff(t, "Names(Reverted)", []string{"ldap", "tickets"}, rep.Names(compensation.OutcomeReverted))
}

// TestStoreRevertFailure: when the old value cannot be written back, the
// targets are not reverted (they would disagree with the managed object);
// both errors are returned and the targets lacking the change are named.
func TestStoreRevertFailure(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sc := scenarios[1]
	sc.start(b)
	errStore := errors.New("repository is read-only")
	b.store.fail = errStore
	b.targets[1].fail = failWhen(false, errPolicy)
	rep, err := b.sync(t).Sync(t.Context(), sc.change())
	if !errors.Is(err, errStore) || !errors.Is(err, errPolicy) {
		t.Fatalf("Sync error = %v, want both failures", err)
	}
	diff(t, "calls", []string{"ldap:update", "hr:update", "store:put(comp)"}, b.j.list())
	if rep.StoreReverted || !errors.Is(rep.StoreErr, errStore) || !rep.Compensated {
		t.Errorf("report = %+v", rep)
	}
	diff(t, "OutOfStep", []string{"hr", "tickets"}, rep.OutOfStep)
	w := b.logs.warnings(t, "reverting the managed object failed")
	if len(w) != 1 || w[0]["action"] != "notifyUpdate" || !strings.Contains(w[0]["original_error"].(string), "hr rejects") {
		t.Errorf("warnings = %v", b.logs.records(t))
	}
	if _, hasTarget := w[0]["target"]; hasTarget {
		t.Errorf("store warning names a target: %v", w[0])
	}
}

// TestCancelledDuringForwardCompensates: the caller's context ends after the
// first target; no further target is called, and the first one is still
// reverted, under a context that is live and marked.
func TestCancelledDuringForwardCompensates(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sc := scenarios[1]
	sc.start(b)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	b.targets[0].during = func(ctx context.Context, c compensation.Change) {
		if compensation.IsCompensation(ctx) {
			if ctx.Err() != nil {
				t.Error("the revert ran under a cancelled context")
			}
			if _, ok := ctx.Deadline(); !ok {
				t.Error("the revert's context has no deadline on the wall clock")
			}
			return
		}
		cancel()
	}
	rep, err := b.sync(t).Sync(ctx, sc.change())
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), `interrupted before target "hr"`) {
		t.Fatalf("Sync error = %v", err)
	}
	diff(t, "calls", []string{"ldap:update", "store:put(comp)", "ldap:update(comp)"}, b.j.list())
	if !rep.Interrupted || rep.FailedTarget != "" || !rep.InStep() {
		t.Errorf("report = %+v", rep)
	}
	b.assertState(t, "jdoe", oldUser, "after an interrupted run")
}

// TestCancelledTargetCompensates: the target itself returns the context's
// error; it is the failing target, and it is reverted.
func TestCancelledTargetCompensates(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sc := scenarios[0]
	sc.start(b)
	ctx, cancel := context.WithCancel(t.Context())
	b.targets[1].fail = func(c context.Context, _ compensation.Change) error {
		if compensation.IsCompensation(c) {
			return nil
		}
		cancel()
		return c.Err()
	}
	rep, err := b.sync(t).Sync(ctx, sc.change())
	if !errors.Is(err, context.Canceled) || rep.FailedTarget != "hr" || !rep.Interrupted {
		t.Fatalf("Sync = %+v, %v", rep, err)
	}
	b.assertState(t, "jdoe", nil, "after a cancelled create")
}

// TestCancelledBeforeStart: nothing was synchronized, but the managed
// object was; all or nothing means it is reverted.
func TestCancelledBeforeStart(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sc := scenarios[2]
	sc.start(b)
	ctx, cancel := context.WithCancelCause(t.Context())
	stop := errors.New("shutting down")
	cancel(stop)
	rep, err := b.sync(t).Sync(ctx, sc.change())
	if !errors.Is(err, stop) {
		t.Fatalf("Sync error = %v, want the context's cause", err)
	}
	diff(t, "calls", []string{"store:put(comp)"}, b.j.list())
	b.assertState(t, "jdoe", oldUser, "after a run cancelled before it began")
	if !rep.InStep() || !rep.Interrupted {
		t.Errorf("report = %+v", rep)
	}
}

// TestCompensationTimeout: the compensation has its own time limit on the
// configured clock; targets not reverted in time are revert failures with
// ErrCompensationTimeout.
func TestCompensationTimeout(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sc := scenarios[1]
	sc.start(b)
	clk := connector.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	b.targets[2].fail = failWhen(false, errPolicy)
	// hr's revert hangs until its context ends.
	b.targets[1].fail = func(ctx context.Context, _ compensation.Change) error {
		if !compensation.IsCompensation(ctx) {
			return nil
		}
		<-ctx.Done()
		return ctx.Err()
	}
	cfg := b.config()
	cfg.Clock = clk
	cfg.CompensationTimeout = time.Minute
	s, err := compensation.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		if !clk.BlockUntil(1, 10*time.Second) {
			t.Error("the compensation never set its time limit")
		}
		clk.Advance(time.Minute)
	}()
	rep, err := s.Sync(t.Context(), sc.change())
	if !errors.Is(err, compensation.ErrCompensationTimeout) || !errors.Is(err, errPolicy) {
		t.Fatalf("Sync error = %v", err)
	}
	for _, name := range []string{"hr", "ldap"} {
		res, _ := rep.Target(name)
		if res.Outcome != compensation.OutcomeRevertFailed || !errors.Is(res.RevertErr, compensation.ErrCompensationTimeout) {
			t.Errorf("%s result = %+v, want a revert failed on the time limit", name, res)
		}
	}
	if res, _ := rep.Target("tickets"); res.Outcome != compensation.OutcomeReverted && res.Outcome != compensation.OutcomeRevertFailed {
		t.Errorf("tickets result = %+v", res)
	}
	if clk.Waiters() != 0 {
		t.Errorf("%d timers left waiting", clk.Waiters())
	}
}

// TestSyncAsCompensation: a Sync under a compensation's context goes on past
// failures, touches no store, and never compensates.
func TestSyncAsCompensation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	errA := errors.New("ldap is down")
	b.targets[0].fail = func(context.Context, compensation.Change) error { return errA }
	b.targets[2].fail = func(context.Context, compensation.Change) error { return errPolicy }
	b.seed("jdoe", newUser)
	c := compensation.Change{Action: compensation.Update, ID: "jdoe", Old: newUser, New: oldUser}
	rep, err := b.sync(t).Sync(compensation.MarkCompensation(t.Context()), c)
	diff(t, "calls", []string{"ldap:update(comp)", "hr:update(comp)", "tickets:update(comp)"}, b.j.list())
	if !errors.Is(err, errA) || !errors.Is(err, errPolicy) {
		t.Fatalf("Sync error = %v, want both failures", err)
	}
	diff(t, "OutOfStep", []string{"ldap", "tickets"}, rep.OutOfStep)
	if !rep.Compensation || rep.Compensated {
		t.Errorf("report = %+v", rep)
	}
	w := b.logs.warnings(t, "not compensated again")
	if len(w) != 2 || w[0]["target"] != "ldap" || w[1]["target"] != "tickets" || w[0]["action"] != "notifyUpdate" {
		t.Errorf("warnings = %v", w)
	}
	for _, r := range w {
		if _, ok := r["original_error"]; ok {
			t.Errorf("a warning names an original error nobody knows: %v", r)
		}
	}

	// Succeeding as a compensation returns no error.
	b2 := setup(t)
	rep, err = b2.sync(t).Sync(compensation.MarkCompensation(t.Context()), c)
	if err != nil || !rep.InStep() {
		t.Errorf("Sync = %+v, %v", rep, err)
	}
}

// TestSyncAsCompensationInterrupted: a compensation's Sync whose context
// ends stops and names what it did not reach.
func TestSyncAsCompensationInterrupted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx, cancel := context.WithCancel(compensation.MarkCompensation(t.Context()))
	b.targets[0].during = func(context.Context, compensation.Change) { cancel() }
	c := compensation.Change{Action: compensation.Create, ID: "jdoe", New: oldUser}
	rep, err := b.sync(t).Sync(ctx, c)
	if !errors.Is(err, context.Canceled) || !rep.Interrupted {
		t.Fatalf("Sync = %+v, %v", rep, err)
	}
	diff(t, "OutOfStep", []string{"hr", "tickets"}, rep.OutOfStep)
}

// TestDeleteOfMissingIsSuccess: a target that no longer has the object has
// applied a delete.
func TestDeleteOfMissingIsSuccess(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sc := scenarios[2]
	sc.start(b)
	b.targets[1].set("jdoe", nil)
	rep, err := b.sync(t).Sync(t.Context(), sc.change())
	if err != nil || !rep.InStep() {
		t.Fatalf("Sync = %+v, %v", rep, err)
	}
}

// TestTargetsGetTheirOwnCopy: a target that scribbles on its change
// affects neither the managed store nor another target.
func TestTargetsGetTheirOwnCopy(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sc := scenarios[1]
	sc.start(b)
	var sawOld []bool
	for _, ft := range b.targets {
		ft.during = func(_ context.Context, c compensation.Change) {
			sawOld = append(sawOld, c.Old != nil)
			c.New["title"][0] = "scribbled"
			c.Old["title"] = nil
		}
	}
	b.targets[2].fail = failWhen(false, errPolicy)
	change := sc.change()
	_, _ = b.sync(t).Sync(t.Context(), change)
	if change.New.Get("title") != "Senior Engineer" || change.Old.Get("title") != "Engineer" {
		t.Errorf("the caller's change was modified: %+v", change)
	}
	if got := b.store.get("jdoe"); got.Get("title") != "Engineer" {
		t.Errorf("store holds %v", got)
	}
	for _, s := range sawOld {
		if !s {
			t.Error("an update reached a target without its old value")
		}
	}
	// A create's target sees no old value, a delete's no new one.
	b2 := setup(t)
	b2.targets[0].during = func(_ context.Context, c compensation.Change) {
		if c.Old != nil {
			t.Errorf("create carries Old %v", c.Old)
		}
	}
	_, _ = b2.sync(t).Sync(t.Context(), compensation.Change{Action: compensation.Create, ID: "x", Old: oldUser, New: newUser})
}

func TestInvalidChange(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := b.sync(t)
	for _, c := range []compensation.Change{
		{ID: "jdoe"},
		{Action: compensation.Action(9), ID: "jdoe"},
		{Action: compensation.Update},
	} {
		_, err := s.Sync(t.Context(), c)
		if !errors.Is(err, compensation.ErrInvalidChange) {
			t.Errorf("Sync(%+v) = %v, want ErrInvalidChange", c, err)
		}
	}
	if calls := b.j.list(); len(calls) != 0 {
		t.Errorf("an invalid change made calls: %v", calls)
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	ok := func(context.Context, compensation.Change) error { return nil }
	store := newFakeStore(&journal{})
	cases := []struct {
		name string
		cfg  compensation.Config
		want []string
	}{
		{"nil store", compensation.Config{Targets: []compensation.Target{{Name: "a", Sync: ok}}}, []string{"Config.Store is nil"}},
		{"no targets", compensation.Config{Store: store}, []string{"Config.Targets is empty"}},
		{"duplicate names", compensation.Config{Store: store, Targets: []compensation.Target{{Name: "a", Sync: ok}, {Name: "b", Sync: ok}, {Name: "a", Sync: ok}}},
			[]string{`Config.Targets[2].Name "a" duplicates Config.Targets[0]`}},
		{"empty name", compensation.Config{Store: store, Targets: []compensation.Target{{Sync: ok}}}, []string{"Config.Targets[0].Name is empty"}},
		{"nil sync", compensation.Config{Store: store, Targets: []compensation.Target{{Name: "hr"}}}, []string{`Config.Targets[0].Sync is nil (target "hr")`}},
		{"negative timeout", compensation.Config{Store: store, CompensationTimeout: -time.Second, Targets: []compensation.Target{{Name: "a", Sync: ok}}},
			[]string{"Config.CompensationTimeout is negative (-1s)"}},
		{"every problem at once", compensation.Config{CompensationTimeout: -1},
			[]string{"Config.CompensationTimeout", "Config.Store", "Config.Targets is empty"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := compensation.New(tc.cfg)
			if err == nil || s != nil {
				t.Fatalf("New = %v, %v; want an error", s, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
	s, err := compensation.New(compensation.Config{Store: store, Targets: []compensation.Target{{Name: "a", Sync: ok}, {Name: "b", Sync: ok}}})
	if err != nil {
		t.Fatalf("New with a valid config: %v", err)
	}
	diff(t, "Targets", []string{"a", "b"}, s.Targets())
}

func TestNames(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		a           compensation.Action
		str, notify string
		revert      compensation.Action
	}{
		{compensation.Create, "create", "notifyCreate", compensation.Delete},
		{compensation.Update, "update", "notifyUpdate", compensation.Update},
		{compensation.Delete, "delete", "notifyDelete", compensation.Create},
		{compensation.Action(0), "Action(0)", "notifyAction(0)", compensation.Action(0)},
	} {
		if tc.a.String() != tc.str || tc.a.Notify() != tc.notify || tc.a.Revert() != tc.revert {
			t.Errorf("%d: %q %q %v", tc.a, tc.a.String(), tc.a.Notify(), tc.a.Revert())
		}
	}
	want := []string{"not attempted", "applied", "failed", "reverted", "revert failed", "Outcome(9)"}
	for i, o := range []compensation.Outcome{0, 1, 2, 3, 4, 9} {
		if o.String() != want[i] {
			t.Errorf("Outcome(%d) = %q, want %q", o, o, want[i])
		}
	}
	c := compensation.Change{Action: compensation.Create, ID: "x", New: newUser}
	if r := c.Revert(); r.Action != compensation.Delete || r.Old.Get("title") != "Senior Engineer" || r.New != nil {
		t.Errorf("Revert = %+v", r)
	}
	if _, ok := (compensation.Report{}).Target("nope"); ok {
		t.Error("Target found a missing name")
	}
	te := &compensation.TargetError{Target: "hr", Action: compensation.Delete, Revert: true, Err: errPolicy}
	if !strings.HasPrefix(te.Error(), `target "hr" (revert): notifyDelete: `) {
		t.Errorf("TargetError = %q", te)
	}
}

// TestStoreDeleteRevertFailure: reverting a create deletes the managed
// object; its failure is reported like a failed put.
func TestStoreDeleteRevertFailure(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sc := scenarios[0]
	sc.start(b)
	errStore := errors.New("repository locked")
	b.store.fail = errStore
	b.targets[0].fail = failWhen(false, errPolicy)
	rep, err := b.sync(t).Sync(t.Context(), sc.change())
	if !errors.Is(err, errStore) || !strings.Contains(err.Error(), `managed store: delete "jdoe"`) {
		t.Fatalf("Sync error = %v", err)
	}
	diff(t, "OutOfStep", []string{"ldap", "hr", "tickets"}, rep.OutOfStep)
}
