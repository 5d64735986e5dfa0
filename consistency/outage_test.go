package consistency_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/memconn"
	"github.com/umbra-idm/umbra/consistency"
	"github.com/umbra-idm/umbra/shadow"
)

func TestAddWhenUpIsDone(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	out := b.add(t, "alice", "mail", "a@x")
	wantStatus(t, out, consistency.Done)
	obj := b.wantObject(t, "alice", "mail", "a@x")
	sh := b.shadow(t, out.Shadow.ID)
	if !sh.Exists || sh.UID != obj.ID.UID || sh.Name != "alice" || sh.Origin != shadow.OriginAssigned {
		t.Errorf("shadow = %+v, want existing, UID %q, assigned", sh, obj.ID.UID)
	}
	if sh.State() != shadow.StateLive || sh.Unfinished() {
		t.Errorf("state = %v, unfinished = %v", sh.State(), sh.Unfinished())
	}
	op := sh.Operation(out.OperationID)
	if op == nil || op.Result != shadow.ResultSuccess || op.Attempt != 1 || op.LastError != "" {
		t.Errorf("operation = %+v, want one successful attempt without error", op)
	}
	b.wantCalls(t, memconn.CallAdd, 1)
	wantKinds(t, b.events, "completed")
}

// Add, modify and delete while the resource is down: postponed, nothing
// lost, carried out by refresh once the resource is up and the retry period
// has passed — not a moment before.
func TestOutagePostponesAndRefreshCompletes(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"add", "modify", "delete"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			b := setup(t, setupOpts{})
			var id string
			if kind != "add" {
				id = b.live(t, "alice", "mail", "old").ID
			}
			b.conn.ResetCalls()
			b.events.reset()
			b.conn.Down()
			var out consistency.Outcome
			switch kind {
			case "add":
				out = b.add(t, "alice", "mail", "new")
				id = out.Shadow.ID
			case "modify":
				out = b.modify(t, id, replace("mail", "new"))
			case "delete":
				out = b.del(t, id)
			}
			wantStatus(t, out, consistency.Pending)
			if len(b.calls()) != 1 {
				t.Errorf("calls while down = %v, want the one failed %s", b.calls(), kind)
			}
			op := b.op(t, id, out.OperationID)
			if op.Type != shadow.OpRetry || op.Status != shadow.StatusPendingExecution || op.Attempt != 1 ||
				op.LastErrorCategory != connector.CategoryNotSent || op.LastError == "" ||
				!op.LastAttemptAt.Equal(t0) || !op.NextAttemptAt.Equal(t0.Add(30*time.Minute)) {
				t.Errorf("pending operation = %+v", op)
			}
			if sh := b.shadow(t, id); !sh.NextDue.Equal(t0.Add(30 * time.Minute)) {
				t.Errorf("NextDue = %v, want %v", sh.NextDue, t0.Add(30*time.Minute))
			}
			st, _ := b.eng.Status(resID)
			if st.Availability != consistency.Down || !st.Since.Equal(t0) || st.Reason == "" {
				t.Errorf("status = %+v, want down since t0 with a reason", st)
			}

			b.conn.Up()
			b.clock.Advance(30*time.Minute - time.Second)
			before := b.calls()
			if res := b.refresh(t, id); res.Retried != 0 || res.Completed != 0 || res.StillPending != 1 {
				t.Errorf("refresh before the retry period = %+v, want nothing done", res)
			}
			if got := b.calls(); len(got) != len(before) {
				t.Errorf("refresh before the retry period called the resource: %v", got)
			}

			b.clock.Advance(time.Second)
			res := b.refresh(t, id)
			if res.Retried != 1 || res.Completed != 1 || res.StillPending != 0 {
				t.Errorf("refresh after the retry period = %+v, want one retry completed", res)
			}
			op = b.op(t, id, out.OperationID)
			if op.Result != shadow.ResultSuccess || op.Attempt != 2 || op.LastError != "" {
				t.Errorf("operation after refresh = %+v", op)
			}
			sh := b.shadow(t, id)
			switch kind {
			case "add", "modify":
				obj := b.wantObject(t, "alice", "mail", "new")
				if !sh.Live() || sh.UID != obj.ID.UID || sh.Attributes.Get("mail") != "new" {
					t.Errorf("shadow = %+v, want live with UID %s and mail new", sh, obj.ID.UID)
				}
			case "delete":
				if b.conn.Len(account) != 0 || !sh.Dead || !sh.DeadSince.Equal(b.clock.Now()) {
					t.Errorf("after delete: %d objects, shadow dead=%v since %v", b.conn.Len(account), sh.Dead, sh.DeadSince)
				}
			}
			if a := b.availability(t); a != consistency.Up {
				t.Errorf("availability = %v, want up", a)
			}
			wantKinds(t, b.events, "down", "postponed", "up", "retried", "completed")
			if ev := b.events.of("postponed")[0].Op; ev.ShadowID != id || ev.Category != connector.CategoryNotSent || ev.Attempt != 1 {
				t.Errorf("postponed event = %+v", ev)
			}
		})
	}
}

