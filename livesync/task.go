package livesync

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/umbra-idm/umbra/connector"
	"github.com/umbra-idm/umbra/internal/task"
	"github.com/umbra-idm/umbra/shadow"
)

// The task's errors, testable with errors.Is.
var (
	// ErrRunning: a run of the task is already under way in this process
	// (runs never overlap).
	ErrRunning = errors.New("livesync: a run of the task is already under way")
	// ErrDeleteGuard: the delete guard stopped the run.
	ErrDeleteGuard = errors.New("livesync: delete guard stopped the run")
	// ErrMalformedChange: the connector sent a change the engine cannot
	// process (see connector.Change.Validate; also a change of another
	// class, or one without a token when tokens are precise). It is
	// classified as connector.CategorySchema for the error policy.
	ErrMalformedChange = errors.New("livesync: malformed change")
	// ErrHandlerPanic: the handler panicked; the panic became this error.
	ErrHandlerPanic = errors.New("livesync: handler panicked")
	// ErrStarted is returned by Start while the task's schedule runs.
	ErrStarted = task.ErrStarted
)

// Result reports one run.
type Result struct {
	// Fetched counts the changes read from the stream.
	Fetched int
	// Retried counts the set-aside changes offered again.
	Retried int
	// Processed counts the changes that went through (shadow stored,
	// handler succeeded), set-aside retries included.
	Processed int
	// Ignored counts failed changes the policy ignored.
	Ignored int
	// SetAside counts changes put (or left) in the side list by this run.
	SetAside int
	// Failed counts changes that failed and were neither ignored nor set
	// aside: the one that stopped the run, those skipped under
	// ActionStopAfter, and set-aside changes given up.
	Failed int
	// ByType counts the processed changes by type (as applied: a change
	// whose object a Get found gone counts as a delete).
	ByType map[connector.ChangeType]int
	// TokenBefore and TokenAfter are the stored token at the start and
	// the end of the run.
	TokenBefore, TokenAfter connector.Token
	// FirstRun is true when no token was stored and this run took the
	// resource's current one (or started from the beginning).
	FirstRun bool
	// Dry is true for a dry run.
	Dry bool
	// DeleteGuardTripped is true when the delete guard stopped the run.
	DeleteGuardTripped bool
	// Started and Finished are the run's start and end (Clock time).
	Started, Finished time.Time
}

// Task is a live-sync task for one resource and object class. It is safe for
// concurrent use; runs never overlap (Run returns ErrRunning meanwhile), be
// they called by the host or by the schedule (Start).
type Task struct {
	cfg      Config
	ls       connector.LiveSyncer
	key      TokenKey
	precise  bool
	fenced   FencedTokenStore
	gc       GroupCommitter
	batcher  shadow.Batcher
	grouped  bool
	finder   shadow.IdentifierFinder // grouped runs' group lookups (see prefetch), or nil
	running  atomic.Bool
	override atomic.Bool
	// guardMu guards tripped.
	guardMu sync.Mutex
	tripped bool
	sched   *task.Scheduler
}

// New validates cfg (reporting every problem at once, each naming its
// field) and returns the task.
func New(cfg Config) (*Task, error) {
	cfg, ls, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	t := &Task{
		cfg:     cfg,
		ls:      ls,
		key:     TokenKey{ResourceID: cfg.ResourceID, Class: cfg.Class, Task: cfg.TaskName},
		precise: ls.PreciseTokens(),
	}
	t.sched = task.NewScheduler("livesync "+t.key.String(), cfg.Clock, cfg.Logger, t.scheduled)
	if cfg.Lease != nil {
		t.fenced = cfg.Tokens.(FencedTokenStore)
	}
	if !cfg.DryRun && cfg.Workers <= 1 && cfg.GroupCommit > 1 {
		if gc, ok := cfg.Store.(GroupCommitter); ok {
			t.gc, t.grouped = gc, true
		} else if b, ok := cfg.Store.(shadow.Batcher); ok {
			t.batcher, t.grouped = b, true
		}
		if t.grouped {
			t.finder, _ = cfg.Store.(shadow.IdentifierFinder)
		}
	}
	return t, nil
}

// Key returns the task's token key.
func (t *Task) Key() TokenKey { return t.key }

// Token returns the task's stored token; found is false when none is stored
// (the next run is a first run).
func (t *Task) Token(ctx context.Context) (tok connector.Token, found bool, err error) {
	tok, found, err = t.cfg.Tokens.LoadToken(ctx, t.key)
	if err != nil {
		return "", false, fmt.Errorf("livesync: load token of %s: %w", t.key, err)
	}
	return tok, found, nil
}

// ResetToken stores tok as the task's token, whatever it was: the next run
// fetches the changes after tok. It fails with ErrRunning while a run of this
// task is under way in this process; a runner in another process finds the
// token moved (ErrTokenConflict) and stops.
func (t *Task) ResetToken(ctx context.Context, tok connector.Token) error {
	if !t.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer t.running.Store(false)
	return t.resetToken(ctx, tok)
}

// ResetTokenToLatest stores the resource's current token as the task's
// token, skipping every change until now, and returns it. It fails with
// ErrRunning while a run is under way.
func (t *Task) ResetTokenToLatest(ctx context.Context) (connector.Token, error) {
	if !t.running.CompareAndSwap(false, true) {
		return "", ErrRunning
	}
	defer t.running.Store(false)
	tok, err := t.ls.LatestToken(ctx, t.cfg.Class)
	if err != nil {
		return "", fmt.Errorf("livesync: latest token of %s: %w", t.key, err)
	}
	return tok, t.resetToken(ctx, tok)
}

