package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/internal/testsvc"
	"github.com/umbra-idm/umbra/shadow"
	"github.com/umbra-idm/umbra/shadow/sqlstore"
)

// workerEnv, when set, makes the test binary a worker process: it holds
// the JSON arguments of run. TestTakeover starts its workers this way.
const workerEnv = "UMBRA_CLUSTER_TEST_WORKER"

func TestMain(m *testing.M) {
	if args := os.Getenv(workerEnv); args != "" {
		var a []string
		if err := json.Unmarshal([]byte(args), &a); err != nil {
			fmt.Fprintln(os.Stderr, "worker arguments:", err)
			os.Exit(2)
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := run(ctx, a, os.Stdout)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, prog+":", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// proc is a worker running as a child process.
type proc struct {
	name   string
	cmd    *exec.Cmd
	out    lockedBuffer
	stderr lockedBuffer
	done   chan struct{}
	err    error
}

func startWorker(t *testing.T, name string, args []string) *proc {
	t.Helper()
	enc, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{name: name, cmd: exec.Command(os.Args[0]), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), workerEnv+"="+string(enc))
	p.cmd.Stderr = &p.stderr
	pipe, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			p.out.Write(append(sc.Bytes(), '\n'))
		}
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill() // by PID: this child only
			<-p.done
		}
		if t.Failed() {
			t.Logf("worker %s (%v):\n%s%s", name, p.err, p.out.String(), p.stderr.String())
		}
	})
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

var createdRE = regexp.MustCompile(`(?m)^\[(\w+)\] created (user-\d+) on the resource$`)

// created counts the accounts a worker says it created.
func (p *proc) created() int { return len(createdRE.FindAllString(p.out.String(), -1)) }

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func runCmd(t *testing.T, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	if err := run(t.Context(), args, &out); err != nil {
		t.Fatalf("run %v: %v\n%s", args[0], err, out.String())
	}
	return out.String()
}

// feedNames returns the names the feed command added.
func feedNames(t *testing.T, out string) []string {
	t.Helper()
	_, list, ok := strings.Cut(strings.TrimSpace(out), "added to the HR feed: ")
	if !ok {
		t.Fatalf("feed output: %s", out)
	}
	return strings.Split(list, ", ")
}

