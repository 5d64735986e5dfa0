package model_test

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/internal/testsvc"
	"github.com/umbra-idm/umbra/livesync"
	"github.com/umbra-idm/umbra/shadow"
	"github.com/umbra-idm/umbra/shadow/memstore"
	"github.com/umbra-idm/umbra/shadow/sqlstore"
)

var (
	flagSeed  = flag.Int64("model.seed", -1, "run only this seed of the model test")
	flagSeeds = flag.Int("model.seeds", 0, "seeds of the model test over memstore (default 500, or env UMBRA_MODEL_SEEDS); SQLite runs a 25th (a 5th with UMBRA_FULL=1), PostgreSQL a 16th; the SQL stores a fifth of that under -race")
	flagSteps = flag.Int("model.steps", 0, "random steps per seed (default 60)")
	flagFrom  = flag.Int64("model.from", 1, "first seed of the run")
	flagTrace = flag.Bool("model.trace", false, "log the trace of every seed, not only of failing ones")
	flagStats = flag.Bool("model.stats", false, "log what the seeds exercised")
)

const (
	seedsDefault = 500
	stepsDefault = 60
)

// seeds returns how many seeds to run over memstore.
func seeds(t *testing.T) int {
	if *flagSeeds > 0 {
		return *flagSeeds
	}
	if v := os.Getenv("UMBRA_MODEL_SEEDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("UMBRA_MODEL_SEEDS=%q: want a positive number", v)
		}
		return n
	}
	if testing.Short() {
		return 50
	}
	return seedsDefault
}

// storeKind is a store the model runs over. setup runs once in the test's
// goroutine and returns the opener of one seed's fresh stores.
type storeKind struct {
	name string
	// div: this store runs the memstore seed count divided by div (by
	// fullDiv in the full suite).
	div, fullDiv int
	setup        func(t *testing.T) opener
}

type opener func(seed int64) (shadow.Store, livesync.TokenStore, func(), error)

func storeKinds() []storeKind {
	return []storeKind{
		{name: "memstore", div: 1, fullDiv: 1, setup: func(t *testing.T) opener {
			return func(int64) (shadow.Store, livesync.TokenStore, func(), error) {
				return memstore.New(memstore.Options{}), livesync.NewMemoryTokenStore(), func() {}, nil
			}
		}},
		{name: "sqlite", div: 25, fullDiv: 5, setup: func(t *testing.T) opener {
			dir := tmpfsDir(t)
			return func(seed int64) (shadow.Store, livesync.TokenStore, func(), error) {
				path := filepath.Join(dir, fmt.Sprintf("model-%d.db", seed))
				st, err := sqlstore.OpenSQLite(context.Background(), path, sqlstore.Options{})
				if err != nil {
					return nil, nil, nil, err
				}
				return st, st, func() { st.Close(); os.Remove(path) }, nil
			}
		}},
		{name: "postgres", div: 16, fullDiv: 16, setup: func(t *testing.T) opener {
			dsn := testsvc.PostgresDSN(t) // a schema of its own, dropped at the end
			db, err := sql.Open("pgx", dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return func(seed int64) (shadow.Store, livesync.TokenStore, func(), error) {
				prefix := fmt.Sprintf("m%d_", seed)
				st, err := sqlstore.OpenPostgres(context.Background(), dsn, sqlstore.Options{TablePrefix: prefix})
				if err != nil {
					return nil, nil, nil, err
				}
				// Each seed's tables go with it: thousands of seeds'
				// tables in one schema would need more locks than the
				// server has to drop at once.
				drop := func() {
					st.Close()
					var tables []string
					for _, name := range []string{"shadows", "leases", "tokens", "set_aside", "schema_version"} {
						tables = append(tables, prefix+name)
					}
					if _, err := db.Exec("DROP TABLE IF EXISTS " + strings.Join(tables, ", ")); err != nil {
						t.Errorf("model seed %d: dropping its tables: %v", seed, err)
					}
				}
				return st, st, drop, nil
			}
		}},
	}
}

// TestModel drives the engine and its tasks with random operations, outages
// and faults, seed after seed, and checks each seed's quiet end state
// against the model. A failing seed prints the command that runs it alone,
// with its trace.
func TestModel(t *testing.T) {
	n := seeds(t)
	steps := stepsDefault
	if *flagSteps > 0 {
		steps = *flagSteps
	}
	for _, kind := range storeKinds() {
		t.Run(kind.name, func(t *testing.T) {
			if kind.name == "postgres" && os.Getenv(testsvc.EnvFull) != "1" && *flagSeed < 0 {
				t.Skip("PostgreSQL runs in the full suite (UMBRA_FULL=1)")
			}
			div := kind.div
			if os.Getenv(testsvc.EnvFull) == "1" {
				div = kind.fullDiv
			}
			if raceEnabled && kind.name != "memstore" {
				div *= 5
			}
			count := max(n/div, 1)
			open := kind.setup(t)
			first := *flagFrom
			if *flagSeed >= 0 {
				first, count = *flagSeed, 1
			}
			st := &stats{n: map[string]int{}}
			var failed atomic.Int64
			start := time.Now()
			// Seeds run in a few parallel workers; each seed is one
			// goroutine from start to end, so it replays exactly.
			workers := 2
			next := atomic.Int64{}
			next.Store(first)
			var wg sync.WaitGroup
			for range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						seed := next.Add(1) - 1
						if seed >= first+int64(count) || t.Failed() && failed.Load() >= 5 {
							return
						}
						if !runSeed(t, kind.name, open, seed, steps, st) {
							failed.Add(1)
						}
					}
				}()
			}
			wg.Wait()
			t.Logf("model %s: %d seeds from %d, %d steps each, %d failed, %s", kind.name, count, first, steps, failed.Load(), time.Since(start).Round(time.Millisecond))
			if *flagStats {
				var keys []string
				for k := range st.n {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				for _, k := range keys {
					t.Logf("  %-45s %d", k, st.n[k])
				}
			}
		})
	}
}

