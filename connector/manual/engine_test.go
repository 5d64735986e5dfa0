package manual_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/manual"
	"github.com/umbra-idm/umbra/consistency"
	"github.com/umbra-idm/umbra/propagation"
	"github.com/umbra-idm/umbra/refresh"
	"github.com/umbra-idm/umbra/shadow"
	"github.com/umbra-idm/umbra/shadow/memstore"
)

var t0 = time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)

type world struct {
	fc     *connector.FakeClock
	sink   *manual.FileSink
	conn   *manual.Conn
	store  *memstore.Store
	engine *consistency.Engine
	prop   *propagation.Task
	ref    *refresh.Task
}

// setupWorld is the seed's main use case: a manual resource with a
// ten-minute grouping interval, a propagation task and a refresh task.
func setupWorld(t *testing.T) *world {
	t.Helper()
	w := &world{fc: connector.NewFakeClock(t0)}
	var err error
	if w.sink, err = manual.NewFileSink(filepath.Join(t.TempDir(), "tickets"), w.fc); err != nil {
		t.Fatal(err)
	}
	if w.conn, err = manual.New(manual.Options{Sink: w.sink, Clock: w.fc}); err != nil {
		t.Fatal(err)
	}
	w.store = memstore.New(memstore.Options{Clock: w.fc})
	s := consistency.DefaultSettings()
	s.OperationGroupingInterval = 10 * time.Minute
	s.OperationRetryPeriod = 5 * time.Minute // how often tickets are looked at
	s.PendingOperationGracePeriod = 15 * time.Minute
	if w.engine, err = consistency.New(consistency.Config{Store: w.store, Clock: w.fc,
		Resources: []consistency.Resource{{ID: "badges", Connector: w.conn, Settings: &s}}}); err != nil {
		t.Fatal(err)
	}
	if w.prop, err = propagation.New(propagation.Config{Engine: w.engine}); err != nil {
		t.Fatal(err)
	}
	if w.ref, err = refresh.New(refresh.Config{Engine: w.engine}); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *world) tickets(t *testing.T) []manual.Ticket {
	t.Helper()
	list, err := w.sink.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return list
}

func (w *world) shadow(t *testing.T, id string) *shadow.Shadow {
	t.Helper()
	sh, err := w.store.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return sh
}

func TestBurstOfChangesBecomesOneTicket(t *testing.T) {
	t.Parallel()
	w := setupWorld(t)
	ctx := context.Background()
	out, err := w.engine.Add(ctx, consistency.AddRequest{ResourceID: "badges", Class: "badge", Name: "alice",
		Attributes: connector.Attributes{"uid": {"alice"}, "door": {"main"}}})
	if err != nil || out.Status != consistency.Queued {
		t.Fatalf("add: %v %v", out.Status, err)
	}
	id := out.Shadow.ID
	for i := 1; i <= 9; i++ {
		w.fc.Advance(time.Minute)
		if _, err := w.engine.Modify(ctx, id, []connector.AttributeDelta{
			{Op: connector.AddValues, Name: "door", Values: []string{fmt.Sprintf("lab-%d", i)}}}); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(w.tickets(t)); n != 0 {
		t.Fatalf("%d tickets before propagation", n)
	}
	w.fc.Advance(time.Minute)
	res, err := w.prop.Run(ctx)
	if err != nil || res.Total.Operations != 10 || res.Total.InProgress != 1 {
		t.Fatalf("propagation: %+v %v", res.Total, err)
	}
	tickets := w.tickets(t)
	if len(tickets) != 1 {
		t.Fatalf("%d tickets for ten changes, want one", len(tickets))
	}
	tk := tickets[0]
	if tk.Operation != manual.OpAdd || tk.Name != "alice" || len(tk.Attributes["door"]) != 10 {
		t.Fatalf("the ticket: %+v", tk)
	}
	sh := w.shadow(t, id)
	for _, op := range sh.Pending {
		if op.Type != shadow.OpAsync || op.AsyncRef != tk.Ref || op.Completed() {
			t.Fatalf("operation %d: %s ref %q completed %v; want async under the ticket", op.ID, op.Type, op.AsyncRef, op.Completed())
		}
	}

	// The ticket is still open at the next look: nothing changes.
	w.fc.Advance(5 * time.Minute)
	rres, err := w.ref.Run(ctx)
	if err != nil || rres.Total.AsyncChecked != 1 || rres.Total.StillPending != 10 {
		t.Fatalf("refresh with the ticket open: %+v %v", rres.Total, err)
	}

	if err := manual.MarkDone(w.sink.Dir(), tk.Ref); err != nil {
		t.Fatal(err)
	}
	w.fc.Advance(5 * time.Minute)
	rres, err = w.ref.Run(ctx)
	if err != nil || rres.Total.Completed != 10 || rres.Total.StillPending != 0 {
		t.Fatalf("refresh after done: %+v %v", rres.Total, err)
	}
	sh = w.shadow(t, id)
	if !sh.Exists || sh.UID != tk.UID || sh.Name != "alice" || len(sh.Attributes["door"]) != 10 || sh.Unfinished() {
		t.Fatalf("shadow after done: exists %v uid %q (ticket %q) name %q attrs %v", sh.Exists, sh.UID, tk.UID, sh.Name, sh.Attributes)
	}
	obj, err := w.conn.Get(ctx, "badge", connector.Identifiers{UID: tk.UID})
	if err != nil || len(obj.Attributes["door"]) != 10 {
		t.Fatalf("the resource as the done ticket left it: %+v %v", obj, err)
	}
	if n := len(w.tickets(t)); n != 1 {
		t.Fatalf("%d tickets in the end, want one", n)
	}
}

func TestRejectedTicketFailsTheOperations(t *testing.T) {
	t.Parallel()
	w := setupWorld(t)
	ctx := context.Background()
	out, err := w.engine.Add(ctx, consistency.AddRequest{ResourceID: "badges", Class: "badge", Name: "mallory",
		Attributes: connector.Attributes{"uid": {"mallory"}}})
	if err != nil {
		t.Fatal(err)
	}
	w.fc.Advance(10 * time.Minute)
	if _, err := w.prop.Run(ctx); err != nil {
		t.Fatal(err)
	}
	ref := w.tickets(t)[0].Ref
	if err := manual.Reject(w.sink.Dir(), ref, "not an employee"); err != nil {
		t.Fatal(err)
	}
	w.fc.Advance(5 * time.Minute)
	rres, err := w.ref.Run(ctx)
	if err != nil || rres.Total.Failed != 1 {
		t.Fatalf("refresh after rejection: %+v %v", rres.Total, err)
	}
	sh := w.shadow(t, out.Shadow.ID)
	op := sh.Pending[0]
	if !sh.Dead || op.Result != shadow.ResultFailure || op.LastErrorCategory != connector.CategoryPolicy {
		t.Fatalf("after a rejected add: dead %v, operation %s %s %q", sh.Dead, op.Result, op.LastErrorCategory, op.LastError)
	}
}
