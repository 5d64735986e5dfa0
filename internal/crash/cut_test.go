package crash_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/consistency"
	"github.com/umbra-idm/umbra/internal/testsvc"
	"github.com/umbra-idm/umbra/propagation"
	"github.com/umbra-idm/umbra/refresh"
	"github.com/umbra-idm/umbra/shadow"
)

// engine returns an engine over w's store and a journaled connector to w's
// resource, in this process, calling onWrite after every write that reached
// the resource.
func (w *world) engine(clk connector.Clock, onWrite func(op, name string)) *consistency.Engine {
	t := w.t
	journal, err := os.OpenFile(filepath.Join(w.b.Dir, "journal"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { journal.Close() })
	c, err := newConnector(context.Background(), w.db, w.b.dialect())
	if err != nil {
		t.Fatal(err)
	}
	s := settings(w.task)
	e, err := consistency.New(consistency.Config{Clock: clk, Store: w.store,
		Resources: []consistency.Resource{{ID: resID, Connector: &journaled{c: c, journal: journal, onWrite: onWrite}, Settings: &s}}})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// unfinished counts the shadows with unfinished work.
func (w *world) unfinished() int {
	w.t.Helper()
	n, err := w.store.Count(context.Background(), shadow.Query{ResourceID: resID, Unfinished: true})
	if err != nil {
		w.t.Fatalf("count unfinished shadows: %v", err)
	}
	return n
}

// TestConnectionCutRefreshPostgres cuts the store's connection right after
// a write reached the resource, in the middle of a refresh run, and keeps
// new connections out for a while: the run reports store errors (not
// resource errors, not success), no write is sent while the store cannot
// record it, and once the connection is back the same pool carries on and
// every operation ends executed exactly once.
func TestConnectionCutRefreshPostgres(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := testsvc.PostgresDSN(t)
	proxy, viaProxy := testsvc.PostgresProxy(t, dsn)
	w := newWorld(t, taskRefresh, backend{Dir: t.TempDir(), DSN: viaProxy, ResourceDSN: dsn})
	w.seed(30, clockBase)

	const cutAfter = 5
	var writes atomic.Int64
	var cutOp, cutName string
	clk := connector.NewFakeClock(childTime(1, 0))
	eng := w.engine(clk, func(op, name string) {
		if writes.Add(1) == cutAfter {
			cutOp, cutName = op, name
			proxy.Block()
			proxy.Cut()
		}
	})
	task, err := refresh.New(refresh.Config{Engine: eng, Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	res, err := task.Run(ctx)
	if err == nil && res.ErrorCount == 0 {
		t.Fatalf("a refresh run whose store connection was cut reported success: %+v", res.Total)
	}
	saving := false
	for _, ie := range res.Errors {
		var ce *connector.Error
		if errors.As(ie.Err, &ce) {
			t.Errorf("shadow %s: a store failure reported as a resource error: %v", ie.ShadowID, ie.Err)
		}
		saving = saving || strings.Contains(ie.Err.Error(), "saving shadow")
	}
	if !saving {
		t.Errorf("no error says the outcome of the write cut off (a %s of %s) could not be saved: run error %v, item errors %v", cutOp, cutName, err, res.Err())
	}
	t.Logf("cut after the %s of %s; run error: %v; %d item errors, first: %v", cutOp, cutName, err, res.ErrorCount, res.Err())
	if n := writes.Load(); n != cutAfter {
		t.Errorf("%d writes reached the resource while the store was unreachable (the engine must record an attempt before it sends it)", n-cutAfter)
	}

	// Still cut off: nothing moves, nothing is sent.
	clk.Advance(time.Hour)
	res, err = task.Run(ctx)
	if err == nil && res.ErrorCount == 0 {
		t.Fatal("a refresh run without a store connection reported success")
	}
	if n := writes.Load(); n != cutAfter {
		t.Errorf("%d writes reached the resource while the store was unreachable", n-cutAfter)
	}
	if st, _ := eng.Status(resID); st.Availability != consistency.Up {
		t.Errorf("the resource is %s after store failures: a store failure says nothing about it", st.Availability)
	}

	// Back: the pool reconnects and the work completes.
	proxy.Unblock()
	for loop := 0; w.unfinished() > 0; loop++ {
		if loop == 5 {
			t.Fatalf("%d shadows still have work 5 runs after the connection came back", w.unfinished())
		}
		clk.Advance(time.Hour)
		res, err := task.Run(ctx)
		t.Logf("run after reconnect: error %v, item errors %v", err, res.Err())
	}
	w.direct(dsn)
	st := w.check()
	if st.modifyReplays != 0 {
		t.Errorf("%d modifies were sent again after the cut: the engine must read the resource first", st.modifyReplays)
	}
	open, cuts, refused := proxy.Stats()
	t.Logf("proxy: %d connections cut, %d refused while blocked, %d open at the end; %d writes in all", cuts, refused, open, writes.Load())
}

func TestConnectionCutRandomRefreshPostgres(t *testing.T) {
	t.Parallel()
	randomCuts(t, taskRefresh)
}

func TestConnectionCutRandomPropagationPostgres(t *testing.T) {
	t.Parallel()
	randomCuts(t, taskPropagation)
}

// randomCuts runs task while both the store's and the resource's
// connections are cut at random moments (seeded, logged), so that cuts land
// inside the store's statements and inside the resource's transactions (a
// modify reads and updates its row in one). Then it lets the connections
// be and requires quiescence and the model's outcome: nothing lost, nothing
// added twice.
func randomCuts(t *testing.T, task string) {
	ctx := context.Background()
	dsn := testsvc.PostgresDSN(t)
	storeProxy, storeDSN := testsvc.PostgresProxy(t, dsn)
	resProxy, resDSN := testsvc.PostgresProxy(t, dsn)
	w := newWorld(t, task, backend{Dir: t.TempDir(), DSN: storeDSN, ResourceDSN: resDSN})
	shadows, maxRuns := 40, 6
	if os.Getenv(testsvc.EnvFull) == "1" {
		shadows, maxRuns = 60, 25
	}
	w.seed(shadows, clockBase)

	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("UMBRA_CRASH_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("cut times seeded with %d (rerun with UMBRA_CRASH_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 11))
	clk := connector.NewFakeClock(childTime(1, 0))
	eng := w.engine(clk, nil)
	ref, err := refresh.New(refresh.Config{Engine: eng, Concurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	var prop *propagation.Task
	if task == taskPropagation {
		if prop, err = propagation.New(propagation.Config{Engine: eng, Concurrency: 4}); err != nil {
			t.Fatal(err)
		}
	}
	runOnce := func() (errs int) {
		if prop != nil {
			res, err := prop.Run(ctx)
			errs += res.ErrorCount
			if err != nil {
				errs++
			}
		}
		res, err := ref.Run(ctx)
		errs += res.ErrorCount
		if err != nil {
			errs++
		}
		return errs
	}

	// Every write on the resource holds its transaction open a little
	// longer, so that cuts land inside it (a modify reads and updates its
	// row in one transaction; the trigger then logs the call).
	if _, err := w.db.ExecContext(ctx, `CREATE OR REPLACE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN PERFORM pg_sleep(0.003); RETURN NULL; END $$`); err != nil {
		t.Fatal(err)
	}
	if _, err := w.db.ExecContext(ctx, `CREATE OR REPLACE TRIGGER accounts_slow AFTER INSERT OR UPDATE OR DELETE ON accounts
		FOR EACH ROW EXECUTE FUNCTION slow()`); err != nil {
		t.Fatal(err)
	}

	// Cut while the task works: every 20-100 ms the resource's (half of
	// the time), the store's or both connections. (Much more often, and
	// the resource is down at nearly every probe: nothing moves.)
	stop := make(chan struct{})
	var cutter sync.WaitGroup
	var storeCuts, resCuts atomic.Int64
	delays := make([]time.Duration, 200)
	which := make([]int, 200)
	for i := range delays {
		delays[i] = time.Duration(20+rng.IntN(81)) * time.Millisecond
		which[i] = []int{0, 1, 1, 2}[rng.IntN(4)] // 0 store, 1 resource, 2 both
	}
	cutter.Add(1)
	go func() {
		defer cutter.Done()
		for i := 0; ; i = (i + 1) % len(delays) {
			select {
			case <-stop:
				return
			case <-time.After(delays[i]):
			}
			if which[i] != 1 {
				storeCuts.Add(int64(storeProxy.Cut()))
			}
			if which[i] != 0 {
				resCuts.Add(int64(resProxy.Cut()))
			}
		}
	}()
	left := func() bool { // a count that fails under a cut: keep going
		n, err := w.store.Count(ctx, shadow.Query{ResourceID: resID, Unfinished: true})
		return err != nil || n > 0
	}
	runs, errs := 0, 0
	for ; runs < maxRuns && left(); runs++ {
		clk.Advance(time.Hour)
		errs += runOnce()
	}
	close(stop)
	cutter.Wait()
	// The first statement on a pooled connection cut last may still fail
	// (database/sql learns of the cut by using it): count with left.
	for loop := 0; left(); loop++ {
		if loop == 10 {
			t.Fatalf("%d shadows still have work 10 runs after the cuts stopped", w.unfinished())
		}
		clk.Advance(time.Hour)
		runOnce()
	}
	w.direct(dsn)
	st := w.check()
	t.Logf("%s: %d runs under cuts with %d errors reported; %d store and %d resource connections cut; %d modifies repeated (replace: idempotent)",
		task, runs, errs, storeCuts.Load(), resCuts.Load(), st.modifyReplays)
	for _, r := range st.replayed {
		name := strings.Fields(r)[0]
		var lines []string
		entries, _ := journalEntries(w.b.Dir)
		for _, e := range entries {
			if len(e) > 1 && e[1] == name {
				lines = append(lines, strings.Join(e, " "))
			}
		}
		t.Logf("repeated: %s; journal: %s", r, strings.Join(lines, " | "))
	}
	if storeCuts.Load() == 0 || resCuts.Load() == 0 {
		t.Error("no connection was cut: the test proved nothing")
	}
}

// TestConnectionLostSaveAnswerPostgres: the store's connection is cut
// after it executed the engine's save of an operation's outcome and before
// the answer came back. The engine reports a store error for that shadow
// (the outcome did reach the store, but the engine cannot know), the rest
// of the run goes on, and nothing is sent twice or lost.
func TestConnectionLostSaveAnswerPostgres(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := testsvc.PostgresDSN(t)
	proxy, viaProxy := testsvc.PostgresProxy(t, dsn)
	w := newWorld(t, taskRefresh, backend{Dir: t.TempDir(), DSN: viaProxy, ResourceDSN: dsn})
	w.seed(15, clockBase)
	ids := map[string]string{}
	for _, wt := range w.wants {
		ids[wt.name] = wt.id
	}

	var writes atomic.Int64
	var trapped string
	var cut <-chan struct{}
	clk := connector.NewFakeClock(childTime(1, 0))
	eng := w.engine(clk, func(op, name string) {
		if writes.Add(1) == 3 {
			// The next statement naming the shadow is the save of the
			// outcome of this write.
			trapped = name
			id := ids[name]
			cut = proxy.CutAnswerTo(func(b []byte) bool { return len(b) > 0 && b[0] != 'Q' && containsAll(b, id) })
		}
	})
	task, err := refresh.New(refresh.Config{Engine: eng, Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	due := w.unfinished()
	res, err := task.Run(ctx)
	if cut == nil {
		t.Fatal("fewer than 3 writes in the first run")
	}
	select {
	case <-cut:
	default:
		t.Fatalf("the save of %s's outcome never went out", trapped)
	}
	found := false
	for _, ie := range res.Errors {
		var ce *connector.Error
		if ie.ShadowID == ids[trapped] {
			found = true
			if errors.As(ie.Err, &ce) || !strings.Contains(ie.Err.Error(), "saving shadow") {
				t.Errorf("shadow %s: want a store error (saving the shadow), got: %v", trapped, ie.Err)
			}
		}
	}
	if !found {
		t.Errorf("no error reported for %s, whose save lost its answer (run error %v, item errors %v)", trapped, err, res.Err())
	}
	if res.Total.Examined != due {
		t.Errorf("the run stopped after the lost answer: %d of %d shadows with work examined", res.Total.Examined, due)
	}
	for loop := 0; w.unfinished() > 0; loop++ {
		if loop == 5 {
			t.Fatalf("%d shadows still have work after 5 more runs", w.unfinished())
		}
		clk.Advance(time.Hour)
		if _, err := task.Run(ctx); err != nil {
			t.Logf("run: %v", err)
		}
	}
	w.direct(dsn)
	st := w.check()
	if st.modifyReplays != 0 {
		t.Errorf("%d modifies sent twice", st.modifyReplays)
	}
	t.Logf("the save after the write to %s lost its answer; reported as: store error; %d writes in all", trapped, writes.Load())
}

// TestAddLostInsertAnswerPostgres: the engine adds an account through
// sqltable, the INSERT takes effect and its answer is lost with the
// connection. The add must stay pending (outcome unknown), not fail: a
// failed add marks the shadow dead while the account exists on the
// resource, with nothing left to own it. The next refresh reads the account
// by name and links it: one account, one live shadow.
func TestAddLostInsertAnswerPostgres(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := testsvc.PostgresDSN(t)
	proxy, viaProxy := testsvc.PostgresProxy(t, dsn)
	w := newWorld(t, taskRefresh, backend{Dir: t.TempDir(), DSN: dsn, ResourceDSN: viaProxy})
	clk := connector.NewFakeClock(childTime(1, 0))
	eng := w.engine(clk, nil)

	const name = "lost-answer-1"
	cut := proxy.CutAnswerTo(func(b []byte) bool { return containsAll(b, name) })
	out, err := eng.Add(ctx, consistency.AddRequest{ResourceID: resID, Class: class, Name: name,
		Attributes: connector.Attributes{"username": {name}, "v": {value(name, 0)}, "seq": {"0"}}})
	<-cut
	if err != nil || out.Status != consistency.Pending {
		t.Fatalf("add whose INSERT took effect but whose answer was lost: %v, %v; want pending (outcome unknown)", out.Status, err)
	}
	w.wants = append(w.wants, want{id: out.Shadow.ID, name: name, kind: kindNewAdd, exists: true,
		v: value(name, 0), seq: "0", addSeq: "0"})
	for loop := 0; w.unfinished() > 0; loop++ {
		if loop == 5 {
			t.Fatal("the add is still pending after 5 refreshes")
		}
		clk.Advance(time.Hour)
		task, err := refresh.New(refresh.Config{Engine: eng})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := task.Run(ctx); err != nil {
			t.Logf("refresh: %v", err)
		}
	}
	w.direct(dsn)
	w.check()
	entries, err := journalEntries(w.b.Dir)
	if err != nil {
		t.Fatal(err)
	}
	var calls []string
	for _, e := range entries {
		calls = append(calls, strings.Join(e, " "))
	}
	if got, want := strings.Join(calls, " | "), "add "+name+" 0 | found "+name; got != want {
		t.Errorf("calls on the resource: %s; want the add, then a read by name and nothing more", got)
	}
}
