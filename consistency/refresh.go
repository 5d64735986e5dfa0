package consistency

import (
	"context"
	"errors"
	"fmt"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/shadow"
)

// RefreshResult reports what one shadow refresh did.
type RefreshResult struct {
	ShadowID   string
	ResourceID string
	// Retried counts retry attempts made; Completed operations that
	// finished successfully (retried or async); Failed those that failed
	// for good (fatal or async failure); Abandoned those given up after
	// the maximum attempts; StillPending the unfinished ones left.
	Retried, Completed, Failed, Abandoned, StillPending int
	// AsyncChecked counts async status checks.
	AsyncChecked int
	// Dropped counts completed operations removed after retention.
	Dropped int
	// Deleted is true when the dead shadow was deleted after retention.
	Deleted bool
	// Skipped says why nothing was attempted (resource down, in
	// maintenance), when that was so.
	Skipped string
}

// RefreshShadow refreshes one shadow: it asks the resource about async
// operations, retries retry operations whose time has come (in order,
// stopping at the first that stays unfinished), gives up those whose
// attempts are spent, drops completed operations after retention and deletes
// a dead shadow after its retention. A shadow that is gone is not an error.
func (e *Engine) RefreshShadow(ctx context.Context, id string) (RefreshResult, error) {
	unlock := e.lock(id)
	defer unlock()
	sh, err := e.store.Get(ctx, id)
	if errors.Is(err, shadow.ErrNotFound) {
		return RefreshResult{ShadowID: id}, nil
	}
	if err != nil {
		return RefreshResult{ShadowID: id}, fmt.Errorf("consistency: refresh %s: %w", id, err)
	}
	return e.refreshLocked(ctx, sh, nil)
}

// RefreshLoaded is RefreshShadow for a shadow the caller has just read from
// the store, as the refresh task has a page of them: it saves a read of the
// store per shadow. The copy is trusted only as far as the store's version
// check: when the stored shadow has changed since, the refresh's first
// write fails with a conflict before any call is made, and the refresh
// starts over from a fresh read. A shadow with async operations to check is
// read first anyway (a status check comes before any write). The engine
// works on sh itself: the caller MUST NOT use it afterwards.
func (e *Engine) RefreshLoaded(ctx context.Context, sh *shadow.Shadow) (RefreshResult, error) {
	if sh == nil || sh.ID == "" {
		return RefreshResult{}, fmt.Errorf("consistency: refresh of a loaded shadow: %w", errNoShadow)
	}
	unlock := e.lock(sh.ID)
	defer unlock()
	if !hasAsyncToCheck(sh) {
		unverified := true
		res, err := e.refreshLocked(ctx, sh, &unverified)
		if !errors.Is(err, errStale) {
			return res, err
		}
	}
	fresh, err := e.store.Get(ctx, sh.ID)
	if errors.Is(err, shadow.ErrNotFound) {
		return RefreshResult{ShadowID: sh.ID}, nil
	}
	if err != nil {
		return RefreshResult{ShadowID: sh.ID}, fmt.Errorf("consistency: refresh %s: %w", sh.ID, err)
	}
	return e.refreshLocked(ctx, fresh, nil)
}

// errNoShadow refuses RefreshLoaded without a stored shadow.
var errNoShadow = errors.New("no shadow, or one without an ID")

// errStale ends a refresh whose copy of the shadow is older than the
// stored one; see RefreshLoaded.
var errStale = errors.New("consistency: the shadow changed since it was read")

// hasAsyncToCheck reports whether a refresh of sh asks the resource about
// an async operation.
func hasAsyncToCheck(sh *shadow.Shadow) bool {
	for i := range sh.Pending {
		if op := &sh.Pending[i]; !op.Completed() && op.Type == shadow.OpAsync && op.AsyncRef != "" {
			return true
		}
	}
	return false
}

// saveRefresh is save for a refresh. While *unverified (RefreshLoaded's
// copy, not yet written), a version conflict is errStale, not a merge: the
// copy may be older than operations someone else carried out. The first
// write that succeeds verifies the copy.
func (e *Engine) saveRefresh(ctx context.Context, sh *shadow.Shadow, unverified *bool) error {
	if unverified == nil || !*unverified {
		return e.save(ctx, sh)
	}
	if err := e.store.Update(ctx, sh); err != nil {
		if errors.Is(err, shadow.ErrConflict) {
			return errStale
		}
		return fmt.Errorf("consistency: saving shadow %s: %w", sh.ID, err)
	}
	*unverified = false
	return nil
}

