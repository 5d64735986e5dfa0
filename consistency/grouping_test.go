package consistency_test

import (
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/memconn"
	"github.com/umbra-idm/umbra/consistency"
	"github.com/umbra-idm/umbra/shadow"
)

func grouping(d time.Duration) *consistency.Settings {
	return settings(func(s *consistency.Settings) { s.OperationGroupingInterval = d })
}

// With grouping, operations are queued without a call, Get's future view
// shows them, and PropagateShadow executes them merged into one call once
// the oldest is old enough.
func TestGroupingQueuesAndPropagateMerges(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{settings: grouping(10 * time.Minute)})
	out := b.add(t, "alice", "mail", "m0")
	wantStatus(t, out, consistency.Queued)
	id := out.Shadow.ID
	b.clock.Advance(time.Minute)
	wantStatus(t, b.modify(t, id, replace("mail", "m1")), consistency.Queued)
	wantStatus(t, b.modify(t, id, []connector.AttributeDelta{{Op: connector.AddValues, Name: "phone", Values: []string{"1"}}}), consistency.Queued)
	if got := b.calls(); len(got) != 0 {
		t.Fatalf("grouping called the resource: %v", got)
	}
	sh := b.shadow(t, id)
	for _, op := range sh.Pending {
		if op.Type != shadow.OpGrouped || op.Attempt != 0 || op.Status != shadow.StatusPendingExecution {
			t.Errorf("operation %d = %+v, want grouped and waiting", op.ID, op)
		}
	}
	if sh.State() != shadow.StateProposed || !sh.NextDue.IsZero() {
		t.Errorf("state = %v, NextDue = %v", sh.State(), sh.NextDue)
	}

	cur, err := b.eng.Get(b.ctx, id, consistency.GetOptions{})
	wantNoErr(t, err)
	fut, err := b.eng.Get(b.ctx, id, consistency.GetOptions{Future: true})
	wantNoErr(t, err)
	if cur.Exists || len(cur.Attributes) != 0 {
		t.Errorf("current view = %+v, want nothing yet", cur)
	}
	if !fut.Exists || fut.Attributes.Get("mail") != "m1" || fut.Attributes.Get("phone") != "1" {
		t.Errorf("future view = %+v, want the queued add and modifies", fut)
	}
	if got := b.calls(); len(got) != 0 {
		t.Fatalf("get called the resource for a proposed shadow: %v", got)
	}

	b.clock.Advance(8 * time.Minute)
	res, err := b.eng.PropagateShadow(b.ctx, id, false)
	wantNoErr(t, err)
	if res.Called || res.Skipped == "" {
		t.Errorf("propagate before the interval = %+v, want skipped", res)
	}
	b.clock.Advance(time.Minute)
	res, err = b.eng.PropagateShadow(b.ctx, id, false)
	wantNoErr(t, err)
	if !res.Called || res.Operations != 3 || res.Status != consistency.Done || res.ResourceID != resID {
		t.Errorf("propagate = %+v, want three operations in one call", res)
	}
	if got := b.calls(); len(got) != 1 || got[memconn.CallAdd] != 1 {
		t.Errorf("calls = %v, want one add", got)
	}
	obj := b.wantObject(t, "alice", "mail", "m1")
	if obj.Attributes.Get("phone") != "1" {
		t.Errorf("object = %v", obj.Attributes)
	}
	sh = b.shadow(t, id)
	if !sh.Live() || sh.UID != obj.ID.UID || sh.Unfinished() {
		t.Errorf("shadow = %+v", sh)
	}

	// Modifies of a live shadow merge into one modify.
	for i := range 4 {
		wantStatus(t, b.modify(t, id, []connector.AttributeDelta{{Op: connector.AddValues, Name: "tag", Values: []string{string(rune('a' + i))}}}), consistency.Queued)
	}
	res, err = b.eng.PropagateShadow(b.ctx, id, true)
	wantNoErr(t, err)
	if res.Operations != 4 || !res.Called {
		t.Errorf("forced propagate = %+v", res)
	}
	b.wantCalls(t, memconn.CallModify, 1)
	if got := b.wantObject(t, "alice", "", "").Attributes["tag"]; len(got) != 4 {
		t.Errorf("tags = %v", got)
	}
	if res, _ := b.eng.PropagateShadow(b.ctx, id, true); res.Skipped == "" || res.Called {
		t.Errorf("propagate with nothing grouped = %+v", res)
	}
}

