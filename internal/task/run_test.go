package task

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/internal/clock"
	"github.com/umbra-idm/umbra/shadow"
	"github.com/umbra-idm/umbra/shadow/memstore"
)

type count struct{ N, Errs int }

func (c count) Add(o count) count { return count{c.N + o.N, c.Errs + o.Errs} }

type runBundle struct {
	fc    *clock.Fake
	store *memstore.Store
	ids   map[string][]string // per resource, in ID order
}

// setupRun makes n due shadows on each resource.
func setupRun(t *testing.T, n int, resources ...string) *runBundle {
	t.Helper()
	b := &runBundle{fc: clock.NewFake(t0), ids: map[string][]string{}}
	b.store = memstore.New(memstore.Options{Clock: b.fc})
	for _, r := range resources {
		for i := 0; i < n; i++ {
			sh := &shadow.Shadow{ID: fmt.Sprintf("%s-%04d", r, i), ResourceID: r, Class: "account",
				Origin: shadow.OriginAssigned, NextDue: t0}
			if err := b.store.Create(context.Background(), sh); err != nil {
				t.Fatal(err)
			}
			b.ids[r] = append(b.ids[r], sh.ID)
		}
	}
	return b
}

func sources(resources ...string) []Source {
	out := make([]Source, len(resources))
	for i, r := range resources {
		out[i] = Source{ResourceID: r, Query: shadow.Query{ResourceID: r, DueBy: t0}}
	}
	return out
}

