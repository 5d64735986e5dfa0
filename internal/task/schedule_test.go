package task

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/umbra-idm/umbra/internal/clock"
)

var t0 = time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)

// guard is how long a test waits (in real time) for something that should
// happen at once; only a failing test ever waits that long.
const guard = 10 * time.Second

type schedBundle struct {
	fc    *clock.Fake
	runs  chan time.Time
	sched *Scheduler
}

// setupSched returns a scheduler whose run reports its start time on runs,
// then lets the fake clock pass took.
func setupSched(t *testing.T, took time.Duration) *schedBundle {
	t.Helper()
	b := &schedBundle{fc: clock.NewFake(t0), runs: make(chan time.Time, 100)}
	var active atomic.Int32
	b.sched = NewScheduler("test", b.fc, nil, func(ctx context.Context) {
		if active.Add(1) > 1 {
			t.Error("two runs at once")
		}
		defer active.Add(-1)
		b.runs <- b.fc.Now()
		if took > 0 {
			b.fc.Advance(took)
		}
	})
	t.Cleanup(b.sched.Stop)
	return b
}

func (b *schedBundle) next(t *testing.T) time.Time {
	t.Helper()
	select {
	case at := <-b.runs:
		return at
	case <-time.After(guard):
		t.Fatal("no run came")
	}
	return time.Time{}
}

// waitTimer waits until the schedule sleeps on the clock.
func (b *schedBundle) waitTimer(t *testing.T) {
	t.Helper()
	if !b.fc.BlockUntil(1, guard) {
		t.Fatal("the schedule never waited on the clock")
	}
}

func (b *schedBundle) noRun(t *testing.T) {
	t.Helper()
	select {
	case at := <-b.runs:
		t.Fatalf("unexpected run at %s", at.Sub(t0))
	default:
	}
}

func TestSchedulerDoesNotDrift(t *testing.T) {
	t.Parallel()
	b := setupSched(t, 3*time.Minute) // every run takes 3 minutes
	if err := b.sched.Start(context.Background(), 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		if at := b.next(t); !at.Equal(t0.Add(time.Duration(i) * 10 * time.Minute)) {
			t.Fatalf("run %d at +%s, want +%s (planned from the start, not from the end of the run)",
				i, at.Sub(t0), time.Duration(i)*10*time.Minute)
		}
		b.waitTimer(t)
		b.noRun(t)
		b.fc.Set(t0.Add(time.Duration(i+1) * 10 * time.Minute))
	}
}

