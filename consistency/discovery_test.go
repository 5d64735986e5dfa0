package consistency_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/memconn"
	"github.com/umbra-idm/umbra/consistency"
	"github.com/umbra-idm/umbra/shadow"
)

func TestAlreadyExistsDefaultFailsAndRecordsDiscoveredShadow(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	existing, err := b.conn.Put(account, attrs("alice", "mail", "theirs"))
	wantNoErr(t, err)
	out, err := b.eng.Add(b.ctx, consistency.AddRequest{ResourceID: resID, Class: account, Name: "alice", Attributes: attrs("alice", "mail", "ours")})
	var derr *consistency.DiscoveryError
	if !errors.As(err, &derr) {
		t.Fatalf("Add of an existing object: %v, want *DiscoveryError", err)
	}
	if !errors.Is(err, connector.ErrAlreadyExists) || derr.Error() == "" {
		t.Errorf("error %q does not match ErrAlreadyExists", err)
	}
	if derr.Existing != existing {
		t.Errorf("Existing = %+v, want %+v", derr.Existing, existing)
	}
	wantStatus(t, out, consistency.Failed)
	found := b.shadow(t, derr.ShadowID)
	if found.Origin != shadow.OriginDiscovered || !found.Live() || found.UID != existing.UID ||
		found.Attributes.Get("mail") != "theirs" || found.ID == out.Shadow.ID {
		t.Errorf("discovered shadow = %+v", found)
	}
	ours := b.shadow(t, out.Shadow.ID)
	op := ours.Operation(1)
	if !ours.Dead || ours.Exists || op.Result != shadow.ResultFailure || op.LastErrorCategory != connector.CategoryAlreadyExists {
		t.Errorf("our shadow = %+v, want dead with a failed add", ours)
	}
	b.wantObject(t, "alice", "mail", "theirs")
	if b.conn.Len(account) != 1 {
		t.Errorf("objects = %d, want 1", b.conn.Len(account))
	}
	wantKinds(t, b.events, "discovered", "failed")

	// A second collision with the same object names the shadow that
	// already records it instead of making another.
	_, err = b.eng.Add(b.ctx, consistency.AddRequest{ResourceID: resID, Class: account, Name: "alice", Attributes: attrs("alice")})
	var again *consistency.DiscoveryError
	if !errors.As(err, &again) || again.ShadowID != derr.ShadowID {
		t.Errorf("second collision: %v, want the same discovered shadow %s", err, derr.ShadowID)
	}
	if n, _ := b.store.Count(b.ctx, shadow.Query{ResourceID: resID, UID: existing.UID}); n != 1 {
		t.Errorf("shadows of the existing object = %d, want 1", n)
	}
}

func TestAlreadyExistsHookLinks(t *testing.T) {
	t.Parallel()
	var got []consistency.Discovered
	hook := func(_ context.Context, d consistency.Discovered) (consistency.DiscoveryDecision, error) {
		got = append(got, d)
		return consistency.DiscoveryLink, nil
	}
	b := setup(t, setupOpts{discovery: hook})
	existing, err := b.conn.Put(account, attrs("alice", "mail", "theirs"))
	wantNoErr(t, err)
	out := b.add(t, "alice", "mail", "ours")
	wantStatus(t, out, consistency.Done)
	sh := b.shadow(t, out.Shadow.ID)
	if !sh.Live() || sh.UID != existing.UID || sh.Origin != shadow.OriginAssigned || sh.Attributes.Get("mail") != "theirs" {
		t.Errorf("linked shadow = %+v", sh)
	}
	if len(got) != 1 || got[0].ResourceID != resID || got[0].Object.ID != existing || got[0].Shadow.ID != sh.ID {
		t.Errorf("hook saw %+v", got)
	}
	if b.conn.Len(account) != 1 {
		t.Errorf("objects = %d, want 1", b.conn.Len(account))
	}
	if n, _ := b.store.Count(b.ctx, shadow.Query{}); n != 1 {
		t.Errorf("shadows = %d, want 1", n)
	}
	wantKinds(t, b.events, "discovered", "completed")
}

