package refresh

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/memconn"
	"github.com/umbra-idm/umbra/consistency"
	"github.com/umbra-idm/umbra/internal/testsvc"
	"github.com/umbra-idm/umbra/shadow"
	"github.com/umbra-idm/umbra/shadow/memstore"
	"github.com/umbra-idm/umbra/shadow/sqlstore"
)

// storeKind opens an empty store of one implementation for a test.
type storeKind struct {
	name string
	open func(t testing.TB, c connector.Clock) shadow.Store
}

// stores are the stores the selection tests run against: the selection is
// expressed in the query vocabulary, so every store must serve it alike.
// PostgreSQL is skipped when unreachable (failed with UMBRA_FULL=1).
var stores = []storeKind{
	{"memstore", func(t testing.TB, c connector.Clock) shadow.Store { return memstore.New(memstore.Options{Clock: c}) }},
	{"sqlite", func(t testing.TB, c connector.Clock) shadow.Store {
		s, err := sqlstore.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "umbra.db"), sqlstore.Options{Clock: c})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}},
	{"postgres", func(t testing.TB, c connector.Clock) shadow.Store {
		s, err := sqlstore.OpenPostgres(context.Background(), testsvc.PostgresDSN(t), sqlstore.Options{Clock: c})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}},
}

var t0 = time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)

const guard = 10 * time.Second

const class connector.ObjectClass = "account"

type bundle struct {
	fc     *connector.FakeClock
	store  shadow.Store
	conns  map[string]*memconn.Conn
	engine *consistency.Engine
}

// setup makes an engine over a memstore with one memconn resource per ID,
// every resource with settings s (ProbeInterval 0 so that a resource marked
// down is probed at every attempt).
func setup(t testing.TB, s consistency.Settings, resources ...string) *bundle {
	t.Helper()
	return setupWith(t, stores[0], s, resources...)
}

