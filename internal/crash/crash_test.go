package crash_test

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/consistency"
	"github.com/umbra-idm/umbra/internal/testsvc"
	"github.com/umbra-idm/umbra/shadow"
	"github.com/umbra-idm/umbra/shadow/sqlstore"
)

// killsPerTest is how many children each crash test kills: a few in the
// normal suite, 25 under UMBRA_FULL=1 (100 over the four tests, with live
// sync's own crash test on top).
func killsPerTest() int {
	if os.Getenv(testsvc.EnvFull) == "1" {
		return 25
	}
	return 3
}

func TestCrashRefreshSQLite(t *testing.T) {
	t.Parallel()
	crashTest(t, taskRefresh, backend{Dir: t.TempDir()})
}

func TestCrashRefreshPostgres(t *testing.T) {
	t.Parallel()
	crashTest(t, taskRefresh, backend{Dir: t.TempDir(), DSN: testsvc.PostgresDSN(t)})
}

func TestCrashPropagationSQLite(t *testing.T) {
	t.Parallel()
	crashTest(t, taskPropagation, backend{Dir: t.TempDir()})
}

func TestCrashPropagationPostgres(t *testing.T) {
	t.Parallel()
	crashTest(t, taskPropagation, backend{Dir: t.TempDir(), DSN: testsvc.PostgresDSN(t)})
}

// The kinds of seeded shadow (index i of a round: kind i%5).
const (
	kindNewAdd       = iota // a new add, then modifies
	kindModify              // an existing object, modifies
	kindDelete              // an existing object, deleted
	kindModifyDelete        // an existing object, modifies, then deleted
	kindAddDelete           // a new add deleted before it was sent: never on the resource
	kinds
)

// want is the model of one seeded shadow: what the resource must hold at
// the end, and which writes must have reached it.
type want struct {
	id, name string
	kind     int
	// modifies is how many modifies were queued (seq 1..modifies, each
	// replacing v and seq).
	modifies int
	// exists: the account is on the resource at the end, with v and seq.
	exists bool
	v, seq string
	// addSeq is the seq of the one insert (empty: no insert may happen);
	// modSeqs the seqs of the updates that must each have happened;
	// deleted: exactly one delete must have happened.
	addSeq  string
	modSeqs []string
	deleted bool
}

func value(name string, k int) string { return "v" + strconv.Itoa(k) + "-" + name }

func replace(name string, k int) []connector.AttributeDelta {
	return []connector.AttributeDelta{
		{Op: connector.Replace, Name: "v", Values: []string{value(name, k)}},
		{Op: connector.Replace, Name: "seq", Values: []string{strconv.Itoa(k)}},
	}
}

// world is the parent's view of one crash test.
type world struct {
	t     *testing.T
	task  string
	b     backend
	store *sqlstore.Store
	db    *sql.DB
	conn  connector.Connector
	wants []want
	round int
}

