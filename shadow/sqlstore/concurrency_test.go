package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/shadow"
)

// TestNoLostUpdate: several writers increment a counter attribute of one
// shadow by read-modify-write with the version check, retrying on
// ErrConflict. Every increment survives. SQLite: goroutines on one Store and
// on a second Store of the same file (as a second process); PostgreSQL:
// goroutines on three Stores, each its own connection pool.
func TestNoLostUpdate(t *testing.T) {
	t.Parallel()
	for _, d := range []string{"sqlite", "postgres"} {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			db := freshDB(t, d)
			var stores []*Store
			for range map[string]int{"sqlite": 2, "postgres": 3}[d] {
				stores = append(stores, mustOpen(t, func() (*Store, error) { return db.open(Options{}) }))
			}
			ctx := context.Background()
			if err := stores[0].Create(ctx, newShadow("counter")); err != nil {
				t.Fatal(err)
			}
			const workersPerStore, increments = 3, 15
			var conflicts atomic.Int64
			var wg sync.WaitGroup
			errs := make(chan error, len(stores)*workersPerStore)
			for _, s := range stores {
				for range workersPerStore {
					wg.Go(func() {
						for done := 0; done < increments; {
							sh, err := s.Get(ctx, "counter")
							if err != nil {
								errs <- err
								return
							}
							n, _ := strconv.Atoi(sh.Attributes.Get("n"))
							sh.Attributes["n"] = []string{strconv.Itoa(n + 1)}
							switch err := s.Update(ctx, sh); {
							case errors.Is(err, shadow.ErrConflict):
								conflicts.Add(1)
							case err != nil:
								errs <- err
								return
							default:
								done++
							}
						}
					})
				}
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			sh, err := stores[0].Get(ctx, "counter")
			if err != nil {
				t.Fatal(err)
			}
			want := len(stores) * workersPerStore * increments
			if got := sh.Attributes.Get("n"); got != strconv.Itoa(want) {
				t.Fatalf("counter = %s after %d increments (%d conflicts): updates were lost", got, want, conflicts.Load())
			}
			if sh.Version != int64(want)+1 {
				t.Fatalf("version = %d, want %d", sh.Version, want+1)
			}
			t.Logf("%d increments by %d writers on %d stores, %d conflicts retried", want, len(stores)*workersPerStore, len(stores), conflicts.Load())
		})
	}
}

// TestConcurrentClaims: claimers on several Stores take batches of due
// shadows at once; no shadow is handed to two claimers, every due shadow
// is handed out, and after the claims expire they are handed out again.
func TestConcurrentClaims(t *testing.T) {
	t.Parallel()
	for _, d := range []string{"sqlite", "postgres"} {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			db := freshDB(t, d)
			clk := connector.NewFakeClock(t0)
			var stores []*Store
			for range 3 {
				stores = append(stores, mustOpen(t, func() (*Store, error) { return db.open(Options{Clock: clk}) }))
			}
			ctx := context.Background()
			const due, notDue = 300, 50
			var writes []shadow.Write
			for i := range due + notDue {
				sh := newShadow(fmt.Sprintf("s%04d", i))
				if i >= due {
					sh.NextDue = t0.Add(time.Hour)
				}
				writes = append(writes, shadow.Write{Op: shadow.WriteCreate, Shadow: sh})
			}
			if err := stores[0].Apply(ctx, writes); err != nil {
				t.Fatal(err)
			}
			q := shadow.Query{DueBy: t0}
			var mu sync.Mutex
			owners := map[string]string{}
			var wg sync.WaitGroup
			errs := make(chan error, 6)
			for i, s := range stores {
				for j := range 2 {
					owner := fmt.Sprintf("worker-%d-%d", i, j)
					wg.Go(func() {
						for {
							batch, err := s.Claim(ctx, q, owner, time.Minute, 7)
							if err != nil {
								errs <- err
								return
							}
							if len(batch) == 0 {
								return
							}
							mu.Lock()
							for _, sh := range batch {
								if prev, ok := owners[sh.ID]; ok {
									errs <- fmt.Errorf("%s claimed by %s and %s", sh.ID, prev, owner)
								}
								owners[sh.ID] = owner
							}
							mu.Unlock()
						}
					})
				}
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if len(owners) != due {
				t.Fatalf("%d shadows claimed, want the %d due ones", len(owners), due)
			}
			// Unexpired: nothing more to claim.
			if again, err := stores[1].Claim(ctx, q, "late", time.Minute, 0); err != nil || len(again) != 0 {
				t.Fatalf("claim before expiry got %d (%v)", len(again), err)
			}
			// A released claim is free at once; the rest after expiry.
			if err := stores[0].Release(ctx, owners["s0000"], "s0000", "s0001", "missing"); err != nil {
				t.Fatal(err)
			}
			got, err := stores[1].Claim(ctx, q, "late", time.Minute, 0)
			if err != nil {
				t.Fatal(err)
			}
			wantFree := 1
			if owners["s0001"] == owners["s0000"] {
				wantFree = 2
			}
			if len(got) != wantFree || got[0].ID != "s0000" {
				t.Fatalf("after release: claimed %d shadows, want %d starting with s0000", len(got), wantFree)
			}
			clk.Advance(time.Minute)
			taken, err := stores[2].Claim(ctx, q, "successor", time.Minute, 0)
			if err != nil {
				t.Fatal(err)
			}
			// Every claim, the late one included, has expired.
			if len(taken) != due {
				t.Fatalf("after expiry: took over %d claims, want %d", len(taken), due)
			}
		})
	}
}

