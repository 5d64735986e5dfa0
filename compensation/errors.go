package compensation

import (
	"fmt"
	"strings"
)

// TargetError is the failure of one target to take a change or a revert.
type TargetError struct {
	// Target names the target.
	Target string
	// Action is the action being synchronized when it failed (for a
	// revert, the revert's action).
	Action Action
	// Revert is true when the target failed to take a revert.
	Revert bool
	// Err is the target's error.
	Err error
}

// Error returns `target "name": notifyUpdate: <err>` (with "revert" after
// the name for a revert).
func (e *TargetError) Error() string {
	what := ""
	if e.Revert {
		what = " (revert)"
	}
	return fmt.Sprintf("target %q%s: %s: %v", e.Target, what, e.Action.Notify(), e.Err)
}

// Unwrap returns the target's error.
func (e *TargetError) Unwrap() error { return e.Err }

// Error is the error Sync returns when a change did not reach every
// participating target. errors.Is and errors.As see through it to every
// failure it carries: the one that stopped the run and each failure of the
// compensation.
type Error struct {
	// Action and ID are those of the change.
	Action Action
	ID     string
	// Compensation is true when the run was itself part of a compensation,
	// and so was not compensated.
	Compensation bool
	// Err is the failure of the change: the *TargetError that stopped the
	// run, the context's cause when the run was interrupted, or (for a run
	// that was itself a compensation) every target's failure, joined.
	Err error
	// Reverted is true when the compensation put the managed object and
	// every participating target back as they were.
	Reverted bool
	// RevertErr is the failure of the compensation (the managed store's,
	// or every target's, joined), or nil.
	RevertErr error
	// OutOfStep names the targets that may disagree with the managed
	// object (as Report.OutOfStep).
	OutOfStep []string
}

// Error says what failed, whether the change was reverted, and which
// targets are out of step.
func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "compensation: %s of %q", e.Action, e.ID)
	if e.Compensation {
		b.WriteString(" (itself a compensation)")
	}
	fmt.Fprintf(&b, " failed: %v", e.Err)
	switch {
	case e.Compensation:
		b.WriteString("; not compensated again")
	case e.RevertErr != nil:
		fmt.Fprintf(&b, "; compensation failed: %v", e.RevertErr)
	case e.Reverted:
		b.WriteString("; change reverted")
	}
	if len(e.OutOfStep) == 0 {
		b.WriteString("; no target out of step")
	} else {
		fmt.Fprintf(&b, "; targets out of step: %s", strings.Join(e.OutOfStep, ", "))
	}
	return b.String()
}

// Unwrap returns the failure of the change and, when there is one, the
// failure of the compensation.
func (e *Error) Unwrap() []error {
	errs := []error{e.Err}
	if e.RevertErr != nil {
		errs = append(errs, e.RevertErr)
	}
	return errs
}

// joined is errors.Join on one line: its parts separated by "; ".
type joined []error

func join(errs []error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	return joined(errs)
}

func (j joined) Error() string {
	parts := make([]string, len(j))
	for i, err := range j {
		parts[i] = err.Error()
	}
	return strings.Join(parts, "; ")
}

func (j joined) Unwrap() []error { return j }
