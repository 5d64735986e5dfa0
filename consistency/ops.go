package consistency

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/shadow"
)

// Status says how an operation ended for the caller.
type Status uint8

// The statuses.
const (
	// Done: the operation took effect on the resource (or needed no call).
	Done Status = iota + 1
	// Pending: accepted, postponed; a retry pending operation holds it and
	// refresh will carry it out. Not an error.
	Pending
	// Queued: accepted as a grouped pending operation; propagation will
	// execute it.
	Queued
	// InProgress: the resource accepted it and works on it (async).
	InProgress
	// Failed: the operation failed for good; the error says why.
	Failed
)

// String returns the Status as text for logs and errors.
func (s Status) String() string {
	switch s {
	case Done:
		return "done"
	case Pending:
		return "pending"
	case Queued:
		return "queued"
	case InProgress:
		return "in progress"
	case Failed:
		return "failed"
	}
	return fmt.Sprintf("Status(%d)", s)
}

// Outcome is what Add, Modify and Delete return: how the operation ended
// and the shadow as stored afterwards.
type Outcome struct {
	Status      Status
	Shadow      *shadow.Shadow
	OperationID int64
}

// AddRequest asks for a new object on a resource.
type AddRequest struct {
	ResourceID string
	Class      connector.ObjectClass
	// Kind and Intent are stored on the shadow for the host.
	Kind, Intent string
	// Name is the secondary identifier the object will have (a DN, a
	// username), when the host knows it. It lets the engine check, after
	// a timeout, whether the add took effect before trying again, so that
	// no second account is made.
	Name       string
	Attributes connector.Attributes
}

// DiscoveryError is returned when an add found the object already on the
// resource and the discovery hook did not link it.
type DiscoveryError struct {
	// Existing identifies the object found.
	Existing connector.Identifiers
	// ShadowID is the shadow that now records the found object (origin
	// discovered); empty when none could be made.
	ShadowID string
	// Err is the connector's already-exists error.
	Err error
}

// Error returns the message of the DiscoveryError.
func (e *DiscoveryError) Error() string {
	return fmt.Sprintf("consistency: object already exists on the resource (uid %q, name %q): %v", e.Existing.UID, e.Existing.Name, e.Err)
}

// Unwrap returns the connector error.
func (e *DiscoveryError) Unwrap() error { return e.Err }

// Add creates a shadow and its object. When the resource is down, in
// maintenance, or grouping is on, the add is kept as a pending operation
// and Outcome.Status says so; that is not an error. A fatal failure is
// returned as an error carrying its category, with the shadow recording the
// failed operation.
func (e *Engine) Add(ctx context.Context, req AddRequest) (Outcome, error) {
	r, err := e.resource(req.ResourceID)
	if err != nil {
		return Outcome{}, err
	}
	d := connector.Delta{Type: connector.DeltaAdd, Attributes: req.Attributes.Clone()}
	if req.Class == "" {
		return Outcome{}, errors.New("consistency: add: Class is empty")
	}
	if err := d.Validate(); err != nil {
		return Outcome{}, fmt.Errorf("consistency: add: %w", err)
	}
	now := e.clock.Now()
	sh := &shadow.Shadow{ResourceID: r.id, Class: req.Class, Kind: req.Kind, Intent: req.Intent,
		Name: req.Name, Origin: shadow.OriginAssigned}
	sh.Pending = []shadow.PendingOperation{newOp(1, d, now)}
	adm := e.admit(ctx, r, sh, 1)
	if adm.mode == admitExecute {
		// Write ahead: if the process dies during the call, refresh finds
		// the add in flight and checks the resource before trying again.
		writeAhead(&sh.Pending[0], now, r)
	} else {
		e.park(r, sh, &sh.Pending[0], adm, now)
	}
	sh.NextDue = e.nextDue(r, sh)
	if err := e.store.Create(ctx, sh); err != nil {
		return Outcome{}, fmt.Errorf("consistency: add: store: %w", err)
	}
	if adm.mode != admitExecute {
		e.parked(r, sh, &sh.Pending[0], adm)
		return Outcome{Status: adm.status(), Shadow: sh, OperationID: 1}, nil
	}
	unlock := e.lock(sh.ID)
	defer unlock()
	return e.executeOps(ctx, r, sh, []int64{1})
}

// Modify applies attribute changes to the object of shadow id. Like Add, a
// postponed or queued modify is not an error.
func (e *Engine) Modify(ctx context.Context, id string, changes []connector.AttributeDelta) (Outcome, error) {
	d := connector.Delta{Type: connector.DeltaModify, Changes: changes}
	if err := d.Validate(); err != nil {
		return Outcome{}, fmt.Errorf("consistency: modify %s: %w", id, err)
	}
	return e.operate(ctx, id, d.Clone())
}

// Delete deletes the object of shadow id; the shadow is then dead. Deleting
// a shadow whose add never reached the resource cancels the add, calls
// nothing and marks the shadow dead. Deleting a dead shadow is done already.
func (e *Engine) Delete(ctx context.Context, id string) (Outcome, error) {
	return e.operate(ctx, id, connector.Delta{Type: connector.DeltaDelete})
}