// refreshLocked refreshes sh, the caller holding its lock. unverified is
// nil for a shadow just read under the lock; see saveRefresh.
func (e *Engine) refreshLocked(ctx context.Context, sh *shadow.Shadow, unverified *bool) (RefreshResult, error) {
	res := RefreshResult{ShadowID: sh.ID, ResourceID: sh.ResourceID}
	r, err := e.resource(sh.ResourceID)
	if err != nil {
		return res, err
	}
	changed := false
	var opErr error

	if n, err := e.checkAsync(ctx, r, sh, &res); err != nil {
		opErr = err
	} else if n > 0 {
		changed = true
	}
	if ctx.Err() == nil {
		n, err := e.retryDue(ctx, r, sh, &res, unverified)
		if errors.Is(err, errStale) {
			return res, err
		}
		if n > 0 {
			changed = true
		}
		opErr = errors.Join(opErr, err)
	}
	now := e.clock.Now()
	kept := sh.Pending[:0]
	for _, op := range sh.Pending {
		if op.Completed() && !now.Before(op.CompletedAt.Add(r.settings.keep(&op))) {
			res.Dropped++
			continue
		}
		kept = append(kept, op)
	}
	sh.Pending = kept
	if res.Dropped > 0 {
		changed = true
	}
	for i := range sh.Pending {
		if !sh.Pending[i].Completed() {
			res.StillPending++
		}
	}
	if sh.Dead && res.StillPending == 0 && !now.Before(r.settings.deadUntil(sh)) {
		if err := e.store.Delete(ctx, sh.ID, sh.Version); err != nil && !errors.Is(err, shadow.ErrNotFound) {
			if unverified != nil && *unverified && errors.Is(err, shadow.ErrConflict) {
				return res, errStale
			}
			return res, fmt.Errorf("consistency: deleting dead shadow %s: %w", sh.ID, err)
		}
		res.Deleted = true
		return res, opErr
	}
	if due := e.nextDue(r, sh); changed || !due.Equal(sh.NextDue) {
		sh.NextDue = due
		if err := e.saveRefresh(context.WithoutCancel(ctx), sh, unverified); err != nil {
			if errors.Is(err, errStale) {
				return res, err
			}
			return res, errors.Join(opErr, err)
		}
	}
	return res, opErr
}

// checkAsync asks the connector about unfinished async operations of sh.
func (e *Engine) checkAsync(ctx context.Context, r *resource, sh *shadow.Shadow, res *RefreshResult) (int, error) {
	ao, ok := r.conn.(connector.AsyncOperator)
	if !ok {
		return 0, nil
	}
	if !hasAsyncToCheck(sh) {
		return 0, nil
	}
	// A status check is a call like any other: not in maintenance, not to
	// a resource marked down unless a probe finds it up.
	if ok, reason := e.gate(ctx, r); !ok {
		res.Skipped = reason
		return 0, nil
	}
	statuses := map[string]connector.AsyncStatus{}
	changed := 0
	for i := range sh.Pending {
		op := &sh.Pending[i]
		if op.Completed() || op.Type != shadow.OpAsync || op.AsyncRef == "" {
			continue
		}
		st, seen := statuses[op.AsyncRef]
		if !seen {
			var err error
			st, err = ao.OperationStatus(ctx, op.AsyncRef)
			res.AsyncChecked++
			if err != nil {
				if connector.Classify(err) != connector.CategoryNotFound {
					if connector.Classify(err).Communication() {
						e.markDown(r, Down, err.Error())
					}
					return changed, fmt.Errorf("consistency: async status of %q (shadow %s): %w", op.AsyncRef, sh.ID, err)
				}
				st = connector.AsyncStatus{State: connector.AsyncFailed, Err: err}
			}
			statuses[op.AsyncRef] = st
		}
		now := e.clock.Now()
		switch st.State {
		case connector.AsyncDone:
			e.applyEffect(sh, op.Delta, connector.Result{ID: st.ID}, nil)
			complete(op, shadow.ResultSuccess, now)
			op.LastError, op.LastErrorCategory = "", 0
			e.emit(e.obs.OperationCompleted, r, sh, op, nil)
			res.Completed++
			changed++
		case connector.AsyncFailed:
			err := st.Err
			if err == nil {
				err = errors.New("the resource reported the operation failed")
			}
			// Every operation the resource took under this reference failed
			// with it (a merged group): each records the resource's reason.
			for j := i; j < len(sh.Pending); j++ {
				if g := &sh.Pending[j]; !g.Completed() && g.AsyncRef == op.AsyncRef {
					fail(g, connector.Classify(err), err, now)
					e.emit(e.obs.OperationFailed, r, sh, g, err)
					res.Failed++
					changed++
				}
			}
			e.afterFailure(sh, op.Delta, now)
		default:
			op.NextAttemptAt = now.Add(r.settings.OperationRetryPeriod)
			changed++
		}
	}
	return changed, nil
}