func TestGroupedModifyThenDeleteIsOneDelete(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{settings: grouping(time.Minute)})
	sh := b.add(t, "alice").Shadow
	b.clock.Advance(time.Minute)
	if _, err := b.eng.PropagateShadow(b.ctx, sh.ID, false); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, b.modify(t, sh.ID, replace("mail", "x")), consistency.Queued)
	wantStatus(t, b.del(t, sh.ID), consistency.Queued)
	b.clock.Advance(time.Minute)
	res, err := b.eng.PropagateShadow(b.ctx, sh.ID, false)
	wantNoErr(t, err)
	if res.Operations != 2 || res.Status != consistency.Done {
		t.Errorf("propagate = %+v", res)
	}
	b.wantCalls(t, memconn.CallModify, 0)
	b.wantCalls(t, memconn.CallDelete, 1)
	if !b.shadow(t, sh.ID).Dead {
		t.Error("shadow not dead")
	}
}

func TestGroupedMergeToNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{settings: grouping(time.Minute)})
	sh := b.add(t, "alice").Shadow
	_, err := b.eng.PropagateShadow(b.ctx, sh.ID, true)
	wantNoErr(t, err)
	b.conn.ResetCalls()
	// Modifies that change nothing merge into nothing.
	b.modify(t, sh.ID, nil)
	b.modify(t, sh.ID, []connector.AttributeDelta{})
	res, err := b.eng.PropagateShadow(b.ctx, sh.ID, true)
	wantNoErr(t, err)
	if res.Called || res.Status != consistency.Done || res.Operations != 2 {
		t.Errorf("propagate of cancelling modifies = %+v", res)
	}
	if len(b.calls()) != 0 {
		t.Errorf("calls = %v", b.calls())
	}
}

// A grouped run that fails on communication becomes retry operations that
// refresh carries out; a down resource is not called by propagation.
func TestGroupedFailureBecomesRetry(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{settings: grouping(time.Minute)})
	out := b.add(t, "alice")
	b.modify(t, out.Shadow.ID, replace("mail", "x"))
	b.conn.Down()
	b.clock.Advance(time.Minute)
	res, err := b.eng.PropagateShadow(b.ctx, out.Shadow.ID, false)
	wantNoErr(t, err)
	if res.Status != consistency.Pending {
		t.Errorf("propagate to a down resource = %+v", res)
	}
	for _, op := range b.shadow(t, out.Shadow.ID).Pending {
		if op.Type != shadow.OpRetry || op.Attempt != 1 || op.Completed() {
			t.Errorf("operation %d = %+v, want retry after one attempt", op.ID, op)
		}
	}
	// Grouped work behind the retries waits for them.
	b.modify(t, out.Shadow.ID, replace("mail", "y"))
	if res, _ := b.eng.PropagateShadow(b.ctx, out.Shadow.ID, true); res.Called || res.Skipped == "" {
		t.Errorf("propagate behind retries = %+v", res)
	}
	b.conn.Up()
	b.clock.Advance(30 * time.Minute)
	if res := b.refresh(t, out.Shadow.ID); res.Completed != 2 || res.StillPending != 1 {
		t.Errorf("refresh = %+v, want the two retries done and the grouped one left", res)
	}
	b.wantObject(t, "alice", "mail", "x")
	if res, err := b.eng.PropagateShadow(b.ctx, out.Shadow.ID, false); err != nil || res.Status != consistency.Done {
		t.Errorf("propagate = %+v, %v", res, err)
	}
	b.wantObject(t, "alice", "mail", "y")

	// Resource marked down: propagation does not call it.
	b.conn.Down()
	b.modify(t, out.Shadow.ID, replace("mail", "z"))
	if res, _ := b.eng.PropagateShadow(b.ctx, out.Shadow.ID, true); res.Status != consistency.Pending {
		t.Errorf("propagate to a down resource = %+v", res)
	}
	b.conn.ResetCalls()
	bob := b.add(t, "bob")
	res, err = b.eng.PropagateShadow(b.ctx, bob.Shadow.ID, true)
	wantNoErr(t, err)
	if res.Called || res.Skipped == "" {
		t.Errorf("propagate to a resource marked down = %+v", res)
	}
	if len(b.calls()) != 0 {
		t.Errorf("calls = %v", b.calls())
	}
}