func (e *Engine) operate(ctx context.Context, id string, d connector.Delta) (Outcome, error) {
	unlock := e.lock(id)
	defer unlock()
	sh, err := e.store.Get(ctx, id)
	if err != nil {
		return Outcome{}, fmt.Errorf("consistency: %s %s: %w", d.Type, id, err)
	}
	r, err := e.resource(sh.ResourceID)
	if err != nil {
		return Outcome{}, err
	}
	now := e.clock.Now()
	if sh.Dead {
		if d.Type == connector.DeltaDelete {
			return Outcome{Status: Done, Shadow: sh}, nil
		}
		return Outcome{Status: Failed, Shadow: sh}, fmt.Errorf("%w: %s %s", ErrShadowGone, d.Type, id)
	}
	if del := pendingDelete(sh); del != nil {
		// Nothing may follow a delete: a modify behind it would re-create
		// the object (not found → discovery), a second delete is the first.
		if d.Type == connector.DeltaDelete {
			return Outcome{Status: waiting(del), Shadow: sh, OperationID: del.ID}, nil
		}
		return Outcome{Status: Failed, Shadow: sh}, fmt.Errorf("%w: %s %s: a delete is pending", ErrShadowGone, d.Type, id)
	}
	addPending := pendingAdd(sh)
	if !sh.Exists && !sh.Unfinished() {
		// Never created and nothing under way (a re-create after the
		// object vanished keeps its modify unfinished): gone.
		return Outcome{Status: Failed, Shadow: sh}, fmt.Errorf("%w: %s %s", ErrShadowGone, d.Type, id)
	}
	opID := sh.NextOperationID()
	op := newOp(opID, d, now)
	if d.Type == connector.DeltaDelete && !sh.Exists && addCancellable(addPending) {
		// The add never reached the resource: cancel it and everything
		// queued behind it; nothing to call.
		for i := range sh.Pending {
			if p := &sh.Pending[i]; !p.Completed() {
				complete(p, shadow.ResultFailure, now)
				p.CancelReason = "cancelled: the shadow was deleted before its add reached the resource"
			}
		}
		complete(&op, shadow.ResultSuccess, now)
		sh.Pending = append(sh.Pending, op)
		sh.Dead, sh.DeadSince = true, now
		sh.NextDue = e.nextDue(r, sh)
		if err := e.save(ctx, sh); err != nil {
			return Outcome{}, err
		}
		e.emit(e.obs.OperationCancelled, r, sh, addPending, nil)
		return Outcome{Status: Done, Shadow: sh, OperationID: opID}, nil
	}
	sh.Pending = append(sh.Pending, op)
	p := &sh.Pending[len(sh.Pending)-1]
	adm := e.admit(ctx, r, sh, opID)
	if adm.mode != admitExecute {
		e.park(r, sh, p, adm, now)
		sh.NextDue = e.nextDue(r, sh)
		if err := e.save(ctx, sh); err != nil {
			return Outcome{}, err
		}
		e.parked(r, sh, sh.Operation(opID), adm)
		return Outcome{Status: adm.status(), Shadow: sh, OperationID: opID}, nil
	}
	p.Attempt, p.LastAttemptAt, p.Status = 1, now, shadow.StatusExecuting
	return e.executeOps(ctx, r, sh, []int64{opID})
}

func newOp(id int64, d connector.Delta, now time.Time) shadow.PendingOperation {
	return shadow.PendingOperation{ID: id, Delta: d, Type: shadow.OpRetry, Status: shadow.StatusRequested,
		Result: shadow.ResultInProgress, RequestedAt: now}
}

func writeAhead(op *shadow.PendingOperation, now time.Time, r *resource) {
	op.Attempt++
	op.LastAttemptAt, op.Status = now, shadow.StatusExecuting
	op.NextAttemptAt = now.Add(r.settings.OperationRetryPeriod)
	op.LastError = "in flight: the outcome was not recorded"
	op.LastErrorCategory = connector.CategoryOutcomeUnknown
}

func complete(op *shadow.PendingOperation, res shadow.OpResult, now time.Time) {
	op.Status, op.Result, op.CompletedAt = shadow.StatusCompleted, res, now
	op.NextAttemptAt = time.Time{}
}

// pendingAdd returns the unfinished add (or recreate) of sh, or nil.
func pendingAdd(sh *shadow.Shadow) *shadow.PendingOperation {
	for i := range sh.Pending {
		p := &sh.Pending[i]
		if !p.Completed() && (p.Delta.Type == connector.DeltaAdd || p.Delta.Type == connector.DeltaRecreate) {
			return p
		}
	}
	return nil
}

// pendingDelete returns the unfinished delete of sh, or nil.
func pendingDelete(sh *shadow.Shadow) *shadow.PendingOperation {
	for i := range sh.Pending {
		if p := &sh.Pending[i]; !p.Completed() && p.Delta.Type == connector.DeltaDelete {
			return p
		}
	}
	return nil
}

// waiting is the Status of an unfinished operation as the caller sees it.
func waiting(op *shadow.PendingOperation) Status {
	switch op.Type {
	case shadow.OpGrouped:
		return Queued
	case shadow.OpAsync:
		return InProgress
	}
	return Pending
}

