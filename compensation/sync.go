package compensation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/umbra-idm/umbra/connector"
)

// Sync synchronizes change c to the targets, all or nothing (see the
// package doc). The host calls it after storing the change in its managed
// store (the onSync point).
//
// Sync returns a nil error when every participating target took the
// change; the report may still list best-effort targets that failed. When a
// participating target fails, or ctx ends before every target was called,
// Sync reverts the change and returns an *Error carrying that failure and
// any failure of the revert. When ctx is marked as a compensation
// (IsCompensation), Sync applies c to every target, never compensates, and
// returns an *Error carrying every target's failure. An invalid change
// returns an error wrapping ErrInvalidChange and calls nothing.
//
// The report is complete in every case but the invalid change.
func (s *Synchronizer) Sync(ctx context.Context, c Change) (Report, error) {
	rep := Report{Action: c.Action, ID: c.ID, Compensation: IsCompensation(ctx)}
	if err := c.Validate(); err != nil {
		return rep, err
	}
	rep.Targets = make([]TargetResult, len(s.targets))
	for i, t := range s.targets {
		rep.Targets[i] = TargetResult{Name: t.Name, BestEffort: t.BestEffort}
	}
	if rep.Compensation {
		return s.syncCompensation(ctx, c, &rep)
	}

	var cause error
	called := 0 // s.targets[:called] were called
	for i, t := range s.targets {
		if ctx.Err() != nil {
			cause = fmt.Errorf("interrupted before target %q: %w", t.Name, context.Cause(ctx))
			break
		}
		called = i + 1
		err := s.call(ctx, t, c)
		res := &rep.Targets[i]
		if err == nil {
			res.Outcome = OutcomeApplied
			continue
		}
		res.Outcome, res.Err, res.Category = OutcomeFailed, err, connector.Classify(err)
		if t.BestEffort {
			s.log.WarnContext(ctx, "compensation: best-effort target failed; not compensated",
				"action", c.Action.Notify(), "target", t.Name, "id", c.ID, "error", err)
			continue
		}
		rep.FailedTarget = t.Name
		cause = &TargetError{Target: t.Name, Action: c.Action, Err: err}
		break
	}
	if cause == nil {
		rep.settle()
		return rep, nil
	}
	rep.Interrupted = ctx.Err() != nil
	s.log.WarnContext(ctx, "compensation: synchronization failed; reverting the change",
		"action", c.Action.Notify(), "target", rep.FailedTarget, "id", c.ID, "error", cause)
	revertErr := s.compensate(ctx, c, called, cause, &rep)
	rep.settle()
	return rep, &Error{
		Action:    c.Action,
		ID:        c.ID,
		Err:       cause,
		Reverted:  revertErr == nil,
		RevertErr: revertErr,
		OutOfStep: rep.OutOfStep,
	}
}

// syncCompensation applies c, which belongs to a compensation, to every
// target in order, going on past failures and never compensating.
func (s *Synchronizer) syncCompensation(ctx context.Context, c Change, rep *Report) (Report, error) {
	var errs []error
	for i, t := range s.targets {
		if ctx.Err() != nil {
			rep.Interrupted = true
			errs = append(errs, fmt.Errorf("interrupted before target %q: %w", t.Name, context.Cause(ctx)))
			break
		}
		res := &rep.Targets[i]
		err := s.call(ctx, t, c)
		if err == nil {
			res.Outcome = OutcomeApplied
			continue
		}
		res.Outcome, res.Err, res.Category = OutcomeFailed, err, connector.Classify(err)
		s.warnRevert(ctx, "compensation: synchronization of a compensation failed; not compensated again",
			c, t.Name, c.ID, err, compensationCause(ctx))
		errs = append(errs, &TargetError{Target: t.Name, Action: c.Action, Err: err})
	}
	rep.settle()
	if len(errs) == 0 {
		return *rep, nil
	}
	return *rep, &Error{Action: c.Action, ID: c.ID, Compensation: true, Err: join(errs), OutOfStep: rep.OutOfStep}
}

// compensate reverts c, which failed with cause after reaching
// s.targets[:called]: the managed store first, then those targets in
// reverse order, best-effort ones skipped. It returns the revert's failures.
func (s *Synchronizer) compensate(parent context.Context, c Change, called int, cause error, rep *Report) error {
	ctx, cancel := s.compensationContext(parent, cause)
	defer cancel()
	rep.Compensated = true
	r := c.Revert()
	if err := s.revertStore(ctx, c); err != nil {
		rep.StoreErr = err
		s.warnRevert(ctx, "compensation: reverting the managed object failed; targets not reverted",
			r, "", c.ID, err, cause)
		return err
	}
	rep.StoreReverted = true
	var errs []error
	for i := called - 1; i >= 0; i-- {
		t := s.targets[i]
		if t.BestEffort {
			continue
		}
		var err error
		if ctx.Err() != nil {
			// The compensation ran out of time: say so, without a call.
			err = context.Cause(ctx)
		} else if err = s.call(ctx, t, r); err != nil && ctx.Err() != nil && !errors.Is(err, context.Cause(ctx)) {
			// The target gave up with the context: say why it ended.
			err = join([]error{err, context.Cause(ctx)})
		}
		res := &rep.Targets[i]
		if err == nil {
			res.Outcome = OutcomeReverted
			continue
		}
		res.Outcome, res.RevertErr, res.RevertCategory = OutcomeRevertFailed, err, connector.Classify(err)
		s.warnRevert(ctx, "compensation: revert failed; not compensated again", r, t.Name, c.ID, err, cause)
		errs = append(errs, &TargetError{Target: t.Name, Action: r.Action, Revert: true, Err: err})
	}
	return join(errs)
}

// warnRevert logs a failure during a compensation at level Warn, naming the
// action of r (the revert being synchronized) as notifyCreate /
// notifyUpdate / notifyDelete, and the original failure when known.
func (s *Synchronizer) warnRevert(ctx context.Context, msg string, r Change, target, id string, err, cause error) {
	attrs := []slog.Attr{slog.String("action", r.Action.Notify())}
	if target != "" {
		attrs = append(attrs, slog.String("target", target))
	}
	attrs = append(attrs, slog.String("id", id), slog.Any("error", err))
	if cause != nil {
		attrs = append(attrs, slog.Any("original_error", cause))
	}
	s.log.LogAttrs(ctx, slog.LevelWarn, msg, attrs...)
}

// revertStore writes c's old value back to the managed store.
func (s *Synchronizer) revertStore(ctx context.Context, c Change) error {
	if c.Action == Create {
		if err := s.store.Delete(ctx, c.ID); err != nil && !errors.Is(err, connector.ErrNotFound) {
			return fmt.Errorf("managed store: delete %q: %w", c.ID, err)
		}
		return nil
	}
	if err := s.store.Put(ctx, c.ID, c.Old.Clone()); err != nil {
		return fmt.Errorf("managed store: put %q: %w", c.ID, err)
	}
	return nil
}

// call applies c to t with t's own copy of the attributes. A delete of an
// object the target does not have is success.
func (s *Synchronizer) call(ctx context.Context, t Target, c Change) error {
	err := t.Sync(ctx, c.clone())
	if err != nil && c.Action == Delete && errors.Is(err, connector.ErrNotFound) {
		return nil
	}
	return err
}