// Executed grouped operations stay for the grace period, even when the
// retention period is shorter.
func TestGracePeriodKeepsExecutedGroupedOperations(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{settings: settings(func(s *consistency.Settings) {
		s.OperationGroupingInterval = time.Minute
		s.PendingOperationRetentionPeriod = time.Minute
		s.PendingOperationGracePeriod = time.Hour
	})})
	out := b.add(t, "alice")
	_, err := b.eng.PropagateShadow(b.ctx, out.Shadow.ID, true)
	wantNoErr(t, err)
	if due := b.shadow(t, out.Shadow.ID).NextDue; !due.Equal(t0.Add(time.Hour)) {
		t.Errorf("NextDue = %v, want the end of the grace period", due)
	}
	b.clock.Advance(59 * time.Minute)
	if res := b.refresh(t, out.Shadow.ID); res.Dropped != 0 {
		t.Errorf("dropped within the grace period: %+v", res)
	}
	b.clock.Advance(time.Minute)
	if res := b.refresh(t, out.Shadow.ID); res.Dropped != 1 {
		t.Errorf("refresh after the grace period = %+v", res)
	}
}

func TestCurrentAndFutureView(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	sh := b.live(t, "alice", "mail", "old")
	b.conn.Down()
	b.modify(t, sh.ID, replace("mail", "new"))
	b.conn.ResetCalls()
	cur, err := b.eng.Get(b.ctx, sh.ID, consistency.GetOptions{})
	wantNoErr(t, err)
	fut, err := b.eng.Get(b.ctx, sh.ID, consistency.GetOptions{Future: true})
	wantNoErr(t, err)
	if !cur.Exists || cur.Attributes.Get("mail") != "old" || cur.Fetched {
		t.Errorf("current view = %+v", cur)
	}
	if !fut.Exists || fut.Attributes.Get("mail") != "new" {
		t.Errorf("future view = %+v", fut)
	}
	if len(b.calls()) != 0 {
		t.Errorf("get called a down resource: %v", b.calls())
	}
	b.del(t, sh.ID)
	if fut, _ := b.eng.Get(b.ctx, sh.ID, consistency.GetOptions{Future: true}); fut.Exists || fut.Attributes != nil {
		t.Errorf("future view with a pending delete = %+v", fut)
	}
}

// Get reads the resource when it is up, updating the cache with changes
// made behind the engine's back; CacheOnly does not.
func TestGetReadsResourceAndUpdatesCache(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	sh := b.live(t, "alice", "mail", "old")
	_, err := b.conn.ModifyDirect(account, sh.UID, replace("mail", "theirs")...)
	wantNoErr(t, err)
	v, err := b.eng.Get(b.ctx, sh.ID, consistency.GetOptions{CacheOnly: true})
	wantNoErr(t, err)
	if v.Fetched || v.Attributes.Get("mail") != "old" {
		t.Errorf("cache-only view = %+v", v)
	}
	b.wantCalls(t, memconn.CallGet, 0)
	v, err = b.eng.Get(b.ctx, sh.ID, consistency.GetOptions{})
	wantNoErr(t, err)
	if !v.Fetched || v.Attributes.Get("mail") != "theirs" || b.shadow(t, sh.ID).Attributes.Get("mail") != "theirs" {
		t.Errorf("view = %+v", v)
	}
	// Renamed behind the engine's back.
	_, err = b.conn.ModifyDirect(account, sh.UID, replace("uid", "alicia")...)
	wantNoErr(t, err)
	_, err = b.eng.Get(b.ctx, sh.ID, consistency.GetOptions{})
	wantNoErr(t, err)
	if got := b.shadow(t, sh.ID); got.Name != "alicia" {
		t.Errorf("name = %q, want the new name", got.Name)
	}
	// A communication failure during get marks the resource down and
	// returns the cache.
	b.conn.FailNext(1, connector.CategoryOutcomeUnknown)
	v, err = b.eng.Get(b.ctx, sh.ID, consistency.GetOptions{})
	wantNoErr(t, err)
	if v.Fetched || !v.Exists || b.availability(t) != consistency.Down {
		t.Errorf("view = %+v, availability %v", v, b.availability(t))
	}
	// Another failure is an error.
	wantNoErr(t, b.eng.MarkUp(resID))
	b.conn.FailNext(1, connector.CategoryPermission)
	if _, err := b.eng.Get(b.ctx, sh.ID, consistency.GetOptions{}); connector.Classify(err) != connector.CategoryPermission {
		t.Errorf("get error = %v", err)
	}
}

