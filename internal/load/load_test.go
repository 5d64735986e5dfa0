package load

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/sync/errgroup"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/connector/memconn"
	"github.com/umbra-idm/umbra/consistency"
	"github.com/umbra-idm/umbra/internal/testsvc"
	"github.com/umbra-idm/umbra/refresh"
	"github.com/umbra-idm/umbra/shadow"
	"github.com/umbra-idm/umbra/shadow/memstore"
	"github.com/umbra-idm/umbra/shadow/sqlstore"
)

var long = flag.Bool("long", false, "run the load test at full size (as UMBRA_LOAD=1 does)")

const (
	resID   = "hr"
	class   = connector.ObjectClass("account")
	heapCap = 256 << 20 // the bound the refresh run must stay under

	// The refresh run's settings.
	concurrency = 16
	pageSize    = refresh.PageSizeDefault

	// How the data is written: buildWorkers transactions at once, each
	// buildBatch creates through sqlstore's Apply (shadow.Batcher).
	buildWorkers = 4
	buildBatch   = 1000
)

var t0 = time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)

// sizes returns how many shadows the test stores and how many of them have
// a due retry operation: the full size with UMBRA_LOAD=1 or -long, a
// scaled-down one otherwise; UMBRA_LOAD_SHADOWS and UMBRA_LOAD_PENDING
// override either.
func sizes(t *testing.T) (total, pending int) {
	total, pending = 20_000, 2_000
	if *long || os.Getenv("UMBRA_LOAD") == "1" {
		total, pending = 1_000_000, 100_000
	}
	for name, p := range map[string]*int{"UMBRA_LOAD_SHADOWS": &total, "UMBRA_LOAD_PENDING": &pending} {
		if s := os.Getenv(name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n <= 0 {
				t.Fatalf("%s = %q: not a positive number", name, s)
			}
			*p = n
		}
	}
	if pending > total || total%pending != 0 {
		t.Fatalf("%d pending of %d shadows: the pending count must divide the total", pending, total)
	}
	return total, pending
}

func attrs(name string) connector.Attributes {
	return connector.Attributes{"uid": {name}, "cn": {"User " + name}, "mail": {name + "@example.com"}}
}

func nameOf(i int) string { return fmt.Sprintf("user%07d", i) }

// templates makes, through a real engine over memstore, the two kinds of
// shadow the load test stores, so that the stored rows are what the engine
// writes and not a guess: a live shadow at rest (added, its completed add
// dropped after retention by a refresh), and a shadow whose add failed
// with the resource down (a retry operation, due after the retry period).
// Both are for the object named name.
func templates(t *testing.T, name string) (live, pending *shadow.Shadow) {
	t.Helper()
	ctx := context.Background()
	// One engine each, both starting at t0, the load test's start: the
	// pending add's times are then those of a shadow written at t0.
	newEngine := func() (*consistency.Engine, *memconn.Conn, *connector.FakeClock) {
		clk := connector.NewFakeClock(t0)
		conn := memconn.New(memconn.Options{Clock: clk})
		eng, err := consistency.New(consistency.Config{Clock: clk, Store: memstore.New(memstore.Options{Clock: clk}),
			Resources: []consistency.Resource{{ID: resID, Connector: conn}}})
		if err != nil {
			t.Fatal(err)
		}
		return eng, conn, clk
	}
	req := consistency.AddRequest{ResourceID: resID, Class: class, Kind: "account", Intent: "default", Name: name, Attributes: attrs(name)}

	eng, _, clk := newEngine()
	out, err := eng.Add(ctx, req)
	if err != nil || out.Status != consistency.Done {
		t.Fatalf("template add: %v, %v", out.Status, err)
	}
	clk.Advance(consistency.PendingOperationRetentionPeriodDefault + time.Hour)
	if _, err := eng.RefreshShadow(ctx, out.Shadow.ID); err != nil {
		t.Fatal(err)
	}
	if live, err = eng.Store().Get(ctx, out.Shadow.ID); err != nil {
		t.Fatal(err)
	}
	if len(live.Pending) != 0 || !live.NextDue.IsZero() || !live.Exists {
		t.Fatalf("live template: want an existing shadow at rest, got %+v", live)
	}

	eng, conn, _ := newEngine()
	conn.Down()
	if out, err = eng.Add(ctx, req); err != nil || out.Status != consistency.Pending {
		t.Fatalf("template add while down: %v, %v", out.Status, err)
	}
	pending = out.Shadow
	if len(pending.Pending) != 1 || pending.Pending[0].Type != shadow.OpRetry || !pending.NextDue.After(t0) {
		t.Fatalf("pending template: want one retry operation due after t0, got %+v", pending)
	}
	return live, pending
}

