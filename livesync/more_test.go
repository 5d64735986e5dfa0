package livesync_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/memconn"
	"github.com/umbra-idm/umbra/livesync"
	"github.com/umbra-idm/umbra/shadow"
	"github.com/umbra-idm/umbra/shadow/memstore"
)

// groupStore is memstore with a GroupCommitter that keeps tokens in the
// fake token store, counting commits.
type groupStore struct {
	*memstore.Store
	tokens  *fakeTokens
	mu      sync.Mutex
	commits int
	writes  int
	fail    error
	// lost, when set, is returned once by a commit that did land: the
	// answer to its COMMIT was lost.
	lost error
}

func (g *groupStore) CommitGroup(ctx context.Context, writes []shadow.Write, key livesync.TokenKey, old, next connector.Token, lease *shadow.Lease) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.fail != nil {
		return g.fail
	}
	if cur, _, _ := g.tokens.LoadToken(ctx, key); cur != old {
		return livesync.ErrTokenConflict
	}
	if err := g.Apply(ctx, writes); err != nil {
		return err
	}
	g.commits++
	g.writes += len(writes)
	if err := g.tokens.CompareAndSwapToken(ctx, key, old, next); err != nil {
		return err
	}
	if err := g.lost; err != nil {
		g.lost = nil
		return err
	}
	return nil
}

// A group commit that landed but whose answer was lost: the run reports
// the store error, not a token moved by another runner, and the next run
// goes on from the landed token without writing the group twice.
func TestGroupCommitLostAnswer(t *testing.T) {
	t.Parallel()
	b := setup(t, memconn.Options{PreciseTokens: true})
	b.tokens = b.fake
	gs := &groupStore{Store: b.store, tokens: b.fake}
	task := b.task(t, func(c *livesync.Config) {
		c.GroupCommit = 2
		c.Store = gs
	})
	mustRun(t, task)
	b.stream(t, 5)
	gs.mu.Lock()
	gs.lost = errors.New("connection reset by peer")
	gs.mu.Unlock()
	res, err := task.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "connection reset") || errors.Is(err, livesync.ErrTokenConflict) {
		t.Fatalf("run whose commit answer was lost: %v; want the store error alone", err)
	}
	if res.TokenAfter != tok(2) || b.token(t, task) != tok(2) {
		t.Fatalf("after the lost answer: result token %q, stored %q; want %q (the commit landed)", res.TokenAfter, b.token(t, task), tok(2))
	}
	mustRun(t, task)
	if gs.commits != 3 || gs.writes != 5 {
		t.Fatalf("%d commits of %d writes, want 3 of 5: the landed group was written again", gs.commits, gs.writes)
	}
	b.assertMirror(t)
}

