package compensation_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/umbra-idm/umbra/compensation"
	"github.com/umbra-idm/umbra/connector"
)

var (
	oldUser = connector.Attributes{"uid": {"jdoe"}, "title": {"Engineer"}}
	newUser = connector.Attributes{"uid": {"jdoe"}, "title": {"Senior Engineer"}}
)

// scenario is one action: the state before the change, the change, and the
// state after it.
type scenario struct {
	action        compensation.Action
	before, after connector.Attributes
}

var scenarios = []scenario{
	{compensation.Create, nil, newUser},
	{compensation.Update, oldUser, newUser},
	{compensation.Delete, oldUser, nil},
}

func (sc scenario) change() compensation.Change {
	return compensation.Change{Action: sc.action, ID: "jdoe", Old: sc.before, New: sc.after}
}

// start seeds the world with sc.before and stores the change in the managed
// store, as the host does before calling Sync.
func (sc scenario) start(b *bundle) {
	b.seed("jdoe", sc.before)
	b.store.set("jdoe", sc.after)
}

func TestSyncSuccess(t *testing.T) {
	t.Parallel()
	for _, sc := range scenarios {
		t.Run(sc.action.String(), func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			sc.start(b)
			rep, err := b.sync(t).Sync(t.Context(), sc.change())
			if err != nil {
				t.Fatalf("Sync: %v", err)
			}
			b.assertState(t, "jdoe", sc.after, "after a successful sync")
			a := sc.action.String()
			diff(t, "calls", []string{"ldap:" + a, "hr:" + a, "tickets:" + a}, b.j.list())
			diff(t, "outcomes", map[string]compensation.Outcome{
				"ldap": compensation.OutcomeApplied, "hr": compensation.OutcomeApplied, "tickets": compensation.OutcomeApplied,
			}, outcomes(rep))
			if !rep.InStep() || rep.Compensated || rep.Compensation || rep.FailedTarget != "" || rep.Interrupted {
				t.Errorf("report = %+v, want in step and not compensated", rep)
			}
			if rep.Action != sc.action || rep.ID != "jdoe" {
				t.Errorf("report names %s %q, want %s jdoe", rep.Action, rep.ID, sc.action)
			}
			if len(b.logs.records(t)) != 0 {
				t.Errorf("a successful run logged %v", b.logs.records(t))
			}
		})
	}
}

// TestSyncFailureCompensates fails the first, the middle and the last target
// for each action: the store and every target end as they began, the revert
// runs in reverse order from the failed target, marked as a compensation.
func TestSyncFailureCompensates(t *testing.T) {
	t.Parallel()
	names := []string{"ldap", "hr", "tickets"}
	for _, sc := range scenarios {
		for k, failing := range names {
			t.Run(fmt.Sprintf("%s/fail_%s", sc.action, failing), func(t *testing.T) {
				t.Parallel()
				b := setup(t)
				sc.start(b)
				b.targets[k].fail = failWhen(false, errPolicy)
				rep, err := b.sync(t).Sync(t.Context(), sc.change())

				b.assertState(t, "jdoe", sc.before, "after compensation")

				fwd, rev := sc.action.String(), sc.action.Revert().String()
				var want []string
				for _, n := range names[:k+1] {
					want = append(want, n+":"+fwd)
				}
				want = append(want, map[compensation.Action]string{
					compensation.Create: "store:delete(comp)",
					compensation.Update: "store:put(comp)",
					compensation.Delete: "store:put(comp)",
				}[sc.action])
				for i := k; i >= 0; i-- {
					want = append(want, names[i]+":"+rev+"(comp)")
				}
				diff(t, "calls", want, b.j.list())

				wantOutcomes := map[string]compensation.Outcome{}
				for i, n := range names {
					wantOutcomes[n] = compensation.OutcomeNotAttempted
					if i <= k {
						wantOutcomes[n] = compensation.OutcomeReverted
					}
				}
				diff(t, "outcomes", wantOutcomes, outcomes(rep))
				if !rep.InStep() || !rep.Compensated || !rep.StoreReverted || rep.FailedTarget != failing || rep.Interrupted {
					t.Errorf("report = %+v, want compensated, in step, failed at %s", rep, failing)
				}
				res, _ := rep.Target(failing)
				if !errors.Is(res.Err, errPolicy) || res.Category != connector.CategoryPolicy || res.RevertErr != nil {
					t.Errorf("failed target's result = %+v", res)
				}

				var ce *compensation.Error
				if !errors.As(err, &ce) {
					t.Fatalf("Sync error = %v, want *compensation.Error", err)
				}
				if !errors.Is(err, errPolicy) || !errors.Is(err, connector.ErrPolicy) {
					t.Errorf("errors.Is(err, the target's error) is false: %v", err)
				}
				var te *compensation.TargetError
				if !errors.As(err, &te) || te.Target != failing || te.Action != sc.action || te.Revert {
					t.Errorf("TargetError = %+v", te)
				}
				if !ce.Reverted || ce.RevertErr != nil || len(ce.OutOfStep) != 0 || ce.Compensation {
					t.Errorf("Error = %+v, want reverted, nothing out of step", ce)
				}
				for _, s := range []string{sc.action.String(), `"jdoe"`, `"` + failing + `"`, "change reverted", "no target out of step"} {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not mention %q", err, s)
					}
				}
				if w := b.logs.warnings(t, "synchronization failed"); len(w) != 1 || w[0]["action"] != sc.action.Notify() || w[0]["target"] != failing {
					t.Errorf("warnings about the failure = %v", w)
				}
			})
		}
	}
}