// Linking to an object that a discovered shadow already records replaces
// that shadow, so the live identity stays unique.
func TestAlreadyExistsLinkReplacesIdleDiscoveredShadow(t *testing.T) {
	t.Parallel()
	link := false
	hook := func(context.Context, consistency.Discovered) (consistency.DiscoveryDecision, error) {
		if link {
			return consistency.DiscoveryLink, nil
		}
		return consistency.DiscoveryFail, errors.New("host says no")
	}
	b := setup(t, setupOpts{discovery: hook})
	_, err := b.conn.Put(account, attrs("alice"))
	wantNoErr(t, err)
	_, err = b.eng.Add(b.ctx, consistency.AddRequest{ResourceID: resID, Class: account, Name: "alice", Attributes: attrs("alice")})
	var derr *consistency.DiscoveryError
	if !errors.As(err, &derr) || derr.ShadowID == "" {
		t.Fatalf("first add: %v", err)
	}
	if !errors.Is(err, connector.ErrAlreadyExists) {
		t.Errorf("hook error lost the cause: %v", err)
	}
	link = true
	out := b.add(t, "alice")
	wantStatus(t, out, consistency.Done)
	if _, err := b.store.Get(b.ctx, derr.ShadowID); !errors.Is(err, shadow.ErrNotFound) {
		t.Errorf("discovered shadow still there: %v", err)
	}
	if n, _ := b.store.Count(b.ctx, shadow.Query{Dead: shadow.DeadExclude, UID: out.Shadow.UID}); n != 1 {
		t.Errorf("live shadows of the object = %d, want 1", n)
	}
}

// Not found on modify or get: an assigned shadow's object is re-created
// (cache plus pending changes), a discovered shadow is marked dead.
func TestNotFoundDiscovery(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		origin shadow.Origin
		onGet  bool
	}{
		{"modify/assigned", shadow.OriginAssigned, false},
		{"modify/discovered", shadow.OriginDiscovered, false},
		{"get/assigned", shadow.OriginAssigned, true},
		{"get/discovered", shadow.OriginDiscovered, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, setupOpts{})
			var id string
			if tc.origin == shadow.OriginAssigned {
				id = b.live(t, "alice", "mail", "m").ID
			} else {
				uid, err := b.conn.Put(account, attrs("alice", "mail", "m"))
				wantNoErr(t, err)
				sh := &shadow.Shadow{ResourceID: resID, Class: account, UID: uid.UID, Name: uid.Name, Exists: true,
					Origin: shadow.OriginDiscovered, Attributes: attrs("alice", "mail", "m")}
				wantNoErr(t, b.store.Create(b.ctx, sh))
				id = sh.ID
			}
			oldUID := b.shadow(t, id).UID
			wantNoErr(t, b.conn.Remove(account, oldUID))
			b.conn.ResetCalls()
			b.events.reset()

			var err error
			var view consistency.View
			var out consistency.Outcome
			if tc.onGet {
				view, err = b.eng.Get(b.ctx, id, consistency.GetOptions{})
			} else {
				out, err = b.eng.Modify(b.ctx, id, replace("phone", "1"))
			}
			sh := b.shadow(t, id)
			if tc.origin == shadow.OriginAssigned {
				wantNoErr(t, err)
				obj := b.wantObject(t, "alice", "mail", "m")
				if !sh.Live() || sh.UID != obj.ID.UID || sh.UID == oldUID {
					t.Errorf("shadow = %+v, want live with the new UID %s", sh, obj.ID.UID)
				}
				if tc.onGet {
					if !view.Exists || view.Attributes.Get("mail") != "m" {
						t.Errorf("view = %+v", view)
					}
				} else {
					wantStatus(t, out, consistency.Done)
					if obj.Attributes.Get("phone") != "1" {
						t.Errorf("re-created object lacks the pending change: %v", obj.Attributes)
					}
				}
				b.wantCalls(t, memconn.CallAdd, 1)
			} else {
				if !sh.Dead || sh.Unfinished() {
					t.Errorf("shadow = %+v, want dead with nothing unfinished", sh)
				}
				if tc.onGet {
					wantNoErr(t, err)
					if view.Exists {
						t.Errorf("view of a vanished discovered object exists: %+v", view)
					}
				} else if !errors.Is(err, connector.ErrNotFound) {
					t.Errorf("modify error = %v, want not found", err)
				}
				b.wantCalls(t, memconn.CallAdd, 0)
			}
			if d := b.events.of("discovered"); len(d) != 1 || d[0].Op.Category != connector.CategoryNotFound {
				t.Errorf("discovered events = %+v", d)
			}
		})
	}
}