// While the resource is marked down, new operations are postponed without a
// call; a probe at most once per ProbeInterval decides when it is up.
func TestDownResourceIsNotCalledUntilProbeSucceeds(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	alice := b.live(t, "alice")
	b.conn.ResetCalls()
	b.conn.Down()
	wantStatus(t, b.add(t, "bob"), consistency.Pending) // the failed call marks the resource down
	b.conn.ResetCalls()

	// Within the probe interval: nothing is called at all.
	b.clock.Advance(30 * time.Second)
	carol := b.add(t, "carol")
	wantStatus(t, carol, consistency.Pending)
	wantStatus(t, b.modify(t, alice.ID, replace("mail", "x")), consistency.Pending)
	if got := b.calls(); len(got) != 0 {
		t.Fatalf("calls to a resource marked down = %v, want none", got)
	}
	if op := b.op(t, carol.Shadow.ID, 1); op.Attempt != 0 || op.LastError == "" || op.Status != shadow.StatusPendingExecution {
		t.Errorf("postponed add = %+v, want no attempt and a reason", op)
	}
	if p := b.events.of("postponed"); len(p) != 3 || p[1].Op.ShadowID != carol.Shadow.ID || p[2].Op.ShadowID != alice.ID {
		t.Errorf("postponed events = %+v, want bob's, carol's and alice's", p)
	}

	// After the probe interval: one probe, which fails; the next is not
	// before another interval.
	b.clock.Advance(30 * time.Second)
	wantStatus(t, b.add(t, "dave"), consistency.Pending)
	b.wantCalls(t, memconn.CallTest, 1)
	b.clock.Advance(59 * time.Second)
	wantStatus(t, b.add(t, "erin"), consistency.Pending)
	b.wantCalls(t, memconn.CallTest, 1)
	b.wantCalls(t, memconn.CallAdd, 0)

	// The resource comes back; the next probe finds it and the operation
	// runs at once.
	b.conn.Up()
	b.clock.Advance(time.Second)
	wantStatus(t, b.add(t, "frank"), consistency.Done)
	b.wantCalls(t, memconn.CallTest, 2)
	b.wantCalls(t, memconn.CallAdd, 1)
	if a := b.availability(t); a != consistency.Up {
		t.Errorf("availability = %v, want up", a)
	}
	if ups := b.events.of("up"); len(ups) != 1 || ups[0].Res.Reason != "probe succeeded" {
		t.Errorf("up events = %+v", ups)
	}

	// The postponed operations were never attempted, so they are due at
	// once: refresh carries them out without waiting a retry period.
	res := b.refresh(t, carol.Shadow.ID)
	if res.Completed != 1 || res.Retried != 0 {
		t.Errorf("refresh of a postponed add = %+v, want completed on its first attempt", res)
	}
	b.wantObject(t, "carol", "", "")
}

func TestProbeIntervalLimitsProbesOnRefresh(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{settings: settings(func(s *consistency.Settings) { s.ProbeInterval = 10 * time.Minute })})
	b.conn.Down()
	out := b.add(t, "alice")
	b.clock.Advance(30 * time.Minute)
	res := b.refresh(t, out.Shadow.ID)
	if res.Skipped == "" || res.Retried != 0 {
		t.Errorf("refresh while down = %+v, want skipped", res)
	}
	b.wantCalls(t, memconn.CallTest, 1)
	b.conn.Up()
	b.clock.Advance(9 * time.Minute)
	if res := b.refresh(t, out.Shadow.ID); res.Skipped == "" {
		t.Errorf("refresh within the probe interval = %+v, want skipped", res)
	}
	b.wantCalls(t, memconn.CallTest, 1)
	b.wantCalls(t, memconn.CallAdd, 1)
	b.clock.Advance(time.Minute)
	if res := b.refresh(t, out.Shadow.ID); res.Completed != 1 {
		t.Errorf("refresh after the probe interval = %+v, want completed", res)
	}
	b.wantCalls(t, memconn.CallTest, 2)
}

