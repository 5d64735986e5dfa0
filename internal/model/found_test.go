package model_test

// Focused tests of engine bugs the model test found, each the smallest
// reproduction of what a seed showed. They stay as regression tests.

import (
	"context"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/memconn"
	"github.com/umbra-idm/umbra/consistency"
	"github.com/umbra-idm/umbra/livesync"
	"github.com/umbra-idm/umbra/shadow"
	"github.com/umbra-idm/umbra/shadow/memstore"
)

// fixture is one grouped or plain resource with an engine over memstore.
type fixture struct {
	clk  *connector.FakeClock
	conn *memconn.Conn
	eng  *consistency.Engine
	st   shadow.Store
}

func newFixture(t *testing.T, mutate func(*consistency.Settings), hook consistency.DiscoveryHook) *fixture {
	t.Helper()
	f := &fixture{clk: connector.NewFakeClock(t0), st: memstore.New(memstore.Options{})}
	f.conn = memconn.New(memconn.Options{PreciseTokens: true, Clock: f.clk})
	s := consistency.DefaultSettings()
	s.OperationRetryPeriod = time.Minute
	if mutate != nil {
		mutate(&s)
	}
	var err error
	f.eng, err = consistency.New(consistency.Config{Clock: f.clk, Discovery: hook, Store: f.st,
		Resources: []consistency.Resource{{ID: "r", Connector: f.conn, Settings: &s}}})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func linkAll(context.Context, consistency.Discovered) (consistency.DiscoveryDecision, error) {
	return consistency.DiscoveryLink, nil
}

// Seed 12 (memstore, 60 steps): a grouped add and a modify queued behind it
// were merged into one add; the add met an object of its name and the hook
// linked it. Both operations were recorded successful, but the modify was
// never applied to the linked object. Without grouping the modify runs on
// the linked object after the add; grouping must not change the result.
func TestFoundGroupedAddLinkedKeepsQueuedModify(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, func(s *consistency.Settings) { s.OperationGroupingInterval = time.Minute }, linkAll)
	if _, err := f.conn.Put(class, connector.Attributes{"uid": {"alice"}, "mail": {"old@example.com"}}); err != nil {
		t.Fatal(err)
	}
	out, err := f.eng.Add(ctx, consistency.AddRequest{ResourceID: "r", Class: class, Name: "alice",
		Attributes: connector.Attributes{"uid": {"alice"}, "mail": {"alice@example.com"}}})
	if err != nil {
		t.Fatal(err)
	}
	id := out.Shadow.ID
	mod, err := f.eng.Modify(ctx, id, []connector.AttributeDelta{{Op: connector.Replace, Name: "mail", Values: []string{"new@example.com"}}})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		f.clk.Advance(2 * time.Minute)
		if _, err := f.eng.PropagateShadow(ctx, id, false); err != nil {
			t.Fatal(err)
		}
	}
	sh, err := f.st.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	op := sh.Operation(mod.OperationID)
	obj, ok := f.conn.ObjectByName(class, "alice")
	if !ok {
		t.Fatal("alice is gone")
	}
	if op.Result == shadow.ResultSuccess && obj.Attributes.Get("mail") != "new@example.com" {
		t.Errorf("the modify is recorded successful, but the linked object holds mail %q (want new@example.com)", obj.Attributes.Get("mail"))
	}
	if !op.Completed() {
		t.Errorf("the modify is still unfinished: %+v", op)
	}
}

