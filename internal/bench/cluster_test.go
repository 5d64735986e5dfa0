package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
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

// The cluster benchmark re-executes this test binary as worker processes;
// these variables tell a worker what to do.
const (
	envClusterDSN   = "UMBRA_BENCH_CLUSTER_DSN"
	envClusterOwner = "UMBRA_BENCH_CLUSTER_OWNER"
	envClusterN     = "UMBRA_BENCH_CLUSTER_N"

	// clusterLatency is memconn's latency in every worker.
	clusterLatency = time.Millisecond
	// clusterConcurrency is each worker's refresh concurrency. Adding
	// processes pays where one process is bound by the resource's
	// latency, not by the machine: that is what the benchmark measures.
	// On this class of machine (2 cores, PostgreSQL on the same box) one
	// worker at the default concurrency 8 already keeps the CPUs ~80%
	// busy, so no number of workers could double its rate (speedup
	// 1.0-1.2 measured); at 2 the speedup is ~1.7, at 1 ~2.3.
	clusterConcurrency = 1
)

// BenchmarkClusterRefresh: 20,000 due retries in one PostgreSQL schema,
// refreshed by 3 worker processes that split the work by claims (each
// with its own Owner), against the same refreshed by 1 worker process, in
// the same run. Every worker is a re-executed test binary with its own
// memconn (1 ms latency, the same objects under the same UIDs) and a
// refresh task of concurrency clusterConcurrency; the clock runs from the
// moment every worker is ready until the last one is done. speedup =
// 1-process time ÷ 3-process time.
func BenchmarkClusterRefresh(b *testing.B) {
	n := scaled(20_000)
	var one, three time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dsn1, dsn3 := clusterSchema(b, n), clusterSchema(b, n)
		b.StartTimer()
		d1 := runCluster(b, dsn1, n, 1)
		d3 := runCluster(b, dsn3, n, 3)
		if i == 0 || d1 < one {
			one = d1
		}
		if i == 0 || d3 < three {
			three = d3
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(one)/float64(three), "speedup")
	b.ReportMetric(rate(n, one), "1proc-shadows/s")
	b.ReportMetric(rate(n, three), "3proc-shadows/s")
}