// liveAs and pendingAs turn a template into the shadow of another object:
// only the identifiers, the attributes and (for the pending add) the
// delta's attributes differ from object to object. TestTemplates proves
// that this gives what the engine would have written.
func liveAs(tmpl *shadow.Shadow, name, uid string) *shadow.Shadow {
	sh := tmpl.Clone()
	sh.ID, sh.Version, sh.CreatedAt, sh.UpdatedAt = "", 0, time.Time{}, time.Time{}
	sh.UID, sh.Name, sh.Attributes = uid, name, attrs(name)
	return sh
}

func pendingAs(tmpl *shadow.Shadow, name string) *shadow.Shadow {
	sh := tmpl.Clone()
	sh.ID, sh.Version, sh.CreatedAt, sh.UpdatedAt = "", 0, time.Time{}, time.Time{}
	sh.Name = name
	if sh.Attributes != nil {
		sh.Attributes = attrs(name)
	}
	sh.Pending[0].Delta.Attributes = attrs(name)
	return sh
}

// liveFrom and pendingFrom are the shadows of object i.
func liveFrom(tmpl *shadow.Shadow, i int) *shadow.Shadow {
	return liveAs(tmpl, nameOf(i), fmt.Sprintf("x-%07d", i))
}

func pendingFrom(tmpl *shadow.Shadow, i int) *shadow.Shadow { return pendingAs(tmpl, nameOf(i)) }

var ignoreStored = cmpopts.IgnoreFields(shadow.Shadow{}, "ID", "Version", "CreatedAt", "UpdatedAt")

// TestTemplates checks the copies the load test makes against the shadows
// the engine made for other names itself.
func TestTemplates(t *testing.T) {
	t.Parallel()
	liveA, pendA := templates(t, "a")
	liveB, pendB := templates(t, "b")
	if d := cmp.Diff(liveB, liveAs(liveA, liveB.Name, liveB.UID), ignoreStored); d != "" {
		t.Errorf("live copy differs from the engine's shadow (-engine +copy):\n%s", d)
	}
	if d := cmp.Diff(pendB, pendingAs(pendA, pendB.Name), ignoreStored); d != "" {
		t.Errorf("pending copy differs from the engine's shadow (-engine +copy):\n%s", d)
	}
}

