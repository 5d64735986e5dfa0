package consistency

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/shadow"
)

// GetOptions tune Get.
type GetOptions struct {
	// Future returns the future view: the cached attributes with every
	// unfinished pending operation applied, in order. The default is the
	// current view: what the resource said last.
	Future bool
	// CacheOnly answers from the shadow without reading the resource.
	CacheOnly bool
	// Refresh refreshes the shadow first, whatever RefreshOnRead says.
	Refresh bool
}

// View is what Get returns.
type View struct {
	// Shadow is the shadow as stored after the get.
	Shadow *shadow.Shadow
	// Attributes and Exists are the object in the requested view.
	Attributes connector.Attributes
	Exists     bool
	// Fetched is true when the attributes were read from the resource
	// during this get.
	Fetched bool
}

// Get returns a shadow's object. When the resource is up it reads the
// object (unless CacheOnly) and updates the cache; a vanished object goes
// through discovery (re-created when the shadow was assigned, else the
// shadow is marked dead). With RefreshOnRead, Refresh, or when the resource
// is up and the shadow has due retries, the shadow is refreshed first, so
// pending operations complete on the way. A resource that is down is not an
// error: the cached view is returned.
func (e *Engine) Get(ctx context.Context, id string, opts GetOptions) (View, error) {
	unlock := e.lock(id)
	defer unlock()
	sh, err := e.store.Get(ctx, id)
	if err != nil {
		return View{}, fmt.Errorf("consistency: get %s: %w", id, err)
	}
	r, err := e.resource(sh.ResourceID)
	if err != nil {
		return View{}, err
	}
	avail, maint := r.state()
	up := avail == Up && !maint
	now := e.clock.Now()
	dueRetry := up && sh.Unfinished() && !sh.NextDue.IsZero() && !sh.NextDue.After(now)
	if opts.Refresh || r.settings.RefreshOnRead || dueRetry {
		if _, err := e.refreshLocked(ctx, sh, nil); err != nil {
			e.log.Debug("refresh on get", "shadow", id, "error", err)
		}
		if sh, err = e.store.Get(ctx, id); err != nil {
			return View{}, fmt.Errorf("consistency: get %s: %w", id, err)
		}
	}
	v := View{Shadow: sh}
	if !opts.CacheOnly && up && sh.Live() && !sh.Unfinished() {
		obj, err := r.conn.Get(ctx, sh.Class, sh.Identifiers())
		switch cat := connector.Classify(err); {
		case err == nil:
			v.Fetched = true
			if !obj.Attributes.Equal(sh.Attributes) || (obj.ID.Name != "" && obj.ID.Name != sh.Name) {
				sh.Attributes = obj.Attributes
				if obj.ID.Name != "" {
					sh.Name = obj.ID.Name
				}
				if err := e.save(ctx, sh); err != nil {
					return View{}, err
				}
			}
		case cat == connector.CategoryNotFound:
			if err := e.vanished(ctx, r, sh, err); err != nil {
				return View{Shadow: sh}, err
			}
		case cat.Communication():
			e.markDown(r, Down, err.Error())
		default:
			return View{Shadow: sh}, fmt.Errorf("consistency: get %s on resource %s: %w", id, r.id, err)
		}
	}
	v.Attributes, v.Exists = sh.Attributes.Clone(), sh.Live()
	if opts.Future {
		v.Attributes, v.Exists = futureView(sh)
	}
	return v, nil
}

// vanished handles a get that found no object behind a live shadow.
func (e *Engine) vanished(ctx context.Context, r *resource, sh *shadow.Shadow, cause error) error {
	now := e.clock.Now()
	e.emit(e.obs.Discovered, r, sh, &shadow.PendingOperation{}, cause)
	if sh.Origin != shadow.OriginAssigned {
		sh.Dead, sh.DeadSince = true, now
		sh.NextDue = e.nextDue(r, sh)
		return e.save(ctx, sh)
	}
	// Re-create from the cache, through a pending add so that a failure is
	// kept and retried like any other.
	id := sh.NextOperationID()
	op := newOp(id, connector.Delta{Type: connector.DeltaAdd, Attributes: sh.Attributes.Clone()}, now)
	writeAhead(&op, now, r)
	sh.Exists = false
	sh.Pending = append(sh.Pending, op)
	// Written ahead like Add: a process that dies during the call leaves
	// an add in flight that the next refresh checks by name, instead of a
	// live shadow whose next get re-creates the object a second time.
	sh.NextDue = e.nextDue(r, sh)
	if err := e.save(ctx, sh); err != nil {
		return err
	}
	_, err := e.executeOps(ctx, r, sh, []int64{id})
	return err
}

// futureView applies sh's unfinished operations to its cache.
func futureView(sh *shadow.Shadow) (connector.Attributes, bool) {
	attrs, exists := sh.Attributes.Clone(), sh.Live()
	for i := range sh.Pending {
		op := &sh.Pending[i]
		if op.Completed() {
			continue
		}
		if a, ok, err := connector.Apply(attrs, exists, op.Delta); err == nil {
			attrs, exists = a, ok
		}
	}
	if !exists {
		return nil, false
	}
	return attrs, true
}

