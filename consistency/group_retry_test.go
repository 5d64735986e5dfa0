package consistency_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/memconn"
	"github.com/umbra-idm/umbra/consistency"
	"github.com/umbra-idm/umbra/shadow"
	"github.com/umbra-idm/umbra/shadow/memstore"
)

func groupedEngine(t *testing.T, async bool) (*consistency.Engine, *memconn.Conn, *connector.FakeClock, shadow.Store) {
	t.Helper()
	clk := connector.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	store := memstore.New(memstore.Options{Clock: clk})
	conn := memconn.New(memconn.Options{Clock: clk, Async: async})
	s := consistency.DefaultSettings()
	s.OperationGroupingInterval = 10 * time.Minute
	e, err := consistency.New(consistency.Config{Store: store, Clock: clk,
		Resources: []consistency.Resource{{ID: "r", Connector: conn, Settings: &s}}})
	if err != nil {
		t.Fatal(err)
	}
	return e, conn, clk, store
}

// A propagation whose merged call fails is retried merged too: a manual
// resource must get one ticket again, not one per operation.
func TestFailedPropagationRetriedMerged(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e, conn, clk, store := groupedEngine(t, false)
	add, err := e.Add(ctx, consistency.AddRequest{ResourceID: "r", Class: "account", Name: "al",
		Attributes: connector.Attributes{"uid": {"al"}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"a", "b", "c", "d"} {
		if _, err := e.Modify(ctx, add.Shadow.ID, []connector.AttributeDelta{{Op: connector.AddValues, Name: "tag", Values: []string{v}}}); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(11 * time.Minute)
	conn.FailNext(1, connector.CategoryNotSent)
	if _, err := e.PropagateShadow(ctx, add.Shadow.ID, false); err != nil {
		t.Fatal(err)
	}
	if n := conn.Calls(memconn.CallAdd); n != 1 {
		t.Fatalf("%d add calls after the failed propagation, want 1", n)
	}
	conn.ResetCalls()
	clk.Advance(31 * time.Minute)
	if err := e.Probe(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	res, err := e.RefreshShadow(ctx, add.Shadow.ID)
	if err != nil {
		t.Fatal(err)
	}
	if a, m := conn.Calls(memconn.CallAdd), conn.Calls(memconn.CallModify); a != 1 || m != 0 {
		t.Fatalf("retry made %d adds and %d modifies, want one merged add", a, m)
	}
	if res.Completed != 5 {
		t.Errorf("Completed %d, want 5", res.Completed)
	}
	obj, ok := conn.ObjectByName("account", "al")
	if !ok || len(obj.Attributes["tag"]) != 4 {
		t.Fatalf("object %+v %v", obj, ok)
	}
	sh, _ := store.Get(ctx, add.Shadow.ID)
	if sh.Unfinished() || !sh.Live() {
		t.Errorf("shadow %+v", sh)
	}
}

// When a resource rejects a merged async group, every operation of the
// group records the resource's reason.
func TestAsyncGroupRejectedRecordsEveryOperation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e, conn, clk, store := groupedEngine(t, true)
	add, err := e.Add(ctx, consistency.AddRequest{ResourceID: "r", Class: "account", Name: "bo",
		Attributes: connector.Attributes{"uid": {"bo"}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"x", "y"} {
		if _, err := e.Modify(ctx, add.Shadow.ID, []connector.AttributeDelta{{Op: connector.Replace, Name: "title", Values: []string{v}}}); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(11 * time.Minute)
	if r, err := e.PropagateShadow(ctx, add.Shadow.ID, false); err != nil || r.Status != consistency.InProgress {
		t.Fatalf("propagate: %+v %v", r, err)
	}
	refs := conn.PendingAsync()
	if len(refs) != 1 {
		t.Fatalf("%d async refs, want 1", len(refs))
	}
	reason := connector.NewError(connector.CategoryPolicy, "add", errors.New("rejected by the approver"))
	if err := conn.FailAsync(refs[0], reason); err != nil {
		t.Fatal(err)
	}
	res, err := e.RefreshShadow(ctx, add.Shadow.ID)
	if err != nil {
		t.Fatal(err)
	}
	if res.Failed != 3 {
		t.Errorf("Failed %d, want 3", res.Failed)
	}
	sh, _ := store.Get(ctx, add.Shadow.ID)
	for _, op := range sh.Pending {
		if op.Result != shadow.ResultFailure || op.LastErrorCategory != connector.CategoryPolicy {
			t.Errorf("operation %d: %v %v %q", op.ID, op.Result, op.LastErrorCategory, op.LastError)
		}
	}
	if !sh.Dead {
		t.Errorf("shadow of a rejected add is not dead: %+v", sh)
	}
}

// Reconciliation clears the needs-reconciliation mark of a shadow it
// brought in line with the resource.
func TestReconcileClearsMark(t *testing.T) {
	t.Parallel()
	b := recSetup(t, nil)
	shs := b.provision(t, 1)
	sh := b.get(t, shs[0].ID)
	sh.NeedsReconciliation = true
	if err := b.store.Update(b.ctx, sh); err != nil {
		t.Fatal(err)
	}
	if _, err := b.reconcile(t, consistency.ReconcileOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := b.get(t, sh.ID); got.NeedsReconciliation {
		t.Error("mark still set after reconciliation")
	}
}