// build writes total shadows through the store's batch path, every
// (total/pending)-th of them with a pending add, and returns one ID of each
// kind for spot checks.
func build(t *testing.T, ctx context.Context, st *sqlstore.Store, total, pending int) (liveID, pendingID string) {
	t.Helper()
	liveT, pendT := templates(t, "template")
	step := total / pending
	var next atomic.Int64
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	for range buildWorkers {
		g.Go(func() error {
			writes := make([]shadow.Write, 0, buildBatch)
			for {
				lo := int(next.Add(buildBatch)) - buildBatch
				if lo >= total {
					return nil
				}
				hi := min(lo+buildBatch, total)
				writes = writes[:0]
				for i := lo; i < hi; i++ {
					var sh *shadow.Shadow
					if i%step == 0 {
						sh = pendingFrom(pendT, i)
					} else {
						sh = liveFrom(liveT, i)
					}
					writes = append(writes, shadow.Write{Op: shadow.WriteCreate, Shadow: sh})
				}
				if err := st.Apply(gctx, writes); err != nil {
					return fmt.Errorf("shadows %d..%d: %w", lo, hi-1, err)
				}
				if lo == 0 {
					mu.Lock()
					pendingID, liveID = writes[0].Shadow.ID, writes[1].Shadow.ID
					mu.Unlock()
				}
			}
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("building the data: %v", err)
	}
	return liveID, pendingID
}

// memSampler records the peak heap (runtime HeapAlloc) every interval until
// stopped.
type memSampler struct {
	stop     chan struct{}
	done     chan struct{}
	peakHeap atomic.Uint64
	samples  atomic.Int64
}

func sampleMemory(every time.Duration) *memSampler {
	m := &memSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		// Wall time on purpose: this measures the process, which the
		// engines' fake clock knows nothing about.
		tick := time.NewTicker(every)
		defer tick.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			m.samples.Add(1)
			if ms.HeapAlloc > m.peakHeap.Load() {
				m.peakHeap.Store(ms.HeapAlloc)
			}
			select {
			case <-m.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return m
}

// Stop ends sampling (after one last sample) and returns the peak heap.
func (m *memSampler) Stop() uint64 {
	close(m.stop)
	<-m.done
	return m.peakHeap.Load()
}

// procStatus returns a field of /proc/self/status in bytes (VmHWM, VmRSS).
func procStatus(field string) (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != field {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/self/status %s = %q: %w", field, v, err)
		}
		return kb << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("/proc/self/status has no %s", field)
}

// resetPeakRSS resets VmHWM to the current RSS, so that the peak measured
// afterwards is the refresh run's and not the data build's.
func resetPeakRSS() error {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// loadAvg returns the machine's 1-minute load average as /proc/loadavg
// shows it, "?" when it cannot be read: times measured on a shared machine
// mean little without it.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}

// writeHeapProfile writes a heap profile to path: what is live at the last
// GC (inuse) and what the process allocated so far (alloc).
func writeHeapProfile(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Errorf("heap profile: %v", err)
		return
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		t.Errorf("heap profile %s: %v", path, err)
	}
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// TestLoadMillion stores many shadows in PostgreSQL, a tenth of them with a
// retry operation that has fallen due, and runs the refresh task once: the
// run must complete every due operation, once each, with the heap under
// 256 MiB. It reports the build and refresh times, the rate and the peak
// heap and resident set. Full size (1,000,000 / 100,000) with UMBRA_LOAD=1
// or -long; see the package doc.
//
// Not parallel: the heap it measures must be its own.
func TestLoadMillion(t *testing.T) {
	total, pending := sizes(t)
	ctx := context.Background()
	dsn := testsvc.PostgresDSN(t)
	clk := connector.NewFakeClock(t0)
	st, err := sqlstore.OpenPostgres(ctx, dsn, sqlstore.Options{Clock: clk, MaxOpenConns: concurrency})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })

	// Build.
	start := time.Now()
	liveID, pendingID := build(t, ctx, st, total, pending)
	buildTime := time.Since(start)
	buildRSS, _ := procStatus("VmHWM")
	t.Logf("built %d shadows (%d with a pending add) in %s: %.0f shadows/s", total, pending,
		buildTime.Round(time.Millisecond), float64(total)/buildTime.Seconds())

	// The data is what was meant: counts, and two rows read back whole.
	count := func(q shadow.Query) int {
		t.Helper()
		n, err := st.Count(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(shadow.Query{}); n != total {
		t.Fatalf("stored %d shadows, want %d", n, total)
	}
	if n := count(shadow.Query{Unfinished: true}); n != pending {
		t.Fatalf("%d shadows with unfinished operations, want %d", n, pending)
	}
	if n := count(shadow.Query{DueBy: clk.Now()}); n != 0 {
		t.Fatalf("%d shadows due before the retry period passed, want 0", n)
	}
	liveT, pendT := templates(t, "template")
	for id, want := range map[string]*shadow.Shadow{liveID: liveFrom(liveT, 1), pendingID: pendingFrom(pendT, 0)} {
		got, err := st.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(want, got, ignoreStored); d != "" {
			t.Fatalf("shadow %s read back differs (-written +read):\n%s", id, d)
		}
	}

	// Refresh, with the resource up and the retries due.
	conn := memconn.New(memconn.Options{Clock: clk, OmitChangeAttributes: true})
	eng, err := consistency.New(consistency.Config{Clock: clk, Store: st,
		Resources: []consistency.Resource{{ID: resID, Connector: conn}}})
	if err != nil {
		t.Fatal(err)
	}
	var lastLogged int
	task, err := refresh.New(refresh.Config{Engine: eng, Concurrency: concurrency, PageSize: pageSize,
		Progress: func(p refresh.Progress) {
			if p.Done-lastLogged >= max(pending/10, 1) || p.Done == p.Total {
				lastLogged = p.Done
				t.Logf("refresh: %d of %d", p.Done, p.Total)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(consistency.OperationRetryPeriodDefault + time.Minute)
	if n := count(shadow.Query{DueBy: clk.Now()}); n != pending {
		t.Fatalf("%d shadows due after the retry period, want %d", n, pending)
	}

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	baseHeap := ms.HeapAlloc
	rssReset := resetPeakRSS()
	if rssReset != nil {
		t.Logf("cannot reset the peak RSS (%v): it includes the data build", rssReset)
	}
	loadBefore := loadAvg()
	sampler := sampleMemory(50 * time.Millisecond)
	start = time.Now()
	res, err := task.Run(ctx)
	refreshTime := time.Since(start)
	peakHeap := sampler.Stop()
	peakRSS, rssErr := procStatus("VmHWM")
	if rssErr != nil {
		t.Errorf("reading peak RSS: %v", rssErr)
	}
	// What stays live after the run: the resource's objects (memconn keeps
	// them in memory, one per completed add) and the engine's state.
	runtime.GC()
	runtime.ReadMemStats(&ms)
	liveAfter := ms.HeapAlloc
	if path := os.Getenv("UMBRA_LOAD_HEAPPROFILE"); path != "" {
		writeHeapProfile(t, path)
	}

	rate := float64(res.Total.Examined) / refreshTime.Seconds()
	t.Logf("LOAD shadows=%d pending=%d concurrency=%d pageSize=%d build=%s refresh=%s rate=%.0f shadows/s "+
		"peakHeap=%.1f MiB (baseline %.1f MiB, live after the run %.1f MiB, %d samples) peakRSS=%.1f MiB (build %.1f MiB) "+
		"gcs=%d loadavg=%s..%s GOMAXPROCS=%d",
		total, pending, concurrency, pageSize, buildTime.Round(time.Millisecond), refreshTime.Round(time.Millisecond),
		rate, mib(peakHeap), mib(baseHeap), mib(liveAfter), sampler.samples.Load(), mib(peakRSS), mib(buildRSS),
		ms.NumGC, loadBefore, loadAvg(), runtime.GOMAXPROCS(0))
	t.Logf("refresh result: %+v", res.Total)

	if err != nil {
		t.Fatalf("refresh run: %v", err)
	}
	if res.ErrorCount != 0 {
		t.Errorf("refresh run: %d shadows failed: %v", res.ErrorCount, res.Err())
	}
	want := refresh.Counts{Examined: pending, Retried: pending, Completed: pending}
	if res.Total != want {
		t.Errorf("refresh counts = %+v, want %+v", res.Total, want)
	}
	if n := count(shadow.Query{Unfinished: true}); n != 0 {
		t.Errorf("%d shadows still have unfinished operations, want 0", n)
	}
	if n := count(shadow.Query{DueBy: clk.Now()}); n != 0 {
		t.Errorf("%d shadows still due, want 0", n)
	}
	if n := count(shadow.Query{}); n != total {
		t.Errorf("%d shadows after the run, want %d", n, total)
	}
	// Every add reached the resource exactly once: one object per pending
	// shadow, one call each.
	if n := conn.Len(class); n != pending {
		t.Errorf("the resource holds %d objects, want %d", n, pending)
	}
	if n := conn.Calls(memconn.CallAdd); n != pending {
		t.Errorf("%d add calls, want %d", n, pending)
	}
	if got, err := st.Get(ctx, pendingID); err != nil {
		t.Error(err)
	} else if !got.Exists || got.UID == "" || got.Unfinished() {
		t.Errorf("shadow %s after the run: exists %v, UID %q, unfinished %v; want created", pendingID, got.Exists, got.UID, got.Unfinished())
	}
	if peakHeap > heapCap {
		t.Errorf("peak heap %.1f MiB during the refresh run, want at most %.0f MiB (profile with -memprofile)",
			mib(peakHeap), mib(heapCap))
	}
}