// markDead marks sh dead at now and fails its unfinished operations with
// why: an object that is gone takes no more work, and refresh must not call
// the resource for it.
func markDead(sh *shadow.Shadow, now time.Time, why error) {
	for i := range sh.Pending {
		if p := &sh.Pending[i]; !p.Completed() {
			fail(p, connector.Classify(why), fmt.Errorf("the object is gone: %w", why), now)
		}
	}
	sh.Dead, sh.DeadSince = true, now
}

// addCancellable reports whether an unfinished add certainly has not
// reached the resource: never attempted, or failed before it was sent.
func addCancellable(p *shadow.PendingOperation) bool {
	if p == nil || p.Delta.Type != connector.DeltaAdd {
		return false
	}
	switch {
	case p.Status == shadow.StatusExecuting, p.AsyncRef != "":
		return false
	case p.Attempt == 0:
		return true
	}
	return p.LastErrorCategory == connector.CategoryNotSent || p.LastErrorCategory == connector.CategoryThrottled
}

type admitMode uint8

const (
	admitExecute admitMode = iota
	admitGroup
	admitBehind
	admitPostpone
)

type admission struct {
	mode   admitMode
	reason string
}

func (a admission) status() Status {
	if a.mode == admitGroup {
		return Queued
	}
	return Pending
}

// admit decides what to do with new operation opID of sh: execute it now,
// queue it for grouping, queue it behind unfinished operations, or postpone
// it without a call.
func (e *Engine) admit(ctx context.Context, r *resource, sh *shadow.Shadow, opID int64) admission {
	if r.settings.OperationGroupingInterval > 0 {
		return admission{mode: admitGroup}
	}
	for i := range sh.Pending {
		if p := &sh.Pending[i]; p.ID != opID && !p.Completed() {
			return admission{mode: admitBehind, reason: "queued behind unfinished operations of the shadow"}
		}
	}
	if ok, reason := e.gate(ctx, r); !ok {
		return admission{mode: admitPostpone, reason: reason}
	}
	return admission{mode: admitExecute}
}

// gate reports whether resource r may be called now: not in maintenance,
// and up, or down but answering a probe (at most one per ProbeInterval).
func (e *Engine) gate(ctx context.Context, r *resource) (bool, string) {
	now := e.clock.Now()
	r.mu.Lock()
	avail, maint, reason, throttled := r.avail, r.maintenance, r.reason, r.throttled
	// A broken resource is not probed: a test that passes (an anonymous
	// bind) says nothing about the bad credentials, and each operation
	// let through would fail for good on the configuration error.
	probe := avail == Down && !maint && !now.Before(throttled) && now.Sub(r.lastProbe) >= r.settings.ProbeInterval
	_, tester := r.conn.(connector.Tester)
	inFlight := r.probing
	if probe && tester {
		r.lastProbe = now
		r.probing = make(chan struct{})
	} else if probe {
		r.lastProbe = now
	}
	r.mu.Unlock()
	if avail == Down && !probe && inFlight != nil && !maint && !now.Before(throttled) {
		// Another caller is probing: wait for its answer instead of
		// taking the resource for down while it may be up again.
		select {
		case <-inFlight:
		case <-ctx.Done():
			return false, "resource down: " + ctx.Err().Error()
		}
		r.mu.Lock()
		avail, reason = r.avail, r.reason
		r.mu.Unlock()
		if avail == Up {
			return true, ""
		}
		return false, "resource " + avail.String() + ": " + reason
	}
	switch {
	case maint:
		return false, "resource in maintenance"
	case now.Before(throttled):
		return false, "resource throttled until " + throttled.Format(time.RFC3339)
	case avail == Up:
		return true, ""
	case !probe:
		return false, "resource " + avail.String() + ": " + reason
	}
	t, ok := r.conn.(connector.Tester)
	if !ok {
		// No probe: the operation itself is the probe.
		return true, ""
	}
	defer func() {
		r.mu.Lock()
		close(r.probing)
		r.probing = nil
		r.mu.Unlock()
	}()
	if err := t.Test(ctx); err != nil {
		e.log.Debug("probe failed", "resource", r.id, "error", err)
		return false, "resource " + avail.String() + ": probe failed: " + err.Error()
	}
	e.markUp(r, "probe succeeded")
	return true, ""
}

// park records op as waiting: grouped, behind others, or postponed.
func (e *Engine) park(r *resource, sh *shadow.Shadow, op *shadow.PendingOperation, adm admission, now time.Time) {
	op.Status = shadow.StatusPendingExecution
	if adm.mode == admitGroup {
		op.Type = shadow.OpGrouped
		return
	}
	op.NextAttemptAt = now
	if until := r.throttledUntil(); until.After(now) {
		op.NextAttemptAt = until
	}
	if adm.mode == admitPostpone {
		op.LastError = adm.reason
	}
}

// throttledUntil returns the time before which r must not be called.
func (r *resource) throttledUntil() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.throttled
}

// parked reports a postponed operation to the observer once the shadow is
// stored (so that the event names it).
func (e *Engine) parked(r *resource, sh *shadow.Shadow, op *shadow.PendingOperation, adm admission) {
	if adm.mode == admitPostpone {
		e.emit(e.obs.OperationPostponed, r, sh, op, nil)
	}
}