func setupWith(t testing.TB, kind storeKind, s consistency.Settings, resources ...string) *bundle {
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

func settings() consistency.Settings {
	s := consistency.DefaultSettings()
	s.ProbeInterval = 0
	return s
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

// object makes an account on resource r directly and returns its UID.
func (b *bundle) object(t *testing.T, r, name string) string {
	t.Helper()
	id, err := b.conns[r].Put(class, connector.Attributes{"uid": {name}})
	if err != nil {
		t.Fatal(err)
	}
	return id.UID
}

// fixture stores a shadow of an existing account with the given pending
// operations and NextDue, as the engine would have left it.
func (b *bundle) fixture(t *testing.T, r, id string, next time.Time, ops ...shadow.PendingOperation) {
	t.Helper()
	uid := b.object(t, r, id)
	sh := &shadow.Shadow{ID: id, ResourceID: r, Class: class, UID: uid, Name: id, Exists: true,
		Origin: shadow.OriginAssigned, Pending: ops, NextDue: next,
		Attributes: connector.Attributes{"uid": {id}}}
	if err := b.store.Create(context.Background(), sh); err != nil {
		t.Fatal(err)
	}
}

func retryOp(next time.Time) shadow.PendingOperation {
	return shadow.PendingOperation{ID: 1, Type: shadow.OpRetry, Status: shadow.StatusPendingExecution,
		Result: shadow.ResultInProgress, Attempt: 1, RequestedAt: t0.Add(-time.Hour), LastAttemptAt: t0.Add(-time.Hour),
		NextAttemptAt: next, LastError: "connection refused", LastErrorCategory: connector.CategoryNotSent,
		Delta: connector.Delta{Type: connector.DeltaModify, Changes: []connector.AttributeDelta{
			{Op: connector.Replace, Name: "mail", Values: []string{"x@example.org"}}}}}
}

func groupedOp() shadow.PendingOperation {
	op := retryOp(time.Time{})
	op.Type, op.Attempt, op.LastError, op.LastErrorCategory, op.LastAttemptAt = shadow.OpGrouped, 0, "", 0, time.Time{}
	return op
}

// selectionFixtures: per resource, a shadow with a due retry, one whose
// retry is not due yet, one with nothing pending, one with a grouped
// operation (not refresh's business until propagation ran).
func selectionFixtures(t *testing.T, kind storeKind) *bundle {
	b := setupWith(t, kind, settings(), "r1", "r2")
	for _, r := range []string{"r1", "r2"} {
		b.fixture(t, r, r+"-due", t0.Add(-time.Minute), retryOp(t0.Add(-time.Minute)))
		b.fixture(t, r, r+"-later", t0.Add(10*time.Minute), retryOp(t0.Add(10*time.Minute)))
		b.fixture(t, r, r+"-idle", time.Time{})
		b.fixture(t, r, r+"-grouped", time.Time{}, groupedOp())
	}
	return b
}

func (b *bundle) selected(t *testing.T, tk *Task) []string {
	t.Helper()
	var ids []string
	for _, src := range tk.sources(b.fc.Now()) {
		list, err := b.store.List(context.Background(), src.Query)
		if err != nil {
			t.Fatal(err)
		}
		for _, sh := range list {
			if sh.ResourceID != src.ResourceID {
				t.Fatalf("query of %s selected shadow %s of %s", src.ResourceID, sh.ID, sh.ResourceID)
			}
			ids = append(ids, sh.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

func TestSelectionModes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		sel   Selection
		want  []string
		calls map[string]int // modify calls per resource: only due retries
	}{
		{"default: due shadows of every resource", Selection{},
			[]string{"r1-due", "r2-due"}, map[string]int{"r1": 1, "r2": 1}},
		{"due shadows of one resource", Selection{ResourceIDs: []string{"r2"}},
			[]string{"r2-due"}, map[string]int{"r1": 0, "r2": 1}},
		{"unfinished shadows of one resource", Selection{Mode: Unfinished, ResourceIDs: []string{"r1"}},
			[]string{"r1-due", "r1-grouped", "r1-later"}, map[string]int{"r1": 1, "r2": 0}},
		{"every shadow of one resource", Selection{Mode: Forced, ResourceIDs: []string{"r1"}},
			[]string{"r1-due", "r1-grouped", "r1-idle", "r1-later"}, map[string]int{"r1": 1, "r2": 0}},
		{"every shadow", Selection{Mode: Forced},
			[]string{"r1-due", "r1-grouped", "r1-idle", "r1-later", "r2-due", "r2-grouped", "r2-idle", "r2-later"},
			map[string]int{"r1": 1, "r2": 1}},
	}
	for _, kind := range stores {
		for _, tc := range cases {
			t.Run(kind.name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				testSelection(t, kind, tc.sel, tc.want, tc.calls)
			})
		}
	}
}

// testSelection checks that sel selects exactly want (by the task's own
// queries against the store), that a run examines exactly those, and that
// only due retries call the resource (calls: modify calls per resource).
func testSelection(t *testing.T, kind storeKind, sel Selection, want []string, calls map[string]int) {
	b := selectionFixtures(t, kind)
	tk := b.task(t, Config{Selection: sel, Concurrency: 2, PageSize: 2})
	if got := b.selected(t, tk); !slices.Equal(got, want) {
		t.Fatalf("selected %v, want %v", got, want)
	}
	res, err := tk.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Total.Examined != len(want) {
		t.Errorf("examined %d shadows, want %d", res.Total.Examined, len(want))
	}
	for r, n := range calls {
		if got := b.conns[r].Calls(memconn.CallModify); got != n {
			t.Errorf("resource %s: %d modify calls, want %d (only due retries are retried)", r, got, n)
		}
		examined := 0
		for _, id := range want {
			if strings.HasPrefix(id, r+"-") {
				examined++
			}
		}
		if got := res.Resources[r].Examined; got != examined {
			t.Errorf("resource %s: examined %d, want %d", r, got, examined)
		}
	}
	if res.Total.Completed != res.Total.Retried || res.Total.Retried != len(calls)-countZero(calls) {
		t.Errorf("counts %+v", res.Total)
	}
}

func countZero(m map[string]int) int {
	n := 0
	for _, v := range m {
		if v == 0 {
			n++
		}
	}
	return n
}

func TestRetriesOnlyDueOperations(t *testing.T) {
	t.Parallel()
	for _, kind := range stores {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			testRetriesOnlyDue(t, kind)
		})
	}
}

func testRetriesOnlyDue(t *testing.T, kind storeKind) {
	b := setupWith(t, kind, settings(), "r1")
	ctx := context.Background()
	conn := b.conns["r1"]
	conn.Down()
	// s1 is attempted at t0 and fails: its retry falls due at t0+30m.
	o1, err := b.engine.Add(ctx, consistency.AddRequest{ResourceID: "r1", Class: class, Name: "s1",
		Attributes: connector.Attributes{"uid": {"s1"}}})
	if err != nil || o1.Status != consistency.Pending {
		t.Fatalf("add s1: %v %v", o1.Status, err)
	}
	// s2 comes at t0+10m; the probe fails, it is postponed without a call
	// and due at once.
	b.fc.Advance(10 * time.Minute)
	o2, err := b.engine.Add(ctx, consistency.AddRequest{ResourceID: "r1", Class: class, Name: "s2",
		Attributes: connector.Attributes{"uid": {"s2"}}})
	if err != nil || o2.Status != consistency.Pending {
		t.Fatalf("add s2: %v %v", o2.Status, err)
	}
	conn.Up()
	conn.ResetCalls()
	tk := b.task(t, Config{})

	res, err := tk.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Total.Examined != 1 || res.Total.Completed != 1 || conn.Calls(memconn.CallAdd) != 1 {
		t.Fatalf("at +10m: %+v, %d adds; want only s2 (due), completed with one add", res.Total, conn.Calls(memconn.CallAdd))
	}
	if _, ok := conn.ObjectByName(class, "s1"); ok {
		t.Fatal("s1 was retried before its retry time")
	}

	b.fc.Advance(20 * time.Minute)
	res, err = tk.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Total.Examined != 1 || res.Total.Retried != 1 || res.Total.Completed != 1 || res.Total.StillPending != 0 {
		t.Fatalf("at +30m: %+v; want s1 retried and completed", res.Total)
	}
	if _, ok := conn.ObjectByName(class, "s1"); !ok {
		t.Fatal("s1 not on the resource after its retry")
	}
	if conn.Calls(memconn.CallAdd) != 2 {
		t.Fatalf("%d adds in all, want 2", conn.Calls(memconn.CallAdd))
	}
}

func TestDeletesDeadShadowsAndDropsOperationsAfterRetention(t *testing.T) {
	t.Parallel()
	s := settings()
	s.PendingOperationRetentionPeriod = time.Hour
	s.DeadShadowRetentionPeriod = 2 * time.Hour
	b := setup(t, s, "r1")
	ctx := context.Background()
	out, err := b.engine.Add(ctx, consistency.AddRequest{ResourceID: "r1", Class: class, Name: "a",
		Attributes: connector.Attributes{"uid": {"a"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.engine.Delete(ctx, out.Shadow.ID); err != nil {
		t.Fatal(err)
	}
	tk := b.task(t, Config{})
	res, err := tk.Run(ctx)
	if err != nil || res.Total.Examined != 0 {
		t.Fatalf("at once: %+v %v; nothing is due", res.Total, err)
	}
	b.fc.Advance(time.Hour)
	res, err = tk.Run(ctx)
	if err != nil || res.Total.Examined != 1 || res.Total.Dropped != 2 || res.Total.Deleted != 0 {
		t.Fatalf("after retention: %+v %v; want the two operations dropped", res.Total, err)
	}
	b.fc.Advance(time.Hour)
	res, err = tk.Run(ctx)
	if err != nil || res.Total.Deleted != 1 {
		t.Fatalf("after dead retention: %+v %v; want the shadow deleted", res.Total, err)
	}
	if n, _ := b.store.Count(ctx, shadow.Query{}); n != 0 {
		t.Fatalf("%d shadows left", n)
	}
}

func TestCancellationStopsWithinOneShadow(t *testing.T) {
	t.Parallel()
	b := setup(t, settings(), "r1")
	for i := 0; i < 12; i++ {
		b.fixture(t, "r1", "s"+string(rune('a'+i)), t0, retryOp(t0))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var reports []Progress
	tk := b.task(t, Config{Concurrency: 1, PageSize: 5, Progress: func(p Progress) {
		reports = append(reports, p)
		if p.Done == 4 {
			cancel()
		}
	}})
	res, err := tk.Run(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v, want context.Canceled", err)
	}
	if res.Total.Examined != 4 || len(reports) != 4 {
		t.Fatalf("examined %d (%d reports) after cancelling during the 4th, want 4", res.Total.Examined, len(reports))
	}
	if reports[0].Total != 12 {
		t.Errorf("progress Total %d, want 12", reports[0].Total)
	}
	if n := b.conns["r1"].Calls(memconn.CallModify); n != 4 {
		t.Errorf("%d modify calls, want 4", n)
	}
}

func TestQuarantineIsJudgedAfterEachRun(t *testing.T) {
	t.Parallel()
	s := settings()
	s.Quarantine = &consistency.QuarantinePolicy{FailureShare: 0.5}
	b := setup(t, s, "r1", "r2")
	for _, id := range []string{"a", "b", "c"} {
		b.fixture(t, "r1", id, t0, retryOp(t0))
	}
	b.fixture(t, "r2", "d", t0, retryOp(t0))
	b.conns["r1"].FailNextOp(memconn.CallModify, 3, connector.NewError(connector.CategoryNotSent, "modify", errors.New("refused")))
	tk := b.task(t, Config{})
	res, err := tk.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Quarantined, []string{"r1"}) {
		t.Fatalf("Quarantined = %v, want [r1] (%+v)", res.Quarantined, res.Resources)
	}
	if res.Resources["r1"].Retried != 3 || res.Resources["r1"].StillPending != 3 || res.Resources["r2"].Completed != 1 {
		t.Fatalf("per resource %+v", res.Resources)
	}
	st, _ := b.engine.Status("r1")
	if !st.Quarantined {
		t.Fatal("the engine does not hold r1 quarantined")
	}
}

func TestClaimsSplitWorkBetweenProcesses(t *testing.T) {
	t.Parallel()
	for _, kind := range stores {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			testClaims(t, kind)
		})
	}
}

func testClaims(t *testing.T, kind storeKind) {
	b := setupWith(t, kind, settings(), "r1")
	for i := 0; i < 30; i++ {
		b.fixture(t, "r1", "s"+string(rune('A'+i)), t0, retryOp(t0))
	}
	var wg sync.WaitGroup
	results := make([]Result, 2)
	for i, owner := range []string{"node-1", "node-2"} {
		tk := b.task(t, Config{Owner: owner, ClaimTTL: time.Minute, PageSize: 4, Concurrency: 2})
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := tk.Run(context.Background())
			if err != nil {
				t.Error(err)
			}
			results[i] = res
		}()
	}
	wg.Wait()
	if n := results[0].Total.Examined + results[1].Total.Examined; n != 30 {
		t.Fatalf("the two processes examined %d shadows, want 30", n)
	}
	if n := b.conns["r1"].Calls(memconn.CallModify); n != 30 {
		t.Fatalf("%d modify calls, want 30 (no shadow retried twice)", n)
	}
}

func TestScheduledRunsDoNotDrift(t *testing.T) {
	t.Parallel()
	b := setup(t, settings(), "r1")
	b.fixture(t, "r1", "a", t0, retryOp(t0))
	runs := make(chan Result, 10)
	tk := b.task(t, Config{OnRun: func(r Result, err error) {
		if err != nil {
			t.Error(err)
		}
		b.fc.Advance(2 * time.Minute) // each run takes two minutes
		runs <- r
	}})
	t.Cleanup(tk.Stop)
	if err := tk.Start(context.Background(), 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := tk.Start(context.Background(), 10*time.Minute); !errors.Is(err, ErrStarted) {
		t.Fatalf("second Start: %v", err)
	}
	if !tk.Running() {
		t.Fatal("not running")
	}
	next := func() Result {
		select {
		case r := <-runs:
			return r
		case <-time.After(guard):
			t.Fatal("no run")
		}
		return Result{}
	}
	if r := next(); !r.Started.Equal(t0) || r.Total.Examined != 1 {
		t.Fatalf("first run %+v", r)
	}
	for i := 1; i <= 2; i++ {
		if !b.fc.BlockUntil(1, guard) {
			t.Fatal("schedule not waiting")
		}
		b.fc.Set(t0.Add(time.Duration(i) * 10 * time.Minute))
		if r := next(); !r.Started.Equal(t0.Add(time.Duration(i) * 10 * time.Minute)) {
			t.Fatalf("run %d started at +%s", i, r.Started.Sub(t0))
		}
	}
	tk.Suspend()
	if !tk.Suspended() {
		t.Fatal("not suspended")
	}
	tk.RunNow()
	next()
	tk.Resume()
	tk.Stop()
	tk.Stop()
	if tk.Running() {
		t.Fatal("running after Stop")
	}
}

func TestRunWaitsForTheRunUnderWay(t *testing.T) {
	t.Parallel()
	b := setup(t, settings(), "r1")
	b.fixture(t, "r1", "a", t0, retryOp(t0))
	inside := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	tk := b.task(t, Config{Progress: func(Progress) {
		once.Do(func() {
			close(inside)
			<-release
		})
	}})
	done := make(chan error, 1)
	go func() {
		_, err := tk.Run(context.Background())
		done <- err
	}()
	<-inside
	ctx, cancel := context.WithCancel(context.Background())
	waiting := make(chan error, 1)
	go func() {
		_, err := tk.Run(ctx)
		waiting <- err
	}()
	cancel()
	if err := <-waiting; !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "run under way") {
		t.Fatalf("second Run: %v", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := tk.Run(context.Background()); err != nil {
		t.Fatalf("Run after the first ended: %v", err)
	}
}

func TestNewNamesInvalidFields(t *testing.T) {
	t.Parallel()
	b := setup(t, settings(), "r1")
	_, err := New(Config{})
	if err == nil || !strings.Contains(err.Error(), "Engine is nil") {
		t.Fatalf("New(Config{}) = %v", err)
	}
	_, err = New(Config{Engine: b.engine, Concurrency: -1, PageSize: -1, MaxErrors: -1,
		Selection: Selection{Mode: 9, ResourceIDs: []string{"r1", "nope", "r1"}}})
	for _, want := range []string{"Concurrency = -1", "PageSize = -1", "MaxErrors = -1", "Selection.Mode = 9",
		`Selection.ResourceIDs[1] = "nope"`, `Selection.ResourceIDs[2] = "r1": repeated`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New() = %v, want it to name %q", err, want)
		}
	}
	_, err = New(Config{Engine: b.engine, ClaimTTL: time.Second})
	if err == nil || !strings.Contains(err.Error(), "ClaimTTL") {
		t.Errorf("ClaimTTL without Owner: %v", err)
	}
}

func TestModeString(t *testing.T) {
	t.Parallel()
	for m, want := range map[Mode]string{Due: "due", Unfinished: "unfinished", Forced: "forced", 7: "Mode(7)"} {
		if m.String() != want {
			t.Errorf("%d.String() = %q, want %q", m, m.String(), want)
		}
	}
}

// failingStore fails every Get and Update, so every refresh fails (each of
// the test's shadows has a stale NextDue to write).
type failingStore struct{ *memstore.Store }

func (s failingStore) Get(ctx context.Context, id string) (*shadow.Shadow, error) {
	return nil, errors.New("disk on fire")
}

func (s failingStore) Update(ctx context.Context, sh *shadow.Shadow) error {
	return errors.New("disk on fire")
}

func TestShadowFailuresAreCountedNotFatal(t *testing.T) {
	t.Parallel()
	fc := connector.NewFakeClock(t0)
	store := memstore.New(memstore.Options{Clock: fc})
	e, err := consistency.New(consistency.Config{Store: failingStore{store}, Clock: fc,
		Resources: []consistency.Resource{{ID: "r1", Connector: memconn.New(memconn.Options{})}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b", "c"} {
		sh := &shadow.Shadow{ID: id, ResourceID: "r1", Class: class, Origin: shadow.OriginAssigned, NextDue: t0}
		if err := store.Create(context.Background(), sh); err != nil {
			t.Fatal(err)
		}
	}
	tk, err := New(Config{Engine: e, MaxErrors: 2, Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	res, err := tk.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.ErrorCount != 3 || len(res.Errors) != 2 || res.Total.Errors != 3 || res.Resources["r1"].Errors != 3 {
		t.Fatalf("result %+v", res)
	}
	if !strings.Contains(res.Err().Error(), "disk on fire") || res.Errors[0].ShadowID != "a" {
		t.Fatalf("errors %v", res.Err())
	}
}