func newWorld(t *testing.T, task string, b backend) *world {
	ctx := context.Background()
	st, err := b.openStore(ctx, connector.NewFakeClock(clockBase))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	db, err := b.openResource(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	conn, err := newConnector(ctx, db, b.dialect())
	if err != nil {
		t.Fatal(err)
	}
	return &world{t: t, task: task, b: b, store: st, db: db, conn: conn}
}

// direct re-opens the world's store and resource on dsn, straight to the
// server, for the checks after a test that cut connections through a
// proxy: a pooled connection cut last fails its first statement (pgx
// learns of a cut by using it), which would fail a check, not the engine.
func (w *world) direct(dsn string) {
	t := w.t
	ctx := context.Background()
	b := backend{Dir: w.b.Dir, DSN: dsn}
	st, err := b.openStore(ctx, connector.NewFakeClock(clockBase))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	db, err := b.openResource(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	w.store, w.db = st, db
}

// seed adds a round of n shadows with pending work at time now, through the
// consistency engine: existing objects are made first by an engine that
// executes at once, the pending work by one that postpones it (maintenance,
// for refresh) or queues it (grouping, for propagation).
func (w *world) seed(n int, now time.Time) {
	t := w.t
	ctx := context.Background()
	clk := connector.NewFakeClock(now)
	direct := settings(taskRefresh)
	queue := settings(w.task)
	if w.task == taskRefresh {
		queue.Maintenance = true
	}
	engine := func(s consistency.Settings) *consistency.Engine {
		e, err := consistency.New(consistency.Config{Clock: clk, Store: w.store,
			Resources: []consistency.Resource{{ID: resID, Connector: w.conn, Settings: &s}}})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	de, qe := engine(direct), engine(queue)
	round := w.round
	w.round++
	for i := range n {
		name := fmt.Sprintf("r%d-%d", round, i)
		wt := want{name: name, kind: i % kinds, modifies: 1 + i%3}
		attrs := connector.Attributes{"username": {name}, "v": {value(name, 0)}, "seq": {"0"}}
		req := consistency.AddRequest{ResourceID: resID, Class: class, Name: name, Attributes: attrs}
		switch wt.kind {
		case kindNewAdd, kindAddDelete:
			out, err := qe.Add(ctx, req)
			if err != nil || out.Status == consistency.Done {
				t.Fatalf("seed %s: queued add: %v, %v", name, out.Status, err)
			}
			wt.id = out.Shadow.ID
		default:
			out, err := de.Add(ctx, req)
			if err != nil || out.Status != consistency.Done {
				t.Fatalf("seed %s: add: %v, %v", name, out.Status, err)
			}
			wt.id = out.Shadow.ID
		}
		clk.Advance(time.Millisecond)
		if wt.kind != kindDelete && wt.kind != kindAddDelete {
			for k := 1; k <= wt.modifies; k++ {
				out, err := qe.Modify(ctx, wt.id, replace(name, k))
				if err != nil || out.Status == consistency.Done {
					t.Fatalf("seed %s: queued modify %d: %v, %v", name, k, out.Status, err)
				}
				clk.Advance(time.Millisecond)
			}
		}
		if wt.kind == kindDelete || wt.kind == kindModifyDelete || wt.kind == kindAddDelete {
			out, err := qe.Delete(ctx, wt.id)
			if err != nil || (out.Status == consistency.Done) != (wt.kind == kindAddDelete) {
				t.Fatalf("seed %s: delete: %v, %v", name, out.Status, err)
			}
		}
		w.model(&wt)
		w.wants = append(w.wants, wt)
	}
}

// model fills in what the resource must show for wt.
func (w *world) model(wt *want) {
	m := wt.modifies
	grouped := w.task == taskPropagation
	switch wt.kind {
	case kindNewAdd:
		wt.exists, wt.v, wt.seq = true, value(wt.name, m), strconv.Itoa(m)
		wt.addSeq = "0"
		if grouped {
			wt.addSeq = strconv.Itoa(m) // the modifies merge into the add
		} else {
			for k := 1; k <= m; k++ {
				wt.modSeqs = append(wt.modSeqs, strconv.Itoa(k))
			}
		}
	case kindModify:
		wt.exists, wt.v, wt.seq = true, value(wt.name, m), strconv.Itoa(m)
		wt.addSeq = "0"
		if grouped {
			wt.modSeqs = []string{strconv.Itoa(m)} // one merged modify
		} else {
			for k := 1; k <= m; k++ {
				wt.modSeqs = append(wt.modSeqs, strconv.Itoa(k))
			}
		}
	case kindDelete:
		wt.addSeq, wt.deleted = "0", true
	case kindModifyDelete:
		wt.addSeq, wt.deleted = "0", true
		if !grouped { // grouped, modify then delete merge into the delete
			for k := 1; k <= m; k++ {
				wt.modSeqs = append(wt.modSeqs, strconv.Itoa(k))
			}
		}
	case kindAddDelete:
		// cancelled at once: nothing is ever sent
	}
}

// child is one started child process.
type child struct {
	cmd     *exec.Cmd
	started chan bool     // true when the child printed "started"
	lines   chan []string // everything it printed, once it ended
	stderr  bytes.Buffer
}

func (w *world) start(n int, selfKill int64, killOp string) *child {
	t := w.t
	env, err := json.Marshal(childConfig{Task: w.task, Backend: w.b, Child: n, SelfKill: selfKill, SelfKillOp: killOp})
	if err != nil {
		t.Fatal(err)
	}
	c := &child{started: make(chan bool, 1), lines: make(chan []string, 1)}
	c.cmd = exec.Command(os.Args[0], "-test.run=^$")
	c.cmd.Env = append(os.Environ(), envChild+"="+string(env))
	c.cmd.Stderr = &c.stderr
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		var lines []string
		sc := bufio.NewScanner(out)
		signalled := false
		for sc.Scan() {
			lines = append(lines, sc.Text())
			if sc.Text() == "started" && !signalled {
				c.started <- true
				signalled = true
			}
		}
		if !signalled {
			c.started <- false
		}
		c.lines <- lines
	}()
	return c
}

// wait waits for c to end and reports whether SIGKILL ended it.
func (c *child) wait() (killed bool, lines []string, err error) {
	lines = <-c.lines
	err = c.cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			return true, lines, nil
		}
	}
	return false, lines, err
}