// A connector without Tester is probed by the operation itself.
func TestDownResourceWithoutTesterIsProbedByTheOperation(t *testing.T) {
	t.Parallel()
	inner := memconn.New(memconn.Options{})
	b := setup(t, setupOpts{conn: struct{ connector.Connector }{inner}})
	inner.Down()
	out, err := b.eng.Add(b.ctx, consistency.AddRequest{ResourceID: resID, Class: account, Name: "a", Attributes: attrs("a")})
	wantNoErr(t, err)
	wantStatus(t, out, consistency.Pending)
	inner.Up()
	b.clock.Advance(time.Minute)
	out, err = b.eng.Add(b.ctx, consistency.AddRequest{ResourceID: resID, Class: account, Name: "b", Attributes: attrs("b")})
	wantNoErr(t, err)
	wantStatus(t, out, consistency.Done)
	if inner.Calls(memconn.CallAdd) != 2 || inner.Calls(memconn.CallTest) != 0 {
		t.Errorf("calls = %v", inner.CallCounts())
	}
}

// Operations on one shadow keep their order: a new operation waits behind
// the unfinished ones, even when the resource is up.
func TestQueuedOperationsKeepOrder(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	sh := b.live(t, "alice", "mail", "v0")
	b.conn.FailNextOp(memconn.CallModify, 1, errNotSent("modify"))
	wantStatus(t, b.modify(t, sh.ID, replace("mail", "v1")), consistency.Pending)
	// The resource answers again at once, but the shadow has unfinished
	// work: the next operations queue behind it and call nothing.
	b.clock.Advance(2 * time.Minute)
	wantStatus(t, b.modify(t, sh.ID, replace("mail", "v2")), consistency.Pending)
	wantStatus(t, b.modify(t, sh.ID, []connector.AttributeDelta{{Op: connector.AddValues, Name: "mail", Values: []string{"v3"}}}), consistency.Pending)
	b.wantCalls(t, memconn.CallModify, 1)
	b.wantObject(t, "alice", "mail", "v0")

	// The queued operations are not due before the first one is: the
	// shadow's NextDue is the first operation's retry time.
	if got := b.shadow(t, sh.ID).NextDue; !got.Equal(t0.Add(30 * time.Minute)) {
		t.Errorf("NextDue = %v, want the blocking retry at %v", got, t0.Add(30*time.Minute))
	}
	if res := b.refresh(t, sh.ID); res.Completed != 0 || res.StillPending != 3 {
		t.Errorf("refresh before the retry time = %+v", res)
	}
	b.wantCalls(t, memconn.CallModify, 1)

	b.clock.Advance(28 * time.Minute)
	res := b.refresh(t, sh.ID)
	if res.Completed != 3 || res.StillPending != 0 {
		t.Errorf("refresh = %+v, want all three completed", res)
	}
	b.wantCalls(t, memconn.CallModify, 4)
	obj := b.wantObject(t, "alice", "", "")
	if got := obj.Attributes["mail"]; len(got) != 2 || got[0] != "v2" || got[1] != "v3" {
		t.Errorf("mail = %q, want [v2 v3] (v1, then v2, then add v3)", got)
	}
	var order []int64
	for _, e := range b.events.of("completed") {
		if e.Op.ShadowID == sh.ID && e.Op.Delta == connector.DeltaModify {
			order = append(order, e.Op.OperationID)
		}
	}
	if len(order) != 3 || order[0] > order[1] || order[1] > order[2] {
		t.Errorf("completion order = %v, want increasing", order)
	}
}