// retryDue retries the due retry operations of sh in order.
func (e *Engine) retryDue(ctx context.Context, r *resource, sh *shadow.Shadow, res *RefreshResult, unverified *bool) (int, error) {
	attempts := 0
	for {
		op := firstUnfinished(sh)
		if op == nil || op.Type != shadow.OpRetry {
			return attempts, nil // nothing, or blocked behind grouped/async work
		}
		now := e.clock.Now()
		if op.NextAttemptAt.After(now) {
			return attempts, nil
		}
		if ok, reason := e.gate(ctx, r); !ok {
			res.Skipped = reason
			if until := r.throttledUntil(); until.After(op.NextAttemptAt) {
				// Come back when the resource said, not at every run.
				op.NextAttemptAt = until
			}
			return attempts, nil
		}
		unknownBefore := op.LastErrorCategory == connector.CategoryOutcomeUnknown && op.Attempt > 0
		group, d := retryGroup(sh, op)
		// Write ahead, as Add does: if the process dies during the call,
		// the next refresh finds the attempt in flight and reads the
		// resource before trying again, so that no add is made twice.
		before, due := make([]shadow.PendingOperation, len(group)), sh.NextDue
		for i, g := range group {
			before[i] = *g
			writeAhead(g, now, r)
		}
		sh.NextDue = e.nextDue(r, sh)
		if err := e.saveRefresh(ctx, sh, unverified); err != nil {
			// Not sent: leave the operations as they were.
			for i, g := range group {
				*g = before[i]
			}
			sh.NextDue = due
			return attempts, err
		}
		if op.Attempt > 1 {
			res.Retried++
			e.emit(e.obs.OperationRetried, r, sh, op, nil)
		}
		attempts++
		attempt := op.Attempt
		st, err := e.attempt(ctx, r, sh, group, d, unknownBefore)
		// A throttled attempt is given back (not a failure): it does not
		// count for quarantine either.
		if op.Attempt == attempt && attempt > 1 {
			e.countRetry(r, st == Pending || (st == Failed && op.Result == shadow.ResultFailure && op.LastErrorCategory.Communication()))
		}
		switch st {
		case Done:
			res.Completed += len(group)
		case Failed:
			if op.LastErrorCategory.Communication() || (op.LastErrorCategory == connector.CategoryGeneric && r.settings.RetryGeneric) {
				res.Abandoned += len(group)
			} else {
				res.Failed += len(group)
			}
			if err != nil && sh.Dead {
				return attempts, nil // the add failed; nothing behind it can run
			}
			continue
		default:
			return attempts, nil // still pending (or async): order holds the rest
		}
		if ctx.Err() != nil {
			return attempts, ctx.Err()
		}
	}
}

// retryGroup returns the retry operations that are retried together with
// first, and their merged delta: those that were last attempted together in
// one merged call (a propagation whose call failed) stay together, so that a
// manual resource gets one ticket again, not one per operation. Otherwise
// the group is first alone.
func retryGroup(sh *shadow.Shadow, first *shadow.PendingOperation) ([]*shadow.PendingOperation, connector.Delta) {
	group := []*shadow.PendingOperation{first}
	if first.LastAttemptAt.IsZero() {
		return group, first.Delta
	}
	seen := false
	for i := range sh.Pending {
		op := &sh.Pending[i]
		switch {
		case op == first:
			seen = true
			continue
		case !seen || op.Completed():
			continue
		case op.Type != shadow.OpRetry || !op.LastAttemptAt.Equal(first.LastAttemptAt) || op.Attempt != first.Attempt:
		default:
			group = append(group, op)
			continue
		}
		break
	}
	if len(group) == 1 {
		return group, first.Delta
	}
	deltas := make([]connector.Delta, len(group))
	for i, op := range group {
		deltas[i] = op.Delta
	}
	merged, ok, err := connector.Merge(deltas)
	if err != nil || !ok {
		return group[:1], first.Delta
	}
	return group, merged
}

func firstUnfinished(sh *shadow.Shadow) *shadow.PendingOperation {
	for i := range sh.Pending {
		if !sh.Pending[i].Completed() {
			return &sh.Pending[i]
		}
	}
	return nil
}

func (e *Engine) countRetry(r *resource, failed bool) {
	r.mu.Lock()
	r.retries++
	if failed {
		r.retryFails++
	}
	r.mu.Unlock()
}

