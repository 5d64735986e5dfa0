package propagation

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/memconn"
	"github.com/umbra-idm/umbra/consistency"
	"github.com/umbra-idm/umbra/internal/testsvc"
	"github.com/umbra-idm/umbra/refresh"
	"github.com/umbra-idm/umbra/shadow"
	"github.com/umbra-idm/umbra/shadow/memstore"
	"github.com/umbra-idm/umbra/shadow/sqlstore"
)

// storeKind opens an empty store of one implementation for a test.
type storeKind struct {
	name string
	open func(t *testing.T, c connector.Clock) shadow.Store
}

// stores are the stores the selection tests run against. PostgreSQL is
// skipped when unreachable (failed with UMBRA_FULL=1).
var stores = []storeKind{
	{"memstore", func(t *testing.T, c connector.Clock) shadow.Store { return memstore.New(memstore.Options{Clock: c}) }},
	{"sqlite", func(t *testing.T, c connector.Clock) shadow.Store {
		s, err := sqlstore.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "umbra.db"), sqlstore.Options{Clock: c})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}},
	{"postgres", func(t *testing.T, c connector.Clock) shadow.Store {
		s, err := sqlstore.OpenPostgres(context.Background(), testsvc.PostgresDSN(t), sqlstore.Options{Clock: c})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}},
}

// eachStore runs test as a parallel subtest per store.
func eachStore(t *testing.T, test func(t *testing.T, kind storeKind)) {
	for _, kind := range stores {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			test(t, kind)
		})
	}
}

var t0 = time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)

const (
	guard    = 10 * time.Second
	class    = connector.ObjectClass("account")
	grouping = 10 * time.Minute
)

type bundle struct {
	fc     *connector.FakeClock
	store  shadow.Store
	conns  map[string]*memconn.Conn
	engine *consistency.Engine
}

func grouped() consistency.Settings {
	s := consistency.DefaultSettings()
	s.OperationGroupingInterval = grouping
	return s
}

func setup(t *testing.T, s consistency.Settings, resources ...string) *bundle {
	t.Helper()
	return setupWith(t, stores[0], s, resources...)
}

func setupWith(t *testing.T, kind storeKind, s consistency.Settings, resources ...string) *bundle {
	t.Helper()
	b := &bundle{fc: connector.NewFakeClock(t0), conns: map[string]*memconn.Conn{}}
	b.store = kind.open(t, b.fc)
	var rs []consistency.Resource
	for _, id := range resources {
		c := memconn.New(memconn.Options{Clock: b.fc})
		b.conns[id] = c
		st := s
		rs = append(rs, consistency.Resource{ID: id, Connector: c, Settings: &st})
	}
	e, err := consistency.New(consistency.Config{Store: b.store, Clock: b.fc, Resources: rs})
	if err != nil {
		t.Fatal(err)
	}
	b.engine = e
	return b
}