// Delete of a shadow whose add never reached the resource cancels the add,
// calls nothing and leaves the shadow dead.
func TestDeleteCancelsNeverCreatedAdd(t *testing.T) {
	t.Parallel()
	cases := map[string]*consistency.Settings{
		"postponed": nil,
		"grouped":   settings(func(s *consistency.Settings) { s.OperationGroupingInterval = time.Minute }),
	}
	for name, s := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, setupOpts{settings: s})
			b.conn.Down()
			out := b.add(t, "alice")
			id := out.Shadow.ID
			wantStatus(t, b.modify(t, id, replace("mail", "x")), map[bool]consistency.Status{true: consistency.Queued, false: consistency.Pending}[s != nil])
			b.conn.Up()
			before := b.conn.CallCounts()
			del := b.del(t, id)
			wantStatus(t, del, consistency.Done)
			for k, n := range b.conn.CallCounts() {
				if before[k] != n {
					t.Errorf("delete of a never-created add called %s", k)
				}
			}
			sh := b.shadow(t, id)
			if !sh.Dead || sh.Exists || sh.Unfinished() || sh.State() != shadow.StateDead {
				t.Errorf("shadow = %+v, want dead with nothing unfinished", sh)
			}
			for _, op := range sh.Pending[:2] {
				if op.Result != shadow.ResultFailure || op.CancelReason == "" {
					t.Errorf("operation %d = %+v, want cancelled", op.ID, op)
				}
			}
			if c := b.events.of("cancelled"); len(c) != 1 || c[0].Op.OperationID != 1 {
				t.Errorf("cancelled events = %+v", c)
			}
			// Later refreshes call nothing for it either.
			b.clock.Advance(time.Hour)
			b.refresh(t, id)
			if b.conn.Len(account) != 0 || b.conn.Calls(memconn.CallAdd) != before[memconn.CallAdd] {
				t.Errorf("the cancelled add reached the resource: %v", b.calls())
			}
			// Deleting again is done already; modifying is refused.
			wantStatus(t, b.del(t, id), consistency.Done)
			if _, err := b.eng.Modify(b.ctx, id, replace("mail", "y")); !errors.Is(err, consistency.ErrShadowGone) {
				t.Errorf("modify of a dead shadow: %v, want ErrShadowGone", err)
			}
		})
	}
}

// An add whose outcome is unknown may have reached the resource: a delete
// must not cancel it, but wait behind it.
func TestDeleteDoesNotCancelAddOfUnknownOutcome(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.conn.FailNextAfterApply(1)
	out := b.add(t, "alice")
	wantStatus(t, out, consistency.Pending)
	wantStatus(t, b.del(t, out.Shadow.ID), consistency.Pending)
	if b.conn.Len(account) != 1 {
		t.Fatal("the add did not reach the resource")
	}
	b.clock.Advance(30 * time.Minute)
	res := b.refresh(t, out.Shadow.ID)
	if res.Completed != 2 {
		t.Errorf("refresh = %+v, want the add linked and the delete done", res)
	}
	if b.conn.Len(account) != 0 || !b.shadow(t, out.Shadow.ID).Dead {
		t.Errorf("objects = %v, want none; shadow dead", b.conn.Objects(account))
	}
	b.wantCalls(t, memconn.CallAdd, 1)
}

// A modify or second delete behind a pending delete must not bring the
// object back or call twice.
func TestOperationsBehindPendingDelete(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	sh := b.live(t, "alice")
	b.conn.Down()
	del := b.del(t, sh.ID)
	wantStatus(t, del, consistency.Pending)
	if _, err := b.eng.Modify(b.ctx, sh.ID, replace("mail", "x")); !errors.Is(err, consistency.ErrShadowGone) {
		t.Errorf("modify behind a pending delete: %v, want ErrShadowGone", err)
	}
	again := b.del(t, sh.ID)
	wantStatus(t, again, consistency.Pending)
	if again.OperationID != del.OperationID {
		t.Errorf("second delete got operation %d, want the pending delete %d", again.OperationID, del.OperationID)
	}
	b.conn.Up()
	b.clock.Advance(30 * time.Minute)
	if res := b.refresh(t, sh.ID); res.Completed != 1 || res.StillPending != 0 {
		t.Errorf("refresh = %+v", res)
	}
	if b.conn.Len(account) != 0 || !b.shadow(t, sh.ID).Dead {
		t.Error("object not deleted")
	}
	b.wantCalls(t, memconn.CallAdd, 1)
	b.wantCalls(t, memconn.CallDelete, 2)
}

