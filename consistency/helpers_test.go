package consistency_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/memconn"
	"github.com/umbra-idm/umbra/consistency"
	"github.com/umbra-idm/umbra/shadow"
	"github.com/umbra-idm/umbra/shadow/memstore"
)

const (
	resID   = "r1"
	account = connector.ObjectClass("account")
)

var t0 = time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)

// recorder keeps the observer's events in order.
type recorder struct {
	mu     sync.Mutex
	events []event
}

type event struct {
	Kind string
	Op   consistency.OperationEvent
	Res  consistency.ResourceEvent
}

func (r *recorder) op(kind string) func(consistency.OperationEvent) {
	return func(ev consistency.OperationEvent) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.events = append(r.events, event{Kind: kind, Op: ev})
	}
}

func (r *recorder) res(kind string) func(consistency.ResourceEvent) {
	return func(ev consistency.ResourceEvent) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.events = append(r.events, event{Kind: kind, Res: ev})
	}
}

func (r *recorder) observer() *consistency.Observer {
	return &consistency.Observer{
		OperationPostponed: r.op("postponed"),
		OperationRetried:   r.op("retried"),
		OperationCompleted: r.op("completed"),
		OperationFailed:    r.op("failed"),
		OperationAbandoned: r.op("abandoned"),
		OperationCancelled: r.op("cancelled"),
		Discovered:         r.op("discovered"),
		ResourceDown:       r.res("down"),
		ResourceUp:         r.res("up"),
		QuarantineEntered:  r.res("quarantine entered"),
		QuarantineLeft:     r.res("quarantine left"),
	}
}

// of returns the events of kind, in order.
func (r *recorder) of(kind string) []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []event
	for _, e := range r.events {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

func (r *recorder) kinds() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.events))
	for i, e := range r.events {
		out[i] = e.Kind
	}
	return out
}

func (r *recorder) reset() {
	r.mu.Lock()
	r.events = nil
	r.mu.Unlock()
}

// bundle is one engine over one memconn resource and a memstore.
type bundle struct {
	eng    *consistency.Engine
	conn   *memconn.Conn
	store  *memstore.Store
	clock  *connector.FakeClock
	events *recorder
	ctx    context.Context
}

type setupOpts struct {
	settings  *consistency.Settings
	conn      connector.Connector // replaces the memconn as the resource's connector
	connOpts  memconn.Options
	discovery consistency.DiscoveryHook
	random    func() float64
	// wrapStore wraps the memstore the engine uses (b.store stays the
	// memstore, for inspection).
	wrapStore func(shadow.Store) shadow.Store
}