func (b *bundle) task(t *testing.T, cfg Config) *Task {
	t.Helper()
	cfg.Engine = b.engine
	tk, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// add queues an add of account name on resource r and returns the shadow ID.
func (b *bundle) add(t *testing.T, r, name string) string {
	t.Helper()
	out, err := b.engine.Add(context.Background(), consistency.AddRequest{ResourceID: r, Class: class, Name: name,
		Attributes: connector.Attributes{"uid": {name}, "mail": {name + "@example.org"}}})
	if err != nil {
		t.Fatal(err)
	}
	if out.Status != consistency.Queued {
		t.Fatalf("add %s: status %s, want queued", name, out.Status)
	}
	return out.Shadow.ID
}

func (b *bundle) modify(t *testing.T, id string, changes ...connector.AttributeDelta) {
	t.Helper()
	out, err := b.engine.Modify(context.Background(), id, changes)
	if err != nil {
		t.Fatal(err)
	}
	if out.Status != consistency.Queued {
		t.Fatalf("modify %s: status %s, want queued", id, out.Status)
	}
}

func replace(name string, values ...string) connector.AttributeDelta {
	return connector.AttributeDelta{Op: connector.Replace, Name: name, Values: values}
}

func addValues(name string, values ...string) connector.AttributeDelta {
	return connector.AttributeDelta{Op: connector.AddValues, Name: name, Values: values}
}

func (b *bundle) shadow(t *testing.T, id string) *shadow.Shadow {
	t.Helper()
	sh, err := b.store.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return sh
}

func run(t *testing.T, tk *Task) Result {
	t.Helper()
	res, err := tk.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestMergesGroupedOperationsIntoOneCallPerShadow(t *testing.T) {
	t.Parallel()
	eachStore(t, testMerges)
}

func testMerges(t *testing.T, kind storeKind) {
	b := setupWith(t, kind, grouped(), "r1")
	conn := b.conns["r1"]
	var ids []string
	for i := 0; i < 3; i++ {
		id := b.add(t, "r1", fmt.Sprintf("user%d", i))
		for j := 0; j < 9; j++ {
			b.fc.Advance(time.Second)
			b.modify(t, id, replace("title", fmt.Sprintf("title %d", j)), addValues("group", fmt.Sprintf("g%d", j)))
		}
		ids = append(ids, id)
	}
	if n := conn.Calls(memconn.CallAdd) + conn.Calls(memconn.CallModify); n != 0 {
		t.Fatalf("%d calls before propagation", n)
	}
	b.fc.Advance(grouping)
	var reports []Progress
	tk := b.task(t, Config{Progress: func(p Progress) { reports = append(reports, p) }, Concurrency: 1})
	res := run(t, tk)
	want := Counts{Examined: 3, Propagated: 3, Operations: 30, Calls: 3, Completed: 3}
	if res.Total != want || res.Resources["r1"] != want {
		t.Fatalf("counts %+v, want %+v", res.Total, want)
	}
	if a, m := conn.Calls(memconn.CallAdd), conn.Calls(memconn.CallModify); a != 3 || m != 0 {
		t.Fatalf("%d adds and %d modifies, want 3 adds (one per shadow) and no modify", a, m)
	}
	if len(reports) != 3 || reports[2].Done != 3 || reports[2].Total != 3 {
		t.Fatalf("progress %+v", reports)
	}
	for i, id := range ids {
		obj, ok := conn.ObjectByName(class, fmt.Sprintf("user%d", i))
		if !ok {
			t.Fatalf("user%d not on the resource", i)
		}
		if obj.Attributes.Get("title") != "title 8" || len(obj.Attributes["group"]) != 9 {
			t.Fatalf("user%d on the resource: %v; want the last title and nine groups", i, obj.Attributes)
		}
		sh := b.shadow(t, id)
		if !sh.Exists || sh.UID != obj.ID.UID || sh.Unfinished() {
			t.Fatalf("shadow %s after propagation: exists %v uid %q unfinished %v", id, sh.Exists, sh.UID, sh.Unfinished())
		}
		for _, op := range sh.Pending {
			if op.Result != shadow.ResultSuccess {
				t.Fatalf("operation %d of %s: %s", op.ID, id, op.Result)
			}
		}
	}
	// Nothing is left: a second run finds nothing.
	if res := run(t, tk); res.Total.Examined != 0 {
		t.Fatalf("second run examined %d", res.Total.Examined)
	}
}

func TestSkipsShadowsNotYetDue(t *testing.T) {
	t.Parallel()
	eachStore(t, testSkipsNotDue)
}

func testSkipsNotDue(t *testing.T, kind storeKind) {
	b := setupWith(t, kind, grouped(), "r1")
	early := b.add(t, "r1", "early")
	b.fc.Advance(5 * time.Minute)
	late := b.add(t, "r1", "late")
	tk := b.task(t, Config{})

	b.fc.Set(t0.Add(grouping - time.Second))
	if res := run(t, tk); res.Total.Examined != 0 {
		t.Fatalf("before the interval: %+v", res.Total)
	}
	b.fc.Set(t0.Add(grouping - time.Nanosecond))
	if res := run(t, tk); res.Total.Calls != 0 || res.Total.Propagated != 0 {
		t.Fatalf("a nanosecond before the interval: %+v", res.Total)
	}
	b.fc.Set(t0.Add(grouping)) // exactly the interval: due
	res := run(t, tk)
	if res.Total.Examined != 1 || res.Total.Calls != 1 {
		t.Fatalf("at the interval: %+v; want only the early shadow", res.Total)
	}
	if b.shadow(t, early).Unfinished() || !b.shadow(t, late).Unfinished() {
		t.Fatal("wrong shadow propagated")
	}
	b.fc.Advance(5 * time.Minute)
	if res := run(t, tk); res.Total.Calls != 1 || b.shadow(t, late).Unfinished() {
		t.Fatalf("later: %+v", res.Total)
	}
}

func TestForceIgnoresTheInterval(t *testing.T) {
	t.Parallel()
	b := setup(t, grouped(), "r1")
	id := b.add(t, "r1", "now")
	res := run(t, b.task(t, Config{Force: true}))
	if res.Total.Calls != 1 || b.shadow(t, id).Unfinished() {
		t.Fatalf("forced run: %+v", res.Total)
	}
}

func TestMultiResourceSelection(t *testing.T) {
	t.Parallel()
	eachStore(t, testMultiResource)
}

func testMultiResource(t *testing.T, kind storeKind) {
	b := setupWith(t, kind, grouped(), "hr", "badge", "vpn")
	for _, r := range []string{"hr", "badge", "vpn"} {
		b.add(t, r, "alice")
		b.add(t, r, "bob")
	}
	b.fc.Advance(grouping)
	var asked []string
	var mu sync.Mutex
	res := run(t, b.task(t, Config{Selector: func(id string) bool {
		mu.Lock()
		asked = append(asked, id)
		mu.Unlock()
		return id != "badge"
	}}))
	if res.Resources["hr"].Calls != 2 || res.Resources["vpn"].Calls != 2 || res.Total.Calls != 4 {
		t.Fatalf("per resource %+v", res.Resources)
	}
	if _, ok := res.Resources["badge"]; ok || b.conns["badge"].Calls(memconn.CallAdd) != 0 {
		t.Fatal("the selector left badge out, but it was propagated")
	}
	if len(asked) != 3 {
		t.Fatalf("selector asked about %v, want every resource", asked)
	}
	res = run(t, b.task(t, Config{ResourceIDs: []string{"badge"}}))
	if res.Total.Calls != 2 || b.conns["badge"].Calls(memconn.CallAdd) != 2 {
		t.Fatalf("ResourceIDs [badge]: %+v", res.Total)
	}
	// Every resource by default; nothing left.
	if res := run(t, b.task(t, Config{})); res.Total.Examined != 0 {
		t.Fatalf("default run after both: %+v", res.Total)
	}
}

func TestEmptyMergeMakesNoCall(t *testing.T) {
	t.Parallel()
	b := setup(t, grouped(), "r1")
	// Through the engine: deleting a shadow whose queued add never left
	// cancels the add at once, so propagation finds nothing.
	id := b.add(t, "r1", "temp")
	b.modify(t, id, replace("title", "intern"))
	if _, err := b.engine.Delete(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	b.fc.Advance(grouping)
	if res := run(t, b.task(t, Config{})); res.Total.Examined != 0 {
		t.Fatalf("after add, modify, delete: %+v", res.Total)
	}
	// As a store may hold it (written by another process or an earlier
	// version): a grouped add and a grouped delete, both queued.
	op := func(id int64, d connector.Delta) shadow.PendingOperation {
		return shadow.PendingOperation{ID: id, Delta: d, Type: shadow.OpGrouped, Status: shadow.StatusPendingExecution,
			Result: shadow.ResultInProgress, RequestedAt: t0}
	}
	sh := &shadow.Shadow{ResourceID: "r1", Class: class, Name: "ghost", Origin: shadow.OriginAssigned,
		Pending: []shadow.PendingOperation{
			op(1, connector.Delta{Type: connector.DeltaAdd, Attributes: connector.Attributes{"uid": {"ghost"}}}),
			op(2, connector.Delta{Type: connector.DeltaDelete}),
		}}
	if err := b.store.Create(context.Background(), sh); err != nil {
		t.Fatal(err)
	}
	res := run(t, b.task(t, Config{}))
	want := Counts{Examined: 1, Propagated: 1, Operations: 2, Empty: 1, Completed: 1}
	if res.Total != want {
		t.Fatalf("counts %+v, want %+v", res.Total, want)
	}
	for kind, n := range b.conns["r1"].CallCounts() {
		if n != 0 {
			t.Errorf("%d %s calls, want none", n, kind)
		}
	}
	for _, id := range []string{id, sh.ID} {
		got := b.shadow(t, id)
		if got.Unfinished() || !got.Dead || got.Exists {
			t.Fatalf("shadow %s: unfinished %v dead %v exists %v", id, got.Unfinished(), got.Dead, got.Exists)
		}
	}
}

func TestGracePeriodKeepsExecutedOperationsUntilRefreshDropsThem(t *testing.T) {
	t.Parallel()
	s := grouped()
	s.PendingOperationRetentionPeriod = 0
	s.PendingOperationGracePeriod = 15 * time.Minute
	b := setup(t, s, "r1")
	id := b.add(t, "r1", "dave")
	b.modify(t, id, replace("title", "boss"))
	b.fc.Advance(grouping)
	if res := run(t, b.task(t, Config{})); res.Total.Completed != 1 {
		t.Fatalf("propagation: %+v", res.Total)
	}
	sh := b.shadow(t, id)
	if len(sh.Pending) != 2 || sh.Unfinished() {
		t.Fatalf("after propagation: %d operations (unfinished %v), want 2 completed ones kept", len(sh.Pending), sh.Unfinished())
	}
	rt, err := refresh.New(refresh.Config{Engine: b.engine})
	if err != nil {
		t.Fatal(err)
	}
	b.fc.Advance(14 * time.Minute)
	if res, err := rt.Run(context.Background()); err != nil || res.Total.Dropped != 0 {
		t.Fatalf("refresh inside the grace period: %+v %v", res.Total, err)
	}
	if n := len(b.shadow(t, id).Pending); n != 2 {
		t.Fatalf("%d operations inside the grace period, want 2", n)
	}
	b.fc.Advance(time.Minute)
	res, err := rt.Run(context.Background())
	if err != nil || res.Total.Dropped != 2 {
		t.Fatalf("refresh after the grace period: %+v %v", res.Total, err)
	}
	if n := len(b.shadow(t, id).Pending); n != 0 {
		t.Fatalf("%d operations after the grace period, want 0", n)
	}
}

func TestCommunicationFailureLeavesRetriesForRefresh(t *testing.T) {
	t.Parallel()
	b := setup(t, grouped(), "r1")
	conn := b.conns["r1"]
	id := b.add(t, "r1", "erin")
	b.modify(t, id, replace("title", "ops"))
	b.fc.Advance(grouping)
	conn.FailNextOp(memconn.CallAdd, 1, connector.NewError(connector.CategoryNotSent, "add", errors.New("refused")))
	res := run(t, b.task(t, Config{}))
	if res.Total.Postponed != 1 || res.Total.Calls != 1 {
		t.Fatalf("counts %+v, want one postponed call", res.Total)
	}
	sh := b.shadow(t, id)
	for _, op := range sh.Pending {
		if op.Completed() || op.Type != shadow.OpRetry {
			t.Fatalf("operation %d after the failure: type %s completed %v, want an unfinished retry", op.ID, op.Type, op.Completed())
		}
	}
	rt, err := refresh.New(refresh.Config{Engine: b.engine})
	if err != nil {
		t.Fatal(err)
	}
	b.fc.Advance(consistency.OperationRetryPeriodDefault)
	rres, err := rt.Run(context.Background())
	if err != nil || rres.Total.StillPending != 0 {
		t.Fatalf("refresh: %+v %v", rres.Total, err)
	}
	obj, ok := conn.ObjectByName(class, "erin")
	if !ok || obj.Attributes.Get("title") != "ops" {
		t.Fatalf("after refresh the account is %v (found %v)", obj.Attributes, ok)
	}
}

func TestAsyncResourceLeavesOperationsInProgress(t *testing.T) {
	t.Parallel()
	b := setup(t, grouped(), "r1")
	b.conns["r1"].SetAsync(true)
	id := b.add(t, "r1", "frank")
	b.modify(t, id, replace("title", "x"))
	b.fc.Advance(grouping)
	res := run(t, b.task(t, Config{}))
	if res.Total.InProgress != 1 || res.Total.Calls != 1 {
		t.Fatalf("counts %+v", res.Total)
	}
	if refs := b.conns["r1"].PendingAsync(); len(refs) != 1 {
		t.Fatalf("%d async operations on the resource, want 1", len(refs))
	}
}

func TestMaintenanceSkips(t *testing.T) {
	t.Parallel()
	b := setup(t, grouped(), "r1")
	b.add(t, "r1", "gina")
	b.fc.Advance(grouping)
	if err := b.engine.SetMaintenance("r1", true); err != nil {
		t.Fatal(err)
	}
	res := run(t, b.task(t, Config{}))
	if res.Total.Skipped != 1 || res.Total.Calls != 0 {
		t.Fatalf("counts %+v", res.Total)
	}
}

func TestUnmergeableOperationsFailAndAreReported(t *testing.T) {
	t.Parallel()
	b := setup(t, grouped(), "r1")
	uid, err := b.conns["r1"].Put(class, connector.Attributes{"uid": {"hank"}})
	if err != nil {
		t.Fatal(err)
	}
	// The engine refuses a modify after a pending delete; a store may
	// still hold such a list (another writer, a bug): it must not be
	// merged by guessing.
	op := func(id int64, d connector.Delta) shadow.PendingOperation {
		return shadow.PendingOperation{ID: id, Delta: d, Type: shadow.OpGrouped, Status: shadow.StatusPendingExecution,
			Result: shadow.ResultInProgress, RequestedAt: t0}
	}
	sh := &shadow.Shadow{ResourceID: "r1", Class: class, UID: uid.UID, Name: "hank", Exists: true,
		Origin: shadow.OriginAssigned, Pending: []shadow.PendingOperation{
			op(1, connector.Delta{Type: connector.DeltaDelete}),
			op(2, connector.Delta{Type: connector.DeltaModify, Changes: []connector.AttributeDelta{replace("title", "late")}}),
		}}
	if err := b.store.Create(context.Background(), sh); err != nil {
		t.Fatal(err)
	}
	b.fc.Advance(grouping)
	res := run(t, b.task(t, Config{}))
	if res.Total.Failed != 1 || res.Total.Errors != 1 || res.ErrorCount != 1 {
		t.Fatalf("counts %+v, errors %v", res.Total, res.Err())
	}
	if !errors.Is(res.Errors[0], connector.ErrUnmergeable) || res.Errors[0].ShadowID != sh.ID {
		t.Fatalf("error %+v, want ErrUnmergeable for shadow %s", res.Errors[0], sh.ID)
	}
	if b.shadow(t, sh.ID).Unfinished() {
		t.Fatal("the unmergeable operations are still unfinished")
	}
	for kind, n := range b.conns["r1"].CallCounts() {
		if n != 0 {
			t.Errorf("%d %s calls, want none", n, kind)
		}
	}
}

func TestClaimsSplitWork(t *testing.T) {
	t.Parallel()
	b := setup(t, grouped(), "r1")
	for i := 0; i < 20; i++ {
		b.add(t, "r1", fmt.Sprintf("u%02d", i))
	}
	b.fc.Advance(grouping)
	var wg sync.WaitGroup
	total := make([]int, 2)
	for i := range total {
		tk := b.task(t, Config{Owner: fmt.Sprintf("node-%d", i), PageSize: 3, Concurrency: 2})
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := tk.Run(context.Background())
			if err != nil {
				t.Error(err)
			}
			total[i] = res.Total.Calls
		}()
	}
	wg.Wait()
	if total[0]+total[1] != 20 || b.conns["r1"].Calls(memconn.CallAdd) != 20 {
		t.Fatalf("calls %v, adds %d; want 20 in all", total, b.conns["r1"].Calls(memconn.CallAdd))
	}
}

func TestScheduleAndCancel(t *testing.T) {
	t.Parallel()
	b := setup(t, grouped(), "r1")
	for i := 0; i < 6; i++ {
		b.add(t, "r1", fmt.Sprintf("s%d", i))
	}
	b.fc.Advance(grouping)
	runs := make(chan Result, 4)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tk := b.task(t, Config{Concurrency: 1, OnRun: func(r Result, err error) {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("run error %v, want cancelled", err)
		}
		runs <- r
	}, Progress: func(p Progress) {
		if p.Done == 2 {
			cancel()
		}
	}})
	if err := tk.Start(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := tk.Start(ctx, time.Minute); !errors.Is(err, ErrStarted) {
		t.Fatalf("second Start: %v", err)
	}
	select {
	case r := <-runs:
		if r.Total.Examined != 2 {
			t.Fatalf("cancelled during the 2nd shadow, examined %d", r.Total.Examined)
		}
	case <-time.After(guard):
		t.Fatal("no run")
	}
	tk.Suspend()
	if !tk.Suspended() {
		t.Fatal("not suspended")
	}
	tk.Resume()
	tk.RunNow()
	tk.Stop()
	tk.Stop()
	if tk.Running() {
		t.Fatal("running after Stop")
	}
}

func TestNewNamesInvalidFields(t *testing.T) {
	t.Parallel()
	b := setup(t, grouped(), "r1")
	if _, err := New(Config{}); err == nil || !strings.Contains(err.Error(), "Engine is nil") {
		t.Fatalf("New(Config{}) = %v", err)
	}
	_, err := New(Config{Engine: b.engine, ResourceIDs: []string{"r1", "x", "r1"}, Selector: func(string) bool { return true },
		Concurrency: -2})
	for _, want := range []string{"both set", `ResourceIDs[1] = "x"`, `ResourceIDs[2] = "r1": repeated`, "Concurrency = -2"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New() = %v, want it to name %q", err, want)
		}
	}
}

// failingStore fails Get, so every PropagateShadow fails.
type failingStore struct{ *memstore.Store }

func (s failingStore) Get(context.Context, string) (*shadow.Shadow, error) {
	return nil, errors.New("disk on fire")
}

func TestShadowFailuresAreCounted(t *testing.T) {
	t.Parallel()
	fc := connector.NewFakeClock(t0)
	store := memstore.New(memstore.Options{Clock: fc})
	s := grouped()
	e, err := consistency.New(consistency.Config{Store: failingStore{store}, Clock: fc,
		Resources: []consistency.Resource{{ID: "r1", Connector: memconn.New(memconn.Options{}), Settings: &s}}})
	if err != nil {
		t.Fatal(err)
	}
	op := shadow.PendingOperation{ID: 1, Type: shadow.OpGrouped, Status: shadow.StatusPendingExecution,
		Result: shadow.ResultInProgress, RequestedAt: t0.Add(-time.Hour),
		Delta: connector.Delta{Type: connector.DeltaAdd, Attributes: connector.Attributes{"uid": {"x"}}}}
	if err := store.Create(context.Background(), &shadow.Shadow{ResourceID: "r1", Class: class,
		Origin: shadow.OriginAssigned, Pending: []shadow.PendingOperation{op}}); err != nil {
		t.Fatal(err)
	}
	tk, err := New(Config{Engine: e})
	if err != nil {
		t.Fatal(err)
	}
	res, err := tk.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Total.Errors != 1 || res.ErrorCount != 1 || !strings.Contains(res.Err().Error(), "disk on fire") {
		t.Fatalf("result %+v", res)
	}
}