func TestSchedulerSkipsPlannedTimesDuringALongRun(t *testing.T) {
	t.Parallel()
	b := setupSched(t, 25*time.Minute) // longer than two intervals
	if err := b.sched.Start(context.Background(), 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	if at := b.next(t); !at.Equal(t0) {
		t.Fatalf("first run at +%s", at.Sub(t0))
	}
	b.waitTimer(t)
	b.noRun(t) // +10 and +20 passed during the run: not made up
	b.fc.Set(t0.Add(30 * time.Minute))
	if at := b.next(t); !at.Equal(t0.Add(30 * time.Minute)) {
		t.Fatalf("second run at +%s, want +30m", at.Sub(t0))
	}
}

func TestSchedulerSuspendResumeRunNow(t *testing.T) {
	t.Parallel()
	b := setupSched(t, 0)
	if err := b.sched.Start(context.Background(), 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	b.next(t)
	b.waitTimer(t)
	b.sched.Suspend()
	if !b.sched.Suspended() {
		t.Fatal("Suspended() is false after Suspend")
	}
	b.fc.Set(t0.Add(12 * time.Minute)) // the +10 run falls in the suspension
	b.sched.RunNow()                   // an explicit request runs even while suspended
	if at := b.next(t); !at.Equal(t0.Add(12 * time.Minute)) {
		t.Fatalf("run-now run at +%s, want +12m", at.Sub(t0))
	}
	b.noRun(t)
	b.sched.Resume()
	b.waitTimer(t)
	b.noRun(t)
	b.fc.Set(t0.Add(20 * time.Minute))
	if at := b.next(t); !at.Equal(t0.Add(20 * time.Minute)) {
		t.Fatalf("run after resume at +%s, want +20m (on the grid)", at.Sub(t0))
	}
}

func TestSchedulerResumeSkipsMissedRuns(t *testing.T) {
	t.Parallel()
	b := setupSched(t, 0)
	b.sched.Suspend()
	b.sched.Suspend() // twice changes nothing
	if err := b.sched.Start(context.Background(), 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	b.fc.Set(t0.Add(35 * time.Minute))
	b.noRun(t)
	b.sched.Resume()
	b.waitTimer(t)
	b.noRun(t)
	b.fc.Set(t0.Add(40 * time.Minute))
	if at := b.next(t); !at.Equal(t0.Add(40 * time.Minute)) {
		t.Fatalf("first run at +%s, want +40m", at.Sub(t0))
	}
}

func TestSchedulerOnce(t *testing.T) {
	t.Parallel()
	b := setupSched(t, 0)
	if err := b.sched.Start(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	b.next(t)
	b.sched.Stop()
	if b.sched.Running() {
		t.Fatal("Running() after a single run and Stop")
	}
	b.sched.RunNow() // not running: nothing
	b.noRun(t)
	// A schedule that ended starts again.
	if err := b.sched.Start(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	b.next(t)
}

func TestSchedulerOnceSuspendedRunsOnRunNow(t *testing.T) {
	t.Parallel()
	b := setupSched(t, 0)
	b.sched.Suspend()
	if err := b.sched.Start(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	b.sched.RunNow()
	b.next(t)
	b.sched.Stop()
	b.noRun(t)
}

func TestSchedulerStartStopContract(t *testing.T) {
	t.Parallel()
	b := setupSched(t, 0)
	b.sched.Stop() // before Start
	if b.sched.Running() {
		t.Fatal("Running() before Start")
	}
	if err := b.sched.Start(context.Background(), -time.Second); err == nil {
		t.Fatal("negative interval accepted")
	}
	if err := b.sched.Start(context.Background(), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := b.sched.Start(context.Background(), time.Minute); !errors.Is(err, ErrStarted) {
		t.Fatalf("second Start: %v, want ErrStarted", err)
	}
	if !b.sched.Running() {
		t.Fatal("Running() is false")
	}
	b.sched.Stop()
	b.sched.Stop() // twice
	if b.sched.Running() {
		t.Fatal("Running() after Stop")
	}
}

func TestSchedulerStopCancelsTheRunUnderWay(t *testing.T) {
	t.Parallel()
	fc := clock.NewFake(t0)
	started := make(chan struct{})
	var ended atomic.Bool
	s := NewScheduler("test", fc, nil, func(ctx context.Context) {
		close(started)
		<-ctx.Done()
		ended.Store(true)
	})
	if err := s.Start(context.Background(), time.Minute); err != nil {
		t.Fatal(err)
	}
	<-started
	s.Stop()
	if !ended.Load() {
		t.Fatal("Stop returned before the run did")
	}
}

func TestSchedulerEndsWithItsContext(t *testing.T) {
	t.Parallel()
	b := setupSched(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	if err := b.sched.Start(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	b.next(t)
	b.waitTimer(t)
	cancel()
	b.sched.Stop() // returns: the loop saw the cancellation
	if b.sched.Running() {
		t.Fatal("still running")
	}
}

func TestGate(t *testing.T) {
	t.Parallel()
	g := NewGate()
	if err := g.Enter(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	var err error
	go func() {
		defer wg.Done()
		err = g.Enter(ctx)
	}()
	cancel()
	wg.Wait()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Enter while occupied and cancelled: %v", err)
	}
	g.Leave()
	if err := g.Enter(context.Background()); err != nil {
		t.Fatal(err)
	}
	g.Leave()
	if err := g.Enter(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Enter with a done context: %v", err)
	}
}