// executeOps runs the connector call for the operations ids of sh (one, or
// a merged group), records the outcome and saves the shadow. sh is locked.
func (e *Engine) executeOps(ctx context.Context, r *resource, sh *shadow.Shadow, ids []int64) (Outcome, error) {
	ops := make([]*shadow.PendingOperation, 0, len(ids))
	deltas := make([]connector.Delta, 0, len(ids))
	for _, id := range ids {
		op := sh.Operation(id)
		ops = append(ops, op)
		deltas = append(deltas, op.Delta)
	}
	d := deltas[0]
	if len(deltas) > 1 {
		merged, ok, err := connector.Merge(deltas)
		if err != nil {
			now := e.clock.Now()
			for _, op := range ops {
				fail(op, connector.CategorySchema, err, now)
			}
			sh.NextDue = e.nextDue(r, sh)
			if serr := e.save(ctx, sh); serr != nil {
				return Outcome{}, errors.Join(err, serr)
			}
			return Outcome{Status: Failed, Shadow: sh}, fmt.Errorf("consistency: shadow %s: %w", sh.ID, err)
		}
		if !ok {
			now := e.clock.Now()
			for _, op := range ops {
				complete(op, shadow.ResultSuccess, now)
			}
			if !sh.Exists {
				sh.Dead, sh.DeadSince = true, now
			}
			sh.NextDue = e.nextDue(r, sh)
			return Outcome{Status: Done, Shadow: sh, OperationID: ids[len(ids)-1]}, e.save(ctx, sh)
		}
		d = merged
	}
	unknownBefore := ops[0].LastErrorCategory == connector.CategoryOutcomeUnknown && ops[0].Attempt > 1
	st, opErr := e.attempt(ctx, r, sh, ops, d, unknownBefore)
	sh.NextDue = e.nextDue(r, sh)
	// Record the outcome even when ctx was cancelled mid-call: the call
	// may have happened, and losing that would be worse.
	if err := e.save(context.WithoutCancel(ctx), sh); err != nil {
		return Outcome{}, errors.Join(opErr, err)
	}
	out := Outcome{Status: st, Shadow: sh, OperationID: ids[len(ids)-1]}
	if opErr != nil {
		return out, opErr
	}
	if st == Done || st == InProgress {
		// It happened: an error now would make the caller try again (a
		// second add). A late cancellation changes nothing.
		return out, nil
	}
	return out, ctx.Err()
}

// attempt performs one attempt of ops (whose effect is d) on the resource
// and records the outcome in sh (not saved). Attempt counters and
// LastAttemptAt are already set by the caller. unknownBefore says that an
// earlier attempt's outcome is unknown: the resource is read first to learn
// whether it took effect.
func (e *Engine) attempt(ctx context.Context, r *resource, sh *shadow.Shadow, ops []*shadow.PendingOperation, d connector.Delta, unknownBefore bool) (Status, error) {
	if unknownBefore {
		took, obj, err := e.tookEffect(ctx, r, sh, d)
		if err == nil && took {
			if d.Type == connector.DeltaAdd {
				cause := fmt.Errorf("object %q found after an add of unknown outcome", obj.ID.Name)
				if st, err := e.takeOver(ctx, r, sh, ops, d, obj, cause); st != 0 {
					return st, err
				}
			}
			e.applyEffect(sh, d, connector.Result{ID: obj.ID}, obj.Attributes)
			e.succeed(r, sh, ops)
			return Done, nil
		}
		if err != nil && connector.Classify(err) != connector.CategoryNotFound {
			// Still unknown: the check failed.
			return e.failed(ctx, r, sh, ops, d, err, true)
		}
	}
	res, err := e.call(ctx, r, sh, d)
	if err != nil {
		return e.failed(ctx, r, sh, ops, d, err, unknownBefore)
	}
	if res.Async != "" {
		now := e.clock.Now()
		for _, op := range ops {
			op.Type, op.Status, op.AsyncRef = shadow.OpAsync, shadow.StatusExecuting, res.Async
			op.LastError, op.LastErrorCategory = "", 0
			op.NextAttemptAt = now.Add(r.settings.OperationRetryPeriod)
		}
		e.markUp(r, "operation accepted")
		return InProgress, nil
	}
	e.applyEffect(sh, d, res, nil)
	e.succeed(r, sh, ops)
	return Done, nil
}

func (e *Engine) succeed(r *resource, sh *shadow.Shadow, ops []*shadow.PendingOperation) {
	now := e.clock.Now()
	for _, op := range ops {
		retried := op.Attempt > 1
		complete(op, shadow.ResultSuccess, now)
		op.LastError, op.LastErrorCategory = "", 0
		if retried {
			e.leaveQuarantine(r)
		}
		e.emit(e.obs.OperationCompleted, r, sh, op, nil)
	}
	e.markUp(r, "operation succeeded")
}

// call sends d to the resource.
func (e *Engine) call(ctx context.Context, r *resource, sh *shadow.Shadow, d connector.Delta) (connector.Result, error) {
	switch d.Type {
	case connector.DeltaAdd:
		return r.conn.Add(ctx, sh.Class, d.Attributes)
	case connector.DeltaModify:
		return r.conn.Modify(ctx, sh.Class, sh.Identifiers(), d.Changes)
	case connector.DeltaDelete:
		return r.conn.Delete(ctx, sh.Class, sh.Identifiers())
	default: // recreate
		if _, err := r.conn.Delete(ctx, sh.Class, sh.Identifiers()); err != nil && connector.Classify(err) != connector.CategoryNotFound {
			return connector.Result{}, err
		}
		return r.conn.Add(ctx, sh.Class, d.Attributes)
	}
}