// A discovered shadow marked dead by discovery drops the work queued behind
// the failed modify: nothing is sent for it later.
func TestNotFoundOnDiscoveredShadowFailsQueuedWork(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	uid, err := b.conn.Put(account, attrs("alice"))
	wantNoErr(t, err)
	sh := &shadow.Shadow{ResourceID: resID, Class: account, UID: uid.UID, Name: uid.Name, Exists: true, Origin: shadow.OriginDiscovered}
	wantNoErr(t, b.store.Create(b.ctx, sh))
	b.conn.FailNextOp(memconn.CallModify, 1, errNotSent("modify"))
	wantStatus(t, b.modify(t, sh.ID, replace("a", "1")), consistency.Pending)
	wantStatus(t, b.modify(t, sh.ID, replace("b", "1")), consistency.Pending)
	wantNoErr(t, b.conn.Remove(account, uid.UID))
	b.clock.Advance(30 * time.Minute)
	if _, err := b.eng.RefreshShadow(b.ctx, sh.ID); err != nil {
		t.Logf("refresh: %v", err)
	}
	got := b.shadow(t, sh.ID)
	if !got.Dead || got.Unfinished() {
		t.Errorf("shadow = %+v, want dead and nothing unfinished", got)
	}
	b.wantCalls(t, memconn.CallModify, 2)
	b.clock.Advance(24 * time.Hour)
	b.refresh(t, sh.ID)
	b.wantCalls(t, memconn.CallModify, 2)
	b.wantCalls(t, memconn.CallAdd, 0)
}

func TestDeleteOfMissingObjectIsSuccess(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	sh := b.live(t, "alice")
	wantNoErr(t, b.conn.Remove(account, sh.UID))
	out := b.del(t, sh.ID)
	wantStatus(t, out, consistency.Done)
	if got := b.shadow(t, sh.ID); !got.Dead || got.Operation(out.OperationID).Result != shadow.ResultSuccess {
		t.Errorf("shadow = %+v", got)
	}
}

// An assigned shadow whose object vanished and whose re-create is postponed
// still takes operations: they queue behind the re-create.
func TestRecreatePostponedKeepsShadowUsable(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	sh := b.live(t, "alice", "mail", "m")
	wantNoErr(t, b.conn.Remove(account, sh.UID))
	b.conn.FailNextOp(memconn.CallAdd, 1, errNotSent("add"))
	wantStatus(t, b.modify(t, sh.ID, replace("phone", "1")), consistency.Pending)
	wantStatus(t, b.modify(t, sh.ID, replace("title", "boss")), consistency.Pending)
	b.clock.Advance(30 * time.Minute)
	if res := b.refresh(t, sh.ID); res.Completed != 2 {
		t.Errorf("refresh = %+v", res)
	}
	obj := b.wantObject(t, "alice", "mail", "m")
	if obj.Attributes.Get("phone") != "1" || obj.Attributes.Get("title") != "boss" {
		t.Errorf("re-created object = %v", obj.Attributes)
	}
	if got := b.shadow(t, sh.ID); !got.Live() || got.UID != obj.ID.UID {
		t.Errorf("shadow = %+v", got)
	}
}