// clusterSchema returns the DSN of a fresh PostgreSQL schema holding n
// shadows whose retried modify is due now. The shadows are made by the
// engine itself (over a memstore, through an outage), then copied into
// PostgreSQL in batches.
func clusterSchema(b *testing.B, n int) string {
	b.Helper()
	ctx := context.Background()
	clk := connector.NewFakeClock(time.Now().Add(-2 * time.Hour))
	mem := memstore.New(memstore.Options{Clock: clk})
	w := newRetryWorld(b, clk, memconn.New(memconn.Options{Clock: clk}), mem)
	w.addDueShadows(b, n)
	w.makeDue(b)
	dsn := testsvc.PostgresDSN(b)
	pg, err := sqlstore.OpenPostgres(ctx, dsn, sqlstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer pg.Close()
	// Collect first: Apply gives the shadows new IDs, and shadow.All pages
	// by ID.
	var all []*shadow.Shadow
	for sh, err := range shadow.All(ctx, mem, shadow.Query{}, 1000) {
		if err != nil {
			b.Fatal(err)
		}
		all = append(all, sh)
	}
	writes := make([]shadow.Write, 0, 1000)
	for i, sh := range all {
		sh.ID, sh.Version = "", 0
		writes = append(writes, shadow.Write{Op: shadow.WriteCreate, Shadow: sh})
		if len(writes) == cap(writes) || i == len(all)-1 {
			if err := pg.Apply(ctx, writes); err != nil {
				b.Fatal(err)
			}
			writes = writes[:0]
		}
	}
	if due, err := pg.Count(ctx, shadow.Query{DueBy: time.Now()}); err != nil || due != n {
		b.Fatalf("%d shadows due, want %d: %v", due, n, err)
	}
	return dsn
}

// runCluster starts procs workers on dsn, waits until all are ready, tells
// them to go, and returns the time until the last one finished. It checks
// that together they completed all n retries.
func runCluster(b *testing.B, dsn string, n, procs int) time.Duration {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	type worker struct {
		cmd    *exec.Cmd
		in     io.WriteCloser
		out    *bufio.Scanner
		stderr strings.Builder
	}
	workers := make([]*worker, procs)
	for p := range workers {
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestClusterRefreshWorker$")
		cmd.Env = append(os.Environ(), envClusterDSN+"="+dsn, envClusterOwner+"="+fmt.Sprintf("worker-%d-of-%d", p+1, procs),
			envClusterN+"="+strconv.Itoa(n))
		w := &worker{cmd: cmd}
		cmd.Stderr = &w.stderr
		var err error
		if w.in, err = cmd.StdinPipe(); err != nil {
			b.Fatal(err)
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		w.out = bufio.NewScanner(out)
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		workers[p] = w
	}
	// expect reads w's output up to a line starting with prefix.
	expect := func(w *worker, prefix string) string {
		for w.out.Scan() {
			if line := w.out.Text(); strings.HasPrefix(line, prefix) {
				return strings.TrimPrefix(line, prefix)
			}
		}
		w.cmd.Wait()
		b.Fatalf("worker %s: no %q line: %v\n%s", w.cmd.Env[len(w.cmd.Env)-2], prefix, w.out.Err(), w.stderr.String())
		return ""
	}
	for _, w := range workers {
		expect(w, "CLUSTER-READY")
	}
	start := time.Now()
	for _, w := range workers {
		if _, err := io.WriteString(w.in, "go\n"); err != nil {
			b.Fatal(err)
		}
	}
	done := make(chan int, procs)
	for _, w := range workers {
		go func() {
			completed, _ := strconv.Atoi(strings.TrimSpace(expect(w, "CLUSTER-DONE ")))
			done <- completed
		}()
	}
	total := 0
	for range workers {
		total += <-done
	}
	elapsed := time.Since(start)
	for _, w := range workers {
		w.in.Close()
		if err := w.cmd.Wait(); err != nil {
			b.Fatalf("worker failed: %v\n%s", err, w.stderr.String())
		}
	}
	if total != n {
		b.Fatalf("%d workers completed %d retries, want %d", procs, total, n)
	}
	return elapsed
}

// TestClusterRefreshWorker is a worker process of BenchmarkClusterRefresh;
// it does nothing in an ordinary run. It builds the resource (the same
// objects, so the same UIDs, as the shadows'), says CLUSTER-READY, waits
// for a line on stdin, runs one refresh with claims, and says
// CLUSTER-DONE with the number of retries it completed.
func TestClusterRefreshWorker(t *testing.T) {
	dsn := os.Getenv(envClusterDSN)
	if dsn == "" {
		t.Skip("worker process of BenchmarkClusterRefresh")
	}
	n, err := strconv.Atoi(os.Getenv(envClusterN))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Minute)
	defer cancel()
	conn := memconn.New(memconn.Options{Latency: clusterLatency})
	for i := range n {
		if _, err := conn.Put(account, userAttrs(i)); err != nil {
			t.Fatal(err)
		}
	}
	st, err := sqlstore.OpenPostgres(ctx, dsn, sqlstore.Options{MaxOpenConns: clusterConcurrency + 2})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	set := consistency.DefaultSettings()
	set.PendingOperationRetentionPeriod = 0
	eng, err := consistency.New(consistency.Config{Store: st,
		Resources: []consistency.Resource{{ID: resID, Connector: conn, Settings: &set}}})
	if err != nil {
		t.Fatal(err)
	}
	task, err := refresh.New(refresh.Config{Engine: eng, Owner: os.Getenv(envClusterOwner), Concurrency: clusterConcurrency})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("CLUSTER-READY")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	res, err := task.Run(ctx)
	if err != nil || res.ErrorCount != 0 {
		t.Fatalf("refresh: %v %v", err, res.Err())
	}
	fmt.Printf("CLUSTER-DONE %d\n", res.Total.Completed)
}