// Another writer (live sync, an operator) updates the shadow while the
// engine is calling the resource: the engine's record of the call still
// lands.
func TestSaveAfterConcurrentUpdate(t *testing.T) {
	t.Parallel()
	var b *bundle
	hook := &hookConn{Conn: memconn.New(memconn.Options{})}
	hook.modify = func(ctx context.Context, class connector.ObjectClass, id connector.Identifiers, changes []connector.AttributeDelta) (connector.Result, error) {
		list, err := b.store.List(ctx, shadow.Query{UID: id.UID})
		if err != nil || len(list) != 1 {
			t.Errorf("list: %v, %d", err, len(list))
		} else {
			list[0].Kind, list[0].NeedsReconciliation = "touched", true
			if err := b.store.Update(ctx, list[0]); err != nil {
				t.Errorf("concurrent update: %v", err)
			}
		}
		return hook.Conn.Modify(ctx, class, id, changes)
	}
	b = setup(t, setupOpts{conn: hook})
	sh := b.live(t, "alice")
	out, err := b.eng.Modify(b.ctx, sh.ID, replace("mail", "x"))
	wantNoErr(t, err)
	wantStatus(t, out, consistency.Done)
	got := b.shadow(t, sh.ID)
	if op := got.Operation(out.OperationID); op == nil || op.Result != shadow.ResultSuccess || got.Attributes.Get("mail") != "x" {
		t.Errorf("shadow after a concurrent update = %+v", got)
	}
	if got.Kind != "touched" || !got.NeedsReconciliation {
		t.Errorf("the other writer's fields were lost: kind %q, needs reconciliation %v", got.Kind, got.NeedsReconciliation)
	}
}

// Many callers on one shadow and refreshes at the same time: every
// operation lands once, in some order, and the race detector is quiet.
func TestConcurrentOperationsOnOneShadow(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	sh := b.live(t, "alice")
	const workers, each = 6, 10
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range each {
				tag := fmt.Sprintf("t%d-%d", w, i)
				if _, err := b.eng.Modify(b.ctx, sh.ID, []connector.AttributeDelta{{Op: connector.AddValues, Name: "tag", Values: []string{tag}}}); err != nil {
					t.Errorf("modify: %v", err)
				}
			}
		}()
		go func() {
			defer wg.Done()
			for range each {
				if _, err := b.eng.RefreshShadow(b.ctx, sh.ID); err != nil {
					t.Errorf("refresh: %v", err)
				}
				if _, err := b.eng.Get(b.ctx, sh.ID, consistency.GetOptions{}); err != nil {
					t.Errorf("get: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	if got := b.wantObject(t, "alice", "", "").Attributes["tag"]; len(got) != workers*each {
		t.Errorf("tags on the resource = %d, want %d", len(got), workers*each)
	}
	b.wantCalls(t, memconn.CallModify, workers*each)
	if got := b.shadow(t, sh.ID); len(got.Attributes["tag"]) != workers*each || got.Unfinished() {
		t.Errorf("shadow has %d tags, unfinished %v", len(got.Attributes["tag"]), got.Unfinished())
	}
}

// hookStore calls afterCreate once a shadow is created.
type hookStore struct {
	shadow.Store
	afterCreate func(id string)
}

func (s *hookStore) Create(ctx context.Context, sh *shadow.Shadow) error {
	if err := s.Store.Create(ctx, sh); err != nil {
		return err
	}
	if f := s.afterCreate; f != nil {
		f(sh.ID)
	}
	return nil
}

// A modify that arrives between Add creating its shadow and executing the
// add is queued behind it, and not lost when Add records its outcome.
func TestModifyDuringAddIsKept(t *testing.T) {
	t.Parallel()
	hs := &hookStore{}
	b := setup(t, setupOpts{wrapStore: func(s shadow.Store) shadow.Store { hs.Store = s; return hs }})
	var queued consistency.Outcome
	hs.afterCreate = func(id string) {
		hs.afterCreate = nil
		out, err := b.eng.Modify(b.ctx, id, replace("mail", "late"))
		if err != nil {
			t.Errorf("modify during add: %v", err)
		}
		queued = out
	}
	out := b.add(t, "alice")
	wantStatus(t, out, consistency.Done)
	wantStatus(t, queued, consistency.Pending)
	sh := b.shadow(t, out.Shadow.ID)
	if op := sh.Operation(queued.OperationID); op == nil || op.Completed() {
		t.Fatalf("the queued modify was lost: %+v", sh.Pending)
	}
	if !sh.NextDue.Equal(b.clock.Now()) {
		t.Errorf("NextDue = %v, want the queued modify due now", sh.NextDue)
	}
	if res := b.refresh(t, sh.ID); res.Completed != 1 {
		t.Errorf("refresh = %+v", res)
	}
	b.wantObject(t, "alice", "mail", "late")
}