// Reading the colliding object fails: a communication failure retries the
// add later; any other failure fails it.
func TestAlreadyExistsReadFailure(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		want consistency.Status
	}{
		{"communication", errNotSent("get"), consistency.Pending},
		{"permission", connector.NewError(connector.CategoryPermission, "get", errors.New("denied")), consistency.Failed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, setupOpts{})
			_, err := b.conn.Put(account, attrs("alice"))
			wantNoErr(t, err)
			b.conn.FailNextOp(memconn.CallGet, 1, tc.err)
			out, err := b.eng.Add(b.ctx, consistency.AddRequest{ResourceID: resID, Class: account, Name: "alice", Attributes: attrs("alice")})
			if out.Status != tc.want {
				t.Fatalf("add = %v, %v; want %v", out.Status, err, tc.want)
			}
			sh := b.shadow(t, out.Shadow.ID)
			if tc.want == consistency.Pending {
				wantNoErr(t, err)
				if op := sh.Operation(1); op.Completed() || op.Attempt != 1 {
					t.Errorf("operation = %+v", op)
				}
				return
			}
			if err == nil || !sh.Dead {
				t.Errorf("err = %v, shadow = %+v", err, sh)
			}
		})
	}
}

// The hook links, but another shadow records the object and has work
// under way: the add fails rather than take the object from under it.
func TestAlreadyExistsLinkRefusedWhenOtherShadowBusy(t *testing.T) {
	t.Parallel()
	hook := func(context.Context, consistency.Discovered) (consistency.DiscoveryDecision, error) {
		return consistency.DiscoveryLink, nil
	}
	b := setup(t, setupOpts{discovery: hook})
	id, err := b.conn.Put(account, attrs("alice"))
	wantNoErr(t, err)
	other := &shadow.Shadow{ResourceID: resID, Class: account, UID: id.UID, Name: id.Name, Exists: true,
		Origin: shadow.OriginDiscovered, Pending: []shadow.PendingOperation{{ID: 1, Type: shadow.OpRetry,
			Status: shadow.StatusPendingExecution, Result: shadow.ResultInProgress, RequestedAt: t0, NextAttemptAt: t0.Add(time.Hour),
			Delta: connector.Delta{Type: connector.DeltaModify, Changes: replace("mail", "x")}}}}
	wantNoErr(t, b.store.Create(b.ctx, other))
	out, err := b.eng.Add(b.ctx, consistency.AddRequest{ResourceID: resID, Class: account, Name: "alice", Attributes: attrs("alice")})
	if err == nil || !errors.Is(err, connector.ErrAlreadyExists) || out.Status != consistency.Failed {
		t.Fatalf("add = %v, %v", out.Status, err)
	}
	if got := b.shadow(t, other.ID); !got.Unfinished() || got.Dead {
		t.Errorf("other shadow = %+v, want untouched", got)
	}
	if !b.shadow(t, out.Shadow.ID).Dead {
		t.Error("our shadow is not dead")
	}
}

// The discovery hook may use the engine for other shadows while the add it
// decides on is under way (the engine serializes per shadow, not per lock
// stripe).
func TestDiscoveryHookMayReadOtherShadows(t *testing.T) {
	t.Parallel()
	var b *bundle
	var ids []string
	hook := func(ctx context.Context, d consistency.Discovered) (consistency.DiscoveryDecision, error) {
		for _, id := range ids {
			if _, err := b.eng.Get(ctx, id, consistency.GetOptions{CacheOnly: true}); err != nil {
				return consistency.DiscoveryFail, err
			}
		}
		return consistency.DiscoveryLink, nil
	}
	b = setup(t, setupOpts{discovery: hook, settings: grouping(time.Hour)})
	for i := range 2000 {
		ids = append(ids, b.add(t, fmt.Sprintf("u%d", i)).Shadow.ID)
	}
	_, err := b.conn.Put(account, attrs("alice"))
	wantNoErr(t, err)
	out := b.add(t, "alice") // grouped: propagation runs the add
	res, err := b.eng.PropagateShadow(b.ctx, out.Shadow.ID, true)
	wantNoErr(t, err)
	if res.Status != consistency.Done {
		t.Errorf("propagate = %+v", res)
	}
}

