package sqlstore

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/internal/testsvc"
	"github.com/umbra-idm/umbra/shadow"
)

// The multi-process test: the parent fills one PostgreSQL schema with
// shadows that each carry one due pending operation, then re-executes this
// test binary as worker processes that refresh them by claiming batches.
// "Executing" an operation increments the shadow's counter row in the
// same transaction that completes the operation (a version-checked update),
// so a worker whose claim was taken over cannot count twice.
const (
	envMPRole  = "UMBRA_SQLSTORE_MP_ROLE" // "worker" or "victim"
	envMPDSN   = "UMBRA_SQLSTORE_MP_DSN"
	envMPOwner = "UMBRA_SQLSTORE_MP_OWNER"

	mpShadows  = 10_000
	mpBatch    = 25
	mpClaimTTL = 3 * time.Second
	// The victim works this many batches, then claims one more, reports
	// it and waits to be killed with the claims held.
	mpVictimBatches = 4
)

func TestMultiProcessRefresh(t *testing.T) {
	if os.Getenv(envMPRole) != "" {
		t.Skip("running as a worker process")
	}
	t.Parallel()
	dsn := testsvc.PostgresDSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s, err := OpenPostgres(ctx, dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	execSQL(t, s, `CREATE TABLE {t}mp_counter (shadow_id TEXT PRIMARY KEY, executions INTEGER NOT NULL, executed_by TEXT NOT NULL)`)
	tmpl := newShadow("op-1000000")
	tmpl.NextDue = time.Now().Add(-time.Second)
	tmpl.Pending[0].RequestedAt = tmpl.NextDue
	if err := s.Create(ctx, tmpl); err != nil {
		t.Fatal(err)
	}
	copyShadow(t, s, tmpl.ID, "op-", mpShadows-1)

	start := time.Now()
	owners := []string{"proc-1", "proc-2", "proc-victim"}
	type child struct {
		cmd    *exec.Cmd
		out    *bufio.Scanner
		stderr strings.Builder
	}
	children := make([]*child, len(owners))
	for i, owner := range owners {
		role := "worker"
		if owner == "proc-victim" {
			role = "victim"
		}
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestMultiProcessWorker$", "-test.v")
		cmd.Env = append(os.Environ(), envMPRole+"="+role, envMPDSN+"="+dsn, envMPOwner+"="+owner)
		c := &child{cmd: cmd}
		cmd.Stderr = &c.stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		c.out = bufio.NewScanner(stdout)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		children[i] = c
	}

	// Read every child's output; kill the victim once it holds a batch.
	var mu sync.Mutex
	var held []string
	stats := map[string]string{}
	var wg sync.WaitGroup
	for i, c := range children {
		wg.Go(func() {
			for c.out.Scan() {
				line := c.out.Text()
				switch {
				case strings.HasPrefix(line, "MPHOLD "):
					mu.Lock()
					held = strings.Split(strings.TrimPrefix(line, "MPHOLD "), ",")
					mu.Unlock()
					// SIGKILL: no clean-up, no release of its claims.
					if err := c.cmd.Process.Kill(); err != nil {
						t.Errorf("kill %s: %v", owners[i], err)
					}
				case strings.HasPrefix(line, "MPSTAT "):
					mu.Lock()
					stats[owners[i]] = strings.TrimPrefix(line, "MPSTAT ")
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	for i, c := range children {
		err := c.cmd.Wait()
		if owners[i] == "proc-victim" {
			continue // killed
		}
		if err != nil {
			t.Fatalf("%s failed: %v\n%s", owners[i], err, c.stderr.String())
		}
	}
	elapsed := time.Since(start)
	if len(held) == 0 {
		t.Fatal("the victim never reported a held batch")
	}

	// Every operation executed exactly once.
	var rows, minExec, maxExec int
	if err := s.rdb.QueryRowContext(ctx, s.sql(`SELECT count(*), COALESCE(min(executions), 0), COALESCE(max(executions), 0) FROM {t}mp_counter`)).
		Scan(&rows, &minExec, &maxExec); err != nil {
		t.Fatal(err)
	}
	if rows != mpShadows || minExec != 1 || maxExec != 1 {
		t.Fatalf("counters: %d rows, executions %d..%d; want %d rows each executed exactly once", rows, minExec, maxExec, mpShadows)
	}
	if n, err := s.Count(ctx, shadow.Query{Unfinished: true}); err != nil || n != 0 {
		t.Fatalf("%d shadows still have unfinished operations (%v)", n, err)
	}
	// Each process did some of the work.
	per := map[string]int{}
	r, err := s.rdb.QueryContext(ctx, s.sql(`SELECT executed_by, count(*) FROM {t}mp_counter GROUP BY executed_by`))
	if err != nil {
		t.Fatal(err)
	}
	for r.Next() {
		var owner string
		var n int
		if err := r.Scan(&owner, &n); err != nil {
			t.Fatal(err)
		}
		per[owner] = n
	}
	r.Close()
	for _, owner := range owners {
		if per[owner] == 0 {
			t.Errorf("%s executed no operation: %v", owner, per)
		}
	}
	if per["proc-victim"] != mpVictimBatches*mpBatch {
		t.Errorf("the victim executed %d operations, want the %d of its %d finished batches", per["proc-victim"], mpVictimBatches*mpBatch, mpVictimBatches)
	}
	// The victim's held claims were taken over after expiry.
	var takenOver int
	for _, id := range held {
		var by string
		if err := s.rdb.QueryRowContext(ctx, s.sql(`SELECT executed_by FROM {t}mp_counter WHERE shadow_id = $1`), id).Scan(&by); err != nil {
			t.Fatalf("held shadow %s: %v", id, err)
		}
		if by == "proc-victim" {
			t.Errorf("held shadow %s counted as executed by the killed victim", id)
		} else {
			takenOver++
		}
	}
	t.Logf("%d operations over 3 processes in %s: executed per process %v; the killed victim held %d claims, %d taken over after expiry (ttl %s); worker stats %v",
		mpShadows, elapsed.Round(time.Millisecond), per, len(held), takenOver, mpClaimTTL, stats)
}

// TestMultiProcessWorker is the worker process of TestMultiProcessRefresh;
// it does nothing in an ordinary run.
func TestMultiProcessWorker(t *testing.T) {
	role := os.Getenv(envMPRole)
	if role == "" {
		t.Skip("helper process of TestMultiProcessRefresh")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	s, err := OpenPostgres(ctx, os.Getenv(envMPDSN), Options{MaxOpenConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	owner := os.Getenv(envMPOwner)
	var executed, conflicts, batches, idle int
	for {
		if err := ctx.Err(); err != nil {
			t.Fatal(err)
		}
		batch, err := s.Claim(ctx, shadow.Query{Unfinished: true, DueBy: time.Now()}, owner, mpClaimTTL, mpBatch)
		if err != nil {
			t.Fatal(err)
		}
		if len(batch) == 0 {
			left, err := s.Count(ctx, shadow.Query{Unfinished: true})
			if err != nil {
				t.Fatal(err)
			}
			if left == 0 {
				break
			}
			idle++
			time.Sleep(100 * time.Millisecond) // others' claims are in progress or await expiry
			continue
		}
		if role == "victim" && batches == mpVictimBatches {
			ids := make([]string, len(batch))
			for i, sh := range batch {
				ids[i] = sh.ID
			}
			fmt.Printf("MPHOLD %s\n", strings.Join(ids, ","))
			<-ctx.Done() // wait for SIGKILL
			t.Fatal("the victim was not killed")
		}
		ids := make([]string, 0, len(batch))
		for _, sh := range batch {
			switch err := mpExecute(ctx, s, sh, owner); {
			case errors.Is(err, shadow.ErrConflict):
				conflicts++ // another process took the claim over and finished first
			case err != nil:
				t.Fatal(err)
			default:
				executed++
			}
			ids = append(ids, sh.ID)
		}
		if err := s.Release(ctx, owner, ids...); err != nil {
			t.Fatal(err)
		}
		batches++
	}
	fmt.Printf("MPSTAT executed=%d conflicts=%d batches=%d idle-polls=%d\n", executed, conflicts, batches, idle)
}

// mpExecute "executes" sh's pending operation: in one transaction it
// completes the operation (version-checked) and increments the shadow's
// counter row. When another process completed it first, the update fails
// with ErrConflict and the increment is rolled back with it.
func mpExecute(ctx context.Context, s *Store, sh *shadow.Shadow, owner string) error {
	now := time.Now()
	op := &sh.Pending[0]
	op.Status, op.Result, op.Attempt, op.CompletedAt, op.LastAttemptAt = shadow.StatusCompleted, shadow.ResultSuccess, op.Attempt+1, now, now
	sh.NextDue = time.Time{}
	return s.tx(ctx, func(tx *sql.Tx) error {
		if err := s.updateTx(ctx, tx, sh); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, s.sql(`INSERT INTO {t}mp_counter (shadow_id, executions, executed_by) VALUES ($1, 1, $2)
			ON CONFLICT (shadow_id) DO UPDATE SET executions = {t}mp_counter.executions + 1, executed_by = $2`), sh.ID, owner)
		return err
	})
}