// Seed 55 (memstore, 60 steps): an add waited for its resource (down, not
// sent) when someone else made an object of the same name; live sync
// correlated that object by name to the waiting shadow and marked it as
// existing with the other object's UID. The add then failed (already
// exists), and the delete queued behind it deleted the other object.
func TestFoundLiveSyncDoesNotAdoptForeignObjectForUnsentAdd(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, nil, nil)
	ls, err := livesync.New(livesync.Config{Class: class, Clock: f.clk, Connector: f.conn, ResourceID: "r",
		StartFromBeginning: true, Store: f.st, Tokens: livesync.NewMemoryTokenStore()})
	if err != nil {
		t.Fatal(err)
	}
	f.conn.Down()
	out, err := f.eng.Add(ctx, consistency.AddRequest{ResourceID: "r", Class: class, Name: "alice",
		Attributes: connector.Attributes{"uid": {"alice"}, "mail": {"alice@example.com"}}})
	if err != nil || out.Status != consistency.Pending {
		t.Fatalf("add: %v %v", out.Status, err)
	}
	f.conn.Up()
	foreign, err := f.conn.Put(class, connector.Attributes{"uid": {"alice"}, "mail": {"someone.else@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ls.Run(ctx); err != nil {
		t.Fatal(err)
	}
	sh, err := f.st.Get(ctx, out.Shadow.ID)
	if err != nil {
		t.Fatal(err)
	}
	if sh.Exists || sh.UID != "" {
		t.Errorf("live sync linked the shadow of an add that never reached the resource to another object: exists %v uid %q", sh.Exists, sh.UID)
	}
	if _, err := f.eng.Delete(ctx, out.Shadow.ID); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(time.Hour)
	if _, err := f.eng.RefreshShadow(ctx, out.Shadow.ID); err != nil {
		t.Log(err)
	}
	if _, ok := f.conn.Object(class, foreign.UID); !ok {
		t.Error("the other object was deleted by the delete of a shadow whose add never reached the resource")
	}
}

// Seed 376 (memstore, 60 steps): a grouped add merged with a rename timed
// out after it took effect. The check before the retry looked the object up
// by the shadow's Name, the name before the rename, found another object of
// that name and linked the shadow to it: the object the add made was left
// without a shadow, a second account.
func TestFoundMergedRenameCheckedUnderNameSent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, func(s *consistency.Settings) { s.OperationGroupingInterval = time.Minute }, nil)
	out, err := f.eng.Add(ctx, consistency.AddRequest{ResourceID: "r", Class: class, Name: "alice",
		Attributes: connector.Attributes{"uid": {"alice"}, "mail": {"alice@example.com"}}})
	if err != nil {
		t.Fatal(err)
	}
	id := out.Shadow.ID
	if _, err := f.eng.Modify(ctx, id, []connector.AttributeDelta{{Op: connector.Replace, Name: "uid", Values: []string{"bob"}}}); err != nil {
		t.Fatal(err)
	}
	other, err := f.conn.Put(class, connector.Attributes{"uid": {"alice"}, "mail": {"someone.else@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	f.conn.FailNextAfterApply(1)
	f.clk.Advance(2 * time.Minute)
	if _, err := f.eng.PropagateShadow(ctx, id, false); err != nil {
		t.Logf("propagate: %v", err)
	}
	for range 3 {
		f.clk.Advance(time.Hour)
		if _, err := f.eng.RefreshShadow(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	sh, err := f.st.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	bob, ok := f.conn.ObjectByName(class, "bob")
	if !ok {
		t.Fatal("the merged add made no object bob")
	}
	if sh.UID != bob.ID.UID || sh.Name != "bob" {
		t.Errorf("shadow linked to uid %q name %q; the add made %q (bob), the other object is %q (alice)", sh.UID, sh.Name, bob.ID.UID, other.UID)
	}
	if sh.Unfinished() {
		t.Errorf("operations left unfinished: %+v", sh.Pending)
	}
}

// Seed 2227 (memstore, 60 steps) showed a modify that found its object
// removed, re-created it with a rename, and timed out after the re-create
// took effect. Given up at once (no retries), a later modify re-created the
// object again: the model accepts that orphan, since the shadow is marked
// for reconciliation. With retries, the retry must find the first
// re-create's object and link it, not make a second one.
func TestRecreateOfUnknownOutcomeIsLinkedOnRetry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, nil, nil)
	out, err := f.eng.Add(ctx, consistency.AddRequest{ResourceID: "r", Class: class, Name: "alice",
		Attributes: connector.Attributes{"uid": {"alice"}, "mail": {"alice@example.com"}}})
	if err != nil {
		t.Fatal(err)
	}
	id := out.Shadow.ID
	if err := f.conn.Remove(class, out.Shadow.UID); err != nil {
		t.Fatal(err)
	}
	// The modify meets no object (that uses up one), then the re-creating
	// add takes effect and times out.
	f.conn.FailNextAfterApply(2)
	mod, err := f.eng.Modify(ctx, id, []connector.AttributeDelta{{Op: connector.Replace, Name: "uid", Values: []string{"bob"}}})
	if err != nil || mod.Status != consistency.Pending {
		t.Fatalf("modify: %v %v", mod.Status, err)
	}
	for range 3 {
		f.clk.Advance(time.Hour)
		if _, err := f.eng.RefreshShadow(ctx, id); err != nil {
			t.Log(err)
		}
	}
	sh, err := f.st.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	obj, ok := f.conn.ObjectByName(class, "bob")
	if !ok || f.conn.Len(class) != 1 {
		t.Fatalf("want one object bob, have %v", f.conn.Objects(class))
	}
	if op := sh.Operation(mod.OperationID); sh.Dead || sh.UID != obj.ID.UID || op.Result != shadow.ResultSuccess {
		t.Errorf("shadow dead=%v uid %q (object %q), modify %s: %s", sh.Dead, sh.UID, obj.ID.UID, op.Result, op.LastError)
	}
	if n, _ := f.st.Count(ctx, shadow.Query{}); n != 1 {
		t.Errorf("%d shadows, want 1", n)
	}
}

// Seed 22676 (memstore, 100 steps): an add timed out without taking
// effect while another object of its name existed, already recorded by a
// discovered shadow (live sync). The check before the retry found that
// object by name and took it for the add's result, but saving the shadow
// failed (the other shadow holds the object's live identity), so the add
// stayed in flight: retried and "completed" at every refresh, for ever.
func TestFoundAddCheckedAfterUnknownOutcomeMeetsRecordedObject(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, nil, nil)
	id, err := f.conn.Put(class, connector.Attributes{"uid": {"alice"}, "mail": {"someone.else@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	found := &shadow.Shadow{ResourceID: "r", Class: class, UID: id.UID, Name: id.Name, Exists: true, Origin: shadow.OriginDiscovered,
		Attributes: connector.Attributes{"uid": {"alice"}, "mail": {"someone.else@example.com"}}}
	if err := f.st.Create(ctx, found); err != nil {
		t.Fatal(err)
	}
	f.conn.FailNext(1, connector.CategoryOutcomeUnknown)
	out, err := f.eng.Add(ctx, consistency.AddRequest{ResourceID: "r", Class: class, Name: "alice",
		Attributes: connector.Attributes{"uid": {"alice"}, "mail": {"alice@example.com"}}})
	if err != nil || out.Status != consistency.Pending {
		t.Fatalf("add: %v %v", out.Status, err)
	}
	var lastErr error
	for range 3 {
		f.clk.Advance(time.Hour)
		_, lastErr = f.eng.RefreshShadow(ctx, out.Shadow.ID)
	}
	sh, err := f.st.Get(ctx, out.Shadow.ID)
	if err != nil {
		t.Fatal(err)
	}
	if sh.Unfinished() {
		t.Errorf("the add is stuck unfinished (last refresh: %v): %+v", lastErr, sh.Pending[0])
	}
	live, err := f.st.List(ctx, shadow.Query{ResourceID: "r", UID: id.UID, Dead: shadow.DeadExclude})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(live); n > 1 {
		t.Errorf("%d live shadows record the object", n)
	}
}

// Seed 25414 (memstore, 100 steps): a modify found its object gone and
// re-created it; the re-creating add met an object of the same name, and
// the discovery hook linked it. The modify was recorded successful, but the
// linked object never got its change.
func TestFoundModifyLinkedOnRecreateIsApplied(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, nil, linkAll)
	out, err := f.eng.Add(ctx, consistency.AddRequest{ResourceID: "r", Class: class, Name: "alice",
		Attributes: connector.Attributes{"uid": {"alice"}, "title": {"clerk"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.conn.Remove(class, out.Shadow.UID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.conn.Put(class, connector.Attributes{"uid": {"alice"}, "title": {"temp"}}); err != nil {
		t.Fatal(err)
	}
	mod, err := f.eng.Modify(ctx, out.Shadow.ID, []connector.AttributeDelta{{Op: connector.Replace, Name: "title", Values: []string{"manager"}}})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		f.clk.Advance(time.Hour)
		if _, err := f.eng.RefreshShadow(ctx, out.Shadow.ID); err != nil {
			t.Fatal(err)
		}
	}
	sh, err := f.st.Get(ctx, out.Shadow.ID)
	if err != nil {
		t.Fatal(err)
	}
	obj, _ := f.conn.ObjectByName(class, "alice")
	op := sh.Operation(mod.OperationID)
	if op.Result == shadow.ResultSuccess && obj.Attributes.Get("title") != "manager" {
		t.Errorf("the modify is recorded successful, but the linked object holds title %q", obj.Attributes.Get("title"))
	}
	if !op.Completed() || sh.UID != obj.ID.UID {
		t.Errorf("modify %s %s, shadow uid %q, object %q", op.Status, op.Result, sh.UID, obj.ID.UID)
	}
}