// The re-create of a vanished object found by Get is written ahead, like
// an add.
func TestGetRecreateIsWrittenAhead(t *testing.T) {
	t.Parallel()
	var b *bundle
	checking, seen := false, false
	hook := &hookConn{Conn: memconn.New(memconn.Options{})}
	hook.beforeAdd = func() {
		if !checking {
			return
		}
		seen = true
		list, err := b.store.List(b.ctx, shadow.Query{})
		if err != nil || len(list) != 1 {
			t.Errorf("list: %v %d", err, len(list))
			return
		}
		sh := list[0]
		op := sh.Pending[len(sh.Pending)-1]
		if sh.Exists || op.Delta.Type != connector.DeltaAdd || op.Status != shadow.StatusExecuting ||
			op.LastErrorCategory != connector.CategoryOutcomeUnknown {
			t.Errorf("stored shadow during the re-create = %+v", sh)
		}
	}
	b = setup(t, setupOpts{conn: hook})
	sh := b.live(t, "alice")
	wantNoErr(t, hook.Conn.Remove(account, sh.UID))
	checking = true
	v, err := b.eng.Get(b.ctx, sh.ID, consistency.GetOptions{})
	wantNoErr(t, err)
	if !seen || !v.Exists {
		t.Errorf("re-create seen %v, view %+v", seen, v)
	}
	if op := b.shadow(t, sh.ID).Pending; op[len(op)-1].Result != shadow.ResultSuccess || op[len(op)-1].LastError != "" {
		t.Errorf("re-create = %+v", op[len(op)-1])
	}
}

// A process died while a modify was re-creating its vanished object: the
// object now exists under the name with a new UID. The retry finds it and
// links it as its own, without a second object or a discovery failure.
func TestRecreateAfterCrashIsLinked(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	made, err := b.conn.Put(account, attrs("alice", "mail", "m", "phone", "1")) // by the crashed re-create
	wantNoErr(t, err)
	sh := &shadow.Shadow{ResourceID: resID, Class: account, UID: "u-vanished", Name: "alice", Exists: true,
		Origin: shadow.OriginAssigned, Attributes: attrs("alice", "mail", "m"),
		Pending: []shadow.PendingOperation{{ID: 1, Type: shadow.OpRetry, Status: shadow.StatusExecuting,
			Result: shadow.ResultInProgress, Attempt: 1, RequestedAt: t0, LastAttemptAt: t0, NextAttemptAt: t0.Add(30 * time.Minute),
			Delta:     connector.Delta{Type: connector.DeltaModify, Changes: replace("phone", "1")},
			LastError: "in flight", LastErrorCategory: connector.CategoryOutcomeUnknown}}}
	wantNoErr(t, b.store.Create(b.ctx, sh))
	b.clock.Advance(30 * time.Minute)
	res, err := b.eng.RefreshShadow(b.ctx, sh.ID)
	wantNoErr(t, err)
	if res.Completed != 1 {
		t.Errorf("refresh = %+v", res)
	}
	got := b.shadow(t, sh.ID)
	if !got.Live() || got.UID != made.UID || got.Attributes.Get("phone") != "1" {
		t.Errorf("shadow = %+v, want linked to %s", got, made.UID)
	}
	if b.conn.Len(account) != 1 {
		t.Errorf("objects = %v", b.conn.Objects(account))
	}
	if n, _ := b.store.Count(b.ctx, shadow.Query{}); n != 1 {
		t.Errorf("shadows = %d, want no discovered duplicate", n)
	}
}