func TestRunnerVisitsEveryShadowOnceWithBoundedConcurrency(t *testing.T) {
	t.Parallel()
	b := setupRun(t, 23, "a", "b")
	var active, peak atomic.Int32
	var mu sync.Mutex
	seen := map[string]int{}
	var progress []Progress
	r := &Runner[count]{Store: b.store, Clock: b.fc, Concurrency: 3, PageSize: 5,
		Progress: func(p Progress) { progress = append(progress, p) }}
	res, err := r.Run(context.Background(), sources("a", "b"), func(ctx context.Context, sh *shadow.Shadow) (count, error) {
		n := active.Add(1)
		defer active.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		mu.Lock()
		seen[sh.ID]++
		mu.Unlock()
		b.fc.Advance(time.Second)
		return count{N: 1}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 46 {
		t.Fatalf("visited %d shadows, want 46", len(seen))
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("shadow %s visited %d times", id, n)
		}
	}
	if p := peak.Load(); p > 3 {
		t.Errorf("%d calls at once, Concurrency is 3", p)
	}
	if res.Total.N != 46 || res.Resources["a"].N != 23 || res.Resources["b"].N != 23 {
		t.Errorf("counts %+v per resource %+v", res.Total, res.Resources)
	}
	if len(progress) != 46 {
		t.Fatalf("%d progress reports, want 46", len(progress))
	}
	last := progress[len(progress)-1]
	if last.Done != 46 || last.Total != 46 {
		t.Errorf("last progress %+v, want Done 46 Total 46", last)
	}
	if last.Elapsed != 46*time.Second || last.Rate < 0.99 || last.Rate > 1.01 {
		t.Errorf("last progress %+v: want 46s elapsed at 1/s", last)
	}
	for i, p := range progress {
		if p.Done != i+1 {
			t.Fatalf("progress %d says Done %d", i, p.Done)
		}
	}
	if !res.Started.Equal(t0) || !res.Finished.Equal(t0.Add(46*time.Second)) {
		t.Errorf("Started %s Finished %s", res.Started, res.Finished)
	}
}

func TestRunnerStopsWithinOneItemOnCancel(t *testing.T) {
	t.Parallel()
	b := setupRun(t, 20, "a")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var calls atomic.Int32
	r := &Runner[count]{Store: b.store, Concurrency: 1, PageSize: 4}
	res, err := r.Run(ctx, sources("a"), func(ctx context.Context, sh *shadow.Shadow) (count, error) {
		if calls.Add(1) == 3 {
			cancel() // during the third shadow
		}
		return count{N: 1}, ctx.Err()
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v, want context.Canceled", err)
	}
	if c := calls.Load(); c != 3 {
		t.Fatalf("%d shadows started, want 3 (the run stops after the one under way)", c)
	}
	if res.Total.N != 3 || res.ErrorCount != 0 {
		t.Fatalf("result %+v: the cancellation is not an item error", res)
	}
}

func TestRunnerKeepsTheFirstErrors(t *testing.T) {
	t.Parallel()
	b := setupRun(t, 7, "a")
	boom := errors.New("boom")
	r := &Runner[count]{Store: b.store, Concurrency: 1, MaxErrors: 2}
	res, err := r.Run(context.Background(), sources("a"), func(ctx context.Context, sh *shadow.Shadow) (count, error) {
		return count{N: 1, Errs: 1}, fmt.Errorf("shadow %s: %w", sh.ID, boom)
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.ErrorCount != 7 || len(res.Errors) != 2 || res.Total.Errs != 7 {
		t.Fatalf("ErrorCount %d, %d kept, counts %+v", res.ErrorCount, len(res.Errors), res.Total)
	}
	if res.Errors[0].ShadowID != b.ids["a"][0] || res.Errors[0].ResourceID != "a" || !errors.Is(res.Errors[0], boom) {
		t.Errorf("first error %+v", res.Errors[0])
	}
	joined := res.Err()
	if !errors.Is(joined, boom) || !strings.Contains(joined.Error(), "and 5 more") {
		t.Errorf("Err() = %v", joined)
	}
	if (Result[count]{}).Err() != nil {
		t.Error("Err() of a clean result is not nil")
	}
}

// claimAndMark is an item function that takes the shadow out of the
// selection (as a refresh does), so that several processes split the work.
func claimAndMark(store shadow.Store, seen *sync.Map, dup *atomic.Int32) ItemFunc[count] {
	return func(ctx context.Context, sh *shadow.Shadow) (count, error) {
		if _, loaded := seen.LoadOrStore(sh.ID, true); loaded {
			dup.Add(1)
		}
		sh.NextDue = time.Time{}
		return count{N: 1}, store.Update(ctx, sh)
	}
}

func TestRunnerClaimsSplitWorkBetweenOwners(t *testing.T) {
	t.Parallel()
	b := setupRun(t, 60, "a")
	var seen sync.Map
	var dup atomic.Int32
	fn := claimAndMark(b.store, &seen, &dup)
	var wg sync.WaitGroup
	results := make([]Result[count], 3)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &Runner[count]{Store: b.store, Concurrency: 2, PageSize: 4, Owner: fmt.Sprintf("node-%d", i),
				ClaimTTL: time.Minute, Progress: func(p Progress) {
					if p.Total != 0 {
						t.Errorf("claiming run reports Total %d, want 0 (unknown)", p.Total)
					}
				}}
			res, err := r.Run(context.Background(), sources("a"), fn)
			if err != nil {
				t.Error(err)
			}
			results[i] = res
		}()
	}
	wg.Wait()
	total := 0
	for _, r := range results {
		total += r.Total.N
		if r.ErrorCount > 0 {
			t.Errorf("errors: %v", r.Err())
		}
	}
	if total != 60 || dup.Load() != 0 {
		t.Fatalf("owners together handled %d shadows (%d twice), want 60 once each", total, dup.Load())
	}
	// Claims are released: a new owner finds nothing claimed.
	left, err := b.store.Claim(context.Background(), shadow.Query{ResourceID: "a"}, "checker", time.Minute, 0)
	if err != nil || len(left) != 60 {
		t.Fatalf("claimable after the runs: %d, %v; want 60", len(left), err)
	}
}

func TestRunnerReleasesUnstartedClaimsOnCancel(t *testing.T) {
	t.Parallel()
	b := setupRun(t, 10, "a")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := &Runner[count]{Store: b.store, Concurrency: 1, PageSize: 10, Owner: "me"}
	_, err := r.Run(ctx, sources("a"), func(context.Context, *shadow.Shadow) (count, error) {
		cancel()
		return count{N: 1}, nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	left, err := b.store.Claim(context.Background(), shadow.Query{ResourceID: "a"}, "other", time.Minute, 0)
	if err != nil || len(left) != 10 {
		t.Fatalf("claimable after a cancelled run: %d, %v; want 10", len(left), err)
	}
}

type plainStore struct{ shadow.Store }

type failingStore struct {
	shadow.Store
	listErr, countErr error
}

func (s failingStore) List(ctx context.Context, q shadow.Query) ([]*shadow.Shadow, error) {
	if s.listErr != nil {
		return nil, s.listErr
	}
	return s.Store.List(ctx, q)
}

func (s failingStore) Count(ctx context.Context, q shadow.Query) (int, error) {
	if s.countErr != nil {
		return 0, s.countErr
	}
	return s.Store.Count(ctx, q)
}

func TestRunnerStoreFailuresEndTheRun(t *testing.T) {
	t.Parallel()
	b := setupRun(t, 3, "a")
	down := errors.New("database down")
	noop := func(context.Context, *shadow.Shadow) (count, error) { return count{N: 1}, nil }
	r := &Runner[count]{Store: failingStore{Store: b.store, listErr: down}}
	if _, err := r.Run(context.Background(), sources("a"), noop); !errors.Is(err, down) || !strings.Contains(err.Error(), `"a"`) {
		t.Fatalf("List failure: %v", err)
	}
	r = &Runner[count]{Store: failingStore{Store: b.store, countErr: down}, Progress: func(Progress) {}}
	if _, err := r.Run(context.Background(), sources("a"), noop); !errors.Is(err, down) {
		t.Fatalf("Count failure: %v", err)
	}
}

func TestRunnerValidate(t *testing.T) {
	t.Parallel()
	store := memstore.New(memstore.Options{})
	ok := &Runner[count]{Store: store, Owner: "me", ClaimTTL: time.Minute}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid runner: %v", err)
	}
	bad := &Runner[count]{Store: plainStore{store}, Concurrency: -1, PageSize: -2, ClaimTTL: -time.Second,
		MaxErrors: -3, Owner: "me"}
	err := bad.Validate()
	for _, want := range []string{"Concurrency = -1", "PageSize = -2", "ClaimTTL = -1s", "MaxErrors = -3", `Owner = "me"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to name %q", err, want)
		}
	}
	if err := (&Runner[count]{ClaimTTL: time.Second}).Validate(); err == nil ||
		!strings.Contains(err.Error(), "Store is nil") || !strings.Contains(err.Error(), "without Owner") {
		t.Errorf("Validate() = %v", err)
	}
}

// countingClaimer counts Release calls and the IDs they drop.
type countingClaimer struct {
	*memstore.Store
	calls, ids atomic.Int32
}

func (c *countingClaimer) Release(ctx context.Context, owner string, ids ...string) error {
	c.calls.Add(1)
	c.ids.Add(int32(len(ids)))
	return c.Store.Release(ctx, owner, ids...)
}

// Finished items' claims are released in batches, not one store write per
// item, and all of them by the end of the run.
func TestRunnerReleasesClaimsInBatches(t *testing.T) {
	t.Parallel()
	b := setupRun(t, 300, "a")
	cc := &countingClaimer{Store: b.store}
	r := &Runner[count]{Store: cc, Concurrency: 4, PageSize: 100, Owner: "me"}
	res, err := r.Run(context.Background(), sources("a"), func(context.Context, *shadow.Shadow) (count, error) {
		return count{N: 1}, nil
	})
	if err != nil || res.Total.N != 300 {
		t.Fatalf("Run: %d items, %v", res.Total.N, err)
	}
	if n := cc.ids.Load(); n != 300 {
		t.Errorf("%d claims released, want 300", n)
	}
	if n := cc.calls.Load(); n > 300/releaseBatch+1 {
		t.Errorf("%d Release calls for 300 items, want at most %d", n, 300/releaseBatch+1)
	}
	left, err := b.store.Claim(context.Background(), shadow.Query{ResourceID: "a"}, "other", time.Minute, 0)
	if err != nil || len(left) != 300 {
		t.Fatalf("claimable after the run: %d, %v; want 300", len(left), err)
	}
}