// CheckQuarantine evaluates every resource's retries since the last call
// against its QuarantinePolicy and quarantines those above the threshold.
// The refresh task calls it after each run. It returns the IDs of the
// resources that entered quarantine.
func (e *Engine) CheckQuarantine() []string {
	var entered []string
	for _, id := range e.ids {
		r := e.resources[id]
		r.mu.Lock()
		q := r.settings.Quarantine
		retries, fails := r.retries, r.retryFails
		r.retries, r.retryFails = 0, 0
		enter := false
		if q != nil && !r.quarantined {
			min := q.MinRetries
			if min == 0 {
				min = 1
			}
			share := q.FailureShare > 0 && retries >= min && float64(fails) > q.FailureShare*float64(retries)
			count := q.MaxFailures > 0 && fails > q.MaxFailures
			enter = share || count
			r.quarantined = r.quarantined || enter
		}
		r.mu.Unlock()
		if enter {
			entered = append(entered, id)
			reason := fmt.Sprintf("%d of %d retries failed", fails, retries)
			e.log.Warn("resource quarantined", "resource", id, "reason", reason)
			if f := e.obs.QuarantineEntered; f != nil {
				f(ResourceEvent{ResourceID: id, At: e.clock.Now(), Reason: reason})
			}
		}
	}
	return entered
}

func (e *Engine) leaveQuarantine(r *resource) {
	r.mu.Lock()
	was := r.quarantined
	r.quarantined = false
	r.mu.Unlock()
	if was {
		e.log.Info("resource left quarantine", "resource", r.id)
		if f := e.obs.QuarantineLeft; f != nil {
			f(ResourceEvent{ResourceID: r.id, At: e.clock.Now(), Reason: "a retry succeeded"})
		}
	}
}

// PropagateResult reports what PropagateShadow did.
type PropagateResult struct {
	ShadowID   string
	ResourceID string
	// Operations is how many grouped operations were executed as one.
	Operations int
	// Called is true when the connector was called (false for an empty
	// merge, or when nothing was due).
	Called bool
	// Status is how the merged operation ended (zero when nothing was
	// due).
	Status Status
	// Skipped says why nothing was done (not due, resource down).
	Skipped string
}

// PropagateShadow executes the unfinished grouped operations of one shadow
// as one merged operation, when the oldest is older than the resource's
// OperationGroupingInterval (or always, with force). A merge that does
// nothing completes them without a call. A communication failure turns them
// into retry operations that refresh carries out; an async resource turns
// them into async operations. Executed operations stay in the shadow for
// the grace period.
func (e *Engine) PropagateShadow(ctx context.Context, id string, force bool) (PropagateResult, error) {
	unlock := e.lock(id)
	defer unlock()
	res := PropagateResult{ShadowID: id}
	sh, err := e.store.Get(ctx, id)
	if errors.Is(err, shadow.ErrNotFound) {
		res.Skipped = "shadow gone"
		return res, nil
	}
	if err != nil {
		return res, fmt.Errorf("consistency: propagate %s: %w", id, err)
	}
	res.ResourceID = sh.ResourceID
	r, err := e.resource(sh.ResourceID)
	if err != nil {
		return res, err
	}
	var ids []int64
	for i := range sh.Pending {
		op := &sh.Pending[i]
		if op.Completed() {
			continue
		}
		if op.Type != shadow.OpGrouped {
			if len(ids) == 0 {
				res.Skipped = "behind unfinished operations"
				return res, nil
			}
			break
		}
		ids = append(ids, op.ID)
	}
	if len(ids) == 0 {
		res.Skipped = "no grouped operations"
		return res, nil
	}
	now := e.clock.Now()
	oldest := sh.Operation(ids[0]).RequestedAt
	if !force && now.Before(oldest.Add(r.settings.OperationGroupingInterval)) {
		res.Skipped = "not due"
		return res, nil
	}
	if ok, reason := e.gate(ctx, r); !ok {
		res.Skipped = reason
		return res, nil
	}
	res.Operations = len(ids)
	deltas := make([]connector.Delta, len(ids))
	for i, oid := range ids {
		deltas[i] = sh.Operation(oid).Delta
	}
	if _, ok, merr := connector.Merge(deltas); merr == nil && ok {
		res.Called = true
		for _, oid := range ids {
			writeAhead(sh.Operation(oid), now, r)
		}
		if err := e.save(ctx, sh); err != nil {
			return res, err
		}
	}
	out, err := e.executeOps(ctx, r, sh, ids)
	res.Status = out.Status
	return res, err
}