func setup(t *testing.T, o setupOpts) *bundle {
	t.Helper()
	clk := connector.NewFakeClock(t0)
	o.connOpts.Clock = clk
	b := &bundle{
		conn:   memconn.New(o.connOpts),
		store:  memstore.New(memstore.Options{Clock: clk}),
		clock:  clk,
		events: &recorder{},
		ctx:    context.Background(),
	}
	var conn connector.Connector = b.conn
	if o.conn != nil {
		conn = o.conn
	}
	var store shadow.Store = b.store
	if o.wrapStore != nil {
		store = o.wrapStore(store)
	}
	eng, err := consistency.New(consistency.Config{
		Clock:     clk,
		Discovery: o.discovery,
		Observer:  b.events.observer(),
		Random:    o.random,
		Resources: []consistency.Resource{{ID: resID, Connector: conn, Settings: o.settings}},
		Store:     store,
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	b.eng = eng
	return b
}

func settings(change func(*consistency.Settings)) *consistency.Settings {
	s := consistency.DefaultSettings()
	if change != nil {
		change(&s)
	}
	return &s
}

func attrs(name string, kv ...string) connector.Attributes {
	a := connector.Attributes{"uid": {name}}
	for i := 0; i+1 < len(kv); i += 2 {
		a[kv[i]] = append(a[kv[i]], kv[i+1])
	}
	return a
}

func replace(name string, vals ...string) []connector.AttributeDelta {
	return []connector.AttributeDelta{{Op: connector.Replace, Name: name, Values: vals}}
}

func (b *bundle) add(t *testing.T, name string, kv ...string) consistency.Outcome {
	t.Helper()
	out, err := b.eng.Add(b.ctx, consistency.AddRequest{ResourceID: resID, Class: account, Name: name, Attributes: attrs(name, kv...)})
	if err != nil {
		t.Fatalf("Add(%s): %v", name, err)
	}
	return out
}

// live adds name and requires it to be done.
func (b *bundle) live(t *testing.T, name string, kv ...string) *shadow.Shadow {
	t.Helper()
	out := b.add(t, name, kv...)
	if out.Status != consistency.Done {
		t.Fatalf("Add(%s) = %v, want done", name, out.Status)
	}
	return out.Shadow
}

func (b *bundle) modify(t *testing.T, id string, changes []connector.AttributeDelta) consistency.Outcome {
	t.Helper()
	out, err := b.eng.Modify(b.ctx, id, changes)
	if err != nil {
		t.Fatalf("Modify(%s): %v", id, err)
	}
	return out
}

func (b *bundle) del(t *testing.T, id string) consistency.Outcome {
	t.Helper()
	out, err := b.eng.Delete(b.ctx, id)
	if err != nil {
		t.Fatalf("Delete(%s): %v", id, err)
	}
	return out
}

func (b *bundle) refresh(t *testing.T, id string) consistency.RefreshResult {
	t.Helper()
	res, err := b.eng.RefreshShadow(b.ctx, id)
	if err != nil {
		t.Fatalf("RefreshShadow(%s): %v", id, err)
	}
	return res
}

func (b *bundle) shadow(t *testing.T, id string) *shadow.Shadow {
	t.Helper()
	sh, err := b.store.Get(b.ctx, id)
	if err != nil {
		t.Fatalf("store.Get(%s): %v", id, err)
	}
	return sh
}

func (b *bundle) op(t *testing.T, id string, opID int64) shadow.PendingOperation {
	t.Helper()
	sh := b.shadow(t, id)
	op := sh.Operation(opID)
	if op == nil {
		t.Fatalf("shadow %s has no operation %d: %+v", id, opID, sh.Pending)
	}
	return *op
}

func (b *bundle) availability(t *testing.T) consistency.Availability {
	t.Helper()
	st, err := b.eng.Status(resID)
	if err != nil {
		t.Fatal(err)
	}
	return st.Availability
}

// calls returns memconn's call counts without the kinds never called.
func (b *bundle) calls() map[memconn.CallKind]int {
	out := map[memconn.CallKind]int{}
	for k, n := range b.conn.CallCounts() {
		if n > 0 {
			out[k] = n
		}
	}
	return out
}

func (b *bundle) wantCalls(t *testing.T, kind memconn.CallKind, want int) {
	t.Helper()
	if got := b.conn.Calls(kind); got != want {
		t.Errorf("memconn %s calls = %d, want %d (all: %v)", kind, got, want, b.calls())
	}
}

func (b *bundle) wantObject(t *testing.T, name string, attr, want string) connector.Object {
	t.Helper()
	obj, ok := b.conn.ObjectByName(account, name)
	if !ok {
		t.Fatalf("memconn has no object %q (objects: %v)", name, b.conn.Objects(account))
	}
	if attr != "" && obj.Attributes.Get(attr) != want {
		t.Errorf("object %q %s = %q, want %q", name, attr, obj.Attributes.Get(attr), want)
	}
	return obj
}

func wantStatus(t *testing.T, out consistency.Outcome, want consistency.Status) {
	t.Helper()
	if out.Status != want {
		t.Fatalf("outcome status = %v, want %v", out.Status, want)
	}
}

func wantKinds(t *testing.T, r *recorder, want ...string) {
	t.Helper()
	if got := r.kinds(); !slices.Equal(got, want) {
		t.Errorf("observer events = %q, want %q", got, want)
	}
}

func wantNoErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func errNotSent(op string) error {
	return connector.NewError(connector.CategoryNotSent, op, errors.New("connection refused"))
}