// TestSQLiteWritersQueue: many goroutines write to one SQLite Store at
// once; with one write connection they queue, none fails with SQLITE_BUSY.
func TestSQLiteWritersQueue(t *testing.T) {
	t.Parallel()
	s := newSQLite(t, nil)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for g := range 8 {
		wg.Go(func() {
			for i := range 25 {
				sh := newShadow(fmt.Sprintf("g%d-%02d", g, i))
				if err := s.Create(ctx, sh); err != nil {
					errs <- err
					return
				}
				sh.NextDue = time.Time{}
				if err := s.Update(ctx, sh); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n, err := s.Count(ctx, shadow.Query{}); err != nil || n != 200 {
		t.Fatalf("count = %d (%v), want 200", n, err)
	}
}

// TestTakeOverWhileHolderStillWorks: a holder whose claim expired while it
// was still working loses the race to its successor: its version-checked
// completion fails with ErrConflict and whatever it wrote in the same
// transaction is rolled back, so the operation counts once.
func TestTakeOverWhileHolderStillWorks(t *testing.T) {
	t.Parallel()
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			clk := connector.NewFakeClock(t0)
			s := d.open(t, clk)
			ctx := context.Background()
			execSQL(t, s, `CREATE TABLE {t}executions (shadow_id TEXT PRIMARY KEY, n INTEGER NOT NULL)`)
			if err := s.Create(ctx, newShadow("slow")); err != nil {
				t.Fatal(err)
			}
			q := shadow.Query{Unfinished: true, DueBy: t0}
			first, err := s.Claim(ctx, q, "A", time.Second, 1)
			if err != nil || len(first) != 1 {
				t.Fatalf("A's claim: %v %v", first, err)
			}
			clk.Advance(time.Second) // A's claim expires while A still works
			second, err := s.Claim(ctx, q, "B", time.Second, 1)
			if err != nil || len(second) != 1 {
				t.Fatalf("B's take-over: %v %v", second, err)
			}
			complete := func(sh *shadow.Shadow) error {
				sh.Pending[0].Status, sh.Pending[0].Result = shadow.StatusCompleted, shadow.ResultSuccess
				sh.NextDue = time.Time{}
				return s.tx(ctx, func(tx *sql.Tx) error {
					if _, err := tx.ExecContext(ctx, s.sql(`INSERT INTO {t}executions (shadow_id, n) VALUES ($1, 1)
						ON CONFLICT (shadow_id) DO UPDATE SET n = {t}executions.n + 1`), sh.ID); err != nil {
						return err
					}
					return s.updateTx(ctx, tx, sh)
				})
			}
			if err := complete(second[0]); err != nil {
				t.Fatalf("B completes: %v", err)
			}
			if err := complete(first[0]); !errors.Is(err, shadow.ErrConflict) {
				t.Fatalf("A completes after the take-over: %v, want ErrConflict", err)
			}
			var n int
			if err := s.rdb.QueryRowContext(ctx, s.sql(`SELECT n FROM {t}executions WHERE shadow_id = 'slow'`)).Scan(&n); err != nil || n != 1 {
				t.Fatalf("executions = %d (%v), want 1", n, err)
			}
		})
	}
}