// Get completes due pending operations first when the resource is up, and
// always with RefreshOnRead or Refresh.
func TestGetCompletesPendingOperations(t *testing.T) {
	t.Parallel()
	t.Run("due retry", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		b.conn.Down()
		out := b.add(t, "alice")
		b.conn.Up()
		wantNoErr(t, b.eng.MarkUp(resID))
		v, err := b.eng.Get(b.ctx, out.Shadow.ID, consistency.GetOptions{})
		wantNoErr(t, err)
		if v.Exists {
			t.Errorf("get completed a retry before its time: %+v", v)
		}
		b.clock.Advance(30 * time.Minute)
		v, err = b.eng.Get(b.ctx, out.Shadow.ID, consistency.GetOptions{})
		wantNoErr(t, err)
		if !v.Exists || !v.Shadow.Live() {
			t.Errorf("get after the retry period = %+v", v)
		}
	})
	t.Run("refresh on read", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{connOpts: memconn.Options{Async: true},
			settings: settings(func(s *consistency.Settings) { s.RefreshOnRead = true })})
		out := b.add(t, "alice")
		wantStatus(t, out, consistency.InProgress)
		b.conn.CompleteAllAsync()
		v, err := b.eng.Get(b.ctx, out.Shadow.ID, consistency.GetOptions{})
		wantNoErr(t, err)
		if !v.Exists || !v.Fetched {
			t.Errorf("get with RefreshOnRead = %+v", v)
		}
	})
	t.Run("refresh option", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{connOpts: memconn.Options{Async: true}})
		out := b.add(t, "alice")
		b.conn.CompleteAllAsync()
		v, _ := b.eng.Get(b.ctx, out.Shadow.ID, consistency.GetOptions{})
		if v.Exists {
			t.Errorf("get without refresh saw the async result: %+v", v)
		}
		v, err := b.eng.Get(b.ctx, out.Shadow.ID, consistency.GetOptions{Refresh: true})
		wantNoErr(t, err)
		if !v.Exists {
			t.Errorf("get with Refresh = %+v", v)
		}
	})
}