// tookEffect reads the resource to learn whether an earlier attempt of d
// whose outcome is unknown took effect. obj is the object read (for an add:
// the object found by name).
func (e *Engine) tookEffect(ctx context.Context, r *resource, sh *shadow.Shadow, d connector.Delta) (bool, connector.Object, error) {
	switch d.Type {
	case connector.DeltaAdd:
		name := nameSent(sh, d)
		if name == "" {
			return false, connector.Object{}, nil
		}
		obj, err := r.conn.Get(ctx, sh.Class, connector.Identifiers{Name: name})
		if err != nil {
			return false, connector.Object{}, err
		}
		return true, obj, nil
	case connector.DeltaModify:
		obj, err := r.conn.Get(ctx, sh.Class, sh.Identifiers())
		if err != nil {
			return false, connector.Object{}, err
		}
		after := connector.ApplyChanges(obj.Attributes, d.Changes)
		return after.Equal(obj.Attributes), obj, nil
	case connector.DeltaDelete:
		_, err := r.conn.Get(ctx, sh.Class, sh.Identifiers())
		if connector.Classify(err) == connector.CategoryNotFound && err != nil {
			return true, connector.Object{}, nil
		}
		return false, connector.Object{}, err
	}
	return false, connector.Object{}, nil
}

// nameSent returns the Name the add d gives its object: sh.Name, unless a
// rename was merged into the add (grouping), so that the attribute that
// held sh.Name in the shadow's own add holds another single value in d.
func nameSent(sh *shadow.Shadow, d connector.Delta) string {
	add := pendingAdd(sh)
	if add == nil || sh.Name == "" {
		return sh.Name
	}
	name := ""
	for attr, vs := range add.Delta.Attributes {
		if len(vs) != 1 || vs[0] != sh.Name {
			continue
		}
		nv := d.Attributes[attr]
		if len(nv) != 1 || nv[0] == "" || (name != "" && nv[0] != name) {
			return sh.Name // ambiguous: keep the host's Name
		}
		name = nv[0]
	}
	if name == "" {
		return sh.Name
	}
	return name
}

// applyEffect records in sh what a successful d did. attrs, when not nil,
// is the object as read from the resource.
func (e *Engine) applyEffect(sh *shadow.Shadow, d connector.Delta, res connector.Result, attrs connector.Attributes) {
	now := e.clock.Now()
	switch d.Type {
	case connector.DeltaAdd, connector.DeltaRecreate:
		sh.Exists, sh.Dead, sh.DeadSince = true, false, time.Time{}
		if attrs == nil {
			attrs = d.Attributes.Clone()
		}
		sh.Attributes = attrs
	case connector.DeltaModify:
		if attrs == nil {
			attrs = connector.ApplyChanges(sh.Attributes, d.Changes)
		}
		sh.Attributes = attrs
	case connector.DeltaDelete:
		sh.Dead, sh.DeadSince = true, now
	}
	if res.ID.UID != "" {
		sh.UID = res.ID.UID
	}
	if res.ID.Name != "" {
		sh.Name = res.ID.Name
	}
}

// failed records a failed attempt of ops and decides what follows from the
// error's category. unknownBefore is true when an earlier attempt's outcome
// was unknown (so an already-exists now means the earlier add worked); a
// retryable failure then keeps the operation's category outcome unknown, so
// that the next attempt checks again and a delete does not cancel an add
// that may have been made.
func (e *Engine) failed(ctx context.Context, r *resource, sh *shadow.Shadow, ops []*shadow.PendingOperation, d connector.Delta, err error, unknownBefore bool) (Status, error) {
	now := e.clock.Now()
	cat := connector.Classify(err)
	if ctx.Err() != nil && cat != connector.CategoryNotSent {
		// Cancelled mid-call: the request may have gone out.
		cat = connector.CategoryOutcomeUnknown
	}
	switch {
	case cat == connector.CategoryNotSent && ctx.Err() != nil:
		// The caller gave up before the request went out: nothing was
		// tried, so no attempt is counted; the operation waits for the
		// next refresh.
		for _, op := range ops {
			op.Attempt--
			op.Type, op.Status, op.NextAttemptAt = shadow.OpRetry, shadow.StatusPendingExecution, now
			setError(op, recorded(cat, unknownBefore), err)
			e.emit(e.obs.OperationPostponed, r, sh, op, err)
		}
		return Pending, nil
	case cat.Communication() || (cat == connector.CategoryGeneric && r.settings.RetryGeneric):
		if cat.Communication() && ctx.Err() == nil {
			// A caller that gave up says nothing about the resource.
			e.markDown(r, Down, err.Error())
		}
		return e.retryLater(r, sh, ops, err, recorded(cat, unknownBefore), now)
	case cat == connector.CategoryThrottled:
		until := connector.RetryAfter(err)
		if !until.After(now) {
			until = now.Add(r.settings.OperationRetryPeriod)
		}
		// The whole resource asked for quiet, not just this operation:
		// nothing is sent to it before until.
		r.mu.Lock()
		if until.After(r.throttled) {
			r.throttled = until
		}
		r.mu.Unlock()
		for _, op := range ops {
			op.Attempt-- // not a failed attempt
			op.Type, op.Status, op.NextAttemptAt = shadow.OpRetry, shadow.StatusPendingExecution, until
			setError(op, recorded(cat, unknownBefore), err)
			e.emit(e.obs.OperationPostponed, r, sh, op, err)
		}
		return Pending, nil
	case cat == connector.CategoryAlreadyExists && (d.Type == connector.DeltaAdd || d.Type == connector.DeltaRecreate):
		return e.discoverExisting(ctx, r, sh, ops, d, err, unknownBefore)
	case cat == connector.CategoryNotFound && d.Type == connector.DeltaDelete:
		e.applyEffect(sh, d, connector.Result{}, nil)
		e.succeed(r, sh, ops)
		return Done, nil
	case cat == connector.CategoryNotFound && d.Type == connector.DeltaModify:
		return e.discoverMissing(ctx, r, sh, ops, d, err, unknownBefore)
	}
	if cat == connector.CategoryConfiguration {
		e.markDown(r, Broken, err.Error())
	}
	for _, op := range ops {
		fail(op, cat, err, now)
		e.emit(e.obs.OperationFailed, r, sh, op, err)
	}
	e.afterFailure(sh, d, now)
	return Failed, fmt.Errorf("consistency: %s on resource %s (shadow %s): %w", d.Type, r.id, sh.ID, err)
}