func TestGroupCommit(t *testing.T) {
	t.Parallel()
	for _, committer := range []bool{false, true} {
		b := setup(t, memconn.Options{PreciseTokens: true})
		b.tokens = b.fake
		gs := &groupStore{Store: b.store, tokens: b.fake}
		task := b.task(t, func(c *livesync.Config) {
			c.GroupCommit = 4
			if committer {
				c.Store = gs
			}
		})
		mustRun(t, task)
		ids := b.stream(t, 3)             // 1..3
		b.modify(t, ids[0].UID, "a", "1") // 4: same group as the create
		b.modify(t, ids[0].UID, "uid", "renamed")
		b.modify(t, ids[0].UID, "a", "2")
		if err := b.conn.Remove(class, ids[1].UID); err != nil { // 7
			t.Fatal(err)
		}
		b.stream2(t, "q", 3) // 8..10
		cas := b.fake.casCount()
		res := mustRun(t, task)
		if res.Processed != 10 || res.TokenAfter != tok(10) {
			t.Fatalf("committer=%v: %+v", committer, res)
		}
		if n := b.fake.casCount() - cas; n != 3 {
			t.Fatalf("committer=%v: token stored %d times for 10 changes in groups of 4, want 3", committer, n)
		}
		if committer && (gs.commits != 3 || gs.writes != 8) {
			t.Fatalf("CommitGroup called %d times with %d writes, want 3 and 8 (one per object and group)", gs.commits, gs.writes)
		}
		evs := b.rec.take()
		if evs[4].Before.Name != "o0" || evs[4].After.Name != "renamed" || evs[5].Before.Attributes.Get("a") != "1" {
			t.Fatalf("committer=%v: events within a group do not see the group's earlier changes: %+v", committer, evs[4:6])
		}
		b.assertMirror(t)

		// A failed change in the middle of a group: the group's done
		// part is committed with the token before the failed change.
		b.stream2(t, "r", 6) // 11..16
		b.rec.setFail(failOn("r5", 1))
		res, err := task.Run(context.Background())
		if err == nil || res.TokenAfter != tok(15) {
			t.Fatalf("committer=%v: stopped run %+v, %v", committer, res, err)
		}
		if sh := b.shadows(t); len(sh) != 2+3+6 {
			t.Fatalf("committer=%v: %d shadows after the stopped run", committer, len(sh))
		}
		mustRun(t, task)
		b.assertMirror(t)

		if committer {
			// A failing commit stops the run; nothing of the group
			// is stored.
			b.stream2(t, "s", 2)
			gs.mu.Lock()
			gs.fail = errors.New("disk full")
			gs.mu.Unlock()
			before := b.store.Len()
			if _, err := task.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "disk full") {
				t.Fatalf("run with a failing commit: %v", err)
			}
			if b.store.Len() != before || b.token(t, task) != tok(16) {
				t.Fatal("a failed commit stored something")
			}
			gs.mu.Lock()
			gs.fail = nil
			gs.mu.Unlock()
			mustRun(t, task)
			b.assertMirror(t)
		}
	}
}

func TestGroupCommitImprecise(t *testing.T) {
	t.Parallel()
	b := setup(t, memconn.Options{MaxFetch: 5})
	task := b.task(t, func(c *livesync.Config) { c.GroupCommit = 2 })
	mustRun(t, task)
	b.stream(t, 7)
	b.rec.setFail(failOn("o6", 1))
	if _, err := task.Run(context.Background()); err == nil {
		t.Fatal("no error")
	}
	if got := b.token(t, task); got != tok(5) {
		t.Fatalf("token %q, want the end of the first fetch", got)
	}
	mustRun(t, task)
	b.assertMirror(t)
}

func TestDeleteGuard(t *testing.T) {
	t.Parallel()
	b := setup(t, memconn.Options{PreciseTokens: true})
	var tripped []int
	task := b.task(t, func(c *livesync.Config) {
		c.DeleteGuard.MaxDeletes = 2
		c.Observer.DeleteGuardTripped = func(_ livesync.TokenKey, deletes, max int) { tripped = append(tripped, deletes, max) }
	})
	mustRun(t, task)
	ids := b.stream(t, 4)
	mustRun(t, task)
	start := b.token(t, task)
	for _, id := range ids[:3] {
		if err := b.conn.Remove(class, id.UID); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		res, err := task.Run(context.Background())
		if !errors.Is(err, livesync.ErrDeleteGuard) || !res.DeleteGuardTripped || res.Processed != 0 || b.token(t, task) != start {
			t.Fatalf("guarded run: %+v, %v", res, err)
		}
		if !task.DeleteGuardTripped() {
			t.Fatal("task does not report the tripped guard")
		}
	}
	if len(tripped) != 4 || tripped[0] != 3 || tripped[1] != 2 {
		t.Fatalf("observer saw %v", tripped)
	}
	if len(b.shadows(t)) != 4 {
		t.Fatal("deletes applied despite the guard")
	}
	task.OverrideDeleteGuard()
	if task.DeleteGuardTripped() {
		t.Fatal("still tripped after override")
	}
	res := mustRun(t, task)
	if res.ByType[connector.ChangeDelete] != 3 {
		t.Fatalf("overridden run: %+v", res)
	}
	b.assertMirror(t)
	// The override was for one run.
	for _, id := range ids[3:] {
		if err := b.conn.Remove(class, id.UID); err != nil {
			t.Fatal(err)
		}
	}
	b.stream2(t, "x", 1)
	if res := mustRun(t, task); res.ByType[connector.ChangeDelete] != 1 {
		t.Fatalf("run under the limit: %+v", res)
	}
}