func TestAsyncOperations(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{connOpts: memconn.Options{Async: true}})
	out := b.add(t, "alice", "mail", "m")
	wantStatus(t, out, consistency.InProgress)
	id := out.Shadow.ID
	op := b.op(t, id, 1)
	if op.Type != shadow.OpAsync || op.AsyncRef == "" || op.Status != shadow.StatusExecuting || op.Completed() {
		t.Errorf("async operation = %+v", op)
	}
	if sh := b.shadow(t, id); sh.Exists || sh.State() != shadow.StateBeingCreated || !sh.NextDue.Equal(t0.Add(30*time.Minute)) {
		t.Errorf("shadow = %+v, state %v", sh, sh.State())
	}
	res := b.refresh(t, id)
	if res.AsyncChecked != 1 || res.Completed != 0 || res.StillPending != 1 {
		t.Errorf("refresh while in progress = %+v", res)
	}
	wantNoErr(t, b.conn.CompleteAsync(op.AsyncRef))
	res = b.refresh(t, id)
	if res.AsyncChecked != 1 || res.Completed != 1 {
		t.Errorf("refresh after completion = %+v", res)
	}
	obj := b.wantObject(t, "alice", "mail", "m")
	sh := b.shadow(t, id)
	if !sh.Live() || sh.UID != obj.ID.UID {
		t.Errorf("shadow = %+v", sh)
	}

	// Modify completes the same way.
	out = b.modify(t, id, replace("mail", "n"))
	wantStatus(t, out, consistency.InProgress)
	b.conn.CompleteAllAsync()
	b.refresh(t, id)
	if got := b.shadow(t, id); got.Attributes.Get("mail") != "n" || got.Unfinished() {
		t.Errorf("shadow after async modify = %+v", got)
	}

	// A rejected async add leaves the shadow dead.
	out = b.add(t, "bob")
	wantNoErr(t, b.conn.FailAsync(b.op(t, out.Shadow.ID, 1).AsyncRef, connector.NewError(connector.CategoryPolicy, "add", nil)))
	res = b.refresh(t, out.Shadow.ID)
	if res.Failed != 1 {
		t.Errorf("refresh after rejection = %+v", res)
	}
	if sh := b.shadow(t, out.Shadow.ID); !sh.Dead || sh.Operation(1).LastErrorCategory != connector.CategoryPolicy {
		t.Errorf("shadow after rejection = %+v", sh)
	}
	if f := b.events.of("failed"); len(f) != 1 {
		t.Errorf("failed events = %+v", f)
	}
	if c := b.events.of("completed"); len(c) != 2 {
		t.Errorf("completed events = %+v", c)
	}
}

func TestAsyncStatusErrors(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{connOpts: memconn.Options{Async: true}})
	out := b.add(t, "alice")
	id := out.Shadow.ID
	b.conn.FailNextOp(memconn.CallStatus, 1, errNotSent("status"))
	if _, err := b.eng.RefreshShadow(b.ctx, id); err == nil {
		t.Error("refresh with a failing status check returned no error")
	}
	if b.availability(t) != consistency.Down {
		t.Errorf("availability = %v", b.availability(t))
	}
	// An operation the resource no longer knows failed.
	wantNoErr(t, b.eng.MarkUp(resID))
	b.conn.FailNextOp(memconn.CallStatus, 1, connector.NewError(connector.CategoryNotFound, "status", nil))
	res := b.refresh(t, id)
	if res.Failed != 1 || !b.shadow(t, id).Dead {
		t.Errorf("refresh = %+v", res)
	}
}

// Maintenance postpones everything without a call and counts nothing.
func TestMaintenance(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{settings: settings(func(s *consistency.Settings) { s.Maintenance = true })})
	out := b.add(t, "alice")
	wantStatus(t, out, consistency.Pending)
	if st, _ := b.eng.Status(resID); st.Availability != consistency.Maintenance {
		t.Errorf("status = %+v", st)
	}
	b.clock.Advance(48 * time.Hour)
	res := b.refresh(t, out.Shadow.ID)
	if res.Skipped == "" || res.Retried != 0 {
		t.Errorf("refresh in maintenance = %+v", res)
	}
	if op := b.op(t, out.Shadow.ID, 1); op.Attempt != 0 || op.Completed() {
		t.Errorf("operation = %+v, want no attempt counted", op)
	}
	if len(b.calls()) != 0 {
		t.Errorf("calls in maintenance = %v", b.calls())
	}
	wantNoErr(t, b.eng.SetMaintenance(resID, false))
	if res := b.refresh(t, out.Shadow.ID); res.Completed != 1 {
		t.Errorf("refresh after maintenance = %+v", res)
	}

	// Switched on at run time.
	wantNoErr(t, b.eng.SetMaintenance(resID, true))
	b.conn.ResetCalls()
	wantStatus(t, b.modify(t, out.Shadow.ID, replace("mail", "x")), consistency.Pending)
	if v, _ := b.eng.Get(b.ctx, out.Shadow.ID, consistency.GetOptions{}); v.Fetched {
		t.Error("get read a resource in maintenance")
	}
	if len(b.calls()) != 0 {
		t.Errorf("calls in maintenance = %v", b.calls())
	}
	if k := b.events.kinds(); k[len(k)-1] != "postponed" {
		t.Errorf("events = %v", k)
	}
	if len(b.events.of("down")) != 0 || len(b.events.of("abandoned")) != 0 {
		t.Errorf("maintenance counted as a failure: %v", b.events.kinds())
	}
}