// StuckOperation is a pending operation that failed at least once and is
// waiting for a retry: what an operator's admin screen lists.
type StuckOperation struct {
	ShadowID  string
	Class     connector.ObjectClass
	Name      string
	Operation shadow.PendingOperation
}

// StuckOperations lists the retry operations of resource id that failed at
// least once and are not finished, oldest request first.
func (e *Engine) StuckOperations(ctx context.Context, resourceID string) ([]StuckOperation, error) {
	if _, err := e.resource(resourceID); err != nil {
		return nil, err
	}
	var out []StuckOperation
	q := shadow.Query{ResourceID: resourceID, Unfinished: true, PendingType: shadow.OpRetry}
	for sh, err := range shadow.All(ctx, e.store, q, 500) {
		if err != nil {
			return nil, fmt.Errorf("consistency: listing stuck operations: %w", err)
		}
		for _, op := range sh.Pending {
			if !op.Completed() && op.Type == shadow.OpRetry && op.Attempt >= 1 {
				out = append(out, StuckOperation{ShadowID: sh.ID, Class: sh.Class, Name: sh.Name, Operation: op})
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		return out[i].Operation.RequestedAt.Before(out[j].Operation.RequestedAt)
	})
	return out, nil
}

// ErrNoSuchOperation is returned when a shadow has no unfinished operation
// with the given ID.
var ErrNoSuchOperation = errors.New("consistency: no such unfinished operation")

// RetryNow makes operation opID of shadow id due at once and refreshes the
// shadow, so an operator can push a stuck operation through.
func (e *Engine) RetryNow(ctx context.Context, id string, opID int64) (RefreshResult, error) {
	unlock := e.lock(id)
	defer unlock()
	sh, err := e.store.Get(ctx, id)
	if err != nil {
		return RefreshResult{}, fmt.Errorf("consistency: retry %s: %w", id, err)
	}
	op := sh.Operation(opID)
	if op == nil || op.Completed() {
		return RefreshResult{}, fmt.Errorf("%w: shadow %s operation %d", ErrNoSuchOperation, id, opID)
	}
	op.NextAttemptAt = e.clock.Now()
	if r, err := e.resource(sh.ResourceID); err == nil {
		// An operator asking is as good as a probe interval passing.
		r.mu.Lock()
		r.lastProbe = time.Time{}
		r.mu.Unlock()
	}
	return e.refreshLocked(ctx, sh, nil)
}

// CancelOperation cancels unfinished operation opID of shadow id, recording
// reason. Cancelling an add whose object was never created also cancels the
// operations queued behind it and marks the shadow dead.
func (e *Engine) CancelOperation(ctx context.Context, id string, opID int64, reason string) (*shadow.Shadow, error) {
	unlock := e.lock(id)
	defer unlock()
	sh, err := e.store.Get(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("consistency: cancel %s: %w", id, err)
	}
	r, err := e.resource(sh.ResourceID)
	if err != nil {
		return nil, err
	}
	op := sh.Operation(opID)
	if op == nil || op.Completed() {
		return nil, fmt.Errorf("%w: shadow %s operation %d", ErrNoSuchOperation, id, opID)
	}
	if reason == "" {
		reason = "cancelled by an operator"
	}
	now := e.clock.Now()
	complete(op, shadow.ResultFailure, now)
	op.CancelReason = reason
	e.emit(e.obs.OperationCancelled, r, sh, op, nil)
	if (op.Delta.Type == connector.DeltaAdd || op.Delta.Type == connector.DeltaRecreate) && !sh.Exists {
		for i := range sh.Pending {
			if p := &sh.Pending[i]; !p.Completed() {
				complete(p, shadow.ResultFailure, now)
				p.CancelReason = "cancelled with the add it depended on: " + reason
			}
		}
		sh.Dead, sh.DeadSince = true, now
	} else if op.Delta.Type != connector.DeltaAdd {
		sh.NeedsReconciliation = true
	}
	sh.NextDue = e.nextDue(r, sh)
	if err := e.save(ctx, sh); err != nil {
		return nil, err
	}
	e.log.Info("operation cancelled", "resource", r.id, "shadow", id, "operation", opID, "reason", reason)
	return sh, nil
}

// Probe tests resource id now (connector Tester) and marks it up or down.
// A connector without Tester is probed with nothing and assumed up.
func (e *Engine) Probe(ctx context.Context, id string) error {
	r, err := e.resource(id)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.lastProbe = e.clock.Now()
	r.mu.Unlock()
	if t, ok := r.conn.(connector.Tester); ok {
		if err := t.Test(ctx); err != nil {
			cat := connector.Classify(err)
			if cat == connector.CategoryConfiguration {
				e.markDown(r, Broken, err.Error())
			} else {
				e.markDown(r, Down, err.Error())
			}
			return fmt.Errorf("consistency: probe of %s: %w", id, err)
		}
	}
	e.markUp(r, "probe succeeded")
	return nil
}