// TestTakeover is the README story with processes: three workers share one
// PostgreSQL schema; the live-sync leader is killed with SIGKILL in the
// middle of the work. Every seeded operation is executed exactly once,
// the survivors finish the dead worker's share, and one of them takes the
// live-sync lease over and syncs the feed changes made after the kill.
func TestTakeover(t *testing.T) {
	t.Parallel()
	dsn := testsvc.PostgresDSN(t)
	common := []string{"-dsn", dsn, "-schema", ""}
	const n = 40
	runCmd(t, append([]string{"seed", "-n", fmt.Sprint(n)}, common...)...)
	before := feedNames(t, runCmd(t, append([]string{"feed", "-n", "2"}, common...)...))

	workers := map[string]*proc{}
	for _, name := range []string{"w1", "w2", "w3"} {
		workers[name] = startWorker(t, name, append([]string{"worker", "-name", name,
			"-latency", "150ms", "-round", "200ms", "-claim-ttl", "2s", "-lease-ttl", "2s", "-retry-period", "500ms",
			"-concurrency", "1", "-batch", "1"}, common...))
	}

	// Wait for a leader that synced the feed and took its share of the
	// accounts while another worker took some too; then kill it.
	var leader *proc
	waitFor(t, "a leader with work done beside another worker's", 30*time.Second, func() bool {
		others := 0
		leader = nil
		for _, p := range workers {
			if p.exited() {
				t.Fatalf("worker %s exited: %v\n%s%s", p.name, p.err, p.out.String(), p.stderr.String())
			}
			if strings.Contains(p.out.String(), "live sync: leading (lease term 1)") {
				leader = p
			} else {
				others += p.created()
			}
		}
		if leader == nil || leader.created() < 2 || others < 1 {
			return false
		}
		for _, name := range before {
			if !strings.Contains(leader.out.String(), "live sync: create "+name+" ") {
				return false
			}
		}
		return true
	})
	if err := leader.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-leader.done
	killedAt := leader.created()
	t.Logf("killed leader %s after it created %d accounts", leader.name, killedAt)
	after := feedNames(t, runCmd(t, append([]string{"feed", "-n", "3"}, common...)...))

	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	store, err := sqlstore.OpenPostgres(t.Context(), dsn, sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	survivors := []*proc{}
	for _, p := range workers {
		if p != leader {
			survivors = append(survivors, p)
		}
	}
	var newLeader *proc
	waitFor(t, "the survivors to finish the accounts and take the feed over", 40*time.Second, func() bool {
		var accounts int
		if err := db.QueryRowContext(t.Context(), `SELECT COUNT(*) FROM cluster_accounts`).Scan(&accounts); err != nil {
			t.Fatal(err)
		}
		unfinished, err := store.Count(t.Context(), shadow.Query{ResourceID: accountsID, Unfinished: true})
		if err != nil {
			t.Fatal(err)
		}
		newLeader = nil
		for _, p := range survivors {
			if strings.Contains(p.out.String(), "live sync: took over the lease") && strings.Contains(p.out.String(), "live sync: create "+after[2]+" ") {
				newLeader = p
			}
		}
		return accounts == n && unfinished == 0 && newLeader != nil
	})
	for _, p := range survivors {
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range survivors {
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			t.Fatalf("worker %s did not stop on SIGTERM", p.name)
		}
		if p.err != nil || !strings.Contains(p.out.String(), "stopped") {
			t.Errorf("worker %s ended with %v", p.name, p.err)
		}
	}

	// Exactly once: one account per seeded name, every operation completed
	// successfully, no failure anywhere.
	names := map[string]string{}
	rows, err := db.QueryContext(t.Context(), `SELECT name, created_by FROM cluster_accounts`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name, by string
		if err := rows.Scan(&name, &by); err != nil {
			t.Fatal(err)
		}
		names[name] = by
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	for i := 1; i <= n; i++ {
		if _, ok := names[accountName(i)]; !ok {
			t.Errorf("%s was never created", accountName(i))
		}
	}
	if len(names) != n {
		t.Errorf("%d accounts, want %d", len(names), n)
	}
	shadows, err := store.List(t.Context(), shadow.Query{ResourceID: accountsID})
	if err != nil {
		t.Fatal(err)
	}
	if len(shadows) != n {
		t.Errorf("%d account shadows, want %d", len(shadows), n)
	}
	for _, sh := range shadows {
		if !sh.Exists || sh.Unfinished() || len(sh.Pending) != 1 || sh.Pending[0].Result != shadow.ResultSuccess {
			t.Errorf("shadow %s (%s): exists %v, operations %+v", sh.ID, sh.Name, sh.Exists, sh.Pending)
		}
	}
	for _, p := range workers {
		if strings.Contains(p.out.String(), "FAILED") {
			t.Errorf("worker %s reports a failure:\n%s", p.name, p.out.String())
		}
	}

	// Claims: no account was called by two live workers. A second call
	// happens only for an add the killed worker had in flight.
	calls := map[string][]string{}
	rows, err = db.QueryContext(t.Context(), `SELECT name, worker FROM cluster_calls ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name, w string
		if err := rows.Scan(&name, &w); err != nil {
			t.Fatal(err)
		}
		calls[name] = append(calls[name], w)
	}
	rows.Close()
	for name, by := range calls {
		if len(by) > 1 && (len(by) > 2 || by[0] != leader.name || by[1] == leader.name) {
			t.Errorf("%s was called by %v: more than the killed worker's one attempt in flight", name, by)
		}
	}
	// The work was split, and the survivors finished the dead worker's share.
	creators := map[string]int{}
	for _, by := range names {
		creators[by]++
	}
	if creators[leader.name] < killedAt || len(creators) < 2 {
		t.Errorf("accounts by creator %v; the killed leader %s said it created %d", creators, leader.name, killedAt)
	}
	if creators[leader.name] == n {
		t.Errorf("the killed leader made every account: nothing was left for the survivors")
	}

	// Live sync: the new leader took over with a higher term and synced the
	// feed rows added after the kill; every feed row has a shadow.
	out := newLeader.out.String()
	t.Logf("the new leader, %s:\n%s", newLeader.name, out)
	if m := regexp.MustCompile(`took over the lease \(term (\d+)\)`).FindStringSubmatch(out); m == nil || m[1] == "1" {
		t.Errorf("%s did not take the lease over with a new term:\n%s", newLeader.name, out)
	}
	for _, name := range after {
		if !strings.Contains(out, "live sync: create "+name+" ") {
			t.Errorf("%s did not sync %s:\n%s", newLeader.name, name, out)
		}
	}
	feedShadows, err := store.List(t.Context(), shadow.Query{ResourceID: feedID})
	if err != nil {
		t.Fatal(err)
	}
	var synced []string
	for _, sh := range feedShadows {
		synced = append(synced, sh.Name)
	}
	slices.Sort(synced)
	want := slices.Sorted(slices.Values(append(before, after...)))
	if !slices.Equal(synced, want) {
		t.Errorf("feed shadows %v, want %v", synced, want)
	}

	status := runCmd(t, append([]string{"status"}, common...)...)
	for _, w := range []string{fmt.Sprintf("account shadows: %d, with unfinished operations: 0", n), "HR feed: 5 rows, 5 synced by live sync"} {
		if !strings.Contains(status, w) {
			t.Errorf("status lacks %q:\n%s", w, status)
		}
	}
}

// TestSeedTwice: a second seed refuses to add to a seeded store.
func TestSeedTwice(t *testing.T) {
	t.Parallel()
	common := []string{"-dsn", testsvc.PostgresDSN(t), "-schema", ""}
	out := runCmd(t, append([]string{"seed", "-n", "3"}, common...)...)
	if !strings.Contains(out, "seeded 3 accounts (user-0001 … user-0003)") || !strings.Contains(out, "3 shadows hold a due retry operation") {
		t.Errorf("seed output:\n%s", out)
	}
	err := run(t.Context(), append([]string{"seed", "-n", "3"}, common...), &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "already has 3 account shadows") {
		t.Errorf("second seed = %v", err)
	}
}

func TestFlags(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"-h"}, {"worker", "-h"}} {
		var out bytes.Buffer
		if err := run(t.Context(), args, &out); !errors.Is(err, flag.ErrHelp) {
			t.Errorf("%v = %v, want flag.ErrHelp", args, err)
		}
		if !strings.Contains(out.String(), "Usage: cluster <command>") {
			t.Errorf("%v help:\n%s", args, out.String())
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "missing command"},
		{[]string{"dance"}, `unknown command "dance"`},
		{[]string{"worker"}, "-name is required"},
		{[]string{"worker", "-name", "w1", "-round", "0s", "-batch", "0"}, "-round 0s: must be positive\n-batch 0"},
		{[]string{"seed", "-n", "0"}, "-n 0"},
		{[]string{"seed", "-reset", "-schema", ""}, "-reset needs -schema"},
		{[]string{"status", "-schema", "Robert'); DROP TABLE students;--"}, "want a lowercase SQL identifier"},
		{[]string{"feed", "stray"}, "unexpected arguments"},
	} {
		err := run(t.Context(), tc.args, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run(%v) = %v, want an error saying %q", tc.args, err, tc.want)
		}
	}
	for dsn, want := range map[string]string{
		"postgres://u:s3cret@h/db":    "postgres://u:xxxxx@h/db",
		"postgres://u@h/db":           "postgres://u@h/db",
		"host=h password=s3cret":      "<your DSN>",
		"host=h user=u sslmode=allow": "host=h user=u sslmode=allow",
	} {
		if got := redactDSN(dsn); got != want {
			t.Errorf("redactDSN(%q) = %q, want %q", dsn, got, want)
		}
	}
	if got := withSearchPath("host=h user=u", "s"); got != "host=h user=u search_path=s" {
		t.Errorf("withSearchPath key=value = %q", got)
	}
	if got := withSearchPath("postgres://u@h/db?sslmode=disable", "s"); got != "postgres://u@h/db?search_path=s&sslmode=disable" {
		t.Errorf("withSearchPath URL = %q", got)
	}
}

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
