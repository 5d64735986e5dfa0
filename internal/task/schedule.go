package task

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/umbra-idm/umbra/internal/clock"
)

// ErrStarted is returned by Scheduler.Start when the schedule is already
// running.
var ErrStarted = errors.New("task: schedule already started")

// Gate keeps runs of one task from overlapping: a run enters before it
// starts and leaves when it ends. The zero value is not usable; call NewGate.
type Gate struct{ ch chan struct{} }

// NewGate returns an open gate.
func NewGate() *Gate { return &Gate{ch: make(chan struct{}, 1)} }

// Enter waits until no other run is inside, or until ctx is done (then it
// returns ctx's error and the caller MUST NOT call Leave).
func (g *Gate) Enter(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case g.ch <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Leave lets the next run in. It MUST follow a successful Enter.
func (g *Gate) Leave() { <-g.ch }

// Scheduler runs a function once, or recurring on a grid of planned times
// start, start+interval, start+2×interval, ...
//
//   - Runs never overlap: a planned time that passes while a run is under way
//     is skipped, and the next run is the first planned time after the run
//     ended.
//   - The grid never drifts: planned times are counted from the start, not
//     from the end of the previous run.
//   - Suspend stops further planned runs (a run under way finishes);
//     Resume continues on the grid with the first planned time after the
//     resume (the ones that passed while suspended are skipped).
//   - RunNow asks for a run at once (after the one under way, if any), even
//     while suspended; requests made while one is waiting are merged.
//
// It waits only on its clock's After, so a test with a fake clock drives it
// without sleeping. A Scheduler is safe for concurrent use; Start, Stop,
// Suspend, Resume and RunNow MUST NOT be called from inside the run
// function (Stop would wait for itself).
type Scheduler struct {
	name  string
	clock clock.Clock
	log   *slog.Logger
	run   func(ctx context.Context)

	mu        sync.Mutex
	cancel    context.CancelFunc
	done      chan struct{}
	suspended bool
	resumed   time.Time     // when Resume last ended a suspension
	wake      chan struct{} // suspension changed
	now       chan struct{} // run-now requested
}

// NewScheduler returns a stopped schedule of run. name is for logs; a nil
// clock is the wall clock; a nil logger discards.
func NewScheduler(name string, c clock.Clock, log *slog.Logger, run func(ctx context.Context)) *Scheduler {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Scheduler{name: name, clock: clock.Or(c), log: log, run: run,
		wake: make(chan struct{}, 1), now: make(chan struct{}, 1)}
}

// Start starts the schedule in the background: the first run at once, then
// every interval; with interval 0, one run only. The schedule ends at Stop
// or when ctx is done. Start fails with ErrStarted when the schedule is
// running, and for a negative interval. A schedule that ended may be
// started again; Start keeps the suspension state.
func (s *Scheduler) Start(ctx context.Context, interval time.Duration) error {
	if interval < 0 {
		return fmt.Errorf("%s: schedule interval %s is negative", s.name, interval)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done != nil {
		select {
		case <-s.done:
		default:
			return fmt.Errorf("%s: %w", s.name, ErrStarted)
		}
	}
	select {
	case <-s.now: // a request made while stopped does not carry over
	default:
	}
	ctx, cancel := context.WithCancel(ctx)
	s.cancel, s.done = cancel, make(chan struct{})
	s.log.Info(s.name+": schedule started", "interval", interval)
	go s.loop(ctx, s.clock.Now(), interval, s.done)
	return nil
}

// Stop ends the schedule: a run under way gets a cancelled context, and
// Stop returns once it has returned. Stop before Start, and a second Stop,
// do nothing.
func (s *Scheduler) Stop() {
	s.mu.Lock()
	cancel, done := s.cancel, s.done
	s.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

// Running reports whether the schedule is started and has not ended.
func (s *Scheduler) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// Suspend stops planned runs until Resume. A run under way is not
// interrupted.
func (s *Scheduler) Suspend() { s.setSuspended(true) }

// Resume continues planned runs after Suspend, from the first planned time
// after now. Call RunNow as well to run at once.
func (s *Scheduler) Resume() { s.setSuspended(false) }

// Suspended reports whether the schedule is suspended.
func (s *Scheduler) Suspended() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.suspended
}

func (s *Scheduler) setSuspended(on bool) {
	s.mu.Lock()
	changed := s.suspended != on
	s.suspended = on
	if changed && !on {
		s.resumed = s.clock.Now()
	}
	s.mu.Unlock()
	if changed {
		s.log.Info(s.name+": schedule suspension changed", "suspended", on)
		signal(s.wake)
	}
}

// RunNow asks a started schedule for a run at once, or right after the run
// under way. It does nothing when the schedule is not running.
func (s *Scheduler) RunNow() { signal(s.now) }

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (s *Scheduler) loop(ctx context.Context, next time.Time, interval time.Duration, done chan struct{}) {
	defer close(done)
	defer s.log.Info(s.name + ": schedule ended")
	var timer <-chan time.Time
	var timerAt time.Time
	for {
		if ctx.Err() != nil {
			return
		}
		now := s.clock.Now()
		s.mu.Lock()
		suspended, resumed := s.suspended, s.resumed
		s.mu.Unlock()
		if !suspended && !now.Before(next) {
			if interval > 0 && next.Before(resumed) {
				next = s.after(next, interval) // passed while suspended
				continue
			}
			s.run(ctx)
			if interval == 0 {
				return
			}
			next = s.after(next, interval)
			continue
		}
		var fire <-chan time.Time
		if !suspended {
			if timer == nil || !timerAt.Equal(next) {
				timer, timerAt = s.clock.After(next.Sub(now)), next
			}
			fire = timer
		}
		select {
		case <-ctx.Done():
			return
		case <-fire:
			timer = nil
		case <-s.wake:
		case <-s.now:
			s.run(ctx)
			if interval == 0 {
				return // the one run of a single-run schedule
			}
			next = s.after(next, interval)
		}
	}
}

// after returns the first planned time after now, next being a planned
// time: next itself when it is still ahead.
func (s *Scheduler) after(next time.Time, interval time.Duration) time.Time {
	now := s.clock.Now()
	if next.After(now) {
		return next
	}
	return next.Add((now.Sub(next)/interval + 1) * interval)
}