// recorded is the category to record for a retryable failure of cat: an
// operation whose outcome was unknown stays unknown until a read settles it.
func recorded(cat connector.Category, unknownBefore bool) connector.Category {
	if unknownBefore {
		return connector.CategoryOutcomeUnknown
	}
	return cat
}

func setError(op *shadow.PendingOperation, cat connector.Category, err error) {
	op.LastError, op.LastErrorCategory = err.Error(), cat
}

func fail(op *shadow.PendingOperation, cat connector.Category, err error, now time.Time) {
	setError(op, cat, err)
	complete(op, shadow.ResultFailure, now)
}

// afterFailure marks what a final failure of d leaves behind: a shadow whose
// add failed is dead (its object never existed, and the operations queued
// behind the add cannot run); a failed modify or delete needs
// reconciliation.
func (e *Engine) afterFailure(sh *shadow.Shadow, d connector.Delta, now time.Time) {
	if (d.Type == connector.DeltaAdd || d.Type == connector.DeltaRecreate) && !sh.Exists {
		for i := range sh.Pending {
			if p := &sh.Pending[i]; !p.Completed() {
				fail(p, connector.CategoryGeneric, errors.New("the add this operation depended on failed"), now)
			}
		}
		sh.Dead, sh.DeadSince = true, now
		return
	}
	sh.NeedsReconciliation = true
}

// retryLater keeps ops as retry operations after a retryable failure, or
// gives them up when the attempts are spent.
func (e *Engine) retryLater(r *resource, sh *shadow.Shadow, ops []*shadow.PendingOperation, err error, cat connector.Category, now time.Time) (Status, error) {
	st := Pending
	for _, op := range ops {
		setError(op, cat, err)
		if op.Attempt > r.settings.OperationRetryMaxAttempts {
			complete(op, shadow.ResultFailure, now)
			e.log.Warn("operation abandoned", "resource", r.id, "shadow", sh.ID, "operation", op.ID,
				"attempts", op.Attempt, "error", err)
			e.emit(e.obs.OperationAbandoned, r, sh, op, err)
			st = Failed
			continue
		}
		op.Type, op.Status = shadow.OpRetry, shadow.StatusPendingExecution
		op.NextAttemptAt = now.Add(e.retryDelay(r, op.Attempt))
		e.emit(e.obs.OperationPostponed, r, sh, op, err)
	}
	if st == Failed {
		e.afterFailure(sh, ops[0].Delta, now)
		return Failed, fmt.Errorf("consistency: %s on resource %s (shadow %s) given up after %d attempts: %w",
			ops[0].Delta.Type, r.id, sh.ID, ops[0].Attempt, err)
	}
	return Pending, nil
}

func (e *Engine) retryDelay(r *resource, attempts int) time.Duration {
	r.mu.Lock()
	q := r.quarantined
	r.mu.Unlock()
	if q {
		return r.settings.Quarantine.interval()
	}
	return r.settings.backoff().Delay(attempts, e.random())
}

func (q *QuarantinePolicy) interval() time.Duration {
	if q == nil || q.Interval == 0 {
		return QuarantineIntervalDefault
	}
	return q.Interval
}

