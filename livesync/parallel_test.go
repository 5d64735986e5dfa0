package livesync_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/memconn"
	"github.com/umbra-idm/umbra/livesync"
)

// TestParallelWorkersRandomized runs a long random stream of creates,
// modifies, renames and deletes of many objects through four workers while
// the handler fails at random. After every run it checks that each object's
// changes reached the handler in stream order, and that the stored token
// never passes a change that was not done; at the end, that every change was
// delivered and the shadows mirror the resource.
func TestParallelWorkersRandomized(t *testing.T) {
	t.Parallel()
	for _, precise := range []bool{true, false} {
		t.Run("precise="+strconv.FormatBool(precise), func(t *testing.T) {
			t.Parallel()
			testRandomized(t, randomized{precise: precise, workers: 4, group: 3, changes: 1500, failPct: 3, maxFetch: 50, seed: 7})
		})
	}
}

// randomized configures testRandomized.
type randomized struct {
	precise        bool
	workers, group int
	changes        int
	failPct        int
	maxFetch       int
	seed           uint64
}

func testRandomized(t *testing.T, p randomized) {
	precise := p.precise
	b := setup(t, memconn.Options{PreciseTokens: precise, MaxFetch: p.maxFetch})
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(p.seed, 1))
	delivered := map[int]bool{} // stream positions whose change went through
	lastSeq := map[string]int{} // per object: the last sequence delivered in this run
	var orderErr error
	removedAt := map[string]int{} // uid → position of its delete
	task := b.task(t, func(c *livesync.Config) {
		c.Workers = p.workers
		c.GroupCommit = p.group
		c.Handler = func(_ context.Context, ev livesync.Event) error {
			mu.Lock()
			defer mu.Unlock()
			if rng.IntN(100) < p.failPct {
				return errors.New("random failure")
			}
			uid := ev.Change.ID.UID
			pos := removedAt[uid]
			if ev.Change.Type != connector.ChangeDelete {
				pos, _ = strconv.Atoi(ev.Change.Object.Get("seq"))
			}
			if last, ok := lastSeq[uid]; ok && pos <= last && orderErr == nil {
				orderErr = errors.New("object " + uid + ": change at " + strconv.Itoa(pos) + " after " + strconv.Itoa(last))
			}
			lastSeq[uid] = pos
			delivered[pos] = true
			return nil
		}
	})
	mustRun(t, task)

	// The stream: every write sets "seq" to the log position it makes.
	var live []connector.Identifiers
	gen := rand.New(rand.NewPCG(p.seed, 2))
	pos := 0
	for pos < p.changes {
		pos++
		seq := strconv.Itoa(pos)
		switch n := gen.IntN(100); {
		case len(live) < 40 || n < 15:
			id, err := b.conn.Put(class, connector.Attributes{"uid": {"n" + seq}, "seq": {seq}})
			if err != nil {
				t.Fatal(err)
			}
			live = append(live, id)
		case n < 22:
			i := gen.IntN(len(live))
			if err := b.conn.Remove(class, live[i].UID); err != nil {
				t.Fatal(err)
			}
			removedAt[live[i].UID] = pos
			live = append(live[:i], live[i+1:]...)
		case n < 30:
			i := gen.IntN(len(live))
			if _, err := b.conn.ModifyDirect(class, live[i].UID,
				connector.AttributeDelta{Op: connector.Replace, Name: "uid", Values: []string{"r" + seq}},
				connector.AttributeDelta{Op: connector.Replace, Name: "seq", Values: []string{seq}}); err != nil {
				t.Fatal(err)
			}
		default:
			i := gen.IntN(len(live))
			if _, err := b.conn.ModifyDirect(class, live[i].UID,
				connector.AttributeDelta{Op: connector.Replace, Name: "seq", Values: []string{seq}},
				connector.AttributeDelta{Op: connector.AddValues, Name: "hist", Values: []string{seq}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got := b.latest(t); got != tok(pos) {
		t.Fatalf("stream ends at %q, want %d", got, pos)
	}

	for runs := 1; ; runs++ {
		if runs > 2000 {
			t.Fatal("the stream was not done after 2000 runs")
		}
		mu.Lock()
		clear(lastSeq)
		mu.Unlock()
		res, err := task.Run(context.Background())
		mu.Lock()
		if orderErr != nil {
			t.Fatal(orderErr)
		}
		stored, _ := strconv.Atoi(string(b.token(t, task)))
		for p := 1; p <= stored; p++ {
			if !delivered[p] {
				t.Fatalf("run %d: token %d passes the change at %d, which was never done (%v)", runs, stored, p, err)
			}
		}
		mu.Unlock()
		if err == nil {
			if res.TokenAfter != tok(pos) {
				t.Fatalf("run without error ended at %q", res.TokenAfter)
			}
			break
		}
	}
	for p := 1; p <= pos; p++ {
		if !delivered[p] {
			t.Fatalf("change at %d never delivered", p)
		}
	}
	b.assertMirror(t)
}

func TestParallelSetAsideAndStop(t *testing.T) {
	t.Parallel()
	b := setup(t, memconn.Options{PreciseTokens: true})
	task := b.task(t, func(c *livesync.Config) {
		c.Workers = 3
		c.ErrorPolicy.Rules = []livesync.ErrorRule{{Categories: []connector.Category{connector.CategoryThrottled}, Action: livesync.ActionSetAside}}
	})
	mustRun(t, task)
	ids := b.stream(t, 30)
	b.modify(t, ids[4].UID, "mail", "x") // waits behind o4's set-aside create
	b.rec.setFail(func(ev livesync.Event) error {
		if ev.Change.ID.Name == "o4" && ev.Attempt == 0 {
			return connector.NewError(connector.CategoryThrottled, "host", errors.New("slow down"))
		}
		return nil
	})
	res := mustRun(t, task)
	if res.Processed != 29 || res.SetAside != 2 {
		t.Fatalf("run: %+v", res)
	}
	res = mustRun(t, task)
	if res.Retried != 2 || res.Processed != 2 {
		t.Fatalf("retry run: %+v", res)
	}
	b.assertMirror(t)

	// A stop with workers: the token stays before the failed change.
	b.stream2(t, "p", 20)
	b.rec.setFail(failOn("p7", 1))
	before := b.token(t, task)
	res, err := task.Run(context.Background())
	if err == nil {
		t.Fatal("no error")
	}
	n, _ := strconv.Atoi(string(res.TokenAfter))
	b0, _ := strconv.Atoi(string(before))
	if n > b0+7 {
		t.Fatalf("token %d passed the failed change at %d", n, b0+8)
	}
	mustRun(t, task)
	b.assertMirror(t)
}

func (b *bundle) stream2(t *testing.T, prefix string, n int) {
	t.Helper()
	for i := range n {
		b.put(t, prefix+strconv.Itoa(i))
	}
}

// FuzzRandomized runs random streams through random settings: workers,
// group commits, token precision and failure rates. (Fetches are small and
// failures under 10%: with imprecise tokens a fetch is done only when all of
// its changes succeed in one run.)
func FuzzRandomized(f *testing.F) {
	f.Add(uint64(1), true, uint8(1), uint8(1), uint8(5))
	f.Add(uint64(2), false, uint8(3), uint8(4), uint8(10))
	f.Add(uint64(3), true, uint8(2), uint8(7), uint8(20))
	f.Fuzz(func(t *testing.T, seed uint64, precise bool, workers, group, failPct uint8) {
		testRandomized(t, randomized{precise: precise, workers: int(workers%5) + 1, group: int(group%9) + 1,
			changes: 200, failPct: int(failPct % 10), maxFetch: 10, seed: seed})
	})
}
