package compensation

import (
	"fmt"

	"github.com/umbra-idm/umbra/connector"
)

// Outcome is where one target stands at the end of a run.
type Outcome uint8

// The outcomes. The zero value is OutcomeNotAttempted.
const (
	// OutcomeNotAttempted: the target was not called. It holds what it
	// held before the run: targets after the one that failed, targets
	// after the point where the run's context ended, and best-effort
	// targets the revert skipped (see Report.OutOfStep for those).
	OutcomeNotAttempted Outcome = iota
	// OutcomeApplied: the target took the change and keeps it.
	OutcomeApplied
	// OutcomeFailed: the target failed to take the change and was not
	// reverted: a best-effort target, or any target of a run that was
	// itself a compensation. Its state is not known for sure (a failure
	// can be partial).
	OutcomeFailed
	// OutcomeReverted: the target took the change (or failed to, being
	// the one that stopped the run) and then took the revert: it holds the
	// old value again.
	OutcomeReverted
	// OutcomeRevertFailed: the revert failed on the target, which may
	// still hold the change.
	OutcomeRevertFailed
)

var outcomeNames = [...]string{"not attempted", "applied", "failed", "reverted", "revert failed"}

// String returns the outcome in words ("applied", "revert failed", ...).
func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return fmt.Sprintf("Outcome(%d)", uint8(o))
}

// TargetResult is what one run did to one target.
type TargetResult struct {
	// Name is the target's name.
	Name string
	// BestEffort is the target's BestEffort setting.
	BestEffort bool
	// Outcome is where the target stands.
	Outcome Outcome
	// Err is the target's failure to take the change, or nil. Category is
	// its connector category (connector.Classify).
	Err      error
	Category connector.Category
	// RevertErr is the target's failure to take the revert, or nil.
	// RevertCategory is its connector category.
	RevertErr      error
	RevertCategory connector.Category
}

// Report is what one Sync did: a value the host can store, show or act on.
type Report struct {
	// Action and ID are those of the change.
	Action Action
	ID     string
	// Compensation is true when the run was itself part of a compensation
	// (Sync was called with a context IsCompensation reports): it never
	// compensates.
	Compensation bool
	// FailedTarget names the target whose failure stopped the run, or is
	// empty.
	FailedTarget string
	// Interrupted is true when the run's context had ended by the time the
	// run stopped (before every target was called, or with the failing
	// target's call).
	Interrupted bool
	// Compensated is true when the run reverted the change (or tried to).
	Compensated bool
	// StoreReverted is true when the old value was written back to the
	// managed store. StoreErr is the store's failure to do so, in which
	// case the targets were not reverted (they would disagree with the
	// managed object, which still holds the new value).
	StoreReverted bool
	StoreErr      error
	// Targets holds one result per configured target, in the configured
	// order.
	Targets []TargetResult
	// OutOfStep names the targets that may disagree with the managed
	// object at the end of the run, in the configured order: empty when
	// every target is known to hold what the managed store holds.
	OutOfStep []string
}

// InStep reports whether every target is known to agree with the managed
// object: OutOfStep is empty.
func (r Report) InStep() bool { return len(r.OutOfStep) == 0 }

// Names returns the names of the targets whose outcome is o, in the
// configured order.
func (r Report) Names(o Outcome) []string {
	var names []string
	for _, t := range r.Targets {
		if t.Outcome == o {
			names = append(names, t.Name)
		}
	}
	return names
}

// Target returns the result of the target named name, and whether there is
// one.
func (r Report) Target(name string) (TargetResult, bool) {
	for _, t := range r.Targets {
		if t.Name == name {
			return t, true
		}
	}
	return TargetResult{}, false
}

// settle fills OutOfStep. The managed store holds the old value when the
// revert reached it, else the new one; a target is in step when it is known
// to hold the same.
func (r *Report) settle() {
	r.OutOfStep = nil
	atOld := r.StoreReverted
	for _, t := range r.Targets {
		var inStep bool
		switch t.Outcome {
		case OutcomeNotAttempted, OutcomeReverted:
			inStep = atOld
		case OutcomeApplied:
			inStep = !atOld
		}
		if !inStep {
			r.OutOfStep = append(r.OutOfStep, t.Name)
		}
	}
}