func (t *Task) resetToken(ctx context.Context, tok connector.Token) error {
	for range 10 {
		cur, _, err := t.Token(ctx)
		if err != nil {
			return err
		}
		err = t.cfg.Tokens.CompareAndSwapToken(ctx, t.key, cur, tok)
		if err == nil {
			if f := t.cfg.Observer.TokenMoved; f != nil && cur != tok {
				f(t.key, cur, tok)
			}
			t.cfg.Logger.InfoContext(ctx, "livesync: token reset", "task", t.key.String())
			return nil
		}
		if !errors.Is(err, ErrTokenConflict) {
			return fmt.Errorf("livesync: reset token of %s: %w", t.key, err)
		}
	}
	return fmt.Errorf("livesync: reset token of %s: %w", t.key, ErrTokenConflict)
}

// SetAsideChanges returns the changes the error policy set aside, oldest
// first; the next run offers them again before the stream.
func (t *Task) SetAsideChanges(ctx context.Context) ([]SetAsideChange, error) {
	l, err := t.cfg.Tokens.SetAsideChanges(ctx, t.key)
	if err != nil {
		return nil, fmt.Errorf("livesync: set-aside changes of %s: %w", t.key, err)
	}
	return l, nil
}

// DropSetAside removes the set-aside change id: it will not be offered again.
func (t *Task) DropSetAside(ctx context.Context, id string) error {
	if err := t.cfg.Tokens.RemoveSetAside(ctx, t.key, id); err != nil {
		return fmt.Errorf("livesync: drop set-aside change %q of %s: %w", id, t.key, err)
	}
	return nil
}

// OverrideDeleteGuard lets the next run apply its deletes whatever their
// number (once); later runs are guarded again.
func (t *Task) OverrideDeleteGuard() { t.override.Store(true) }

// DeleteGuardTripped reports whether the delete guard stopped the last run
// and has not been overridden since.
func (t *Task) DeleteGuardTripped() bool {
	t.guardMu.Lock()
	defer t.guardMu.Unlock()
	return t.tripped && !t.override.Load()
}

// Run fetches the changes after the stored token and processes them, once:
// set-aside changes first, then the stream, until it is exhausted, BatchSize
// is reached, an error stops the run, or ctx is done. On the first run (no
// token stored) it stores the resource's current token and processes
// nothing, unless StartFromBeginning. The error is nil when the run went
// through (ignored and set-aside changes included); otherwise it names what
// stopped the run, and the token stays before the first change not done.
func (t *Task) Run(ctx context.Context) (Result, error) {
	if !t.running.CompareAndSwap(false, true) {
		return Result{}, ErrRunning
	}
	defer t.running.Store(false)
	if f := t.cfg.Observer.RunStarted; f != nil {
		f(t.key)
	}
	r := t.newRun()
	err := r.run(ctx)
	r.res.TokenAfter = r.cur
	r.res.Finished = t.cfg.Clock.Now()
	if err != nil {
		t.cfg.Logger.WarnContext(ctx, "livesync: run stopped", "task", t.key.String(),
			"processed", r.res.Processed, "fetched", r.res.Fetched, "error", err)
	} else {
		t.cfg.Logger.InfoContext(ctx, "livesync: run done", "task", t.key.String(),
			"fetched", r.res.Fetched, "processed", r.res.Processed, "ignored", r.res.Ignored,
			"setAside", r.res.SetAside, "failed", r.res.Failed)
	}
	if f := t.cfg.Observer.RunFinished; f != nil {
		f(t.key, r.res, err)
	}
	return r.res, err
}

// scheduled is one run of the schedule.
func (t *Task) scheduled(ctx context.Context) {
	if _, err := t.Run(ctx); errors.Is(err, ErrRunning) {
		t.cfg.Logger.WarnContext(ctx, "livesync: scheduled run skipped: another run is under way", "task", t.key.String())
	}
}

// Start runs the task on a schedule in the background, as the refresh task
// does: the first run at once, then one every interval counted from the
// first. Runs never overlap (a planned time that passes during a run is
// skipped, never doubled) and the plan never drifts; interval 0 runs once.
// Waiting uses the configured Clock. The schedule ends at Stop or when ctx is
// done. Outcomes go to Observer.RunFinished and the logger; a failed run does
// not end the schedule. Start fails with ErrStarted while the schedule runs,
// and for a negative interval.
func (t *Task) Start(ctx context.Context, interval time.Duration) error {
	return t.sched.Start(ctx, interval)
}

// Stop ends the schedule, cancelling a run under way (its progress is kept)
// and waiting for it. Stop before Start and a second Stop do nothing. It
// MUST NOT be called from the handler or an Observer func.
func (t *Task) Stop() { t.sched.Stop() }

// Suspend stops scheduled runs until Resume; a run under way finishes.
func (t *Task) Suspend() { t.sched.Suspend() }

// Resume continues scheduled runs from the next planned time.
func (t *Task) Resume() { t.sched.Resume() }

// Suspended reports whether the schedule is suspended.
func (t *Task) Suspended() bool { return t.sched.Suspended() }

// Running reports whether the schedule is started and has not ended.
func (t *Task) Running() bool { return t.sched.Running() }

// RunNow asks the running schedule for a run at once (after the run under
// way), even while suspended. Without a running schedule it does nothing;
// call Run instead.
func (t *Task) RunNow() { t.sched.RunNow() }