func TestMaintenanceDoesNotPollAsync(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{connOpts: memconn.Options{Async: true}})
	out := b.add(t, "alice")
	wantNoErr(t, b.eng.SetMaintenance(resID, true))
	b.conn.ResetCalls()
	b.clock.Advance(time.Hour)
	b.refresh(t, out.Shadow.ID)
	if len(b.calls()) != 0 {
		t.Errorf("calls in maintenance = %v", b.calls())
	}
}

// Grouped delete then add of the same object merge into a recreate: the
// object is deleted and made again in one propagation.
func TestGroupedDeleteThenAddRecreates(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{settings: grouping(time.Minute)})
	id, err := b.conn.Put(account, attrs("alice", "mail", "old"))
	wantNoErr(t, err)
	op := func(n int64, d connector.Delta) shadow.PendingOperation {
		return shadow.PendingOperation{ID: n, Type: shadow.OpGrouped, Status: shadow.StatusPendingExecution,
			Result: shadow.ResultInProgress, RequestedAt: t0, Delta: d}
	}
	sh := &shadow.Shadow{ResourceID: resID, Class: account, UID: id.UID, Name: id.Name, Exists: true, Origin: shadow.OriginAssigned,
		Attributes: attrs("alice", "mail", "old"),
		Pending: []shadow.PendingOperation{op(1, connector.Delta{Type: connector.DeltaDelete}),
			op(2, connector.Delta{Type: connector.DeltaAdd, Attributes: attrs("alice", "mail", "new")})}}
	wantNoErr(t, b.store.Create(b.ctx, sh))
	res, err := b.eng.PropagateShadow(b.ctx, sh.ID, true)
	wantNoErr(t, err)
	if res.Status != consistency.Done || res.Operations != 2 {
		t.Errorf("propagate = %+v", res)
	}
	obj := b.wantObject(t, "alice", "mail", "new")
	got := b.shadow(t, sh.ID)
	if !got.Live() || got.UID != obj.ID.UID || got.UID == id.UID || got.Attributes.Get("mail") != "new" {
		t.Errorf("shadow = %+v, want live on the new object %s", got, obj.ID.UID)
	}
	b.wantCalls(t, memconn.CallDelete, 1)
	b.wantCalls(t, memconn.CallAdd, 1)
}

// A delete of a shadow whose async add is under way cannot cancel it (the
// resource has it): it waits behind the add and then runs.
func TestDeleteWaitsBehindAsyncAdd(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{connOpts: memconn.Options{Async: true}})
	out := b.add(t, "alice")
	wantStatus(t, out, consistency.InProgress)
	del := b.del(t, out.Shadow.ID)
	wantStatus(t, del, consistency.Pending)
	again := b.del(t, out.Shadow.ID)
	if again.OperationID != del.OperationID || again.Status != consistency.Pending {
		t.Errorf("second delete = %+v, want the pending one", again)
	}
	b.conn.CompleteAllAsync()
	res := b.refresh(t, out.Shadow.ID)
	if res.Completed != 1 || res.StillPending != 1 {
		t.Errorf("refresh = %+v, want the add done and the delete sent", res)
	}
	if again := b.del(t, out.Shadow.ID); again.Status != consistency.InProgress {
		t.Errorf("delete while the async delete is under way = %v", again.Status)
	}
	b.conn.CompleteAllAsync()
	b.refresh(t, out.Shadow.ID)
	if !b.shadow(t, out.Shadow.ID).Dead || b.conn.Len(account) != 0 {
		t.Errorf("objects = %v, want none and the shadow dead", b.conn.Objects(account))
	}
}

func TestGroupedDeleteIsNotQueuedTwice(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{settings: grouping(time.Minute)})
	id := b.add(t, "alice").Shadow.ID
	_, err := b.eng.PropagateShadow(b.ctx, id, true)
	wantNoErr(t, err)
	first := b.del(t, id)
	second := b.del(t, id)
	wantStatus(t, second, consistency.Queued)
	if second.OperationID != first.OperationID {
		t.Errorf("second delete queued operation %d, want %d", second.OperationID, first.OperationID)
	}
}