// discoverExisting handles an add that found its object already there.
func (e *Engine) discoverExisting(ctx context.Context, r *resource, sh *shadow.Shadow, ops []*shadow.PendingOperation, d connector.Delta, cause error, unknownBefore bool) (Status, error) {
	now := e.clock.Now()
	ids := connector.Identifiers{Name: sh.Name}
	var ce *connector.Error
	if errors.As(cause, &ce) && ce.Existing != nil {
		ids = *ce.Existing
	}
	obj, err := r.conn.Get(ctx, sh.Class, ids)
	if cat := connector.Classify(err); err != nil && (cat.Communication() || cat == connector.CategoryThrottled) {
		// Nothing is settled: try the add again later, like any
		// communication failure.
		return e.failed(ctx, r, sh, ops, d, err, unknownBefore)
	}
	if err != nil {
		for _, op := range ops {
			fail(op, connector.CategoryAlreadyExists, cause, now)
		}
		e.afterFailure(sh, d, now)
		return Failed, fmt.Errorf("consistency: add on resource %s (shadow %s): reading the existing object failed: %w",
			r.id, sh.ID, errors.Join(cause, err))
	}
	decision := DiscoveryFail
	if unknownBefore {
		decision = DiscoveryLink // our own earlier attempt made it
	} else if e.discovery != nil {
		decision, err = e.discovery(ctx, Discovered{ResourceID: r.id, Shadow: sh.Clone(), Object: obj.Clone()})
		if err != nil {
			decision = DiscoveryFail
			cause = errors.Join(cause, err)
		}
	}
	e.emit(e.obs.Discovered, r, sh, ops[0], cause)
	if decision == DiscoveryLink {
		if st, err := e.takeOver(ctx, r, sh, ops, d, obj, cause); st != 0 {
			return st, err
		}
		e.applyEffect(sh, d, connector.Result{ID: obj.ID}, obj.Attributes)
		// The found object is linked as it is: operations other than the
		// add (merged behind it by grouping, or a modify that re-created
		// its vanished object) were not applied to it, so they stay to
		// run on it next, as they would have without grouping.
		var done, rest []*shadow.PendingOperation
		for _, op := range ops {
			if unknownBefore || op.Delta.Type == connector.DeltaAdd || op.Delta.Type == connector.DeltaRecreate {
				done = append(done, op)
				continue
			}
			rest = append(rest, op)
			op.Attempt--
			op.Status, op.NextAttemptAt = shadow.StatusPendingExecution, now
			op.LastError, op.LastErrorCategory = "", 0
		}
		e.succeed(r, sh, done)
		if len(rest) > 0 {
			return Pending, nil
		}
		return Done, nil
	}
	for _, op := range ops {
		fail(op, connector.CategoryAlreadyExists, cause, now)
		e.emit(e.obs.OperationFailed, r, sh, op, cause)
	}
	e.afterFailure(sh, d, now)
	derr := &DiscoveryError{Existing: obj.ID, Err: cause}
	if other, _ := shadow.FindLive(ctx, e.store, r.id, sh.Class, obj.ID); other != nil {
		derr.ShadowID = other.ID
	} else {
		found := &shadow.Shadow{ResourceID: r.id, Class: sh.Class, UID: obj.ID.UID, Name: obj.ID.Name,
			Attributes: obj.Attributes, Exists: true, Origin: shadow.OriginDiscovered}
		if err := e.store.Create(ctx, found); err == nil {
			derr.ShadowID = found.ID
		} else {
			e.log.Warn("recording discovered object failed", "resource", r.id, "uid", obj.ID.UID, "error", err)
		}
	}
	return Failed, derr
}

// takeOver clears the way for sh to record obj, which its add turned out to
// be (linked, or found after an attempt of unknown outcome): another live
// shadow recording obj is deleted when it has no work pending. With work
// pending, ops fail with cause. It returns 0 when sh may go on.
func (e *Engine) takeOver(ctx context.Context, r *resource, sh *shadow.Shadow, ops []*shadow.PendingOperation, d connector.Delta, obj connector.Object, cause error) (Status, error) {
	other, _ := shadow.FindLive(ctx, e.store, r.id, sh.Class, obj.ID)
	if other == nil || other.ID == sh.ID {
		return 0, nil
	}
	if other.Unfinished() {
		now := e.clock.Now()
		for _, op := range ops {
			fail(op, connector.CategoryAlreadyExists, cause, now)
		}
		e.afterFailure(sh, d, now)
		return Failed, fmt.Errorf("consistency: cannot link shadow %s: shadow %s already records the object and has work pending: %w",
			sh.ID, other.ID, cause)
	}
	if err := e.store.Delete(ctx, other.ID, other.Version); err != nil {
		return Failed, fmt.Errorf("consistency: linking shadow %s: removing duplicate shadow %s: %w", sh.ID, other.ID, err)
	}
	return 0, nil
}

// discoverMissing handles a modify whose object vanished: re-create it when
// the shadow was assigned, mark the shadow dead when it was discovered.
//
// unknownBefore says that an earlier attempt's outcome is unknown: it may
// have been this re-create, so an object found under the name is ours.
func (e *Engine) discoverMissing(ctx context.Context, r *resource, sh *shadow.Shadow, ops []*shadow.PendingOperation, d connector.Delta, cause error, unknownBefore bool) (Status, error) {
	now := e.clock.Now()
	e.emit(e.obs.Discovered, r, sh, ops[0], cause)
	if sh.Origin != shadow.OriginAssigned {
		for _, op := range ops {
			fail(op, connector.CategoryNotFound, cause, now)
			e.emit(e.obs.OperationFailed, r, sh, op, cause)
		}
		markDead(sh, now, cause)
		e.log.Info("object vanished; shadow marked dead", "resource", r.id, "shadow", sh.ID)
		return Failed, fmt.Errorf("consistency: modify on resource %s: object of discovered shadow %s vanished: %w", r.id, sh.ID, cause)
	}
	attrs := connector.ApplyChanges(sh.Attributes, d.Changes)
	res, err := r.conn.Add(ctx, sh.Class, attrs)
	if err != nil {
		sh.Exists = false
		return e.failed(ctx, r, sh, ops, connector.Delta{Type: connector.DeltaAdd, Attributes: attrs}, err, unknownBefore)
	}
	e.log.Info("object vanished; re-created", "resource", r.id, "shadow", sh.ID)
	e.applyEffect(sh, connector.Delta{Type: connector.DeltaAdd, Attributes: attrs}, res, nil)
	e.succeed(r, sh, ops)
	return Done, nil
}