// crashTest seeds work, kills children running task until enough kills
// were made (seeding another round whenever the work ran out), lets a last
// child run to quiescence and checks the outcome against the model.
func crashTest(t *testing.T, task string, b backend) {
	if testing.Short() {
		t.Skip("crash test: starts and kills child processes")
	}
	began := time.Now()
	w := newWorld(t, task, b)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("UMBRA_CRASH_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("kill times seeded with %d (rerun with UMBRA_CRASH_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	target := killsPerTest()
	const roundSize = 30
	ctx := context.Background()
	var kills, selfKills, children int
	for n := 0; kills < target; n++ {
		if n >= 10*target+10 {
			t.Fatalf("only %d kills in %d children", kills, n)
		}
		left, err := w.store.Count(ctx, shadow.Query{ResourceID: resID, Unfinished: true})
		if err != nil {
			t.Fatal(err)
		}
		if left == 0 {
			w.seed(roundSize, childTime(n, -10))
		}
		// A third of the children kill themselves right after the k-th
		// add, modify, delete or any write reached the resource: the
		// window a random kill rarely hits.
		var selfKill int64
		var killOp string
		switch {
		case n < 2:
			// The first two children die right after their first add
			// and first modify: the checks below require that both were
			// settled by a read, so every run proves it.
			selfKill, killOp = 1, []string{"add", "modify"}[n]
		case rng.IntN(3) == 0:
			selfKill = 1 + rng.Int64N(3)
			killOp = []string{"add", "modify", "delete", ""}[rng.IntN(4)]
		}
		c := w.start(n, selfKill, killOp)
		children++
		if !<-c.started {
			_, lines, err := c.wait()
			t.Fatalf("child %d ended before it started: %v\n%s%s", n, err, lines, c.stderr.String())
		}
		var timer *time.Timer
		var hung atomic.Bool
		if selfKill == 0 {
			time.Sleep(time.Duration(rng.IntN(40_000)) * time.Microsecond)
			_ = c.cmd.Process.Signal(syscall.SIGKILL)
		} else {
			// A child that does not kill itself (its work ran out first)
			// ends by itself; one that hangs is killed.
			timer = time.AfterFunc(60*time.Second, func() {
				hung.Store(true)
				_ = c.cmd.Process.Signal(syscall.SIGKILL)
			})
		}
		killed, lines, err := c.wait()
		if timer != nil {
			timer.Stop()
		}
		if hung.Load() {
			t.Fatalf("child %d neither killed itself nor ended in 60 s\n%s", n, c.stderr.String())
		}
		switch {
		case killed:
			kills++
			if selfKill > 0 {
				selfKills++
			}
		case err != nil:
			t.Fatalf("child %d failed: %v\n%s", n, err, c.stderr.String())
		case len(lines) == 0 || lines[len(lines)-1] != "done":
			t.Fatalf("child %d ended without finishing: %q\n%s", n, lines, c.stderr.String())
		}
	}
	c := w.start(10*target+20, 0, "")
	<-c.started
	if killed, lines, err := c.wait(); killed || err != nil || len(lines) == 0 || lines[len(lines)-1] != "done" {
		t.Fatalf("final child: killed %v, %v, output %q\n%s", killed, err, lines, c.stderr.String())
	}
	children++
	st := w.check()
	if st.addsSettled == 0 || st.modifiesSettled == 0 {
		t.Errorf("%d adds and %d modifies cut off by a kill were settled by a read; the first two children should have made one of each",
			st.addsSettled, st.modifiesSettled)
	}
	t.Logf("%s over %s: %d kills (%d at a random time, %d right after a write reached the resource), %d children, %d shadows seeded in %d rounds, %s",
		task, w.b.dialect(), kills, kills-selfKills, selfKills, children, len(w.wants), w.round, time.Since(began).Round(time.Millisecond))
	t.Logf("adds settled by a read by name after a kill: %d; modifies found applied by a read after a kill: %d; modify calls repeated on the resource: %d (harmless: every modify replaces v and seq, and the final values equal the model)",
		st.addsSettled, st.modifiesSettled, st.modifyReplays)
}

// stats are what check counted.
type stats struct {
	addsSettled, modifiesSettled, modifyReplays int
	replayed                                    []string // "name seq k" of the repeated modifies
}

// check compares the resource, the calls log, the journal and the store with
// the model.
func (w *world) check() stats {
	t := w.t
	ctx := context.Background()
	var st stats

	// The resource holds exactly the model's accounts, with its values.
	rows, err := w.db.QueryContext(ctx, "SELECT username, v, seq FROM accounts")
	if err != nil {
		t.Fatal(err)
	}
	type acct struct{ v, seq string }
	accounts := map[string]acct{}
	for rows.Next() {
		var name string
		var v, seq sql.NullString
		if err := rows.Scan(&name, &v, &seq); err != nil {
			t.Fatal(err)
		}
		accounts[name] = acct{v.String, seq.String}
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	byName := map[string]*want{}
	for i := range w.wants {
		wt := &w.wants[i]
		byName[wt.name] = wt
		a, ok := accounts[wt.name]
		switch {
		case ok != wt.exists:
			t.Errorf("%s (kind %d): on the resource %v, want %v", wt.name, wt.kind, ok, wt.exists)
		case ok && (a.v != wt.v || a.seq != wt.seq):
			t.Errorf("%s (kind %d): v=%q seq=%q on the resource, want v=%q seq=%q (a change was lost or applied out of order)",
				wt.name, wt.kind, a.v, a.seq, wt.v, wt.seq)
		}
	}
	for name := range accounts {
		if byName[name] == nil {
			t.Errorf("account %s on the resource is not in the model", name)
		}
	}

	// Every write that reached the resource, from the trigger log.
	rows, err = w.db.QueryContext(ctx, "SELECT op, username, seq FROM calls ORDER BY n")
	if err != nil {
		t.Fatal(err)
	}
	adds, deletes := map[string][]string{}, map[string]int{}
	mods := map[string]map[string]int{}
	for rows.Next() {
		var op, name string
		var seq sql.NullString
		if err := rows.Scan(&op, &name, &seq); err != nil {
			t.Fatal(err)
		}
		switch op {
		case "add":
			adds[name] = append(adds[name], seq.String)
		case "delete":
			deletes[name]++
		case "modify":
			if mods[name] == nil {
				mods[name] = map[string]int{}
			}
			mods[name][seq.String]++
		}
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range w.wants {
		wt := &w.wants[i]
		wantAdds := []string{}
		if wt.addSeq != "" {
			wantAdds = []string{wt.addSeq}
		}
		if got := adds[wt.name]; fmt.Sprint(got) != fmt.Sprint(wantAdds) {
			t.Errorf("%s (kind %d): inserts on the resource with seq %v, want %v", wt.name, wt.kind, got, wantAdds)
		}
		if wantDel := map[bool]int{true: 1}[wt.deleted]; deletes[wt.name] != wantDel {
			t.Errorf("%s (kind %d): %d deletes on the resource, want %d", wt.name, wt.kind, deletes[wt.name], wantDel)
		}
		for _, seq := range wt.modSeqs {
			switch n := mods[wt.name][seq]; {
			case n == 0:
				t.Errorf("%s (kind %d): modify seq %s never reached the resource", wt.name, wt.kind, seq)
			case n > 1:
				st.modifyReplays += n - 1
				st.replayed = append(st.replayed, wt.name+" seq "+seq)
			}
		}
		for seq := range mods[wt.name] {
			if !contains(wt.modSeqs, seq) {
				t.Errorf("%s (kind %d): an update with seq %s reached the resource; the model has %v", wt.name, wt.kind, seq, wt.modSeqs)
			}
		}
	}

	// The journal: no add ever met the object an earlier attempt made, and
	// every add a child died right after was settled by a read by name.
	entries, err := journalEntries(w.b.Dir)
	if err != nil {
		t.Fatal(err)
	}
	killedAfter := map[string]bool{} // "op name" of self-kills not yet settled
	for _, e := range entries {
		if len(e) < 2 {
			continue
		}
		switch e[0] {
		case "dup":
			t.Errorf("an add of %s collided with an existing account: a second add of one object was sent", e[1])
		case "kill":
			if len(e) == 3 {
				killedAfter[e[1]+" "+e[2]] = true
			}
		case "found":
			if killedAfter["add "+e[1]] {
				delete(killedAfter, "add "+e[1])
				st.addsSettled++
			}
		case "read":
			if killedAfter["modify "+e[1]] {
				delete(killedAfter, "modify "+e[1])
				st.modifiesSettled++
			}
		case "add":
			if killedAfter["add "+e[1]] {
				t.Errorf("%s was added again after a kill right after its add reached the resource, without a read by name first", e[1])
			}
		}
	}
	for k := range killedAfter {
		if k[:4] == "add " {
			t.Errorf("add of %s: the child died right after it reached the resource, and no later read by name settled it", k[4:])
		}
	}

	// The store: nothing pending, nothing given up, state as the model.
	for i := range w.wants {
		wt := &w.wants[i]
		sh, err := w.store.Get(ctx, wt.id)
		if err != nil {
			t.Errorf("%s: %v", wt.name, err)
			continue
		}
		if sh.Unfinished() || sh.NeedsReconciliation {
			t.Errorf("%s (kind %d): unfinished %v, needs reconciliation %v", wt.name, wt.kind, sh.Unfinished(), sh.NeedsReconciliation)
		}
		for _, op := range sh.Pending {
			if op.Result == shadow.ResultFailure && op.CancelReason == "" {
				t.Errorf("%s (kind %d): operation %d (%s) failed: %s", wt.name, wt.kind, op.ID, op.Delta.Type, op.LastError)
			}
		}
		if sh.Live() != wt.exists {
			t.Errorf("%s (kind %d): shadow live %v, want %v (dead %v)", wt.name, wt.kind, sh.Live(), wt.exists, sh.Dead)
		}
		if wt.exists && (sh.Attributes.Get("v") != wt.v || sh.Attributes.Get("seq") != wt.seq) {
			t.Errorf("%s (kind %d): shadow caches v=%q seq=%q, want %q %q", wt.name, wt.kind,
				sh.Attributes.Get("v"), sh.Attributes.Get("seq"), wt.v, wt.seq)
		}
	}
	n, err := w.store.Count(ctx, shadow.Query{ResourceID: resID})
	if err != nil {
		t.Fatal(err)
	}
	if n != len(w.wants) {
		ids := make([]string, 0)
		all, _ := w.store.List(ctx, shadow.Query{ResourceID: resID})
		for _, s := range all {
			ids = append(ids, s.Name)
		}
		sort.Strings(ids)
		t.Errorf("%d shadows in the store, %d seeded: %v", n, len(w.wants), ids)
	}
	return st
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