// TestPartialFailureReverted: a target that applied the change and then
// failed (outcome unknown) is reverted too.
func TestPartialFailureReverted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sc := scenarios[1]
	sc.start(b)
	b.targets[1].fail = failWhen(false, errDown)
	b.targets[1].partial = true
	rep, err := b.sync(t).Sync(t.Context(), sc.change())
	if !errors.Is(err, connector.ErrCommunication) {
		t.Fatalf("Sync error = %v, want the communication error", err)
	}
	b.assertState(t, "jdoe", oldUser, "after reverting a partial failure")
	if res, _ := rep.Target("hr"); res.Outcome != compensation.OutcomeReverted || res.Category != connector.CategoryNotSent {
		t.Errorf("hr result = %+v", res)
	}
}

// TestRevertFailure: the revert fails on one target. Nothing is compensated
// a second time, a warning names the revert's action, the target and the
// original error, and the returned error carries both failures and names
// the target out of step.
func TestRevertFailure(t *testing.T) {
	t.Parallel()
	for _, sc := range scenarios {
		t.Run(sc.action.String(), func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			sc.start(b)
			errRevert := connector.NewError(connector.CategoryPermission, "revert", errors.New("ldap: insufficient access"))
			b.targets[0].fail = failWhen(true, errRevert)  // ldap refuses the revert
			b.targets[2].fail = failWhen(false, errPolicy) // tickets refuses the change
			rep, err := b.sync(t).Sync(t.Context(), sc.change())

			rev := sc.action.Revert()
			diff(t, "calls (each target's revert once, no second compensation)", []string{
				"ldap:" + sc.action.String(), "hr:" + sc.action.String(), "tickets:" + sc.action.String(),
				map[bool]string{true: "store:delete(comp)", false: "store:put(comp)"}[sc.action == compensation.Create],
				"tickets:" + rev.String() + "(comp)", "hr:" + rev.String() + "(comp)", "ldap:" + rev.String() + "(comp)",
			}, b.j.list())

			if !errors.Is(err, errPolicy) || !errors.Is(err, errRevert) {
				t.Fatalf("errors.Is must find both failures in %v", err)
			}
			var ce *compensation.Error
			if !errors.As(err, &ce) || ce.Reverted || ce.RevertErr == nil {
				t.Fatalf("Error = %+v, want a failed revert", ce)
			}
			var te *compensation.TargetError
			if !errors.As(ce.RevertErr, &te) || te.Target != "ldap" || !te.Revert || te.Action != rev {
				t.Errorf("revert TargetError = %+v", te)
			}
			diff(t, "Error.OutOfStep", []string{"ldap"}, ce.OutOfStep)
			diff(t, "Report.OutOfStep", []string{"ldap"}, rep.OutOfStep)
			for _, s := range []string{"compensation failed", "targets out of step: ldap", rev.Notify(), sc.action.Notify()} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
			diff(t, "outcomes", map[string]compensation.Outcome{
				"ldap": compensation.OutcomeRevertFailed, "hr": compensation.OutcomeReverted, "tickets": compensation.OutcomeReverted,
			}, outcomes(rep))
			if res, _ := rep.Target("ldap"); res.RevertCategory != connector.CategoryPermission {
				t.Errorf("ldap RevertCategory = %v", res.RevertCategory)
			}

			w := b.logs.warnings(t, "revert failed")
			if len(w) != 1 {
				t.Fatalf("want one revert warning, got %v", b.logs.records(t))
			}
			if w[0]["action"] != rev.Notify() || w[0]["target"] != "ldap" || w[0]["id"] != "jdoe" {
				t.Errorf("warning = %v, want action %s, target ldap", w[0], rev.Notify())
			}
			if !strings.Contains(fmt.Sprint(w[0]["error"]), "insufficient access") ||
				!strings.Contains(fmt.Sprint(w[0]["original_error"]), "hr rejects the title") {
				t.Errorf("warning = %v, want the revert error and the original error", w[0])
			}
			// No attribute value reaches the log.
			for _, r := range b.logs.records(t) {
				if strings.Contains(fmt.Sprint(r), "Senior Engineer") {
					t.Errorf("log record carries an attribute value: %v", r)
				}
			}
		})
	}
}

// TestRevertFailureNamesEveryTarget: several reverts fail; each is in the
// error, and every target out of step is named.
func TestRevertFailureNamesEveryTarget(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sc := scenarios[1]
	sc.start(b)
	errA, errB := errors.New("ldap revert failed"), errors.New("hr revert failed")
	b.targets[0].fail = failWhen(true, errA)
	b.targets[1].fail = func(ctx context.Context, _ compensation.Change) error {
		if compensation.IsCompensation(ctx) {
			return errB
		}
		return errPolicy
	}
	rep, err := b.sync(t).Sync(t.Context(), sc.change())
	for _, want := range []error{errA, errB, errPolicy} {
		if !errors.Is(err, want) {
			t.Errorf("errors.Is(err, %v) is false: %v", want, err)
		}
	}
	diff(t, "OutOfStep", []string{"ldap", "hr"}, rep.OutOfStep)
	if !strings.Contains(err.Error(), "targets out of step: ldap, hr") {
		t.Errorf("error = %q", err)
	}
	if w := b.logs.warnings(t, "revert failed"); len(w) != 2 {
		t.Errorf("want two revert warnings, got %v", w)
	}
	diff(t, "tickets untouched", []string{"ldap:update", "hr:update", "store:put(comp)", "hr:update(comp)", "ldap:update(comp)"}, b.j.list())
}