// save writes sh, merging with a newer stored version when someone else
// (live sync, an operator) moved it: the engine's operations and identity
// win, since they record calls already made.
func (e *Engine) save(ctx context.Context, sh *shadow.Shadow) error {
	for try := 0; ; try++ {
		err := e.store.Update(ctx, sh)
		if err == nil || !errors.Is(err, shadow.ErrConflict) || try == 3 {
			if err != nil {
				return fmt.Errorf("consistency: saving shadow %s: %w", sh.ID, err)
			}
			return nil
		}
		fresh, gerr := e.store.Get(ctx, sh.ID)
		if gerr != nil {
			return fmt.Errorf("consistency: saving shadow %s: %w", sh.ID, errors.Join(err, gerr))
		}
		sh.Version = fresh.Version
		if !sh.Exists && fresh.Exists && fresh.UID != "" {
			// Keep what the other writer learned about the object.
			sh.UID = fresh.UID
		}
		// Operations the other writer queued are kept: the engine never
		// drops an unfinished operation, so one missing here is new (a
		// modify queued while an Add was between creating its shadow and
		// locking it).
		queued := false
		for _, op := range fresh.Pending {
			if !op.Completed() && sh.Operation(op.ID) == nil {
				sh.Pending = append(sh.Pending, op)
				queued = true
			}
		}
		if r := e.resources[sh.ResourceID]; queued && r != nil {
			shadow.SortPending(sh.Pending)
			sh.NextDue = e.nextDue(r, sh)
		}
		// Fields the engine never writes are the other writer's.
		sh.Kind, sh.Intent = fresh.Kind, fresh.Intent
		if fresh.ReconciledAt.After(sh.ReconciledAt) {
			sh.ReconciledAt = fresh.ReconciledAt
		}
		sh.NeedsReconciliation = sh.NeedsReconciliation || fresh.NeedsReconciliation
	}
}

func (e *Engine) emit(f func(OperationEvent), r *resource, sh *shadow.Shadow, op *shadow.PendingOperation, err error) {
	if f == nil || op == nil {
		return
	}
	ev := OperationEvent{ResourceID: r.id, ShadowID: sh.ID, OperationID: op.ID, Delta: op.Delta.Type,
		Type: op.Type, Attempt: op.Attempt, Err: err}
	if err != nil {
		ev.Category = connector.Classify(err)
	}
	f(ev)
}

// nextDue computes when sh next needs a refresh: the earliest retry, async
// poll, retention clean-up or dead-shadow expiry. Only the first unfinished
// operation can be worked on (the others wait behind it), so only it
// counts. Grouped operations are not counted: propagation finds them by
// their age.
func (e *Engine) nextDue(r *resource, sh *shadow.Shadow) time.Time {
	var due time.Time
	consider := func(t time.Time) {
		if !t.IsZero() && (due.IsZero() || t.Before(due)) {
			due = t
		}
	}
	first := true
	for i := range sh.Pending {
		op := &sh.Pending[i]
		switch {
		case op.Completed():
			consider(op.CompletedAt.Add(r.settings.keep(op)))
			continue
		case !first:
		case op.Type == shadow.OpRetry:
			if op.NextAttemptAt.IsZero() {
				consider(op.RequestedAt)
			} else {
				consider(op.NextAttemptAt)
			}
		case op.Type == shadow.OpAsync:
			consider(op.NextAttemptAt)
		}
		first = false
	}
	if sh.Dead {
		consider(r.settings.deadUntil(sh))
	}
	return due
}

// deadUntil returns when dead shadow sh may be deleted: after
// DeadShadowRetentionPeriod, and never while an executed grouped or async
// operation still counts in the future view (grace period). The retention
// of other completed operations does not keep it.
func (s *Settings) deadUntil(sh *shadow.Shadow) time.Time {
	until := sh.DeadSince.Add(s.DeadShadowRetentionPeriod)
	for i := range sh.Pending {
		op := &sh.Pending[i]
		if op.Completed() && (op.Type == shadow.OpGrouped || op.Type == shadow.OpAsync) {
			if g := op.CompletedAt.Add(s.PendingOperationGracePeriod); g.After(until) {
				until = g
			}
		}
	}
	return until
}

// keep returns how long completed op stays in its shadow.
func (s *Settings) keep(op *shadow.PendingOperation) time.Duration {
	k := s.PendingOperationRetentionPeriod
	if (op.Type == shadow.OpGrouped || op.Type == shadow.OpAsync) && s.PendingOperationGracePeriod > k {
		k = s.PendingOperationGracePeriod
	}
	return k
}