func TestLease(t *testing.T) {
	t.Parallel()
	b := setup(t, memconn.Options{PreciseTokens: true})
	b.tokens = b.fake
	task := b.task(t, func(c *livesync.Config) {
		c.Lease = &livesync.LeaseConfig{Owner: "node-a", TTL: time.Minute}
	})
	ctx := context.Background()
	other, err := b.store.AcquireLease(ctx, task.Key().String(), "node-b", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := task.Run(ctx); !errors.Is(err, shadow.ErrLeaseHeld) {
		t.Fatalf("run while another node holds the lease: %v", err)
	}
	b.clock.Advance(2 * time.Minute) // node-b died
	mustRun(t, task)
	if _, err := b.store.RenewLease(ctx, other, time.Minute); !errors.Is(err, shadow.ErrLeaseLost) {
		t.Fatalf("node-b's lease survived the takeover: %v", err)
	}

	// The run renews its lease as it goes (the handler takes 20 s a
	// change) and releases it at the end.
	b.stream(t, 8)
	b.rec.setFail(func(livesync.Event) error { b.clock.Advance(20 * time.Second); return nil })
	var terms []int64
	b.fake.fence = func(l shadow.Lease) bool {
		terms = append(terms, l.Term)
		return l.Owner == "node-a" && l.Expires.After(b.clock.Now())
	}
	res := mustRun(t, task)
	if res.Processed != 8 || len(terms) != 8 {
		t.Fatalf("leased run: %+v, %d fenced writes", res, len(terms))
	}
	if _, err := b.store.AcquireLease(ctx, task.Key().String(), "node-b", time.Minute); err != nil {
		t.Fatalf("lease not released after the run: %v", err)
	}
	b.clock.Advance(2 * time.Minute)

	// A runner whose lease is lost cannot move the token.
	b.rec.setFail(nil)
	b.stream2(t, "z", 2)
	b.fake.fence = func(shadow.Lease) bool { return false }
	before := b.token(t, task)
	if _, err := task.Run(ctx); !errors.Is(err, shadow.ErrLeaseLost) {
		t.Fatalf("run with a lost lease: %v", err)
	}
	if b.token(t, task) != before {
		t.Fatal("token moved without the lease")
	}
}

func TestSchedule(t *testing.T) {
	t.Parallel()
	b := setup(t, memconn.Options{PreciseTokens: true})
	results := make(chan livesync.Result, 10)
	release, started := make(chan struct{}), make(chan struct{})
	var block sync.Once
	task := b.task(t, func(c *livesync.Config) {
		c.Observer.RunFinished = func(_ livesync.TokenKey, r livesync.Result, _ error) { results <- r }
		c.Handler = func(ctx context.Context, ev livesync.Event) error {
			if ev.Change.ID.Name == "slow" {
				block.Do(func() { close(started); <-release })
			}
			return nil
		}
	})
	if err := task.Start(context.Background(), -time.Minute); err == nil {
		t.Fatal("Start with a negative interval")
	}
	if err := task.Start(context.Background(), time.Minute); err != nil {
		t.Fatal(err)
	}
	defer task.Stop()
	if err := task.Start(context.Background(), time.Minute); !errors.Is(err, livesync.ErrStarted) {
		t.Fatalf("second Start: %v", err)
	}
	if r := <-results; !r.FirstRun {
		t.Fatalf("first scheduled run %+v", r)
	}
	if !b.clock.BlockUntil(1, 5*time.Second) {
		t.Fatal("schedule does not wait on the clock")
	}
	b.put(t, "slow")
	b.clock.Advance(time.Minute)
	<-started
	// While the scheduled run is busy, other runs and resets are refused.
	if _, err := task.Run(context.Background()); !errors.Is(err, livesync.ErrRunning) {
		t.Fatalf("run during a scheduled run: %v", err)
	}
	if err := task.ResetToken(context.Background(), "0"); !errors.Is(err, livesync.ErrRunning) {
		t.Fatalf("reset during a run: %v", err)
	}
	if _, err := task.ResetTokenToLatest(context.Background()); !errors.Is(err, livesync.ErrRunning) {
		t.Fatalf("reset during a run: %v", err)
	}
	b.clock.Advance(3 * time.Minute) // the run outlasts planned times: they are skipped
	close(release)
	if r := <-results; r.Processed != 1 {
		t.Fatalf("second scheduled run %+v", r)
	}
	if !b.clock.BlockUntil(1, 5*time.Second) {
		t.Fatal("schedule does not wait after a long run")
	}
	select {
	case r := <-results:
		t.Fatalf("an overlapped planned time ran: %+v", r)
	default:
	}
	task.Suspend()
	if !task.Suspended() || !task.Running() {
		t.Fatal("suspended schedule state")
	}
	b.put(t, "now")
	task.RunNow()
	if r := <-results; r.Processed != 1 {
		t.Fatalf("run-now run %+v", r)
	}
	task.Resume()
	task.Stop()
	if task.Running() {
		t.Fatal("schedule running after Stop")
	}
}

// A group commit that meets a concurrent write stores the group's changes
// one by one over the newer shadows, without calling the handler again.
func TestGroupCommitConcurrentWrite(t *testing.T) {
	t.Parallel()
	for _, committer := range []bool{false, true} {
		b := setup(t, memconn.Options{PreciseTokens: true})
		b.tokens = b.fake
		gs := &groupStore{Store: b.store, tokens: b.fake}
		ctx := context.Background()
		touched := false
		task := b.task(t, func(c *livesync.Config) {
			c.GroupCommit = 10
			if committer {
				c.Store = gs
			}
			c.Handler = func(_ context.Context, ev livesync.Event) error {
				b.rec.handle(ctx, ev)
				if ev.Change.ID.Name != "o1" || ev.Change.Type != connector.ChangeModify || touched {
					return nil
				}
				// Meanwhile, another engine writes o0's shadow.
				touched = true
				sh, err := shadow.FindLive(ctx, b.store, "res", class, connector.Identifiers{Name: "o0"})
				if err != nil || sh == nil {
					t.Errorf("o0's shadow: %v, %v", sh, err)
					return nil
				}
				sh.NeedsReconciliation = true
				return b.store.Update(ctx, sh)
			}
		})
		mustRun(t, task)
		ids := b.stream(t, 2)
		mustRun(t, task)
		b.rec.take()
		b.modify(t, ids[0].UID, "mail", "m0")
		b.modify(t, ids[1].UID, "mail", "m1")
		res := mustRun(t, task)
		if res.Processed != 2 || res.TokenAfter != tok(4) {
			t.Fatalf("committer=%v: %+v", committer, res)
		}
		if n := len(b.rec.take()); n != 2 {
			t.Fatalf("committer=%v: handler called %d times for 2 changes", committer, n)
		}
		b.assertMirror(t)
		sh, _ := shadow.FindLive(ctx, b.store, "res", class, connector.Identifiers{UID: ids[0].UID})
		if !sh.NeedsReconciliation {
			t.Fatalf("committer=%v: the concurrent write was lost", committer)
		}
	}
}