// runSeed runs one seed and reports whether it passed.
func runSeed(t *testing.T, kind string, open opener, seed int64, steps int, st *stats) bool {
	ctx := context.Background()
	var ok bool
	// A subtest per seed would make 500 lines of output; a failing seed
	// reports itself instead.
	store, tokens, closeStore, err := open(seed)
	if err != nil {
		t.Errorf("model seed %d over %s: opening the store: %v", seed, kind, err)
		return false
	}
	defer closeStore()
	w, err := newWorld(seed, store, tokens, st)
	if err != nil {
		t.Errorf("model seed %d over %s: %v", seed, kind, err)
		return false
	}
	var problems []string
	if err := w.steps(ctx, steps); err != nil {
		problems = append(problems, err.Error())
	} else if err := w.quiesce(ctx); err != nil {
		problems = append(problems, err.Error())
	} else if ps, err := w.check(ctx); err != nil {
		problems = append(problems, err.Error())
	} else {
		problems = ps
	}
	ok = len(problems) == 0
	if !ok || *flagTrace {
		var b strings.Builder
		if !ok {
			fmt.Fprintf(&b, "model seed %d over %s FAILED; run it alone with:\n  go test ./internal/model -run 'TestModel/%s' -model.seed=%d -model.steps=%d -v\n",
				seed, kind, kind, seed, steps)
			for _, p := range problems {
				fmt.Fprintf(&b, "  - %s\n", p)
			}
		}
		if !ok {
			fmt.Fprintf(&b, "shadows at the end:\n%s", w.dump(ctx))
		}
		fmt.Fprintf(&b, "trace of seed %d:\n", seed)
		for _, l := range w.trace {
			fmt.Fprintf(&b, "  %s\n", l)
		}
		if !ok {
			t.Error(b.String())
		} else {
			t.Log(b.String())
		}
	}
	return ok
}

// tmpfsDir returns a directory for the seeds' SQLite files, removed at the
// end: in memory (/dev/shm) when the machine has it, since each seed's
// synchronous commits would otherwise wait for the disk; else t.TempDir.
func tmpfsDir(t *testing.T) string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if dir, err := os.MkdirTemp("/dev/shm", "umbra-model-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(dir) })
			return dir
		}
	}
	return t.TempDir()
}
